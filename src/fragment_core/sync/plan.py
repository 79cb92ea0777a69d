"""The planner: records + state -> a :class:`Plan`. A pure function, no I/O.

It keeps the sync's invariants:

- identity: one task per ``(source, external_id)``; a duplicate id in one fetch is
  reported, the first record wins;
- change detection: a task is written only when its content hash changed;
- safe closing: absent records close their tasks only after a *complete* fetch, only
  after ``debounce`` complete runs in a row, and never when more than ``max_share`` of
  the source's open tasks would close (when it has more than ``min_open``), unless
  forced; a record that failed to map still counts as seen;
- no resurrection: an operator-completed task is reopened only when its record changed
  after completion and the policy is ``reopen = "on-change"``;
- cursors: the next cursor is the largest one seen; the engine stores it only after the
  writes it covers are committed.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any

from fragment_core.config import ClosePolicy
from fragment_core.reports import RecordError
from fragment_core.task import Task, TaskBody, task_uid

#: Record statuses as stored (see :class:`fragment_core.state.RecordStatus`).
OPEN, CLOSING, CLOSED, DONE = "open", "closing", "closed", "done"
#: A reopen was decided and may or may not have landed: treated as open, and re-sent.
REOPENING = "reopening"
#: Statuses whose task is (or may be) open in the Tasks API.
OPEN_LIKE = (OPEN, REOPENING)

#: ``{external_id: (content_hash, status, times_missing)}``: the state the planner reads.
KnownRecords = Mapping[str, tuple[str, str, int]]


@dataclass(frozen=True, slots=True)
class MappedRecord:
    """One fetched record after mapping: a task, or why there is none.

    ``task`` is ``None`` for a record that failed to map (``error`` says why; it still
    counts as seen when its id is known) and for a record a hook dropped (``dropped``;
    treated as absent). ``open`` is ``False`` for an incremental change that says the
    record left the backlog.
    """

    external_id: str | None
    task: Task | None = None
    content_hash: str | None = None
    open: bool = True
    dropped: bool = False
    cursor: str | None = None
    error: RecordError | None = None
    body: dict[str, Any] | None = None
    """``task.to_api()`` when the mapper built it already (to hash the task)."""


class PlannedWrite:
    """A task to PUT, with what the state records once it is written.

    A plan may hold every record of a large backlog, so the task is kept in its compact
    wire form (:attr:`wire`, a :class:`~fragment_core.task.TaskBody`, sent as it is);
    :attr:`task` rebuilds the :class:`Task`.
    """

    __slots__ = ("content_hash", "external_id", "uid", "wire")

    def __init__(
        self,
        external_id: str,
        uid: str,
        content_hash: str,
        task: Task,
        body: dict[str, Any] | None = None,
    ) -> None:
        """``body`` is ``task.to_api()`` when the caller has it already."""
        self.external_id = external_id
        self.uid = uid
        self.content_hash = content_hash
        self.wire = TaskBody(
            task.to_api() if body is None else body,
            external_id=external_id,
            uid=task.uid if task.uid is not None else (uuid.UUID(uid) if uid else None),
        )

    @property
    def task(self) -> Task:
        """The task to write (equal content, equal hash)."""
        return self.wire.task()

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, PlannedWrite):
            return NotImplemented
        mine = (self.external_id, self.uid, self.content_hash, self.wire)
        return mine == (other.external_id, other.uid, other.content_hash, other.wire)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"PlannedWrite(external_id={self.external_id!r}, uid={self.uid!r}, "
            f"content_hash={self.content_hash!r})"
        )


@dataclass(frozen=True, slots=True)
class PlannedClose:
    """A task to close (PATCH status DONE) because its record left the backlog."""

    external_id: str
    uid: str


@dataclass(frozen=True)
class PlanPolicy:
    """The knobs of a plan, from the source's settings and the command line."""

    close: ClosePolicy = field(default_factory=ClosePolicy)
    reopen: str = "on-change"
    force_close: bool = False


@dataclass
class Plan:
    """What one run will do. Counts and lists; nothing here has been applied."""

    source: str
    mode: str = "full"
    complete: bool = True
    fetched: int = 0
    create: list[PlannedWrite] = field(default_factory=list)
    update: list[PlannedWrite] = field(default_factory=list)
    reopen: list[PlannedWrite] = field(default_factory=list)
    close: list[PlannedClose] = field(default_factory=list)
    unchanged: int = 0
    dropped: int = 0
    withheld_closes: int = 0
    capped: bool = False
    missing: dict[str, int] = field(default_factory=dict)
    """New ``times_missing`` of records that are not closed (yet) or came back."""
    next_cursor: str | None = None
    write_backs_due: int = 0
    record_errors: list[RecordError] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    @property
    def writes(self) -> list[PlannedWrite]:
        """Every PUT of the plan: creates, updates and reopens."""
        return [*self.create, *self.update, *self.reopen]

    @property
    def is_empty(self) -> bool:
        """Whether the plan writes nothing to the Tasks API."""
        return not (self.create or self.update or self.reopen or self.close)


def cursor_key(value: str) -> tuple[int, float, str]:
    """Order cursors numerically when they are numbers, else as text (ISO times sort)."""
    try:
        return (0, float(value), "")
    except ValueError:
        return (1, 0.0, value)


def max_cursor(a: str | None, b: str | None) -> str | None:
    """The later of two cursors (``None`` is earliest)."""
    if a is None:
        return b
    if b is None:
        return a
    return a if cursor_key(a) >= cursor_key(b) else b


def plan_sync(
    source: str,
    mapped: Iterable[MappedRecord],
    known: KnownRecords,
    *,
    complete: bool | Callable[[], bool] = True,
    mode: str = "full",
    policy: PlanPolicy | None = None,
    previous_cursor: str | None = None,
    write_backs_due: int = 0,
    on_write: Callable[[str, PlannedWrite], None] | None = None,
) -> Plan:
    """Diff the mapped records of one fetch against the known state of the source.

    ``complete`` says the fetch ran to its end (or is a callable asked once ``mapped`` is
    consumed, so a fetch can stream through the planner); ``mode`` is ``"full"`` (the whole backlog:
    absence means gone) or ``"incremental"`` (only changes: absence means nothing).
    ``on_write(kind, write)`` is called as each write is planned (``kind`` is
    ``"created"``, ``"updated"`` or ``"reopened"``), in the order of the plan's lists, so
    the writes can be applied while the fetch goes on (they do not depend on the rest of
    it; closes do, and are only planned once it has ended).
    """
    policy = policy or PlanPolicy()
    plan = Plan(source=source, mode=mode, write_backs_due=write_backs_due)
    seen: set[str] = set()
    explicit_closes: list[PlannedClose] = []
    cursor = previous_cursor
    reopen_on_change = policy.reopen == "on-change"
    unchanged = 0
    fetched = 0
    unidentified = 0

    def add(kind: str, writes: list[PlannedWrite], eid: str, item: MappedRecord) -> None:
        write = _write(eid, item)
        writes.append(write)
        if on_write is not None:
            on_write(kind, write)

    for item in mapped:
        fetched += 1
        if item.cursor is not None:
            cursor = max_cursor(cursor, item.cursor)
        eid = item.external_id
        if item.error is not None:
            plan.record_errors.append(item.error)
        if eid is None:
            unidentified += item.error is not None
            continue
        if item.dropped:
            plan.dropped += 1
            continue
        if eid in seen:
            plan.record_errors.append(
                RecordError(source, eid, None, "duplicate external id in one fetch; kept the first")
            )
            continue
        seen.add(eid)
        state = known.get(eid)
        if not item.open:
            if state is not None and state[1] in (*OPEN_LIKE, CLOSING):
                explicit_closes.append(PlannedClose(eid, str(task_uid(source, eid))))
            continue
        if item.task is None or item.content_hash is None:
            continue  # failed to map: seen (so not closed), nothing to write
        if state is None:
            add("created", plan.create, eid, item)
            continue
        old_hash, status, times_missing = state
        if times_missing:
            plan.missing[eid] = 0
        if status == OPEN:
            if old_hash == item.content_hash:
                unchanged += 1
            else:
                add("updated", plan.update, eid, item)
        elif status == DONE:
            if reopen_on_change and old_hash and old_hash != item.content_hash:
                add("reopened", plan.reopen, eid, item)
            else:
                unchanged += 1
        else:  # closing/closed by the sync and back, or a reopen not known to have landed
            add("reopened", plan.reopen, eid, item)

    if callable(complete):
        complete = complete()
    plan.complete = complete
    plan.fetched = fetched
    plan.unchanged = unchanged
    plan.close.extend(explicit_closes)
    if complete:
        plan.next_cursor = cursor
    if mode == "full":
        _plan_absence(plan, source, known, seen, policy, complete, unidentified)
    return plan


def _write(eid: str, item: MappedRecord) -> PlannedWrite:
    assert item.task is not None and item.content_hash is not None
    if item.body is not None and "uid" in item.body:
        uid = str(item.body["uid"])
    else:
        uid = str(item.task.uid) if item.task.uid is not None else ""
    return PlannedWrite(eid, uid, item.content_hash, item.task, item.body)


def _plan_absence(
    plan: Plan,
    source: str,
    known: KnownRecords,
    seen: set[str],
    policy: PlanPolicy,
    complete: bool,
    unidentified: int = 0,
) -> None:
    if not complete:
        if any(status in (*OPEN_LIKE, CLOSING) for _, status, _ in known.values()):
            plan.messages.append("the fetch did not complete: no task was closed")
        return
    candidates: list[PlannedClose] = []
    retries: list[PlannedClose] = []
    open_count = 0
    debounce = policy.close.debounce
    for eid, (_, status, times_missing) in known.items():
        if status in OPEN_LIKE:
            open_count += 1
        if eid in seen:
            continue
        if status == CLOSING:  # an earlier run decided; finish it
            retries.append(PlannedClose(eid, str(task_uid(source, eid))))
        elif status in OPEN_LIKE:
            if times_missing + 1 >= debounce:
                candidates.append(PlannedClose(eid, str(task_uid(source, eid))))
            else:
                plan.missing[eid] = times_missing + 1
    if candidates and unidentified:
        # a record whose id could not be read may be any of the missing ones
        plan.withheld_closes = len(candidates)
        plan.messages.append(
            f"{unidentified} record(s) without a readable id: closed none of the "
            f"{len(candidates)} tasks whose records are missing, as they may be among them"
        )
        candidates = []
    limit = policy.close.max_share * open_count
    if (
        candidates
        and not policy.force_close
        and open_count > policy.close.min_open
        and len(candidates) > limit
    ):
        plan.withheld_closes = len(candidates)
        plan.capped = True
        plan.messages.append(
            f"blast-radius cap: {len(candidates)} of {open_count} open tasks would close "
            f"(more than {policy.close.max_share:.0%}); closed none. Check the source, "
            "then run with --force-close if this is right."
        )
        candidates = []
    plan.close.extend(retries)
    plan.close.extend(candidates)
