"""The applier: runs a :class:`Plan` through the Tasks API client in chunks.

State is committed after each applied chunk, so a crash loses at most the chunk in
flight, and a restart re-sends it: PUT is idempotent, so no duplicate is ever created.
A close records its intent (``closing``) before the PATCH, so a task the sync closed is
never mistaken for an operator's completion, even after a crash.
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
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


def apply_plan(
    plan: Plan,
    client: TaskWriter,
    store: StateStore,
    *,
    batch_size: int = 100,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
) -> ApplyResult:
    """Apply ``plan``: PUT creates/updates/reopens, then PATCH closes, chunk by chunk.

    Raises what the client raises (``TransientError`` once its retries are spent,
    ``AuthenticationError``...); everything applied before is already committed.
    Returns early with ``interrupted=True`` when ``stop`` is set (between chunks).
    """
    result = ApplyResult()
    source = plan.source
    kinds: list[tuple[str, list[PlannedWrite]]] = [
        ("created", plan.create),
        ("updated", plan.update),
        ("reopened", plan.reopen),
    ]
    for kind, writes in kinds:
        for chunk in _chunks(writes, batch_size):
            if stop is not None and stop.is_set():
                result.interrupted = True
                return result
            ok = _put_chunk(source, chunk, kind, client, store, result)
            setattr(result, kind, getattr(result, kind) + ok)
            if progress:
                progress(len(chunk))
    for chunk in _chunks(plan.close, batch_size):
        if stop is not None and stop.is_set():
            result.interrupted = True
            return result
        result.closed += _close_chunk(source, chunk, client, store, result)
        if progress:
            progress(len(chunk))
    if plan.complete:
        store.set_times_missing(source, plan.missing)
    return result


def _refused(result: BatchResult) -> dict[str, str]:
    return {
        str(error.uid): f"the Tasks API refused it (HTTP {error.status}): {error.message}"
        for error in result.errors
    }


def _put_chunk(
    source: str,
    chunk: Sequence[PlannedWrite],
    kind: str,
    client: TaskWriter,
    store: StateStore,
    result: ApplyResult,
) -> int:
    tasks = [
        w.task.model_copy(update={"status": TaskStatus.TODO}) if kind == "reopened" else w.task
        for w in chunk
    ]
    if kind == "reopened":  # intent first: a crash after the PUT leaves it counted as open
        store.mark_reopening(source, [w.external_id for w in chunk])
    refused = _refused(client.upsert_tasks(tasks))
    written = []
    for w in chunk:
        if w.uid in refused:
            result.errors.append(RecordError(source, w.external_id, None, refused[w.uid]))
        else:
            written.append(RecordState(w.external_id, w.uid, w.content_hash, RecordStatus.OPEN))
    store.save_records(source, written)
    return len(written)


def _close_chunk(
    source: str,
    chunk: Sequence[PlannedClose],
    client: TaskWriter,
    store: StateStore,
    result: ApplyResult,
) -> int:
    ids = [c.external_id for c in chunk]
    store.set_status(source, ids, RecordStatus.CLOSING, closed_by="sync")  # intent first
    batch = client.patch_tasks([{"uid": c.uid, "status": TaskStatus.DONE.value} for c in chunk])
    refused = {uid: msg for uid, msg in _refused(batch).items()}
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
