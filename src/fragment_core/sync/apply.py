"""The applier: runs a :class:`Plan` through the Tasks API client in chunks.

State is committed after each applied chunk, so a crash loses at most the chunks in
flight, and a restart re-sends them: PUT is idempotent, so no duplicate is ever created.
A close records its intent (``closing``) before the PATCH, so a task the sync closed is
never mistaken for an operator's completion, even after a crash.

Up to ``in_flight`` chunks are sent at once (from a small thread pool), so the next
request is on the wire while earlier answers are read and committed: with a round trip
of tens of milliseconds to the real API that is most of a sync's time. Intents are
recorded before a chunk is sent; chunks are committed in plan order, each once its own
answer has arrived.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Protocol, TypeVar

from fragment_core.reports import RecordError
from fragment_core.state import RecordState, RecordStatus, StateStore
from fragment_core.sync.plan import Plan, PlannedClose, PlannedWrite
from fragment_core.task import TaskStatus
from fragment_core.tasks_api import BatchResult

T = TypeVar("T")

#: Called with the number of plan items just applied.
Progress = Callable[[int], None]

#: Write requests in flight at once, by default.
IN_FLIGHT = 4


class TaskWriter(Protocol):
    """The part of :class:`fragment_core.tasks_api.TasksClient` the applier uses."""

    def upsert_tasks(self, tasks: Sequence) -> BatchResult: ...
    def patch_tasks(self, items: Sequence) -> BatchResult: ...


@dataclass
class ApplyResult:
    """What the applier did."""

    created: int = 0
    updated: int = 0
    reopened: int = 0
    closed: int = 0
    errors: list[RecordError] = field(default_factory=list)
    interrupted: bool = False

    @property
    def writes(self) -> int:
        """Tasks written or closed."""
        return self.created + self.updated + self.reopened + self.closed


def _chunks(items: Sequence[T], size: int) -> list[Sequence[T]]:
    return [items[i : i + size] for i in range(0, len(items), size)]


def _jobs(plan: Plan, batch_size: int) -> Iterator[tuple[str, Sequence]]:
    """``(kind, chunk)`` in the order they are sent: creates, updates, reopens, closes."""
    kinds: list[tuple[str, Sequence]] = [
        ("created", plan.create),
        ("updated", plan.update),
        ("reopened", plan.reopen),
        ("closed", plan.close),
    ]
    for kind, items in kinds:
        for chunk in _chunks(items, batch_size):
            yield kind, chunk


def apply_plan(
    plan: Plan,
    client: TaskWriter,
    store: StateStore,
    *,
    batch_size: int = 100,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
    in_flight: int = IN_FLIGHT,
) -> ApplyResult:
    """Apply ``plan``: PUT creates/updates/reopens, then PATCH closes, chunk by chunk.

    Raises what the client raises (``TransientError`` once its retries are spent,
    ``AuthenticationError``...); every chunk answered before is already committed.
    Returns early with ``interrupted=True`` when ``stop`` is set (checked between chunks;
    the chunks in flight are finished and committed). ``in_flight`` chunks at most are
    sent at once (1: one after the other).
    """
    result = ApplyResult()
    source = plan.source
    limit = max(1, in_flight)
    pending: deque[tuple[str, Sequence, Future[BatchResult]]] = deque()

    def commit_oldest() -> None:
        kind, chunk, future = pending.popleft()
        batch = future.result()  # raises what the request raised
        if kind == "closed":
            result.closed += _commit_close(source, chunk, batch, store, result)
        else:
            ok = _commit_put(source, chunk, batch, store, result)
            setattr(result, kind, getattr(result, kind) + ok)
        if progress:
            progress(len(chunk))

    with ThreadPoolExecutor(limit, thread_name_prefix="fragment-apply") as pool:
        try:
            for kind, chunk in _jobs(plan, batch_size):
                if stop is not None and stop.is_set():
                    result.interrupted = True
                    break
                if len(pending) >= limit:
                    commit_oldest()
                _record_intent(source, kind, chunk, store)
                pending.append((kind, chunk, pool.submit(_send, kind, chunk, client)))
            while pending:
                commit_oldest()
        finally:
            for _, _, future in pending:  # after an error: not sent yet, re-sent next run
                future.cancel()
    if plan.complete and not result.interrupted:
        store.set_times_missing(source, plan.missing)
    return result


def _refused(result: BatchResult) -> dict[str, str]:
    return {
        str(error.uid): f"the Tasks API refused it (HTTP {error.status}): {error.message}"
        for error in result.errors
    }


def _record_intent(source: str, kind: str, chunk: Sequence, store: StateStore) -> None:
    """Before a chunk is sent: a crash after its request leaves the state knowing."""
    if kind == "reopened":  # counted as open until the reopen is known to have landed
        store.mark_reopening(source, [w.external_id for w in chunk])
    elif kind == "created":  # a task that lands just before a crash is known to the next
        # run ("" hash: re-sent while its record is listed, closed once not)
        store.save_records(
            source, [RecordState(w.external_id, w.uid, "", RecordStatus.OPEN) for w in chunk]
        )
    elif kind == "closed":  # never mistaken for an operator's completion
        store.set_status(
            source, [c.external_id for c in chunk], RecordStatus.CLOSING, closed_by="sync"
        )


def _send(kind: str, chunk: Sequence, client: TaskWriter) -> BatchResult:
    """The request of one chunk (runs in the applier's thread pool)."""
    if kind == "closed":
        return client.patch_tasks([{"uid": c.uid, "status": TaskStatus.DONE.value} for c in chunk])
    if kind == "reopened":
        return client.upsert_tasks([w.wire.with_status(TaskStatus.TODO) for w in chunk])
    return client.upsert_tasks([w.wire for w in chunk])


def _commit_put(
    source: str,
    chunk: Sequence[PlannedWrite],
    batch: BatchResult,
    store: StateStore,
    result: ApplyResult,
) -> int:
    refused = _refused(batch)
    written = []
    for w in chunk:
        if w.uid in refused:
            result.errors.append(RecordError(source, w.external_id, None, refused[w.uid]))
        else:
            written.append(RecordState(w.external_id, w.uid, w.content_hash, RecordStatus.OPEN))
    store.save_records(source, written)
    return len(written)


def _commit_close(
    source: str,
    chunk: Sequence[PlannedClose],
    batch: BatchResult,
    store: StateStore,
    result: ApplyResult,
) -> int:
    refused = dict(_refused(batch))
    missing_ok = {str(e.uid) for e in batch.errors if e.status == 404}  # gone: nothing to close
    # The Tasks API's own done_at is kept: a later completion of the same task (by an
    # operator, after a reopen this state never saw committed) has a newer one.
    done_at = {str(t.uid): t.done_at for t in batch.items}
    closed: dict[datetime | None, list[str]] = defaultdict(list)
    for c in chunk:
        if c.uid in refused and c.uid not in missing_ok:
            result.errors.append(RecordError(source, c.external_id, None, refused[c.uid]))
        else:
            closed[done_at.get(c.uid)].append(c.external_id)
    for when, ids in closed.items():
        store.set_status(source, ids, RecordStatus.CLOSED, closed_by="sync", done_at=when)
    return sum(len(ids) for ids in closed.values())
