"""fragment_core.testing.cli: the config file and ``fragment sync`` helpers of end-to-end tests."""

from __future__ import annotations

import tomllib
from pathlib import Path

from fragment_core.testing.cli import fragment_toml, write_config

SOURCES = '[[sources]]\nname = "files"\nconnector = "file"\n'


def test_fragment_toml_points_at_the_tasks_api_and_a_sqlite_state() -> None:
    parsed = tomllib.loads(fragment_toml("http://127.0.0.1:9/", "/x/state.db", SOURCES))
    assert parsed["tasks_api"] == {"url": "http://127.0.0.1:9/", "token": "${FRAGMENT_TOKEN}"}
    assert parsed["state"] == {"url": "sqlite:////x/state.db"}
    assert parsed["sources"] == [{"name": "files", "connector": "file"}]
    assert "sources" not in tomllib.loads(fragment_toml("http://127.0.0.1:9/", "s.db"))


def test_write_config_keeps_the_state_next_to_the_config(tmp_path: Path) -> None:
    config = write_config(tmp_path, "http://127.0.0.1:9/", SOURCES)
    assert config == tmp_path / "fragment.toml"
    state = tomllib.loads(config.read_text())["state"]["url"]
    assert state == f"sqlite:///{(tmp_path / 'state.db').as_posix()}"
