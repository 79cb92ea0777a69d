"""End to end: the file connector against the sandbox with faults, and a SIGKILLed sync."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from fragment_core.config import SourceSettings
from fragment_core.connector import Completion
from fragment_core.connectors.file import (
    SAMPLE_COLUMNS,
    FileConfig,
    FileConnector,
    sample_rows,
    write_rows,
)
from fragment_core.reports import RunOutcome
from fragment_core.sandbox.runner import run_sandbox
from fragment_core.state import StateStore
from fragment_core.sync.engine import sync_source
from fragment_core.task import SOURCE_FIELD, RemoteTask, TaskStatus, task_uid


class CountingFileConnector(FileConnector):
    """The file connector, counting write-back calls per record."""

    calls: dict[str, int]

    def on_complete(self, task: RemoteTask, completion: Completion) -> str | None:
        self.calls[completion.external_id] = self.calls.get(completion.external_id, 0) + 1
        return super().on_complete(task, completion)


def converge(run: Any, attempts: int = 6) -> Any:
    """Faults may fail a run; later runs must finish the job."""
    for _ in range(attempts):
        report = run()
        if report.outcome == RunOutcome.OK:
            return report
    raise AssertionError(f"no clean run after {attempts} tries: {report.messages}")


def test_file_connector_end_to_end_with_faults(tmp_path: Path) -> None:
    backlog = tmp_path / "backlog.csv"
    rows = sample_rows(60)
    write_rows(backlog, SAMPLE_COLUMNS, rows)
    source = SourceSettings(name="e2e", connector="file", options=FileConfig(path=backlog))
    connector = CountingFileConnector(source.options, source="e2e")
    connector.calls = {}
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    with (
        run_sandbox(faults=0.2, seed=7, fault_retry_after=0.01) as sandbox,
        sandbox.client(batch_size=25) as client,
    ):

        def run() -> Any:
            return sync_source(source, connector, client, store, batch_size=25)

        converge(run)
        ids = [r["id"] for r in rows]
        completed = ids[:8]
        for eid in completed:  # operators complete 8 tasks (through the faulty API too)
            client.patch_task(task_uid("e2e", eid), {"status": "DONE", "form_data": {"ok": 1}})
        converge(run)
        # 10 open rows leave the backlog; a row is edited; 5 rows are added
        removed = ids[20:30]
        columns, current = connector.read_rows()  # with the write-back's status columns
        kept = [r for r in current if r["id"] not in removed]
        kept[-1]["title"] = "edited title"
        edited = kept[-1]["id"]
        kept.extend(sample_rows(5, start=61))
        write_rows(backlog, columns, kept)
        converge(run)
        converge(run)

        tasks = list(client.list_tasks(fields={SOURCE_FIELD: "e2e"}))
    by_id = {t.external_id: t for t in tasks}
    assert len(tasks) == len(by_id) == 65  # no duplicate, every record ever listed
    assert {t.uid for t in tasks} == {task_uid("e2e", e) for e in by_id}
    done = {e for e, t in by_id.items() if t.status == TaskStatus.DONE}
    assert done == set(completed) | set(removed)  # exact closes
    assert by_id[edited].title == "edited title"
    assert connector.calls == {eid: 1 for eid in completed}  # one write-back each, none else
    _, final_rows = connector.read_rows()
    marked = {r["id"] for r in final_rows if r.get("status") == "done"}
    assert marked == set(completed)


def test_sigkilled_sync_converges_without_duplicates(tmp_path: Path) -> None:
    backlog = tmp_path / "backlog.csv"
    write_rows(backlog, SAMPLE_COLUMNS, sample_rows(5000))
    with run_sandbox(latency="15ms") as sandbox:
        (tmp_path / "token").write_text(sandbox.token)
        config = tmp_path / "fragment.toml"
        config.write_text(
            f'[tasks_api]\nurl = "{sandbox.url}"\ntoken_file = "token"\nrate_limit = 0\n'
            f"batch_size = 50\n"
            f'[state]\nurl = "sqlite:///{(tmp_path / "state.db").as_posix()}"\n'
            f'[[sources]]\nname = "big"\nconnector = "file"\n'
            f'[sources.options]\npath = "{backlog.as_posix()}"\n'
        )
        command = [sys.executable, "-m", "fragment_core", "--config", str(config), "sync", "big"]
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        process = subprocess.Popen(
            command, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 60
        while sandbox.stats()["tasks"] < 1500:
            assert process.poll() is None, process.stderr.read().decode()
            assert time.monotonic() < deadline, "the sync made no progress"
            time.sleep(0.05)
        process.send_signal(signal.SIGKILL)
        process.wait(timeout=10)
        written = sandbox.stats()["tasks"]
        assert 1500 <= written < 5000, "killed too late to prove anything"
        state = StateStore(f"sqlite:///{(tmp_path / 'state.db').as_posix()}")
        # rows with a hash are committed writes; "" rows are creates whose PUT was in flight
        committed = [h for h, _, _ in state.record_map("big").values() if h]
        assert 0 < len(committed) <= written
        state.close()

        again = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
        assert again.returncode == 0, again.stdout + again.stderr
        assert sandbox.stats()["tasks"] == 5000
        with sandbox.client() as client:
            tasks = list(client.list_tasks(fields={SOURCE_FIELD: "big"}))
        assert len(tasks) == len({t.external_id for t in tasks}) == 5000
        assert all(t.status == TaskStatus.TODO for t in tasks)
        state = StateStore(f"sqlite:///{(tmp_path / 'state.db').as_posix()}")
        assert len(state.record_map("big")) == 5000
        state.close()
        third = subprocess.run(command, env=env, capture_output=True, text=True, timeout=120)
        assert third.returncode == 0 and "unchanged" in third.stdout
        assert sandbox.stats()["tasks"] == 5000
