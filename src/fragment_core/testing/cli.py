"""Run ``fragment`` commands in a test, in-process, the way an operator types them.

An end-to-end test of a connector package writes a ``fragment.toml`` pointing at the
``sandbox`` fixture and at its fake vendor, then runs ``fragment sync``::

    config = write_config(tmp_path, sandbox.url, SOURCES.format(base_url=fake.base_url))
    env = {"FRAGMENT_TOKEN": sandbox.token, "VENDOR_TOKEN": fake.token}
    report = sync_json(config, env, "support", code=0, secrets=[env["VENDOR_TOKEN"]])
    assert report["created"] == 3

:func:`sync_json` runs ``fragment --config CONFIG sync SOURCE --json [FLAGS]`` with the
given environment, asserts the exit code and that no secret is in the output, and returns
the JSON report.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from click.testing import CliRunner, Result

__all__ = ["fragment_cli", "fragment_toml", "sync_json", "write_config"]


def fragment_toml(tasks_url: str, state: str | Path, sources: str = "") -> str:
    """The text of a ``fragment.toml``: the Tasks API at ``tasks_url`` (its token read from
    ``${FRAGMENT_TOKEN}``), SQLite state in the file ``state``, then ``sources`` (the
    ``[[sources]]`` tables) as given."""
    header = (
        f'[tasks_api]\nurl = "{tasks_url}"\ntoken = "${{FRAGMENT_TOKEN}}"\n\n'
        f'[state]\nurl = "sqlite:///{Path(state).as_posix()}"\n'
    )
    return header + ("\n" + sources if sources else "")


def write_config(directory: Path, tasks_url: str, sources: str) -> Path:
    """``directory/fragment.toml`` of :func:`fragment_toml`, state in ``directory/state.db``."""
    config = directory / "fragment.toml"
    config.write_text(fragment_toml(tasks_url, directory / "state.db", sources))
    return config


def fragment_cli(
    config: Path, env: Mapping[str, str], *args: str, secrets: Iterable[str] = ()
) -> Result:
    """``fragment --config CONFIG ARGS...`` in-process; asserts no secret is in its output."""
    from fragment_core.cli import cli

    result = CliRunner().invoke(
        cli, ["--config", str(config), *args], env=dict(env), catch_exceptions=False
    )
    for secret in secrets:
        assert secret not in result.output, f"a secret is in the output of fragment {args}"
    return result


def sync_json(
    config: Path,
    env: Mapping[str, str],
    source: str,
    *flags: str,
    code: int = 0,
    secrets: Iterable[str] = (),
) -> dict[str, Any]:
    """The JSON report of ``fragment sync SOURCE --json FLAGS``, asserting its exit code
    (0 ok, 4 partial...) and that none of ``secrets`` is in the output."""
    result = fragment_cli(config, env, "sync", source, "--json", *flags, secrets=secrets)
    assert result.exit_code == code, result.output
    return dict(json.loads(result.stdout[result.stdout.index("{") :]))
