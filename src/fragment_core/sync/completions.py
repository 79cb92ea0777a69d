"""Completions: find tasks an operator completed, and write them back through the outbox.

1. :func:`detect_completions` lists this source's tasks that became DONE since the
   high-water mark kept in state. Tasks the sync closed itself are skipped (no echo).
   For each operator completion the write-back intent goes into the outbox *first*,
   then the record is marked done (so a crash in between never loses a write-back).
2. :func:`run_write_backs` calls ``connector.on_complete`` once per due outbox entry and
   records the outcome. Retries within the call are the connector's transport's (one
   retry loop); an entry that failed waits in the outbox for a later run, with backoff
   (``failed`` after :data:`FAILED_AFTER` attempts, still retried). After a transient
   failure (the source is down) the run attempts no further write-back.
"""

from __future__ import annotations

import logging
import threading
import uuid
from datetime import datetime, timedelta
from typing import Any

from fragment_core.connector import Capability, Completion, Connector
from fragment_core.errors import (
    AuthenticationError,
    ConfigurationError,
    FragmentError,
    TransientError,
    WriteBackError,
)
from fragment_core.reports import WriteBackOutcome
from fragment_core.retries import operation as retry_operation
from fragment_core.state import OutboxEntry, OutboxState, RecordState, RecordStatus, StateStore
from fragment_core.state.store import utcnow
from fragment_core.sync.ports import TasksApi
from fragment_core.task import SOURCE_FIELD, RemoteTask, TaskStatus, format_datetime

log = logging.getLogger(__name__)

#: Re-read this far before the high-water mark (clock ties, late commits); dedup is by key.
HIGH_WATER_OVERLAP = timedelta(seconds=5)
#: After this many attempts in all, an entry is shown as ``failed`` (still retried).
FAILED_AFTER = 5
#: Longest wait between two runs' attempts of one entry.
MAX_RETRY_DELAY = timedelta(hours=1)


def idempotency_key(uid: uuid.UUID | str, done_at: datetime | None) -> str:
    """The key shared by every attempt of one completion: uid + completion time."""
    return f"{uid}:{format_datetime(done_at) if done_at else 'done'}"


def detect_completions(
    source: str, connector: Connector, client: TasksApi, store: StateStore
) -> int:
    """Record this source's new operator completions; return how many were new."""
    state = store.source_state(source)
    since = state.completions_seen_until
    high_water = since
    query_from = since - HIGH_WATER_OVERLAP if since else None
    writes_back = Capability.WRITE_BACK in connector.capabilities()
    new = 0
    for task in client.list_tasks(
        status=TaskStatus.DONE, updated_after=query_from, fields={SOURCE_FIELD: source}
    ):
        stamp = task.updated_at or task.done_at
        if stamp is not None and (high_water is None or stamp > high_water):
            high_water = stamp
        if task.status != TaskStatus.DONE or task.source != source:
            continue
        external_id = task.external_id
        if external_id is None:
            continue
        record = store.record(source, external_id)
        if record is not None and _closed_by_the_sync(record, task):
            continue  # no echo
        if (
            record is not None
            and record.status in (RecordStatus.DONE, RecordStatus.REOPENING)
            and record.done_at == task.done_at
        ):
            continue  # this completion is already recorded (a reopen may not have landed)
        if writes_back:
            store.add_write_back(
                source=source,
                uid=str(task.uid),
                external_id=external_id,
                idempotency_key=idempotency_key(task.uid, task.done_at),
                done_at=task.done_at,
                task_json=task.model_dump_json(),
            )
        if record is None:  # written but not committed before a crash: adopt it
            record = RecordState(external_id, str(task.uid), "")
        store.save_records(
            source,
            [
                RecordState(
                    external_id,
                    record.uid,
                    record.content_hash,
                    RecordStatus.DONE,
                    closed_by="operator",
                    done_at=task.done_at,
                    record_hash=record.record_hash,
                )
            ],
        )
        new += 1
    if high_water is not None and high_water != since:
        store.update_source_state(source, completions_seen_until=high_water)
    return new


def _closed_by_the_sync(record: RecordState, task: RemoteTask) -> bool:
    """The sync closed this task (or is closing it), and no one completed it since.

    A completion newer than the sync's close means a reopen landed in the Tasks API but
    a crash kept it out of the state, and then an operator completed the task.
    """
    if record.status == RecordStatus.CLOSING:
        return True
    if record.status == RecordStatus.REOPENING and record.closed_by != "sync":
        return False  # an operator's completion being reopened: see the DONE check
    if record.status not in (RecordStatus.CLOSED, RecordStatus.REOPENING):
        return False
    if record.done_at is None or task.done_at is None:
        return True  # when in doubt, no echo
    return task.done_at <= record.done_at


def _retry_delay(attempts: int) -> timedelta:
    return min(timedelta(seconds=30) * 2 ** max(attempts - 1, 0), MAX_RETRY_DELAY)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return (
        text
        if isinstance(exc, WriteBackError | ConfigurationError)
        else (f"{type(exc).__name__}: {text}" if text else type(exc).__name__)
    )


def _attribute(exc: Exception, connector: Connector, external_id: str) -> None:
    """Name the source and record on a write-back's error (connectors need not pass where=)."""
    if isinstance(exc, FragmentError):
        exc.attribute(connector.where, external_id)
    else:
        exc.add_note(f"while writing back record {external_id!r} of {connector.where}")


def run_write_back(
    entry: OutboxEntry, connector: Connector, store: StateStore, pm: Any = None
) -> WriteBackOutcome:
    """Call ``on_complete`` for one outbox entry (retrying transient errors); record it."""
    task = RemoteTask.model_validate_json(entry.task_json)
    completion = Completion(
        source=entry.source,
        external_id=entry.external_id,
        uid=uuid.UUID(entry.uid),
        done_at=entry.done_at,
        outcome=dict(task.form_data or {}),
        idempotency_key=entry.idempotency_key,
    )
    attempts = entry.attempts + 1
    try:
        with retry_operation(f"write-back of record {entry.external_id!r}"):
            message = connector.on_complete(task, completion)
    except Exception as exc:
        _attribute(exc, connector, entry.external_id)
        permanent = isinstance(exc, WriteBackError | ConfigurationError | AuthenticationError)
        state = OutboxState.FAILED if permanent or attempts >= FAILED_AFTER else OutboxState.PENDING
        error = _describe(exc)
        store.finish_write_back(
            entry.id,
            state=state,
            attempts=attempts,
            error=error,
            next_attempt_at=utcnow() + _retry_delay(attempts),
        )
        log.error(
            "write-back of record %r failed (attempt %d, %s): %s",
            entry.external_id,
            attempts,
            "given up" if state is OutboxState.FAILED else "retried on a later run",
            error,
            extra={"source": entry.source, "record": entry.external_id},
        )
        outcome = WriteBackOutcome(
            entry.source,
            completion.uid,
            entry.external_id,
            False,
            error,
            attempts,
            transient=isinstance(exc, TransientError),
        )
    else:
        store.finish_write_back(
            entry.id, state=OutboxState.DONE, attempts=attempts, message=message or "written back"
        )
        outcome = WriteBackOutcome(
            entry.source, completion.uid, entry.external_id, True, message or "", attempts
        )
    if pm is not None:
        from fragment_core.plugins import notify_task_written_back

        notify_task_written_back(pm, task, outcome)
    return outcome


def run_write_backs(
    source: str,
    connector: Connector,
    store: StateStore,
    pm: Any = None,
    *,
    stop: threading.Event | None = None,
    limit: int | None = None,
) -> list[WriteBackOutcome]:
    """Run every due write-back of a source (at most ``limit``); return their outcomes.
    Once ``stop`` is set (SIGTERM), or after a write-back failed with a transient error
    (the source is down or throttling past its budget), no further write-back starts:
    the rest stay due for the next run."""
    if Capability.WRITE_BACK not in connector.capabilities():
        return []
    outcomes: list[WriteBackOutcome] = []
    for entry in store.due_write_backs(source):
        if stop is not None and stop.is_set():
            break
        if limit is not None and len(outcomes) >= limit:
            break
        if store.claim_write_back(entry):  # never two processes calling one write-back
            outcomes.append(outcome := run_write_back(entry, connector, store, pm))
            if outcome.transient:
                break
    return outcomes
