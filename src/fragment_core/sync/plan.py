"""The planner: records + state -> a :class:`Plan`. No I/O of its own: it reads the
state through a :class:`KnownRecords` and hands writes to callbacks.

It keeps the sync's invariants:

- identity: one task per ``(source, external_id)``; a duplicate id in one fetch is
  reported, the first record wins;
- change detection: a task is written only when its content hash changed;
- safe closing: absent records close their tasks only after a *complete* fetch, only
  after ``debounce`` complete runs in a row; every new close of a run (absent, or an
  incremental change saying the record left the backlog) counts against the
  blast-radius cap with the closes of the rolling ``window`` (:attr:`PlanPolicy.recent_closes`):
  when they reach ``max_share`` of the open tasks (when there are more than
  ``min_open``), none of them is closed, unless forced; a record that failed to map
  still counts as seen;
- no resurrection: an operator-completed task is reopened only when its record changed
  after completion and the policy is ``reopen = "on-change"``;
- cursors: the next cursor is the largest one seen; the engine stores it only after the
  writes it covers are committed;
- bounded memory: records stream through, writes are handed on as they are planned, the
  state is read a chunk at a time; what grows with the backlog is the set of ids seen.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import timedelta
from typing import Any, NamedTuple, Protocol

from fragment_core.config import ClosePolicy
from fragment_core.reports import RecordError
from fragment_core.task import SOURCE_FIELD, Task, TaskBody, hashed_body, task_uid_text

#: Record statuses as stored (see :class:`fragment_core.state.RecordStatus`).
OPEN, CLOSING, CLOSED, DONE = "open", "closing", "closed", "done"
#: A reopen was decided and may or may not have landed: treated as open, and re-sent.
REOPENING = "reopening"
#: Statuses whose task is (or may be) open in the Tasks API.
OPEN_LIKE = (OPEN, REOPENING)
#: Statuses whose task the sync may still have to close.
ACTIVE = (OPEN, REOPENING, CLOSING)

class Known(NamedTuple):
    """What the state knows of one record."""

    content_hash: str
    """Hash of the task body last written."""
    status: str
    """One of :data:`OPEN`, :data:`CLOSING`, :data:`CLOSED`, :data:`DONE`, :data:`REOPENING`."""
    times_missing: int
    """Complete fetches in a row the record was absent from."""
    record_hash: str | None = None
    """The raw record's fingerprint (see :mod:`fragment_core.sync.fingerprint`)."""


class Candidate(NamedTuple):
    """A record whose task may have to close when its record is absent."""

    external_id: str
    status: str
    times_missing: int


class KnownRecords(Protocol):
    """The state of a source's records, as the planner reads it.

    :class:`MappingKnown` wraps a dict; the sync reads the state store a chunk at a time
    (:class:`fragment_core.sync.known.StoredKnown`), so a large backlog never has to fit
    in memory.
    """

    def get(self, external_id: str) -> Known | None:
        """The record's state, or ``None`` when the state does not know it."""

    def open_count(self) -> int:
        """Records whose task was open (or reopening) when the run started."""

    def active_count(self) -> int:
        """Records whose task was open, reopening or closing when the run started."""

    def candidates(self) -> Iterable[tuple[str, str, int]]:
        """``(external_id, status, times_missing)`` (a :class:`Candidate`, or a plain
        tuple in that order) of every record whose status is in :data:`ACTIVE`: those
        that may have to close when their record is absent."""


class MappingKnown:
    """:class:`KnownRecords` over ``{external_id: (content_hash, status, times_missing[,
    record_hash])}``."""

    def __init__(self, rows: Mapping[str, tuple[Any, ...]]) -> None:
        self.rows = rows

    def get(self, external_id: str) -> Known | None:
        """The record's state, or ``None``."""
        row = self.rows.get(external_id)
        if row is None:
            return None
        return Known._make(row if len(row) == 4 else (*row[:3], None))

    def open_count(self) -> int:
        """Records whose task is open or reopening."""
        return sum(row[1] in OPEN_LIKE for row in self.rows.values())

    def active_count(self) -> int:
        """Records whose task is open, reopening or closing."""
        return sum(row[1] in ACTIVE for row in self.rows.values())

    def candidates(self) -> Iterator[Candidate]:
        """Records whose task is open, reopening or closing."""
        for eid, row in self.rows.items():
            if row[1] in ACTIVE:
                yield Candidate(eid, row[1], row[2])


@dataclass(slots=True)
class MappedRecord:
    """One fetched record after mapping: a task, or why there is none.

    ``task`` is ``None`` for a record that failed to map (``error`` says why; it still
    counts as seen when its id is known) and for a record a hook dropped (``dropped``;
    treated as absent). ``open`` is ``False`` for an incremental change that says the
    record left the backlog. ``wire`` and ``uid`` are the task's body as sent (compact
    JSON) and its uid, when the mapper built them already (:func:`map_task` does);
    ``record_hash`` is the raw record's fingerprint hash, when it has one.
    """

    external_id: str | None
    task: Task | None = None
    content_hash: str | None = None
    open: bool = True
    dropped: bool = False
    cursor: str | None = None
    error: RecordError | None = None
    wire: bytes | None = None
    uid: str | None = None
    record_hash: str | None = None


class Unchanged:
    """Fetched records, in a row, whose raw form is the one last mapped: counted, not
    mapped.

    ``states`` is what the state knows of each (as :meth:`KnownRecords.get` says);
    ``cursors`` their cursor values, when the connector has cursors.
    """

    __slots__ = ("cursors", "external_ids", "states")

    def __init__(
        self,
        external_ids: list[str],
        states: list[Known],
        cursors: list[str | None] | None = None,
    ) -> None:
        self.external_ids = external_ids
        self.states = states
        self.cursors = cursors

    def __len__(self) -> int:
        return len(self.external_ids)

    def __repr__(self) -> str:
        return f"Unchanged({self.external_ids!r})"


def map_task(
    source: str,
    task: Task,
    *,
    cursor: str | None = None,
    record_hash: str | None = None,
) -> MappedRecord:
    """A mapped record for ``task``: its uid, wire body and content hash built once."""
    body = task.to_api()
    uid = task_uid_text(source, task.external_id)
    body["uid"] = uid
    body["fields"][SOURCE_FIELD] = source
    digest, wire = hashed_body(body)
    return MappedRecord(
        task.external_id,
        task,
        digest,
        cursor=cursor,
        wire=wire,
        uid=uid,
        record_hash=record_hash,
    )


class PlannedWrite:
    """A task to PUT, with what the state records once it is written.

    The task is kept in its compact wire form (:attr:`wire`, a
    :class:`~fragment_core.task.TaskBody`, sent as it is); :attr:`task` rebuilds the
    :class:`Task`.
    """

    __slots__ = ("content_hash", "external_id", "record_hash", "uid", "wire")

    def __init__(
        self,
        external_id: str,
        uid: str,
        content_hash: str,
        wire: TaskBody,
        record_hash: str | None = None,
    ) -> None:
        self.external_id = external_id
        self.uid = uid
        self.content_hash = content_hash
        self.wire = wire
        self.record_hash = record_hash

    @classmethod
    def of(cls, source: str, task: Task, record_hash: str | None = None) -> PlannedWrite:
        """The write of ``task`` for ``source`` (uid derived, source recorded)."""
        mapped = map_task(source, task, record_hash=record_hash)
        return cls._of(mapped)

    @classmethod
    def _of(cls, item: MappedRecord) -> PlannedWrite:
        assert item.external_id is not None and item.content_hash is not None
        assert item.wire is not None and item.uid is not None
        wire = TaskBody(None, external_id=item.external_id, uid=item.uid, wire=item.wire)
        return cls(item.external_id, item.uid, item.content_hash, wire, item.record_hash)

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
    recent_closes: int = 0
    """Open tasks the earlier runs of the rolling window (:attr:`ClosePolicy.window`)
    took away: closed minus created and reopened over the latest runs, at its largest
    (:meth:`~fragment_core.state.StateStore.closes_since`). They count against the cap
    with this run's closes."""


#: The kinds of planned writes, as ``on_write`` is told them.
WRITE_KINDS = ("created", "updated", "reopened")


@dataclass
class Plan:
    """What one run will do. Counts and lists; nothing here has been applied.

    When the planner streams its writes to an ``on_write`` callback (the sync does), the
    lists ``create``, ``update`` and ``reopen`` stay empty and :attr:`planned` counts them.
    """

    source: str
    mode: str = "full"
    complete: bool = True
    fetched: int = 0
    create: list[PlannedWrite] = field(default_factory=list)
    update: list[PlannedWrite] = field(default_factory=list)
    reopen: list[PlannedWrite] = field(default_factory=list)
    close: list[PlannedClose] = field(default_factory=list)
    planned: dict[str, int] = field(default_factory=lambda: dict.fromkeys(WRITE_KINDS, 0))
    """Writes planned, by kind (``created``, ``updated``, ``reopened``), streamed or kept."""
    unchanged: int = 0
    skipped: int = 0
    """Unchanged records recognised by their fingerprint, without mapping them."""
    dropped: int = 0
    withheld_closes: int = 0
    capped: bool = False
    missing: dict[str, int] = field(default_factory=dict)
    """New ``times_missing`` of records that are not closed (yet) or came back."""
    fingerprints: dict[str, str] = field(default_factory=dict)
    """Record hashes to remember for records mapped and found unchanged (not streamed)."""
    next_cursor: str | None = None
    write_backs_due: int = 0
    record_errors: list[RecordError] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    @property
    def writes(self) -> list[PlannedWrite]:
        """Every PUT kept in the plan: creates, updates and reopens."""
        return [*self.create, *self.update, *self.reopen]

    @property
    def total_writes(self) -> int:
        """Every planned write, kept or streamed, closes included."""
        return sum(self.planned.values()) + len(self.close)

    @property
    def is_empty(self) -> bool:
        """Whether the plan writes nothing to the Tasks API."""
        return not self.total_writes


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
    mapped: Iterable[MappedRecord | Unchanged],
    known: KnownRecords | Mapping[str, tuple[Any, ...]],
    *,
    complete: bool | Callable[[], bool] = True,
    mode: str = "full",
    policy: PlanPolicy | None = None,
    previous_cursor: str | None = None,
    write_backs_due: int = 0,
    on_write: Callable[[str, PlannedWrite], None] | None = None,
    on_fingerprint: Callable[[str, str], None] | None = None,
) -> Plan:
    """Diff the mapped records of one fetch against the known state of the source.

    ``complete`` says the fetch ran to its end (or is a callable asked once ``mapped`` is
    consumed, so a fetch can stream through the planner); ``mode`` is ``"full"`` (the whole backlog:
    absence means gone) or ``"incremental"`` (only changes: absence means nothing).
    ``known`` is read record by record as the fetch goes (a dict, or a
    :class:`KnownRecords` reading the state store by chunk).
    ``on_write(kind, write)`` is called as each write is planned (``kind`` is
    ``"created"``, ``"updated"`` or ``"reopened"``), in the order of the plan's lists, so
    the writes can be applied while the fetch goes on (they do not depend on the rest of
    it; closes do, and are only planned once it has ended); the plan then counts them
    (:attr:`Plan.planned`) instead of keeping them. ``on_fingerprint(external_id,
    record_hash)`` likewise receives the record hashes to remember (else kept in
    :attr:`Plan.fingerprints`).

    The same as feeding ``mapped`` to a :class:`Planner` and finishing it.
    """
    planner = Planner(
        source,
        known,
        mode=mode,
        policy=policy,
        previous_cursor=previous_cursor,
        write_backs_due=write_backs_due,
        on_write=on_write,
        on_fingerprint=on_fingerprint,
    )
    planner.feed(mapped)
    return planner.finish(complete() if callable(complete) else complete)


class Planner:
    """The planner, driven chunk by chunk: :meth:`feed` each chunk of mapped records as
    it is fetched (its writes go to ``on_write`` at once), then :meth:`finish` once the
    fetch has ended, which plans the closes (they depend on the whole fetch) and returns
    the :class:`Plan`. See :func:`plan_sync` for the arguments.

    What it keeps between chunks is the set of ids seen, the largest cursor and counts:
    memory grows with the backlog's ids, not its records.
    """

    def __init__(
        self,
        source: str,
        known: KnownRecords | Mapping[str, tuple[Any, ...]],
        *,
        mode: str = "full",
        policy: PlanPolicy | None = None,
        previous_cursor: str | None = None,
        write_backs_due: int = 0,
        on_write: Callable[[str, PlannedWrite], None] | None = None,
        on_fingerprint: Callable[[str, str], None] | None = None,
    ) -> None:
        if not hasattr(known, "candidates"):
            known = MappingKnown(known)
        self.source = source
        self.known: KnownRecords = known  # type: ignore[assignment]
        self.mode = mode
        self.policy = policy or PlanPolicy()
        self.previous_cursor = previous_cursor
        self.on_write = on_write
        self.on_fingerprint = on_fingerprint
        self.plan = Plan(source=source, mode=mode, write_backs_due=write_backs_due)
        self.seen: set[str] = set()
        self.explicit_closes: list[PlannedClose] = []  # incremental changes: the record left
        self.retries: list[PlannedClose] = []  # closes an earlier run decided (already capped)
        self.cursor = previous_cursor
        self.unchanged = self.skipped = self.fetched = self.unidentified = 0
        self.seen_active = 0  # records seen whose task was open, reopening or closing
        self._finished = False

    def _add(self, kind: str, item: MappedRecord) -> None:
        write = PlannedWrite._of(item)
        self.plan.planned[kind] += 1
        if self.on_write is not None:
            self.on_write(kind, write)
        else:
            getattr(self.plan, _LISTS[kind]).append(write)

    def _unchanged(self, item: Unchanged) -> None:
        """The cheap path of a re-sync: nothing to map or write."""
        plan, seen, source = self.plan, self.seen, self.source
        self.fetched += len(item)
        if item.cursors is not None:
            cursor = self.cursor
            for value in item.cursors:
                if value is not None:
                    cursor = max_cursor(cursor, value)
            self.cursor = cursor
        skipped = active = 0
        for eid, state in zip(item.external_ids, item.states, strict=True):
            if eid in seen:
                _duplicate(plan, source, eid)
                continue
            seen.add(eid)
            skipped += 1
            if state[1] in ACTIVE:
                active += 1
            if state[2]:
                plan.missing[eid] = 0
        self.skipped += skipped
        self.seen_active += active

    def feed(self, mapped: Iterable[MappedRecord | Unchanged]) -> None:
        """Plan one chunk (or any number) of mapped records, in fetch order."""
        if self._finished:
            raise RuntimeError("the planner has finished: start a new one")
        plan, seen, source = self.plan, self.seen, self.source
        get, plan_record = self.known.get, self._plan_record
        cursor = self.cursor
        fetched = unchanged = unidentified = seen_active = 0
        for item in mapped:
            if type(item) is Unchanged:
                self.cursor = cursor
                self._unchanged(item)
                cursor = self.cursor
                continue
            fetched += 1
            assert isinstance(item, MappedRecord)
            if item.cursor is not None:
                cursor = max_cursor(cursor, item.cursor)
            eid = item.external_id
            if item.error is not None:
                plan.record_errors.append(item.error)
            if eid is None:
                unidentified += item.error is not None
            elif item.dropped:
                plan.dropped += 1
            elif eid in seen:
                _duplicate(plan, source, eid)
            else:
                seen.add(eid)
                state = get(eid)
                if state is not None:
                    seen_active += state[1] in ACTIVE
                unchanged += plan_record(item, eid, state)
        self.cursor = cursor
        self.fetched += fetched
        self.unchanged += unchanged
        self.unidentified += unidentified
        self.seen_active += seen_active

    def _plan_record(self, item: MappedRecord, eid: str, state: tuple[Any, ...] | None) -> bool:
        """Plan one record seen for the first time in this fetch (``state``: what the
        state knows of it); whether it is unchanged."""
        if not item.open:
            if state is not None and state[1] in ACTIVE:
                close = PlannedClose(eid, task_uid_text(self.source, eid))
                (self.retries if state[1] == CLOSING else self.explicit_closes).append(close)
            return False
        if item.task is None or item.content_hash is None:
            return False  # failed to map: seen (so not closed), nothing to write
        if item.wire is None:  # mapped by hand (tests, tools): build the body here
            built = map_task(self.source, item.task)
            item = replace(item, wire=built.wire, uid=built.uid)
        if state is None:
            self._add("created", item)
            return False
        old_hash, status, times_missing, old_record_hash = state
        if times_missing:
            self.plan.missing[eid] = 0
        if status == OPEN:
            kind = "updated" if old_hash != item.content_hash else None
        elif status == DONE:
            changed = bool(old_hash) and old_hash != item.content_hash
            kind = "reopened" if changed and self.policy.reopen == "on-change" else None
        else:  # closing/closed by the sync and back, or a reopen not known to have landed
            kind = "reopened"
        if kind is not None:
            self._add(kind, item)
            return False
        if item.record_hash is not None and item.record_hash != old_record_hash:
            self._note_fingerprint(eid, item.record_hash)
        return True

    def _note_fingerprint(self, eid: str, record_hash: str) -> None:
        """An unchanged task whose raw record changed: its new hash, so the next run can
        skip mapping it."""
        if self.on_fingerprint is not None:
            self.on_fingerprint(eid, record_hash)
        else:
            self.plan.fingerprints[eid] = record_hash

    def finish(self, complete: bool) -> Plan:
        """The plan, once the fetch has ended (``complete``: it ran to its end): the
        closes of absent records, the blast-radius cap and the next cursor."""
        if self._finished:
            raise RuntimeError("the planner has finished already")
        self._finished = True
        plan, source, known, policy = self.plan, self.source, self.known, self.policy
        retries = self.retries
        plan.complete = complete
        plan.fetched = self.fetched
        plan.unchanged = self.unchanged + self.skipped
        plan.skipped = self.skipped
        absent: list[PlannedClose] = []
        if self.mode == "full":
            everything_seen = self.seen_active >= known.active_count()
            if not (complete and everything_seen):  # else no task can have lost its record
                absent = _plan_absence(
                    plan, source, known, self.seen, policy, complete, self.unidentified
                )
                retries.extend(plan.close)
                plan.close.clear()
        explicit = self.explicit_closes
        capped = _cap(plan, source, known.open_count(), explicit, absent, policy)
        plan.close.extend(retries)
        if not capped:
            plan.close.extend(explicit)
            plan.close.extend(absent)
        if complete:
            # a capped incremental run keeps its cursor: the changes that said "closed" are
            # fetched again, so the withheld closes are not lost
            capped_incremental = capped and self.mode != "full"
            plan.next_cursor = self.previous_cursor if capped_incremental else self.cursor
        return plan


#: The plan's list of kept writes, by kind.
_LISTS = {"created": "create", "updated": "update", "reopened": "reopen"}


def _cap(
    plan: Plan,
    source: str,
    open_count: int,
    explicit: list[PlannedClose],
    absent: list[PlannedClose],
    policy: PlanPolicy,
) -> bool:
    """Whether the blast-radius cap withholds this run's new closes (and say why).

    The earlier runs of the rolling window count with this one: ``recent + new`` of
    the ``open + recent`` tasks open when the window began, where ``recent`` is what
    the latest of those runs closed net of what they created and reopened, at its
    largest (so a source that churns is not capped, one that shrinks by slices is).
    With ``recent = 0`` this is this run's share of the open tasks. The boundary is
    inclusive.
    """
    new = len(explicit) + len(absent)
    if not new or policy.force_close:
        return False
    cap = policy.close
    recent = policy.recent_closes
    base = open_count + recent
    total = recent + new
    if base <= cap.min_open or total < cap.max_share * base:
        return False
    plan.withheld_closes = new
    plan.capped = True
    kinds = []
    if explicit:
        kinds.append(f"{len(explicit)} reported closed by the source")
    if absent:
        kinds.append(f"{len(absent)} missing from the fetch")
    window = format_window(cap.window)
    plan.messages.append(
        f"blast-radius cap: {total} of {base} open tasks of source {source!r} would "
        f"close in the last {window} ({recent} net closed by earlier runs, {new} in "
        f"this run: {', '.join(kinds)}), {cap.max_share:.0%} or more; closed none of "
        f"this run's {new}. Check the source, then run with --force-close if this is right."
    )
    return True


def format_window(window: timedelta) -> str:
    """A rolling window as text: ``24h``, ``90m``, ``45s``."""
    seconds = int(window.total_seconds())
    for unit, size in (("h", 3600), ("m", 60)):
        if seconds % size == 0:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _duplicate(plan: Plan, source: str, eid: str) -> None:
    plan.record_errors.append(
        RecordError(source, eid, None, "duplicate external id in one fetch; kept the first")
    )


def _plan_absence(
    plan: Plan,
    source: str,
    known: KnownRecords,
    seen: set[str],
    policy: PlanPolicy,
    complete: bool,
    unidentified: int = 0,
) -> list[PlannedClose]:
    """Plan the closes of absent records: retries go to ``plan.close``; the new closes
    are returned, for the cap to decide."""
    if not complete:
        if known.active_count():
            plan.messages.append("the fetch did not complete: no task was closed")
        return []
    candidates: list[PlannedClose] = []
    retries: list[PlannedClose] = []
    debounce = policy.close.debounce
    for eid, status, times_missing in known.candidates():
        if eid in seen:
            continue
        if status == CLOSING:  # an earlier run decided; finish it
            retries.append(PlannedClose(eid, task_uid_text(source, eid)))
        elif status in OPEN_LIKE:
            if times_missing + 1 >= debounce:
                candidates.append(PlannedClose(eid, task_uid_text(source, eid)))
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
    plan.close.extend(retries)
    return candidates
