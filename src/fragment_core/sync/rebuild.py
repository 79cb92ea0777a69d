"""Rebuild a source's lost state from the Tasks API.

When the state store knows nothing of a source (the database was deleted, or a fresh
store points at a Tasks API the source already wrote to), the first run lists the
source's tasks (``fields.sync_source``) and adopts them before doing anything else:

* open tasks (TODO, STARTED) become open records; their content hash is unknown, so
  the plan re-sends them once (an idempotent PUT: no duplicate) or closes them when
  their record left the source;
* done tasks become done records, and the completion high-water mark moves past them,
  so no completion from before the loss is written back again and a task the sync had
  closed is never mistaken for an operator's completion (no echo).

What it cannot know: a completion that was still waiting for its write-back when the
state was lost is adopted as done and not written back (see docs/reliability.md).
"""

from __future__ import annotations

import logging
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from fragment_core.state import RecordState, RecordStatus, StateStore
from fragment_core.sync.destination import Destination, bind
from fragment_core.sync.ports import TasksApi
from fragment_core.task import SOURCE_FIELD, RemoteTask, TaskStatus

log = logging.getLogger(__name__)

#: ``closed_by`` of a done record adopted by a rebuild (operator or sync: unknown).
REBUILT = "rebuild"
#: Records saved per transaction while adopting.
CHUNK = 500


@dataclass
class Rebuild:
    """What a rebuild adopted."""

    open: int = 0
    done: int = 0
    destination: str | None = None
    """The Tasks API rebuilt from, when :func:`rebuild_source` rebound the source."""

    @property
    def adopted(self) -> int:
        """Tasks adopted in all."""
        return self.open + self.done

    def message(self) -> str:
        """One line for the run's report."""
        if self.destination is not None:
            return (
                f"state rebuilt from the Tasks API at {self.destination}, now this "
                f"source's destination: adopted {self.adopted} tasks ({self.open} open, "
                f"{self.done} done); done tasks are not written back again"
            )
        return (
            f"state rebuilt from the Tasks API: adopted {self.adopted} tasks of this source "
            f"({self.open} open, {self.done} done); done tasks are not written back again"
        )


def state_is_lost(store: StateStore, source: str) -> bool:
    """Whether the store holds nothing at all of ``source`` (never ran, or state lost)."""
    state = store.source_state(source)
    if state.last_complete_fetch or state.completions_seen_until or state.cursor:
        return False
    if store.has_records(source):
        return False
    return not store.write_backs(source)


def rebuild_state(source: str, client: TasksApi, store: StateStore) -> Rebuild:
    """Adopt every task of ``source`` listed by the Tasks API into the state store.

    The whole listing is read before anything is written, and the completion high-water
    mark is written first: a rebuild cut short leaves a state that never repeats a
    write-back (tasks not adopted yet are re-sent by the plan, idempotently).
    """
    return adopt(source, client.list_tasks(fields={SOURCE_FIELD: source}, page_size=1000), store)


def adopt(source: str, tasks: Iterable[RemoteTask], store: StateStore) -> Rebuild:
    """Adopt ``tasks`` (the source's listing, read whole before anything is written)
    into the state store (see :func:`rebuild_state`)."""
    result = Rebuild()
    high_water: datetime | None = None
    adopted: list[RecordState] = []
    for task in tasks:
        remote: RemoteTask = task
        external_id = remote.external_id
        if external_id is None or remote.source != source:
            continue
        stamp = remote.updated_at or remote.done_at
        if stamp is not None and (high_water is None or stamp > high_water):
            high_water = stamp
        if remote.status == TaskStatus.DONE:
            result.done += 1
            adopted.append(
                RecordState(
                    external_id,
                    str(remote.uid),
                    "",
                    RecordStatus.DONE,
                    closed_by=REBUILT,
                    done_at=remote.done_at,
                )
            )
        else:
            result.open += 1
            adopted.append(RecordState(external_id, str(remote.uid), "", RecordStatus.OPEN))
    if high_water is not None:
        store.update_source_state(source, completions_seen_until=high_water)
    for start in range(0, len(adopted), CHUNK):
        store.save_records(source, adopted[start : start + CHUNK])
    if result.adopted:
        log.warning(
            "state rebuilt from the Tasks API",
            extra={"source": source, "open": result.open, "done": result.done},
        )
    return result


def rebuild_source(source: str, client: TasksApi, store: StateStore) -> Rebuild:
    """Forget what the state knows of ``source`` (records, cursor, high-water mark,
    destination; its pending write-backs and run history are kept) and rebuild it from
    the Tasks API ``client`` writes to, which becomes the source's destination.

    ``fragment sync --rebind`` and ``fragment state rebuild`` call it; the caller holds
    the source's lease. The next plan re-sends the adopted open tasks once and creates
    the tasks this Tasks API lacks.
    """
    destination = Destination.of(client)  # before forgetting: a refused token loses nothing
    listing = list(client.list_tasks(fields={SOURCE_FIELD: source}, page_size=1000))
    store.forget_source(source)
    result = adopt(source, listing, store)
    bind(store, source, destination)
    result.destination = destination.describe()
    return result
