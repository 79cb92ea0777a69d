"""One sync of one source against the sandbox: change detection, safe closing, bad
records, no echo, no resurrection, write-back retries."""

from __future__ import annotations

import socket
import threading
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
import sqlalchemy as sa

from fragment_core.config import ClosePolicy, SourceSettings
from fragment_core.connector import Completion, Connector, ConnectorConfig, Record
from fragment_core.errors import BadRecordError, TransientError, WriteBackError
from fragment_core.reports import RunOutcome
from fragment_core.sandbox.runner import run_sandbox
from fragment_core.state import OutboxState, RecordStatus, StateStore
from fragment_core.state.schema import outbox
from fragment_core.sync.engine import CHUNK, sync_source
from fragment_core.task import SOURCE_FIELD, RemoteTask, Task, TaskStatus, task_uid
from fragment_core.tasks_api import TasksClient


class ListConfig(ConnectorConfig):
    pass


class ListConnector(Connector[ListConfig]):
    """Records from a list; the fetch can fail part-way; write-backs can fail."""

    name = "list"

    def __init__(self, source: str) -> None:
        super().__init__(ListConfig(), source=source)
        self.records: list[dict[str, Any]] = []
        self.fail_at: int | None = None
        self.write_back_errors: list[Exception] = []
        self.completions: list[Completion] = []
        self.write_back_calls = 0

    def fetch_backlog(self) -> Iterator[Record]:
        for index, record in enumerate(self.records):
            if index == self.fail_at:
                raise TransientError("the backend went away", where="list API")
            yield record

    def to_task(self, record: Record) -> Task:
        if not record.get("title"):
            raise BadRecordError("is empty", field="title")  # the engine names the record
        return Task.new(external_id=record["id"], title=record["title"])

    def on_complete(self, task: RemoteTask, completion: Completion) -> str | None:
        self.write_back_calls += 1
        if self.write_back_errors:
            raise self.write_back_errors.pop(0)
        self.completions.append(completion)
        return f"closed {completion.external_id}"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Any]:
    with run_sandbox() as handle:
        yield handle


@pytest.fixture
def world(sandbox: Any, request: pytest.FixtureRequest) -> Iterator[Any]:
    class World:
        name = f"src-{request.node.name[:40].replace('[', '-').replace(']', '')}"
        client = sandbox.client()
        store = StateStore("sqlite://")
        connector = ListConnector(name)
        settings = SourceSettings(name=name, connector="list")

        def set_backlog(self, n: int, title: str = "t") -> None:
            self.connector.records = [{"id": str(i), "title": f"{title} {i}"} for i in range(n)]

        def sync(self, **kwargs: Any):
            return sync_source(self.settings, self.connector, self.client, self.store, **kwargs)

        def tasks(self) -> dict[str, RemoteTask]:
            listed = list(self.client.list_tasks(fields={SOURCE_FIELD: self.name}))
            assert len({t.uid for t in listed}) == len(listed)
            return {t.external_id: t for t in listed}

        def complete(self, external_id: str) -> None:
            self.client.patch_task(
                task_uid(self.name, external_id), {"status": "DONE", "form_data": {"ok": True}}
            )

    w = World()
    yield w
    w.client.close()
    w.store.close()


def test_first_sync_creates_and_an_unchanged_resync_writes_nothing(world: Any) -> None:
    world.set_backlog(5)
    first = world.sync()
    assert (first.outcome, first.created, first.fetched) == (RunOutcome.OK, 5, 5)
    assert {k: t.title for k, t in world.tasks().items()} == {str(i): f"t {i}" for i in range(5)}
    second = world.sync()
    assert (second.created, second.updated, second.unchanged) == (0, 0, 5)
    assert second.requests == 1  # listing completions only: no write request
    world.connector.records[2]["title"] = "edited"
    third = world.sync()
    assert third.updated == 1 and world.tasks()["2"].title == "edited"


def test_a_fetch_that_raises_half_way_closes_nothing(world: Any) -> None:
    world.set_backlog(8)
    world.sync()
    world.connector.fail_at = 3
    report = world.sync()
    assert report.outcome == RunOutcome.FAILED and report.closed == 0
    assert any("backend went away" in m for m in report.messages)
    assert all(t.status == TaskStatus.TODO for t in world.tasks().values())
    assert world.store.source_state(world.name).complete_runs == 1


def test_blast_radius_cap_closes_nothing_and_says_so(world: Any) -> None:
    world.set_backlog(20)
    world.sync()
    world.set_backlog(5)
    capped = world.sync()
    assert capped.outcome == RunOutcome.CAPPED and capped.closed == 0
    assert capped.withheld_closes == 15 and "blast-radius cap" in capped.messages[0]
    assert sum(t.status == TaskStatus.DONE for t in world.tasks().values()) == 0
    forced = world.sync(force_close=True)
    assert forced.outcome == RunOutcome.OK and forced.closed == 15
    assert sum(t.status == TaskStatus.DONE for t in world.tasks().values()) == 15
    assert world.connector.completions == []  # closed by the sync: no echo


def test_debounce_closes_after_k_complete_runs(world: Any) -> None:
    world.settings = SourceSettings(
        name=world.name, connector="list", close=ClosePolicy(debounce=2)
    )
    world.set_backlog(3)
    world.sync()
    world.connector.records.pop()
    assert world.sync().closed == 0
    assert world.store.record(world.name, "2").times_missing == 1
    assert world.sync().closed == 1


def test_bad_record_is_named_and_counts_as_seen(world: Any) -> None:
    world.set_backlog(3)
    world.sync()
    world.connector.records[1]["title"] = ""
    report = world.sync()
    assert report.outcome == RunOutcome.PARTIAL and report.closed == 0
    (error,) = report.record_errors
    assert (error.source, error.record_id, error.field) == (world.name, "1", "title")
    assert str(error) == f"source {world.name!r}, record '1', field 'title': is empty"
    assert world.tasks()["1"].status == TaskStatus.TODO


def test_operator_completion_is_written_back_once_and_not_resurrected(world: Any) -> None:
    world.set_backlog(3)
    world.sync()
    world.complete("0")
    report = world.sync()
    assert report.written_back == 1 and report.reopened == 0
    (completion,) = world.connector.completions
    assert completion.external_id == "0" and completion.outcome == {"ok": True}
    assert completion.idempotency_key.startswith(str(task_uid(world.name, "0")))
    assert world.tasks()["0"].status == TaskStatus.DONE  # still listed, not reopened
    again = world.sync()
    assert again.written_back == 0 and len(world.connector.completions) == 1
    world.connector.records[0]["title"] = "changed after completion"
    changed = world.sync()
    assert changed.reopened == 1 and world.tasks()["0"].status == TaskStatus.TODO
    world.complete("0")
    world.sync()
    assert len(world.connector.completions) == 2  # a second completion, a second key
    assert len({c.idempotency_key for c in world.connector.completions}) == 2


def test_reopen_never(world: Any) -> None:
    world.settings = SourceSettings(name=world.name, connector="list", reopen="never")
    world.set_backlog(2)
    world.sync()
    world.complete("1")
    world.sync()
    world.connector.records[1]["title"] = "edited"
    assert world.sync().reopened == 0
    assert world.tasks()["1"].status == TaskStatus.DONE


def test_failing_write_back_is_kept_and_retried_on_later_runs(world: Any) -> None:
    world.set_backlog(2)
    world.sync()
    world.connector.write_back_errors = [TransientError("vendor 503", where="vendor")]
    world.complete("1")
    report = world.sync()
    assert report.outcome == RunOutcome.PARTIAL and report.write_back_failed == 1
    assert any("retried on later runs" in m for m in report.messages)
    # one call per run: retries inside the call are the connector transport's own
    assert world.connector.write_back_calls == 1
    (entry,) = world.store.write_backs(world.name)
    assert entry.state == OutboxState.PENDING and entry.attempts == 1
    assert "vendor 503" in entry.last_error
    assert world.sync().written_back == 0  # not due yet: backoff
    with world.store.engine.begin() as conn:  # time passes
        conn.execute(outbox.update().values(next_attempt_at=datetime.now(UTC) - timedelta(1)))
    assert world.sync().written_back == 1
    assert world.store.write_back_counts(world.name)["done"] == 1


def test_permanent_write_back_failure_shows_as_failed(world: Any) -> None:
    world.set_backlog(1)
    world.sync()
    world.connector.write_back_errors = [WriteBackError("ticket 0 is locked", where="vendor")]
    world.complete("0")
    report = world.sync()
    assert report.write_back_failed == 1
    (entry,) = world.store.write_backs(world.name, OutboxState.FAILED)
    assert entry.last_error == "vendor: record '0': ticket 0 is locked"
    assert entry.next_attempt_at is not None


def test_the_engine_names_source_and_record_of_mapping_and_write_back_errors(
    world: Any,
) -> None:
    """A connector raises without ``where=`` or ``record_id=``: the engine names both."""
    world.set_backlog(2)
    world.sync()
    world.connector.write_back_errors = [WriteBackError("ticket 1 is locked")]
    world.complete("1")
    world.connector.records[0]["title"] = ""
    report = world.sync()
    (error,) = report.record_errors  # BadRecordError("is empty", field="title")
    assert (error.source, error.record_id, error.field) == (world.name, "0", "title")
    (entry,) = world.store.write_backs(world.name, OutboxState.FAILED)
    where = world.connector.where
    assert entry.last_error == f"{where}: record '1': ticket 1 is locked"
    assert where.startswith(f"source {world.name!r}")


def test_sync_closed_task_is_never_written_back_even_after_a_crash(world: Any) -> None:
    world.set_backlog(3)
    world.sync()
    # a crash right after the close PATCH, before the state said "closed"
    world.store.set_status(world.name, ["2"], RecordStatus.CLOSING, closed_by="sync")
    world.client.patch_task(task_uid(world.name, "2"), {"status": "DONE"})
    world.connector.records.pop()
    report = world.sync()
    assert report.written_back == 0 and world.connector.completions == []
    assert world.store.record(world.name, "2").status == RecordStatus.CLOSED


def test_dry_run_writes_nothing(world: Any) -> None:
    world.set_backlog(4)
    report = world.sync(dry_run=True)
    assert (report.outcome, report.created) == (RunOutcome.DRY_RUN, 4)
    assert world.tasks() == {} and world.store.record_map(world.name) == {}
    with world.store.engine.connect() as conn:
        assert conn.execute(sa.text("select count(*) from fragment_runs")).scalar() == 0


class BatchedConnector(ListConnector):
    """Yields its records in three pages of one fetch chunk each; before the last one,
    waits (a few seconds at most) for the sandbox to hold the tasks of the first page."""

    def __init__(self, source: str, world: Any) -> None:
        super().__init__(source)
        self.world = world
        self.seen_before_last_page: set[str] = set()

    def fetch_backlog(self) -> Iterator[Record]:
        size = CHUNK
        pages = [self.records[:size], self.records[size : 2 * size], self.records[2 * size :]]
        yield from pages[0]
        yield from pages[1]
        deadline = time.monotonic() + 5
        first = {r["id"] for r in pages[0]}
        while time.monotonic() < deadline and not first <= self.seen_before_last_page:
            self.seen_before_last_page = set(self.world.tasks())
            time.sleep(0.02)
        yield from pages[2]


def test_writes_start_before_the_fetch_ends(world: Any) -> None:
    connector = BatchedConnector(world.name, world)
    count = 3 * CHUNK
    connector.records = [{"id": str(i), "title": f"t {i}"} for i in range(count)]
    world.connector = connector
    report = world.sync(batch_size=100)
    assert {str(i) for i in range(CHUNK)} <= connector.seen_before_last_page
    assert not connector.seen_before_last_page & {str(i) for i in range(2 * CHUNK, count)}
    assert (report.outcome, report.created, report.fetched) == (RunOutcome.OK, count, count)
    assert set(world.tasks()) == {str(i) for i in range(count)}
    states = world.store.records(world.name)
    assert len(states) == count and all(s.content_hash for s in states)


class ChangesConnector(ListConnector):
    """Records carry a modification counter; fetch_changes returns those past the cursor."""

    cursor_field = "modified"

    def __init__(self, source: str) -> None:
        super().__init__(source)
        self.cursors_asked: list[str | None] = []

    def fetch_backlog(self) -> Iterator[Record]:
        yield from (r for r in self.records if r["state"] == "open")

    def fetch_changes(self, cursor: str | None) -> Iterator[Record]:
        self.cursors_asked.append(cursor)
        yield from (r for r in self.records if cursor is None or r["modified"] > int(cursor))

    def is_open(self, record: Record) -> bool:
        return record["state"] == "open"


def test_incremental_after_a_full_run_uses_the_stored_cursor(world: Any) -> None:
    connector = ChangesConnector(world.name)
    world.connector = connector
    connector.records = [
        {"id": str(i), "title": f"t {i}", "modified": i, "state": "open"} for i in range(1, 6)
    ]
    first = world.sync()
    assert (first.mode, first.created) == ("full", 5)
    assert world.store.source_state(world.name).cursor == "5"

    connector.records[1] |= {"modified": 6, "title": "t 2 edited"}
    connector.records[2] |= {"modified": 7, "state": "closed"}
    second = world.sync()
    assert second.mode == "incremental"
    assert connector.cursors_asked == ["5"]
    assert (second.updated, second.closed, second.created) == (1, 1, 0)
    assert world.store.source_state(world.name).cursor == "7"
    tasks = world.tasks()
    assert tasks["2"].title == "t 2 edited"
    assert tasks["3"].status is TaskStatus.DONE
    assert connector.completions == []  # closed by the source: no echo

    third = world.sync()
    assert third.mode == "incremental"
    assert (third.updated, third.closed, third.created) == (0, 0, 0)
    assert connector.cursors_asked == ["5", "7"]


def test_the_whole_cycle_on_a_postgres_state_store(world: Any, postgres_url: str) -> None:
    name = f"sync{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {name}"))
    admin.dispose()
    url = postgres_url.rsplit("/", 1)[0] + "/" + name
    assert url.startswith("postgresql+psycopg://")
    world.store.close()
    world.store = StateStore(url)
    world.set_backlog(12)
    assert world.sync().created == 12
    again = world.sync()
    assert again.unchanged == 12  # hashes survived the round trip
    assert again.not_mapped == 12  # and the raw records' hashes: nothing mapped again
    world.complete("3")
    world.store.close()
    world.store = StateStore(url)  # a new process: the state is all in Postgres
    world.set_backlog(11)  # record 11 leaves the backlog
    report = world.sync()
    assert (report.written_back, report.closed, report.created) == (1, 1, 0)
    assert [c.external_id for c in world.connector.completions] == ["3"]
    assert world.store.record(world.name, "11").status is RecordStatus.CLOSED
    assert world.store.write_back_counts(world.name) == {"pending": 0, "done": 1, "failed": 0}
    assert world.store.last_runs(world.name)[0]["closed"] == 1
    tasks = world.tasks()
    assert len(tasks) == 12 and tasks["11"].status is TaskStatus.DONE


def test_completions_are_listed_from_the_stored_high_water_mark(world: Any) -> None:
    world.set_backlog(3)
    world.sync()
    world.complete("0")
    assert world.sync().written_back == 1
    mark = world.store.source_state(world.name).completions_seen_until
    assert mark is not None and mark >= world.tasks()["0"].updated_at
    # a mark in the future hides a new completion: proof the list is filtered by it
    world.store.update_source_state(
        world.name, completions_seen_until=datetime.now(UTC) + timedelta(days=1)
    )
    world.complete("1")
    assert world.sync().written_back == 0
    world.store.update_source_state(world.name, completions_seen_until=mark)
    assert world.sync().written_back == 1
    assert [c.external_id for c in world.connector.completions] == ["0", "1"]


def _changes_world(world: Any, count: int) -> ChangesConnector:
    connector = ChangesConnector(world.name)
    world.connector = connector
    connector.records = [
        {"id": str(i), "title": f"t {i}", "modified": i, "state": "open"}
        for i in range(1, count + 1)
    ]
    assert world.sync().created == count
    return connector


def test_incremental_explicit_closes_are_capped_and_not_lost(world: Any) -> None:
    connector = _changes_world(world, 20)
    # the vendor changes the case of its status value: every record "leaves the backlog"
    for index, record in enumerate(connector.records):
        record |= {"state": "Open", "modified": 100 + index}
    connector.records.append({"id": "21", "title": "new", "modified": 200, "state": "open"})
    capped = world.sync()
    assert capped.mode == "incremental" and capped.outcome == RunOutcome.CAPPED
    assert (capped.closed, capped.withheld_closes, capped.created) == (0, 20, 1)
    message = next(m for m in capped.messages if "blast-radius cap" in m)
    assert f"20 of 20 open tasks of source {world.name!r} would close in the last 24h" in message
    assert "20 reported closed by the source" in message and "--force-close" in message
    assert all(t.status == TaskStatus.TODO for t in world.tasks().values())
    assert world.store.source_state(world.name).cursor == "20"  # kept: nothing lost
    forced = world.sync(force_close=True)
    assert connector.cursors_asked == ["20", "20"]
    assert forced.outcome == RunOutcome.OK and forced.closed == 20
    tasks = world.tasks()
    assert tasks["21"].status == TaskStatus.TODO and forced.created == 0
    assert sum(t.status == TaskStatus.DONE for t in tasks.values()) == 20


def test_the_cap_counts_the_closes_of_the_rolling_window(world: Any) -> None:
    world.set_backlog(100)
    world.sync()
    reports = []
    for run in range(1, 7):  # six shrinking fetches, each 40% short of the one before
        world.set_backlog(round(100 * 0.6**run))
        reports.append(world.sync())
    assert [r.closed for r in reports] == [40, 0, 0, 0, 0, 0]
    assert [r.outcome for r in reports[1:]] == [RunOutcome.CAPPED] * 5
    message = next(m for m in reports[1].messages if "blast-radius cap" in m)
    assert "cap: 64 of 100 open tasks of source" in message
    assert "would close in the last 24h (40 net closed by earlier runs, 24 in this" in message
    assert sum(t.status == TaskStatus.DONE for t in world.tasks().values()) == 40


def test_exactly_half_is_capped(world: Any) -> None:
    world.set_backlog(20)
    world.sync()
    world.set_backlog(10)
    capped = world.sync()
    assert capped.outcome == RunOutcome.CAPPED and capped.closed == 0
    assert "blast-radius cap: 10 of 20 open tasks" in capped.messages[0]


def test_a_normal_small_close_still_works_and_forced_closes_leave_the_window(
    world: Any,
) -> None:
    world.set_backlog(20)
    world.sync()
    world.set_backlog(18)
    small = world.sync()
    assert small.outcome == RunOutcome.OK and small.closed == 2
    assert small.withheld_closes == 0 and not any("cap" in m for m in small.messages)
    world.set_backlog(9)  # 9 more (of 18 open now): 11 of 20 in the window
    assert world.sync().outcome == RunOutcome.CAPPED
    assert world.sync(force_close=True).closed == 9
    world.set_backlog(8)  # the forced closes do not count: 2 + 1 of 11
    after = world.sync()
    assert after.outcome == RunOutcome.OK and after.closed == 1


def test_closes_since_reads_the_run_history_of_the_window(world: Any) -> None:
    from fragment_core.reports import SyncReport

    now = datetime.now(UTC)
    store = world.store

    def run(hours: float, closed: int, created: int = 0, forced: bool = False) -> None:
        report = SyncReport(
            source=world.name,
            connector="list",
            started_at=now - timedelta(hours=hours),
            closed=closed,
            created=created,
            forced_close=forced,
        )
        store.save_run(report)

    run(30, 50)
    run(10, 5, created=1)
    run(8, 4)
    store.save_run(SyncReport(source="other", connector="list", started_at=now, closed=9))
    day = now - timedelta(hours=24)
    assert store.closes_since(world.name, day) == 8  # 5 - 1 + 4: the 30 h old run is out
    assert store.closes_since(world.name, now - timedelta(days=2)) == 58
    run(7, 2, created=20)  # a source that grows: never below 0
    assert store.closes_since(world.name, day) == 0
    run(6, 30, forced=True)  # a forced run restarts the count
    run(5, 3)
    run(4, 4, created=1)
    assert store.closes_since(world.name, day) == 6


def test_a_source_that_churns_is_not_capped_by_the_window(world: Any) -> None:
    world.set_backlog(20)
    world.sync()
    for run in range(1, 6):  # each run 4 records resolve and 4 new ones arrive
        world.connector.records = [
            {"id": str(i), "title": f"t {i}"} for i in range(4 * run, 20 + 4 * run)
        ]
        report = world.sync()
        assert (report.outcome, report.closed, report.created) == (RunOutcome.OK, 4, 4)
    assert sum(t.status == TaskStatus.DONE for t in world.tasks().values()) == 20


def test_a_source_that_cannot_be_reached_gets_no_write_back_attempt(world: Any) -> None:
    """Issue 20.4: a down source made one sync take 118 s, each write-back retried on
    its full schedule; now its write-backs wait for a run that reaches it."""
    world.set_backlog(3)
    world.sync()
    world.complete("0")
    world.complete("1")
    world.connector.fail_at = 0  # the source is down: the fetch fails at once
    report = world.sync()
    assert report.outcome == RunOutcome.FAILED and report.closed == 0
    assert world.connector.write_back_calls == 0
    assert "2 write-backs not attempted: the source could not be reached" in " ".join(
        report.messages
    )
    assert world.store.write_back_counts(world.name)["pending"] == 2
    world.connector.fail_at = None
    again = world.sync()
    assert (again.outcome, again.written_back, world.connector.write_back_calls) == (
        RunOutcome.OK, 2, 2,
    )  # fmt: skip


def test_after_a_transient_write_back_failure_the_run_tries_no_more(world: Any) -> None:
    world.set_backlog(3)
    world.sync()
    for external_id in ("0", "1", "2"):
        world.complete(external_id)
    world.connector.write_back_errors = [TransientError("vendor 503", where="vendor")]
    report = world.sync()
    assert (report.written_back, report.write_back_failed) == (0, 1)
    assert world.connector.write_back_calls == 1
    assert "2 more write-backs not attempted after that failure" in " ".join(report.messages)
    assert world.sync().written_back == 2  # the other two, on the next run


class CompletionsUnlistable:
    """The sandbox's client, except that listing the completed tasks fails as an
    unreachable Tasks API does (the engine's ``TasksApi`` port, not our HTTP layer)."""

    def __init__(self, client: Any) -> None:
        self._client = client

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def list_tasks(self, **query: Any) -> Any:
        if query.get("status") == TaskStatus.DONE:
            raise TransientError("ConnectError: connection refused", where="Tasks API")
        return self._client.list_tasks(**query)


def test_a_run_that_cannot_list_completions_is_not_ok(world: Any) -> None:
    """Issue 20.4: the completions unlistable and nothing to write reported ``ok``."""
    world.set_backlog(2)
    assert world.sync().outcome == RunOutcome.OK
    real = world.client
    world.client = CompletionsUnlistable(real)
    try:
        report = world.sync()
    finally:
        world.client = real
    assert report.outcome == RunOutcome.FAILED
    assert any(m.startswith("could not list completed tasks") for m in report.messages), (
        report.messages
    )
    assert report.created == report.updated == report.closed == 0


def test_a_run_against_an_unreachable_tasks_api_is_not_ok(world: Any) -> None:
    world.set_backlog(2)
    assert world.sync().outcome == RunOutcome.OK
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        closed = sock.getsockname()[1]
    real = world.client
    world.client = TasksClient(
        f"http://127.0.0.1:{closed}", "tok", retry_attempts=1, retry_timeout=1
    )
    try:
        report = world.sync()
    finally:
        world.client.close()
        world.client = real
    assert report.outcome == RunOutcome.FAILED and "Connection refused" in " ".join(
        report.messages
    )


class PausingConnector(ListConnector):
    """Yields the first half of its records, then waits until ``resume`` is set."""

    def __init__(self, source: str) -> None:
        super().__init__(source)
        self.paused, self.resume = threading.Event(), threading.Event()

    def fetch_backlog(self) -> Iterator[Record]:
        half = len(self.records) // 2
        yield from self.records[:half]
        self.paused.set()
        assert self.resume.wait(60), "never resumed"
        yield from self.records[half:]


def test_runs_sharing_one_client_count_only_their_own_requests(sandbox: Any) -> None:
    """A fleet worker (or ``fragment run``) shares one Tasks API client among runs: one
    run's report counts its own requests, not those another run sent meanwhile."""
    client = sandbox.client()
    paused = PausingConnector("shared-a")
    other = ListConnector("shared-b")
    for connector in (paused, other):
        connector.records = [{"id": str(i), "title": f"t {i}"} for i in range(450)]
    stores = [StateStore("sqlite://"), StateStore("sqlite://")]
    reports: dict[str, Any] = {}

    def sync(connector: ListConnector, store: StateStore) -> None:
        settings = SourceSettings(name=connector.source, connector="list")
        reports[connector.source] = sync_source(settings, connector, client, store)

    before = client.requests_made
    first = threading.Thread(target=sync, args=(paused, stores[0]))
    first.start()
    try:
        assert paused.paused.wait(60)
        sync(other, stores[1])  # the whole run while the first one is mid-fetch
    finally:
        paused.resume.set()
        first.join()
    a, b = reports["shared-a"], reports["shared-b"]
    assert a.outcome == b.outcome == RunOutcome.OK and a.created == b.created == 450
    assert b.requests >= 5  # its completions listing and its 5 batches at least
    assert a.requests + b.requests == client.requests_made - before  # none counted twice
    client.close()
    for store in stores:
        store.close()
