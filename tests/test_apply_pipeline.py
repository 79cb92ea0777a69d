"""The applier keeps a few write requests in flight and still commits chunk by chunk,
in plan order, only what the Tasks API answered; plus the compact planned writes."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import pytest

from fragment_core.errors import TransientError
from fragment_core.state import RecordState, StateStore
from fragment_core.sync.apply import apply_plan
from fragment_core.sync.plan import MappedRecord, PlannedWrite, plan_sync
from fragment_core.task import (
    Task,
    TaskBody,
    TaskStatus,
    body_hash,
    hashed_body,
    task_uid,
    task_uid_text,
)

SOURCE = "pipe"


class RecordingStore(StateStore):
    """The real store; remembers which external ids each commit saved, in order (a create
    records its intent first, with an empty hash: those are kept apart)."""

    def __init__(self, url: str) -> None:
        super().__init__(url)
        self.commits: list[list[str]] = []
        self.intents: list[list[str]] = []

    @contextmanager
    def transaction(self) -> Iterator[Any]:
        with super().transaction() as tx:
            yield _RecordingWriter(tx, self)

    def committed(self, source: str) -> set[str]:
        return {s.external_id for s in self.records(source) if s.content_hash}


class _RecordingWriter:
    def __init__(self, tx: Any, store: RecordingStore) -> None:
        self.tx, self.store = tx, store

    def save_records(self, source: str, states: Sequence[RecordState]) -> None:
        ids = [s.external_id for s in states]
        kept = self.store.commits if all(s.content_hash for s in states) else self.store.intents
        kept.append(ids)
        self.tx.save_records(source, states)

    def save_open(self, source: str, rows: Sequence[tuple[str, str, str, Any]]) -> None:
        ids = [row[0] for row in rows]
        kept = self.store.commits if all(row[2] for row in rows) else self.store.intents
        kept.append(ids)
        self.tx.save_open(source, rows)

    def __getattr__(self, name: str) -> Any:
        return getattr(self.tx, name)


class FailingClient:
    """The real client; the N-th upsert call fails (after its retries) without writing."""

    def __init__(self, inner: Any, fail_call: int) -> None:
        self.inner, self.fail_call, self.calls = inner, fail_call, 0
        self._lock = threading.Lock()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def upsert_tasks(self, tasks: Sequence[Task]) -> Any:
        with self._lock:
            self.calls += 1
            call = self.calls
        if call == self.fail_call:
            raise TransientError("the Tasks API went away", where="test")
        return self.inner.upsert_tasks(tasks)


def _mapped(count: int) -> list[MappedRecord]:
    mapped = []
    for index in range(count):
        task = Task.new(external_id=f"e{index:02d}", title=f"task {index}").for_source(SOURCE)
        mapped.append(MappedRecord(task.external_id, task, task.content_hash()))
    return mapped


def _plan(count: int) -> Any:
    return plan_sync(SOURCE, _mapped(count), {})


def _ids(count: int) -> list[str]:
    return [f"e{index:02d}" for index in range(count)]


def test_chunks_in_flight_overlap_and_commit_in_plan_order(sandbox_factory, tmp_path: Path):
    # the sandbox holds the first writes until 4 are in flight at once (10 s at most):
    # only an applier that overlaps its requests gets a peak of 4, whatever the load
    sandbox = sandbox_factory(hold_writes=4)
    store = RecordingStore(f"sqlite:///{tmp_path / 'state.db'}")
    with sandbox.client() as client:
        result = apply_plan(_plan(16), client, store, batch_size=2, in_flight=4)
    assert result.created == 16 and not result.errors
    assert store.commits == [_ids(16)[i : i + 2] for i in range(0, 16, 2)]
    stats = sandbox.stats()
    assert stats["writes_in_flight_peak"] == 4  # overlapped, and never more than in_flight
    assert stats["tasks"] == 16


def test_one_in_flight_sends_one_chunk_at_a_time(sandbox_factory, tmp_path: Path):
    sandbox = sandbox_factory(latency="50ms")  # a second request would arrive meanwhile
    store = RecordingStore(f"sqlite:///{tmp_path / 'state.db'}")
    with sandbox.client() as client:
        apply_plan(_plan(6), client, store, batch_size=2, in_flight=1)
    assert sandbox.stats()["writes_in_flight_peak"] == 1
    assert store.commits == [_ids(6)[i : i + 2] for i in range(0, 6, 2)]


def test_a_failed_chunk_keeps_every_chunk_answered_before_it(sandbox, tmp_path: Path):
    store = RecordingStore(f"sqlite:///{tmp_path / 'state.db'}")
    with sandbox.client() as inner:
        with pytest.raises(TransientError):
            apply_plan(_plan(10), FailingClient(inner, 3), store, batch_size=2, in_flight=3)
        # chunks 1 and 2 committed; chunk 3 failed; later ones never committed
        assert store.committed(SOURCE) == set(_ids(4))
        assert store.intents[:3] == [_ids(10)[i : i + 2] for i in range(0, 6, 2)]
        # the next run re-sends what was not committed: PUT by uid, so no duplicate
        again = plan_sync(SOURCE, _mapped(10), store.record_map(SOURCE))
        assert len(again.create) + len(again.update) == 6  # intents are re-sent as updates
        apply_plan(again, inner, store, batch_size=2, in_flight=3)
    assert store.committed(SOURCE) == set(_ids(10))
    assert sandbox.stats()["tasks"] == 10


def test_stop_finishes_and_commits_the_chunks_in_flight(sandbox_factory, tmp_path: Path):
    sandbox = sandbox_factory(latency="50ms")
    store = RecordingStore(f"sqlite:///{tmp_path / 'state.db'}")
    stop = threading.Event()
    with sandbox.client() as client:
        result = apply_plan(
            _plan(20),
            client,
            store,
            batch_size=2,
            in_flight=3,
            stop=stop,
            progress=lambda _: stop.set(),  # stop once the first chunk is committed
        )
    assert result.interrupted
    saved = [eid for commit in store.commits for eid in commit]
    assert 2 < len(saved) < 20 and saved == _ids(len(saved))
    assert sandbox.stats()["tasks"] == len(saved)  # nothing sent was left uncommitted


def test_planned_write_keeps_the_task_in_its_wire_form():
    task = Task.new(
        external_id="x1",
        title="Check",
        url="https://example.com/x1",
        custom={"amount": 12.0, "tags": ("a", "b")},
    ).for_source(SOURCE)
    body = task.to_api()
    write = PlannedWrite.of(SOURCE, task, record_hash="r1")
    assert write.content_hash == body_hash(body) == task.content_hash()
    assert write.wire.to_api() == body and write.uid == str(task.uid)
    assert write.record_hash == "r1"
    rebuilt = write.task
    assert rebuilt.to_api() == body and rebuilt.content_hash() == task.content_hash()
    # the same task, mapped without for_source first, is the same write
    bare = Task.new(
        external_id="x1",
        title="Check",
        url="https://example.com/x1",
        custom={"amount": 12, "tags": ["a", "b"]},
    )
    assert write == PlannedWrite.of(SOURCE, bare)
    reopened = write.wire.with_status(TaskStatus.TODO)
    assert reopened.to_api() == {**body, "status": "TODO"} and write.wire.to_api() == body


def test_wire_body_and_hash_come_from_one_serialization():
    task = Task.new(external_id="w1", title="Wire", custom={"b": 1, "a": "é"}).for_source(SOURCE)
    body = {**task.to_api(), "status": "TODO"}
    digest, wire = hashed_body(body)
    assert digest == body_hash(body) == task.content_hash()  # uid and status not hashed
    assert json.loads(wire) == body
    assert hashed_body({"fields": {"title": "x"}})[1] == b'{"fields":{"title":"x"}}'


def test_uid_text_is_the_uuid5_uid():
    for source, eid in [("s", "1"), ("support", "R-0000001"), ("ü-src", "ключ"), ("", "")]:
        assert task_uid_text(source, eid) == str(task_uid(source, eid))


def test_a_task_body_is_written_like_its_task(sandbox, tmp_path: Path):
    task = Task.new(external_id="b1", title="Body", custom={"n": 1}).for_source(SOURCE)
    with sandbox.client() as client:
        sent = client.upsert_tasks([TaskBody.of(task)])
        got = client.get_task(task.uid)
    assert not sent.errors and sent.items[0].uid == task.uid
    assert got.fields["title"] == "Body" and got.fields["n"] == 1
