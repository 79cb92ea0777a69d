"""``fragment state show | history | reset | rebuild`` on the file connector and the sandbox."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner, Result

from fragment_core.cli import cli
from fragment_core.connectors.file import write_sample
from fragment_core.sandbox.runner import run_sandbox
from fragment_core.state import OutboxState, StateStore
from fragment_core.sync.destination import normalize_url
from fragment_core.task import SOURCE_FIELD, task_uid


@pytest.fixture
def sandbox() -> Iterator[Any]:
    with run_sandbox(token="state-token") as handle:
        yield handle


def _config(tmp_path: Path, sandbox: Any) -> Path:
    config = tmp_path / "fragment.toml"
    config.write_text(
        f'[tasks_api]\nurl = "{sandbox.url}"\ntoken = "state-token"\nrate_limit = 0\n\n'
        f'[state]\nurl = "sqlite:///{(tmp_path / "state.db").as_posix()}"\n\n'
        f'[[sources]]\nname = "kyc"\nconnector = "file"\n'
        f'[sources.options]\npath = "{(tmp_path / "b.csv").as_posix()}"\n'
    )
    return config


def _fragment(config: Path, *args: str, input: str | None = None) -> Result:
    return CliRunner().invoke(
        cli, ["--config", str(config), *args], input=input, env={"COLUMNS": "250"}
    )


def _store(tmp_path: Path) -> StateStore:
    return StateStore(f"sqlite:///{(tmp_path / 'state.db').as_posix()}")


@pytest.fixture
def synced(sandbox: Any, tmp_path: Path) -> Path:
    """Two runs of ``kyc`` (5 rows, one completed by an operator and written back), and
    two write-backs not done: one never tried, one failed twice and waiting."""
    write_sample(tmp_path / "b.csv", 5)
    config = _config(tmp_path, sandbox)
    assert _fragment(config, "sync", "kyc").exit_code == 0
    with sandbox.client() as client:
        client.patch_task(task_uid("kyc", "C-0001"), {"status": "DONE"})
    assert _fragment(config, "sync", "kyc").exit_code == 0
    store = _store(tmp_path)
    with sandbox.client() as client:
        for key in ("C-0002", "C-0003"):
            task = client.get_task(task_uid("kyc", key))
            store.add_write_back(
                source="kyc",
                uid=str(task.uid),
                external_id=key,
                idempotency_key=f"key-{key}",
                done_at=None,
                task_json=task.model_dump_json(),
            )
    retried = store.write_backs("kyc", OutboxState.PENDING)[-1]
    store.finish_write_back(
        retried.id,
        state=OutboxState.PENDING,
        attempts=2,
        error="HTTP 503 from the back office",
        next_attempt_at=datetime.now(UTC) + timedelta(minutes=30),
    )
    store.close()
    return config


def test_state_show(synced: Path, sandbox: Any) -> None:
    result = _fragment(synced, "state", "show", "kyc", "--json")
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["records"] == {"open": 4, "closing": 0, "closed": 0, "reopening": 0, "done": 1}
    assert data["cursor"] is None and data["complete_runs"] == 2
    assert data["last_complete_fetch"] is not None
    assert data["destination"]["url"] == normalize_url(sandbox.url)
    assert data["lease"] is None and data["runs"] == 2
    assert data["write_backs"] == {"pending": 2, "done": 1, "failed": 0}
    pending = {e["external_id"]: e for e in data["pending_write_backs"]}
    assert pending["C-0002"]["reason"].startswith("completed by an operator, not written back")
    assert pending["C-0003"]["last_error"] == "HTTP 503 from the back office"
    assert pending["C-0003"]["reason"].endswith("(in 30m) tries it again")

    text = " ".join(_fragment(synced, "state", "show", "kyc").stdout.split())
    assert text.startswith("kyc (file) records 5: 4 open, 1 done")
    assert "2 pending, 0 failed, 1 done" in text
    assert "… pending C-0003: attempt 2 failed: HTTP 503 from the back office; the first" in text
    assert f"destination {normalize_url(sandbox.url)} (account 'Sandbox account" in text

    missing = _fragment(synced, "state", "show", "nope")
    assert missing.exit_code == 2 and "no source named 'nope'" in missing.stderr


def test_state_history(synced: Path) -> None:
    runs = json.loads(_fragment(synced, "state", "history", "kyc", "--json").stdout)
    assert [r["run"] for r in runs] == [2, 1]  # newest first
    assert [r["created"] for r in runs] == [0, 5] and runs[0]["written_back"] == 1
    one = json.loads(_fragment(synced, "state", "history", "kyc", "-n", "1", "--json").stdout)
    assert [r["run"] for r in one] == [2]
    text = " ".join(_fragment(synced, "state", "history", "kyc").stdout.split())
    assert "Runs of kyc" in text and "+5 ~0 -0 ^0 =0 x0 wb0" in text
    assert "counts: + created ~ updated - closed" in text


def test_state_reset_asks_then_forgets_and_the_next_run_rebuilds(
    synced: Path, tmp_path: Path
) -> None:
    declined = _fragment(synced, "state", "reset", "kyc", input="n\n")
    assert declined.exit_code == 1
    assert "Forget 5 records of 'kyc' and 2 write-backs not done yet" in declined.stderr
    store = _store(tmp_path)
    assert len(store.records("kyc")) == 5
    with store.lease("kyc"):  # a run is going: refused, nothing forgotten
        busy = _fragment(synced, "state", "reset", "kyc", "--yes")
    assert busy.exit_code == 5 and "is being synced by" in busy.stderr
    assert len(store.records("kyc")) == 5
    store.close()

    reset = _fragment(synced, "state", "reset", "kyc", input="y\n")
    assert reset.exit_code == 0, reset.output
    assert "5 records and 3 write-backs forgotten" in reset.stdout  # done ones too
    again_reset = json.loads(_fragment(synced, "state", "reset", "kyc", "--yes", "--json").stdout)
    assert again_reset == {"source": "kyc", "records": 0, "source_row": 0, "write_backs": 0}
    store = _store(tmp_path)
    assert store.records("kyc") == [] and store.write_backs("kyc") == []
    assert store.run_count("kyc") == 2  # the history is kept
    store.close()
    again = json.loads(_fragment(synced, "sync", "kyc", "--json").stdout)
    assert again["created"] == 0 and any("state rebuilt" in m for m in again["messages"])


def test_state_rebuild_from_another_tasks_api(synced: Path, tmp_path: Path) -> None:
    with run_sandbox(token="state-token") as other:
        config = _config(tmp_path, other)
        assert _fragment(config, "sync", "kyc").exit_code == 6
        rebuilt = _fragment(config, "state", "rebuild", "kyc", "--json")
        assert rebuilt.exit_code == 0, rebuilt.output
        data = json.loads(rebuilt.stdout)
        assert (data["open"], data["done"]) == (0, 0)
        assert data["destination"].startswith(normalize_url(other.url))
        store = _store(tmp_path)
        assert len(store.write_backs("kyc", OutboxState.PENDING)) == 2  # kept by a rebuild
        assert store.records("kyc") == []
        store.close()
        synced_again = json.loads(_fragment(config, "sync", "kyc", "--json").stdout)
        # the row the operator completed is marked done in the file: 4 open rows remain
        assert synced_again["created"] == 4
        assert synced_again["written_back"] == 1  # C-0002; C-0003 waits for its retry time
        with other.client() as client:
            assert len(list(client.list_tasks(fields={SOURCE_FIELD: "kyc"}))) == 4
