"""``fragment sync``, ``status`` and ``run --once`` with the file connector on the sandbox."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
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


def test_sync_help_lists_the_exit_codes() -> None:
    result = CliRunner().invoke(cli, ["sync", "--help"])
    assert result.exit_code == 0
    assert "see the docs" not in result.output
    for line in ("0  ok", "1  failed", "2  the configuration", "3  capped", "4  partial"):
        assert line in result.output


def test_run_help_lists_the_exit_codes_of_once() -> None:
    result = CliRunner().invoke(cli, ["run", "--help"])
    assert result.exit_code == 0
    for line in ("0  every run ok", "1  a run failed", "3  a run was capped", "5  a source"):
        assert line in result.output


def test_log_format_json_on_sync(setup: tuple[Any, Path, Path]) -> None:
    sandbox, config, _ = setup
    result = CliRunner().invoke(
        cli, ["--log-format", "json", "-v", "--config", str(config), "sync", "kyc"]
    )
    assert result.exit_code == 0, result.output
    lines = [json.loads(line) for line in result.stderr.splitlines() if line.strip()]
    finished = [r for r in lines if r["message"] == "sync finished"]
    assert finished and finished[0]["source"] == "kyc" and finished[0]["level"] == "info"
    assert finished[0]["outcome"] == "ok" and finished[0]["counts"]["created"] == 20
    assert sandbox.token not in result.stderr
    # issue 20.5: every line about the source names it, the Tasks API requests sent from
    # the writer's threads included
    assert len(lines) > 3 and any(r["logger"] == "httpx" for r in lines)
    assert [r for r in lines if r.get("source") != "kyc"] == []


def test_progress_bar_on_a_terminal(
    setup: tuple[Any, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    _, config, _ = setup
    monkeypatch.setenv("FORCE_COLOR", "1")
    monkeypatch.setenv("TTY_COMPATIBLE", "1")
    result = invoke(config, "sync", "kyc")
    assert result.exit_code == 0, result.output
    assert "kyc: fetching" in result.output and "kyc: writing" in result.output
    assert "20/20" in result.output
    monkeypatch.delenv("FORCE_COLOR")
    monkeypatch.delenv("TTY_COMPATIBLE")
    plain = invoke(config, "sync", "kyc")
    assert "kyc: fetching" not in plain.output


def test_status_shows_lag_and_pending_and_failed_write_backs(
    setup: tuple[Any, Path, Path], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fragment_core.state import OutboxState, StateStore

    _, config, _ = setup
    assert invoke(config, "sync", "kyc").exit_code == 0
    store = StateStore(f"sqlite:///{(config.parent / 'state.db').as_posix()}")
    for key in ("k1", "k2", "k3"):
        store.add_write_back(
            source="kyc",
            uid=f"uid-{key}",
            external_id=f"C-{key}",
            idempotency_key=key,
            done_at=None,
            task_json="{}",
        )
    (failed, _, retried) = store.write_backs("kyc")
    store.finish_write_back(failed.id, state=OutboxState.FAILED, attempts=5, error="HTTP 500")
    later = datetime.now(UTC) + timedelta(minutes=5)
    store.finish_write_back(
        retried.id, state=OutboxState.PENDING, attempts=2, error="HTTP 503", next_attempt_at=later
    )
    store.close()
    (row,) = json.loads(invoke(config, "status", "--json").output)
    assert row["write_backs"] == {"pending": 2, "done": 0, "failed": 1}
    assert 0 <= row["lag_seconds"] < 60
    first = row["failed_write_backs"][0]
    assert (first["external_id"], first["attempts"], first["error"]) == ("C-k1", 5, "HTTP 500")
    waiting = {e["external_id"]: e for e in row["pending_write_backs"]}
    assert waiting["C-k2"]["reason"] == (
        "completed by an operator, not written back yet: the next run of the source tries it"
    )
    assert waiting["C-k3"]["next_attempt_at"] == later.isoformat()
    assert waiting["C-k3"]["reason"].startswith(
        "attempt 2 failed: HTTP 503; the first run of the source after "
    )
    assert waiting["C-k3"]["reason"].endswith("(in 5m) tries it again")
    monkeypatch.setenv("COLUMNS", "400")  # one table row per line
    table = invoke(config, "status").output
    assert "2 pending, 1 failed" in table
    assert "counts of the last run: + created, ~ updated, - closed, ^ reopened" in table
    assert "write-back of record C-k1 failed: failed 5 times, last: HTTP 500" in table
    assert "write-back of record C-k3 pending: attempt 2 failed: HTTP 503; the first run" in table
    assert "s ago" in table
