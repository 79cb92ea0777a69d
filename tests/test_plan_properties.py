"""Hypothesis drives planner + applier + completions against the sandbox: random backlogs
(adds, edits, removals), operator completions and injected crashes; every invariant is
checked after each step."""

from __future__ import annotations

import uuid
from collections.abc import Iterator, Sequence
from typing import Any

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fragment_core.config import ClosePolicy, SourceSettings
from fragment_core.connector import Completion, Connector, ConnectorConfig, Record
from fragment_core.reports import RunOutcome
from fragment_core.sandbox.runner import run_sandbox
from fragment_core.state import StateStore
from fragment_core.sync.engine import sync_source
from fragment_core.task import SOURCE_FIELD, RemoteTask, Task, TaskStatus, task_uid


class Crash(BaseException):
    """The process dies here (not an Exception: nothing catches it)."""


class CrashingClient:
    """The real client; dies before or after the N-th write request reaches the server."""

    def __init__(self, inner: Any, crash_at: int | None, after: bool) -> None:
        self.inner, self.crash_at, self.after, self.writes = inner, crash_at, after, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def _write(self, method: str, items: Sequence[Any]) -> Any:
        self.writes += 1
        if self.writes == self.crash_at and not self.after:
            raise Crash
        result = getattr(self.inner, method)(items)
        if self.writes == self.crash_at:
            raise Crash
        return result

    def upsert_tasks(self, tasks: Sequence[Task]) -> Any:
        return self._write("upsert_tasks", tasks)

    def patch_tasks(self, items: Sequence[Any]) -> Any:
        return self._write("patch_tasks", items)


class Config(ConnectorConfig):
    pass


class Backlog(Connector[Config]):
    name = "backlog"

    def __init__(self, source: str) -> None:
        super().__init__(Config(), source=source)
        self.rows: dict[str, str] = {}
        self.written_back: dict[str, set[str]] = {}  # external id -> idempotency keys
        self.crash_write_back = False

    def fetch_backlog(self) -> Iterator[Record]:
        for eid, title in sorted(self.rows.items()):
            yield {"id": eid, "title": title}

    def to_task(self, record: Record) -> Task:
        return Task.new(external_id=record["id"], title=record["title"])

    def on_complete(self, task: RemoteTask, completion: Completion) -> str | None:
        self.written_back.setdefault(completion.external_id, set()).add(completion.idempotency_key)
        if self.crash_write_back:  # the vendor got it; we die before recording it
            self.crash_write_back = False
            raise Crash
        return None


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Any]:
    with run_sandbox() as handle:
        yield handle


IDS = [f"r{i}" for i in range(8)]
step = st.one_of(
    st.tuples(st.just("add"), st.sampled_from(IDS), st.sampled_from(["a", "b"])),
    st.tuples(st.just("edit"), st.sampled_from(IDS), st.sampled_from(["c", "d"])),
    st.tuples(st.just("remove"), st.sampled_from(IDS), st.none()),
    st.tuples(st.just("complete"), st.sampled_from(IDS), st.none()),
    st.tuples(st.just("crash"), st.integers(1, 3), st.booleans()),
    st.tuples(st.just("crash_write_back"), st.none(), st.none()),
    st.tuples(st.just("sync"), st.none(), st.none()),
)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)
@given(st.lists(step, min_size=1, max_size=12))
@example(  # a sync-closed record returns; the reopen lands, a crash loses its commit
    steps=[
        ("add", "r0", "a"),
        ("sync", None, None),
        ("remove", "r0", None),
        ("sync", None, None),
        ("add", "r0", "a"),
        ("crash", 1, True),
        ("complete", "r0", None),
    ]
)
@example(  # the same lost reopen commit, then the record leaves again: its task must close
    steps=[
        ("add", "r0", "a"),
        ("sync", None, None),
        ("remove", "r0", None),
        ("sync", None, None),
        ("add", "r0", "a"),
        ("crash", 1, True),
        ("remove", "r0", None),
    ]
)
@example(  # an operator's completion, the record changes, the reopen's commit is lost
    steps=[
        ("add", "r0", "a"),
        ("sync", None, None),
        ("complete", "r0", None),
        ("sync", None, None),
        ("edit", "r0", "b"),
        ("crash", 1, True),
        ("sync", None, None),
        ("complete", "r0", None),
    ]
)
@example(  # an update lands, its commit is lost, the record goes back to what was committed
    steps=[
        ("add", "r0", "a"),
        ("sync", None, None),
        ("edit", "r0", "c"),
        ("sync", None, None),
        ("edit", "r0", "d"),
        ("crash", 1, True),
        ("edit", "r0", "c"),
        ("sync", None, None),
    ]
)
def test_random_histories_keep_every_invariant(sandbox: Any, steps: list[tuple]) -> None:  # noqa: C901
    name = f"p{uuid.uuid4().hex[:10]}"
    # the cap off (it caps 100% too, boundary inclusive): this history closes freely
    source = SourceSettings(
        name=name, connector="backlog", close=ClosePolicy(max_share=1.0, min_open=10**9)
    )
    connector = Backlog(name)
    store = StateStore("sqlite://")
    client = sandbox.client(batch_size=2)
    ever_listed: set[str] = set()
    operator_done: dict[str, int] = {}  # external id -> number of operator completions
    sync_closed: set[str] = set()
    closed_by_operator: set[str] = set()  # tasks whose last close was an operator's

    def tasks() -> dict[str, RemoteTask]:
        listed = list(client.list_tasks(fields={SOURCE_FIELD: name}))
        by_id = {t.external_id: t for t in listed}
        assert len(by_id) == len(listed), "duplicate task"  # identity
        assert set(by_id) <= ever_listed, "task for a record never listed"
        return by_id

    def sync(crash_at: int | None = None, after: bool = False) -> Any:
        try:
            return sync_source(
                source, connector, CrashingClient(client, crash_at, after), store, batch_size=2
            )
        except Crash:
            return None

    try:
        for kind, arg, extra in [*steps, ("sync", None, None), ("sync", None, None)]:
            before = tasks()
            if kind == "add" and arg not in connector.rows:
                connector.rows[arg] = extra
                ever_listed.add(arg)
            elif kind == "edit" and arg in connector.rows:
                connector.rows[arg] = extra
            elif kind == "remove" and arg in connector.rows:
                del connector.rows[arg]
            elif kind == "complete" and arg in before and before[arg].status != TaskStatus.DONE:
                client.patch_task(task_uid(name, arg), {"status": "DONE"})
                operator_done[arg] = operator_done.get(arg, 0) + 1
                closed_by_operator.add(arg)
            elif kind == "crash":
                sync(crash_at=arg, after=extra)
            elif kind == "crash_write_back":
                connector.crash_write_back = True
                sync()
                connector.crash_write_back = False  # no write-back was due: no crash
            elif kind == "sync":
                report = sync()
                assert report is not None and report.outcome == RunOutcome.OK, report
                after = tasks()
                # convergence after a clean run: every listed record has a task ...
                assert set(connector.rows) <= set(after)
                for eid, task in after.items():
                    if eid not in connector.rows and task.status != TaskStatus.DONE:
                        raise AssertionError(f"{eid} left the backlog but is open")
                    if eid in connector.rows and task.status != TaskStatus.DONE:
                        # ... and an open task shows its record as it is now
                        assert task.title == connector.rows[eid], (eid, task.title)
                    if task.status == TaskStatus.DONE and eid not in operator_done:
                        sync_closed.add(eid)
                # ... no echo: nothing written back for tasks only the sync closed
                assert set(connector.written_back) <= set(operator_done)
                # ... every operator completion was written back, each with its own key
                for eid, count in operator_done.items():
                    assert len(connector.written_back.get(eid, set())) == count
            now = tasks()
            for eid, task in before.items():
                if task.status == TaskStatus.DONE and now[eid].status != TaskStatus.DONE:
                    # reopened: only a record back in the backlog, and for an operator's
                    # completion only a change of the record (no resurrection)
                    assert eid in connector.rows, f"{eid} reopened but not listed"
                    if eid in closed_by_operator:
                        assert connector.rows[eid] != task.title.split()[-1], eid
                    closed_by_operator.discard(eid)
    finally:
        client.close()
        store.close()
