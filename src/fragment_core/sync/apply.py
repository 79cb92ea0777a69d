"""The applier: runs a :class:`Plan` through the Tasks API client in chunks.

State is committed after each applied chunk, so a crash loses at most the chunks in
flight, and a restart re-sends them: PUT is idempotent, so no duplicate is ever created.
A close records its intent (``closing``) before the PATCH, so a task the sync closed is
never mistaken for an operator's completion, even after a crash.

Up to ``in_flight`` chunks are sent at once (from a small thread pool), so the next
request is on the wire while earlier answers are read and committed: with a round trip
of tens of milliseconds to the real API that is most of a sync's time. Intents are
recorded before a chunk is sent; chunks are committed in plan order, each once its own
answer has arrived. A :class:`StreamingApplier` starts sending the creates, updates and
reopens while the planner still streams through the fetch; closes wait for its end.
"""

from __future__ import annotations

import threading
from collections import defaultdict, deque
from collections.abc import Callable, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from contextvars import copy_context
from dataclasses import dataclass, field
from datetime import datetime

from fragment_core.reports import RecordError
from fragment_core.state import RecordStatus, StateStore
from fragment_core.state.store import StateWriter
from fragment_core.sync.plan import Plan, PlannedClose, PlannedWrite
from fragment_core.sync.ports import TasksApi
from fragment_core.task import TaskStatus
from fragment_core.tasks_api import BatchResult

#: Called with the number of plan items just applied.
Progress = Callable[[int], None]

#: Write requests in flight at once, by default.
IN_FLIGHT = 4


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


#: The kinds of PUT chunks, in the order they are sent (closes come last).
PUT_KINDS = ("created", "updated", "reopened")


class StreamingApplier:
    """Applies a plan while the planner builds it.

    Pass :meth:`on_write` and :meth:`on_fingerprint` to
    :func:`~fragment_core.sync.plan.plan_sync`: each full chunk of creates, updates or
    reopens is sent at once (its intent recorded first), while the fetch goes on.
    :meth:`finish` then sends the rest (the partial chunks, then the plan's closes),
    waits for every answer and commits it, in plan order. A failed request stops the
    sending; :meth:`finish` raises it. ``stop`` is checked before each chunk.

    State writes share transactions: the commit of the oldest chunk in flight, the
    intent of the next one and the record hashes to remember go in one.
    """

    def __init__(
        self,
        source: str,
        client: TasksApi,
        store: StateStore,
        *,
        batch_size: int = 100,
        stop: threading.Event | None = None,
        progress: Progress | None = None,
        in_flight: int = IN_FLIGHT,
    ) -> None:
        self.source, self.client, self.store = source, client, store
        self.batch_size = max(1, batch_size)
        self.stop, self.progress = stop, progress
        self.limit = max(1, in_flight)
        self.result = ApplyResult()
        self._buffers: dict[str, list[PlannedWrite]] = {kind: [] for kind in PUT_KINDS}
        self._fingerprints: dict[str, str] = {}
        self._pending: deque[tuple[str, Sequence, Future[BatchResult]]] = deque()
        self._pool = ThreadPoolExecutor(self.limit, thread_name_prefix="fragment-apply")
        self._error: BaseException | None = None
        self._unsettled: list[tuple[str, Sequence, Future[BatchResult]]] = []

    def on_write(self, kind: str, write: PlannedWrite) -> None:
        """One planned write: sent with its chunk once the chunk is full."""
        buffer = self._buffers[kind]
        buffer.append(write)
        if len(buffer) >= self.batch_size:
            self._buffers[kind] = []
            self._send(kind, buffer)

    def on_fingerprint(self, external_id: str, record_hash: str) -> None:
        """A record mapped and found unchanged: its hash is stored with the next chunk."""
        self._fingerprints[external_id] = record_hash
        if len(self._fingerprints) >= FINGERPRINTS_PER_TRANSACTION:
            self._flush_fingerprints()

    def _flush_fingerprints(self) -> None:
        if self._fingerprints and self._error is None:
            with self.store.transaction() as tx:
                tx.set_record_hashes(self.source, self._fingerprints)
            self._fingerprints = {}

    def _send(self, kind: str, chunk: Sequence) -> bool:
        """Record the chunk's intent and send it; ``False`` once sending has stopped."""
        if self._error is not None or self.result.interrupted:
            return False
        if self.stop is not None and self.stop.is_set():
            self.result.interrupted = True
            return False
        try:
            oldest = None
            done = ApplyResult()
            if len(self._pending) >= self.limit:
                oldest = self._pending[0]
                answer = oldest[2].result()  # raises what the request raised
            with self.store.transaction() as tx:
                if oldest is not None:
                    self._commit(tx, oldest[0], oldest[1], answer, done)
                _record_intent(self.source, kind, chunk, tx)
                if self._fingerprints:
                    tx.set_record_hashes(self.source, self._fingerprints)
            self._fingerprints = {}
            if oldest is not None:
                self._pending.popleft()
                self._merge(done)
                if self.progress:
                    self.progress(len(oldest[1]))
            # the copied context carries the source name into the pool's log records
            future = self._pool.submit(copy_context().run, _send, kind, chunk, self.client)
        except Exception as exc:  # raised by finish(); nothing more is sent
            self._error = exc
            self._cancel()
            return False
        self._pending.append((kind, chunk, future))
        return True

    def _commit(
        self, tx: StateWriter, kind: str, chunk: Sequence, batch: BatchResult, result: ApplyResult
    ) -> None:
        """Commit one answered chunk into ``tx``, counting it in ``result`` (merged into
        :attr:`result` once the transaction is committed)."""
        if kind == "closed":
            result.closed += _commit_close(self.source, chunk, batch, tx, result)
        else:
            ok = _commit_put(self.source, chunk, batch, tx, result)
            setattr(result, kind, getattr(result, kind) + ok)

    def _merge(self, done: ApplyResult) -> None:
        result = self.result
        for kind in (*PUT_KINDS, "closed"):
            setattr(result, kind, getattr(result, kind) + getattr(done, kind))
        result.errors.extend(done.errors)

    def _commit_oldest(self) -> None:
        kind, chunk, future = self._pending[0]
        batch = future.result()  # raises what the request raised
        done = ApplyResult()
        with self.store.transaction() as tx:
            self._commit(tx, kind, chunk, batch, done)
        self._pending.popleft()  # only once committed: else counted by _count_landed
        self._merge(done)
        if self.progress:
            self.progress(len(chunk))

    def _cancel(self) -> None:
        for _, _, future in self._pending:  # not sent yet: re-sent next run
            future.cancel()
        self._unsettled.extend(self._pending)
        self._pending.clear()

    def _count_landed(self) -> None:
        """After a failure: chunks answered but never committed still count in the
        result (they reached the Tasks API; the next run sends them again, idempotently)."""
        for kind, chunk, future in self._unsettled:
            if future.cancelled() or future.exception() is not None:
                continue
            batch = future.result()
            refused = set(_refused(batch))
            if kind == "closed":
                refused -= {str(e.uid) for e in batch.errors if e.status == 404}
            landed = sum(1 for item in chunk if item.uid not in refused)
            setattr(self.result, kind, getattr(self.result, kind) + landed)
        self._unsettled.clear()

    def finish(self, plan: Plan) -> ApplyResult:
        """Send what is left (the writes not sent yet, then ``plan``'s closes), wait for
        every answer and commit it. Raises what a request raised."""
        try:
            rest: list[tuple[str, Sequence[PlannedWrite | PlannedClose]]] = [
                (kind, self._buffers[kind]) for kind in PUT_KINDS
            ]
            rest.append(("closed", plan.close))
            for kind, items in rest:
                for i in range(0, len(items), self.batch_size):
                    if not self._send(kind, items[i : i + self.batch_size]):
                        break
            while self._pending and self._error is None:
                try:
                    self._commit_oldest()
                except Exception as exc:
                    self._error = exc
            if not self.result.interrupted:
                self._flush_fingerprints()
        finally:
            self._cancel()
            self._pool.shutdown(wait=True)
            self._count_landed()
        if self._error is not None:
            raise self._error
        if plan.complete and not self.result.interrupted:
            self.store.set_times_missing(plan.source, plan.missing)
        return self.result

    def abort(self) -> None:
        """Planning failed: wait for the requests on the wire, commit nothing more."""
        self._cancel()
        self._pool.shutdown(wait=True)
        self._count_landed()


#: Record hashes remembered in one state transaction at most.
FINGERPRINTS_PER_TRANSACTION = 2000


def apply_plan(
    plan: Plan,
    client: TasksApi,
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
    sent at once (1: one after the other). To apply a plan while it is being built, use
    :class:`StreamingApplier`.
    """
    applier = StreamingApplier(
        plan.source,
        client,
        store,
        batch_size=batch_size,
        stop=stop,
        progress=progress,
        in_flight=in_flight,
    )
    try:
        for kind, writes in (
            ("created", plan.create),
            ("updated", plan.update),
            ("reopened", plan.reopen),
        ):
            for write in writes:
                applier.on_write(kind, write)
        for external_id, record_hash in plan.fingerprints.items():
            applier.on_fingerprint(external_id, record_hash)
    except BaseException:
        applier.abort()
        raise
    return applier.finish(plan)


def _refused(result: BatchResult) -> dict[str, str]:
    return {
        str(error.uid): f"the Tasks API refused it (HTTP {error.status}): {error.message}"
        for error in result.errors
    }


def _record_intent(source: str, kind: str, chunk: Sequence, store: StateWriter) -> None:
    """Before a chunk is sent: a crash after its request leaves the state knowing."""
    if kind == "reopened":  # counted as open until the reopen is known to have landed
        store.mark_reopening(source, [w.external_id for w in chunk])
    elif kind == "updated":  # an update that lands just before a crash is sent again,
        # even if the record goes back to what was last committed
        store.forget_hashes(source, [w.external_id for w in chunk])
    elif kind == "created":  # a task that lands just before a crash is known to the next
        # run ("" hash: re-sent while its record is listed, closed once not)
        store.save_open(source, [(w.external_id, w.uid, "", None) for w in chunk])
    elif kind == "closed":  # never mistaken for an operator's completion
        store.set_status(
            source, [c.external_id for c in chunk], RecordStatus.CLOSING, closed_by="sync"
        )


def _send(kind: str, chunk: Sequence, client: TasksApi) -> BatchResult:
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
    store: StateWriter,
    result: ApplyResult,
) -> int:
    refused = _refused(batch)
    written = []
    for w in chunk:
        if refused and w.uid in refused:
            result.errors.append(RecordError(source, w.external_id, None, refused[w.uid]))
        else:
            written.append((w.external_id, w.uid, w.content_hash, w.record_hash))
    store.save_open(source, written)
    return len(written)


def _commit_close(
    source: str,
    chunk: Sequence[PlannedClose],
    batch: BatchResult,
    store: StateWriter,
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
