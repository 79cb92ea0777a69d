"""Tasks API faults: a 10,000-record sync and its write-backs through a sandbox that fails
20% of requests (500/502/503/429, connections cut before and after the write is applied).

The final task set must be exact (one task per record ever listed, none twice), the
sync's closes exact, and every operator completion written back exactly once.
"""

from __future__ import annotations

import random
from collections import Counter
from collections.abc import Iterator
from typing import Any

from fragment_core.config import ClosePolicy, SourceSettings
from fragment_core.connector import Completion, Connector, ConnectorConfig, Record
from fragment_core.reports import RunOutcome, SyncReport
from fragment_core.sandbox.runner import run_sandbox
from fragment_core.state import OutboxState, StateStore
from fragment_core.sync.engine import sync_source
from fragment_core.task import SOURCE_FIELD, RemoteTask, Task, TaskStatus, task_uid
from fragment_core.tasks_api import TasksClient

SOURCE = "faulty-10k"
SEED = 20261128


class BacklogConfig(ConnectorConfig):
    pass


class BacklogConnector(Connector[BacklogConfig]):
    """An in-memory backlog; counts every write-back call per record."""

    name = "backlog"

    def __init__(self) -> None:
        super().__init__(BacklogConfig(), source=SOURCE)
        self.records: dict[str, str] = {}
        self.write_backs: Counter[str] = Counter()
        self.keys: dict[str, set[str]] = {}

    def fetch_backlog(self) -> Iterator[Record]:
        for eid, title in list(self.records.items()):
            yield {"id": eid, "title": title}

    def to_task(self, record: Record) -> Task:
        return Task.new(external_id=record["id"], title=record["title"], custom={"n": 1})

    def on_complete(self, task: RemoteTask, completion: Completion) -> str | None:
        self.write_backs[completion.external_id] += 1
        self.keys.setdefault(completion.external_id, set()).add(completion.idempotency_key)
        return "ok"


def converge(run: Any, attempts: int = 8) -> list[SyncReport]:
    """Faulty runs may fail or be partial; later runs must finish the job."""
    reports = []
    for _ in range(attempts):
        reports.append(run())
        if reports[-1].outcome == RunOutcome.OK:
            return reports
    raise AssertionError(f"no clean run in {attempts}: {[r.messages for r in reports]}")


def test_ten_thousand_records_through_twenty_percent_faults(tmp_path: Any) -> None:
    rng = random.Random(SEED)
    connector = BacklogConnector()
    connector.records = {f"R{n:05d}": f"Record {n}" for n in range(10_000)}
    source = SourceSettings(
        name=SOURCE, connector="backlog", close=ClosePolicy(max_share=0.5, min_open=10)
    )
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    fast = {"retry_attempts": 10, "retry_wait_initial": 0.001, "retry_wait_max": 0.02}
    with (
        run_sandbox(faults=0.2, seed=SEED, fault_retry_after=0) as sandbox,
        sandbox.client(batch_size=50, **fast) as client,
    ):

        def run() -> SyncReport:
            return sync_source(source, connector, client, store, batch_size=50)

        converge(run)
        assert sandbox.stats()["tasks"] == 10_000

        # operators complete 300 tasks (through the same faulty API)
        ids = sorted(connector.records)
        completed = rng.sample(ids, 300)
        patched = client.patch_tasks(
            [
                {"uid": str(task_uid(SOURCE, eid)), "status": "DONE", "form_data": {"ok": 1}}
                for eid in completed
            ]
        )
        assert patched.errors == []
        # the source changes: 400 records resolved there, 200 edited, 300 new
        rest = sorted(set(ids) - set(completed))
        removed = rng.sample(rest, 400)
        for eid in removed:
            del connector.records[eid]
        edited = rng.sample(sorted(set(rest) - set(removed)), 200)
        for eid in edited:
            connector.records[eid] = f"Edited {eid}"
        for n in range(10_000, 10_300):
            connector.records[f"R{n:05d}"] = f"Record {n}"

        reports = converge(run)
        assert sum(r.written_back for r in reports) == 300
        again = run()  # a quiet run: nothing to write, nothing written back twice
        assert (again.outcome, again.written_back, again.created, again.updated) == (
            RunOutcome.OK,
            0,
            0,
            0,
        )
        assert again.closed == 0 and again.reopened == 0

        stats = sandbox.stats()
        tasks = list(client.list_tasks(fields={SOURCE_FIELD: SOURCE}, page_size=1000))

    faults = stats["faults"]
    for kind in ("500", "502", "503", "429", "drop_before", "drop_after"):
        assert faults.get(kind, 0) > 0, f"fault {kind} never happened: {faults}"
    assert sum(faults.values()) > 40 and stats["tasks"] == 10_300

    by_id = Counter(t.external_id for t in tasks)
    assert len(tasks) == 10_300 and max(by_id.values()) == 1  # exact, no duplicate
    assert {t.uid for t in tasks} == {task_uid(SOURCE, eid) for eid in by_id}
    done = {t.external_id for t in tasks if t.status == TaskStatus.DONE}
    assert done == set(completed) | set(removed)  # exact closes, no resurrection
    titles = {t.external_id: t.title for t in tasks}
    assert all(titles[eid] == f"Edited {eid}" for eid in edited)
    # every operator completion written back once; nothing the sync closed echoed back
    assert connector.write_backs == Counter({eid: 1 for eid in completed})
    assert all(len(keys) == 1 for keys in connector.keys.values())
    assert store.write_back_counts(SOURCE) == {
        str(OutboxState.PENDING): 0,
        str(OutboxState.FAILED): 0,
        str(OutboxState.DONE): 300,
    }
    store.close()


def test_a_refused_token_fails_the_run_and_writes_nothing(tmp_path: Any) -> None:
    connector = BacklogConnector()
    connector.records = {f"R{n}": f"Record {n}" for n in range(5)}
    source = SourceSettings(name=SOURCE, connector="backlog")
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    with run_sandbox() as sandbox, sandbox.client() as client:
        assert sync_source(source, connector, client, store).created == 5
        connector.records["R9"] = "New"  # something to write, if the run went on
        with TasksClient(sandbox.url, "revoked-token", rate_limit=None) as revoked:
            report = sync_source(source, connector, revoked, store)
            assert revoked.requests_made == 1  # one refused request, not retried
        assert report.outcome == RunOutcome.FAILED and report.created == 0
        assert "the Tasks API refused the credentials" in " ".join(report.messages)
        assert "revoked-token" not in " ".join(report.messages)
        assert sandbox.stats()["tasks"] == 5 and store.record(SOURCE, "R9") is None
    store.close()
