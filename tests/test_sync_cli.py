"""``fragment sync``, ``status`` and ``run --once`` with the file connector on the sandbox."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner

from fragment_core.cli import cli
from fragment_core.connectors.file import SAMPLE_COLUMNS, sample_rows, write_rows, write_sample
from fragment_core.sandbox.runner import run_sandbox
from fragment_core.task import SOURCE_FIELD, TaskStatus


def write_config(folder: Path, url: str, token: str, backlog: Path) -> Path:
    (folder / "token").write_text(token)
    config = folder / "fragment.toml"
    config.write_text(
        f'[tasks_api]\nurl = "{url}"\ntoken_file = "token"\nrate_limit = 0\n'
        f'[state]\nurl = "sqlite:///{(folder / "state.db").as_posix()}"\n'
        f'[[sources]]\nname = "kyc"\nconnector = "file"\nevery = "1s"\n'
        f'[sources.options]\npath = "{backlog.as_posix()}"\n'
    )
    return config


@pytest.fixture
def setup(tmp_path: Path) -> Iterator[tuple[Any, Path, Path]]:
    with run_sandbox() as sandbox:
        backlog = write_sample(tmp_path / "backlog.csv", 20)
        yield sandbox, write_config(tmp_path, sandbox.url, sandbox.token, backlog), backlog


def invoke(config: Path, *args: str) -> Any:
    return CliRunner().invoke(cli, ["--config", str(config), *args])


def test_sync_summary_cap_exit_code_and_force(setup: tuple[Any, Path, Path]) -> None:
    sandbox, config, backlog = setup
    first = invoke(config, "sync", "kyc")
    assert first.exit_code == 0, first.output
    assert "kyc (file, full): ok" in first.output and "created" in first.output
    write_rows(backlog, SAMPLE_COLUMNS, sample_rows(5))
    capped = invoke(config, "sync", "kyc")
    assert capped.exit_code == 3
    assert "capped" in capped.output and "blast-radius cap: 15 of 20" in capped.output
    with sandbox.client() as client:
        assert all(
            t.status == TaskStatus.TODO for t in client.list_tasks(fields={SOURCE_FIELD: "kyc"})
        )
    forced = invoke(config, "sync", "kyc", "--force-close", "--json")
    assert forced.exit_code == 0
    report = json.loads(forced.output)
    assert (report["closed"], report["outcome"]) == (15, "ok")


def test_dry_run_prints_the_plan(setup: tuple[Any, Path, Path]) -> None:
    sandbox, config, _ = setup
    result = invoke(config, "sync", "kyc", "--dry-run")
    assert result.exit_code == 0
    assert "+ C-0001  KYC review: Ada Lovelace" in result.output
    assert "Plan: 20 to create" in result.output and "Nothing was written" in result.output
    assert sandbox.stats()["tasks"] == 0


def test_unknown_source_is_a_config_error(setup: tuple[Any, Path, Path]) -> None:
    _, config, _ = setup
    result = invoke(config, "sync", "nope")
    assert result.exit_code == 2 and "no source named 'nope' (sources: kyc)" in result.output


def test_status_and_run_once(setup: tuple[Any, Path, Path]) -> None:
    sandbox, config, _ = setup
    before = json.loads(invoke(config, "status", "--json").output)
    assert before[0]["source"] == "kyc" and before[0]["last_run"] is None
    result = invoke(config, "run", "--once")
    assert result.exit_code == 0, result.output
    assert sandbox.stats()["tasks"] == 20
    rows = json.loads(invoke(config, "status", "--json").output)
    (row,) = rows
    assert row["last_run"]["created"] == 20 and row["last_run"]["outcome"] == "ok"
    assert row["write_backs"] == {"pending": 0, "done": 0, "failed": 0}
    assert row["last_complete_fetch"] is not None
    table = invoke(config, "status")
    assert table.exit_code == 0 and "kyc" in table.output and "pending" in table.output
    assert token_not_in(table.output + result.output, sandbox.token)


def token_not_in(text: str, token: str) -> bool:
    return token not in text
