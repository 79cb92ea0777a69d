"""One sync of one source: completions, fetch, map, plan, apply, write back, report.

:func:`sync_source` is the whole run; it takes its collaborators as arguments (settings,
connector, Tasks API client, state store, plugin manager) so the runner, the CLI and a
Temporal activity all call the same code.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import datetime
from itertools import islice
from typing import Any, Concatenate, ParamSpec, Protocol, TypeVar

from pydantic import ValidationError

from fragment_core.config import SourceSettings
from fragment_core.connector import Capability, Connector, Record
from fragment_core.errors import (
    AuthenticationError,
    FragmentError,
    TransientError,
)
from fragment_core.logs import source_context
from fragment_core.plugins import notify_sync_finished, transform_task
from fragment_core.reports import RecordError, RunOutcome, SyncReport
from fragment_core.state import StateStore
from fragment_core.state.faults import is_state_failure, state_error
from fragment_core.state.store import utcnow
from fragment_core.sync.apply import ApplyResult, StreamingApplier
from fragment_core.sync.completions import detect_completions, run_write_backs
from fragment_core.sync.destination import (
    Destination,
    DestinationMismatchError,
    bind,
    check_destination,
    normalize_url,
)
from fragment_core.sync.fingerprint import Fingerprinter, mapping_key
from fragment_core.sync.known import StoredKnown
from fragment_core.sync.plan import (
    DONE,
    OPEN,
    Known,
    MappedRecord,
    Plan,
    PlannedWrite,
    Planner,
    PlanPolicy,
    Unchanged,
    map_task,
)
from fragment_core.sync.ports import TasksApi
from fragment_core.sync.rebuild import rebuild_source, rebuild_state, state_is_lost
from fragment_core.sync.verify import Verification, start_verification, verify_due

P = ParamSpec("P")
T = TypeVar("T")

log = logging.getLogger(__name__)

FULL, INCREMENTAL = "full", "incremental"


class Progress(Protocol):
    """What a progress display is told during a run (all optional to act on)."""

    def fetched(self, count: int) -> None: ...
    def planned(self, plan: Plan) -> None: ...
    def applied(self, count: int) -> None: ...


class NoProgress:
    """A progress display that shows nothing."""

    def fetched(self, count: int) -> None:
        """Records fetched so far."""

    def planned(self, plan: Plan) -> None:
        """The plan is ready."""

    def applied(self, count: int) -> None:
        """``count`` more plan items were applied."""


#: Records fetched, looked up in the state and mapped together.
CHUNK = 500


@dataclass
class Fetch:
    """A streamed fetch: yields mapped records (or :meth:`chunks` of them), remembers
    whether it ran to its end.

    Records are read a chunk at a time; each chunk's state is loaded in one query, and a
    record whose fingerprint is the one stored is yielded as :class:`Unchanged` without
    being mapped (see :mod:`fragment_core.sync.fingerprint`).
    """

    source: SourceSettings
    connector: Connector
    pm: Any
    mode: str
    cursor: str | None
    progress: Progress
    known: StoredKnown | None = None
    fingerprint: Fingerprinter | None = None
    skip: bool = True
    """Yield records whose fingerprint is unchanged as :class:`Unchanged` (else map all)."""
    complete: bool = False
    error: str | None = None
    exception: BaseException | None = None
    """What ended the fetch early, when something did (its class says whether a retry
    may help: fleet mode retries a fetch that failed on a transient error)."""
    count: int = 0
    _transforms: bool = False
    """Whether any plugin implements ``fragment_transform_task`` (found once per fetch)."""

    def __iter__(self) -> Iterator[MappedRecord | Unchanged]:
        for chunk in self.chunks():
            yield from chunk

    def chunks(self) -> Iterator[list[MappedRecord | Unchanged]]:
        """The fetch, a chunk of :data:`CHUNK` records at a time, mapped (or recognised
        unchanged). A failure of the fetch ends it: :attr:`error` says why and
        :attr:`complete` stays ``False``."""
        connector = self.connector
        self._transforms = self.pm is not None and bool(
            self.pm.hook.fragment_transform_task.get_hookimpls()
        )
        try:
            if self.mode == INCREMENTAL:
                records = iter(connector.fetch_changes(self.cursor))
            else:
                records = iter(connector.fetch_backlog())
            while chunk := list(islice(records, CHUNK)):
                self.count += len(chunk)
                mapped = list(self._chunk(chunk))
                yield mapped
                self.progress.fetched(self.count)
        except Exception as exc:
            self.error, self.exception = _error_text(exc), exc
            log.error("fetch failed", extra={"source": self.source.name, "error": self.error})
            return
        self.progress.fetched(self.count)
        self.complete = True

    def _chunk(self, chunk: list[Record]) -> Iterator[MappedRecord | Unchanged]:
        connector = self.connector
        ids = _each(connector.record_id, chunk)
        if any(rid is not None and "\x00" in rid for rid in ids):
            yield from self._nul_ids(chunk, ids)
            keep = [rid is None or "\x00" not in rid for rid in ids]
            chunk = [record for record, kept in zip(chunk, keep, strict=True) if kept]
            ids = [rid for rid, kept in zip(ids, keep, strict=True) if kept]
        cursors = _cursors(connector, chunk)
        hashes = self.fingerprint.many(chunk) if self.fingerprint else [None] * len(chunk)
        known = self.known.load([i for i in ids if i is not None]) if self.known else {}
        incremental, skip = self.mode == INCREMENTAL, self.skip
        # consecutive unchanged records go to the planner together, in fetch order
        same_ids: list[str] = []
        same_states: list[Known] = []
        same_cursors: list[str | None] = []
        for record, rid, cursor, record_hash in zip(chunk, ids, cursors, hashes, strict=True):
            still_open = not incremental or connector.is_open(record)
            if skip and still_open and record_hash is not None and rid is not None:
                state = known.get(rid)
                if state is not None and state[3] == record_hash and state[1] in SKIPPABLE:
                    same_ids.append(rid)
                    same_states.append(state)
                    same_cursors.append(cursor)
                    continue
            if same_ids:
                yield Unchanged(same_ids, same_states, same_cursors)
                same_ids, same_states, same_cursors = [], [], []
            if not still_open:
                yield MappedRecord(rid, open=False, cursor=cursor)
                continue
            yield self.map(record, rid, cursor, record_hash)
        if same_ids:
            yield Unchanged(same_ids, same_states, same_cursors)

    def _nul_ids(self, chunk: list[Record], ids: list[Any]) -> Iterator[MappedRecord]:
        """A bad record for each id holding a NUL character (no state store keeps one,
        so the record cannot be tracked: reported, not looked up, not written)."""
        for rid in ids:
            if rid is not None and "\x00" in rid:
                shown = rid.replace("\x00", "\\x00")
                error = RecordError(
                    self.source.name,
                    shown,
                    "external_id",
                    "the id contains a NUL character, which no state store can keep",
                )
                log.warning("bad record: %s", error, extra={"source": self.source.name})
                yield MappedRecord(None, error=error)

    def map(
        self,
        record: Record,
        record_id: str | None,
        cursor: str | None = None,
        record_hash: str | None = None,
    ) -> MappedRecord:
        """Map one record: to_task, the transform hooks, uid, hash; or a RecordError."""
        name = self.source.name
        connector = self.connector
        try:
            task = connector.to_task(record)
            if self._transforms:
                transformed = transform_task(self.pm, task, record, self.source)
                if transformed is None:
                    return MappedRecord(task.external_id, dropped=True, cursor=cursor)
                task = transformed
            return map_task(name, task, cursor=cursor, record_hash=record_hash)
        except FragmentError as exc:  # named here, so connectors need not pass where=
            exc.attribute(connector.where, record_id)
            error = RecordError(name, exc.record_id, exc.field, exc.message)
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(str(part) for part in first["loc"]) or None
            error = RecordError(name, record_id, where, first["msg"])
        except RecursionError:
            error = RecordError(name, record_id, None, "the record is nested too deeply")
        except (ValueError, TypeError, KeyError, OverflowError) as exc:
            error = RecordError(name, record_id, None, _error_text(exc))
        log.warning("bad record: %s", error, extra={"source": name, "record": record_id})
        return MappedRecord(error.record_id, error=error, cursor=cursor)


_Fetch = Fetch  # the name before the planner was split into phases

#: Statuses of a record that may be skipped when its fingerprint is unchanged (a task
#: the sync closed, or is closing or reopening, must be written again when it is back).
SKIPPABLE = (OPEN, DONE)


def _quiet(function: Callable[[Record], Any], record: Record) -> Any:
    """``function(record)``, or ``None`` when it raises (a record without an id, a cursor
    or a fingerprint is still mapped, and reported there if it is broken)."""
    try:
        return function(record)
    except Exception:
        return None


def _each(function: Callable[[Record], Any], records: list[Record]) -> list[Any]:
    """``[_quiet(function, r) for r in records]``, without a call per record when none
    raises (the common case)."""
    try:
        return [function(record) for record in records]
    except Exception:
        return [_quiet(function, record) for record in records]


def _cursors(connector: Connector, records: list[Record]) -> list[str | None]:
    if connector.cursor_field is None and type(connector).cursor_value is Connector.cursor_value:
        return [None] * len(records)  # no cursor: the default would say None for each
    return _each(connector.cursor_value, records)


def _state_text(exc: BaseException, store: StateStore) -> str:
    """A state failure, for the report: what failed and what to do (never the SQL)."""
    return f"the state store failed: {state_error(exc, store.url)}"


def _error_text(exc: BaseException) -> str:
    if isinstance(exc, FragmentError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"


def choose_mode(
    source: SourceSettings,
    connector: Connector,
    store: StateStore,
    *,
    full: bool = False,
    now: datetime | None = None,
) -> str:
    """``incremental`` when the connector supports it, a cursor is stored and the last
    complete full fetch is younger than ``full_every``; else ``full``."""
    if full or Capability.INCREMENTAL not in connector.capabilities():
        return FULL
    state = store.source_state(source.name)
    if state.cursor is None or state.last_complete_fetch is None:
        return FULL
    now = now or utcnow()
    return INCREMENTAL if now - state.last_complete_fetch < source.full_every else FULL


def plan_source(
    source: SourceSettings,
    connector: Connector,
    store: StateStore,
    *,
    pm: Any = None,
    full: bool = False,
    force_close: bool = False,
    remap: bool = False,
    progress: Progress | None = None,
    on_write: Callable[[str, PlannedWrite], None] | None = None,
    on_fingerprint: Callable[[str, str], None] | None = None,
    verification: Verification | None = None,
) -> tuple[Plan, Fetch]:
    """Fetch and map the source's records and plan against the state. Writes nothing
    itself; ``on_write`` and ``on_fingerprint`` (see :func:`plan_sync`) are told each
    write and record hash as they are planned. ``remap`` maps every record, even those
    whose fingerprint is unchanged. ``verification`` (a verifying run, see
    :mod:`fragment_core.sync.verify`) makes it a full fetch that maps every record and
    writes again the tasks that drifted in the Tasks API."""
    progress = progress or NoProgress()
    mode = choose_mode(source, connector, store, full=full or verification is not None)
    state = store.source_state(source.name)
    known = StoredKnown(store, source.name)
    fingerprint = Fingerprinter(connector, mapping_key(source, connector, pm))
    fetch = Fetch(source, connector, pm, mode, state.cursor, progress, known, fingerprint)
    fetch.skip = source.skip_unchanged and not remap and verification is None
    recent = 0 if force_close else store.closes_since(source.name, utcnow() - source.close.window)
    policy = PlanPolicy(
        close=source.close, reopen=source.reopen, force_close=force_close, recent_closes=recent
    )
    planner = Planner(
        source.name,
        known if verification is None else verification.known(known),
        mode=mode,
        policy=policy,
        previous_cursor=state.cursor,
        write_backs_due=len(store.due_write_backs(source.name)),
        on_write=on_write,
        on_fingerprint=on_fingerprint,
    )
    for chunk in fetch.chunks():
        planner.feed(chunk if verification is None else verification.watch(chunk))
    plan = planner.finish(fetch.complete)
    if fetch.error:
        plan.messages.insert(0, f"fetch failed: {fetch.error}")
    progress.planned(plan)
    return plan, fetch


def sync_source(
    source: SourceSettings,
    connector: Connector,
    client: TasksApi,
    store: StateStore,
    *,
    wait: bool | float = False,
    **options: Any,
) -> SyncReport:
    """Run one sync of ``source`` holding its lease (see :meth:`StateStore.lease`): one
    run per source across processes and machines. Raises
    :class:`~fragment_core.state.LeaseHeldError` when another run holds it (``wait``
    waits instead, until ``stop`` is set). A run whose lease was lost (its heartbeat
    failed past the TTL and another run took it) stops after the chunk in flight. A dry
    run writes nothing and takes no lease. ``options`` are :func:`_sync_source`'s.
    """
    with source_context(source.name):
        if options.get("dry_run"):
            return _sync_source(source, connector, client, store, **options)
        stop = options["stop"] = options.get("stop") or threading.Event()
        with store.lease(source.name, wait=wait, on_lost=stop.set, cancel=stop):
            return _sync_source(source, connector, client, store, **options)


def _sync_source(
    source: SourceSettings,
    connector: Connector,
    client: TasksApi,
    store: StateStore,
    *,
    pm: Any = None,
    dry_run: bool = False,
    full: bool = False,
    force_close: bool = False,
    remap: bool = False,
    rebind: bool = False,
    verify: bool = False,
    batch_size: int = 100,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
) -> SyncReport:
    """Run one sync of ``source`` and return its report (stored in the run history).

    The phases, in order: :func:`start_run` (verify the state, rebuild it if lost, record
    operator completions), :func:`fetch_and_apply` (fetch, plan and write chunk by chunk,
    then the closes and the cursor), :func:`write_back` (the due write-backs) and
    :func:`finish_run` (outcome, run history, hooks). Fleet mode calls the same phases
    from Temporal activities.

    Never raises for a failure of the source or the Tasks API: the report's ``outcome``
    says how the run ended and ``messages`` why. A failure of the state database part-way
    (a full disk...) fails the run the same way, its counts saying what reached the Tasks
    API. Raises :class:`~fragment_core.state.faults.StateError` when the state cannot be
    used at all (its file deleted or replaced under a running process).
    ``dry_run`` plans and writes nothing. ``remap`` maps every record, even those whose
    raw form is unchanged. Raises
    :class:`~fragment_core.sync.destination.DestinationMismatchError` (nothing ran) when
    the source's state belongs to another Tasks API, unless ``rebind``: then the state
    is rebuilt from this one first. ``verify`` makes it a verifying run (see
    :mod:`fragment_core.sync.verify`), as does the source's ``verify_every``.
    """
    run = start_run(
        source,
        connector,
        client,
        store,
        pm=pm,
        dry_run=dry_run,
        force_close=force_close,
        rebind=rebind,
    )
    fetch_and_apply(
        run,
        full=full,
        force_close=force_close,
        remap=remap,
        verify=verify,
        batch_size=batch_size,
        stop=stop,
        progress=progress,
    )
    write_back(run, stop=stop)
    return finish_run(run)


@dataclass
class SyncRun:
    """One run of one source between its phases: the report being built and what the
    phases learned. Small (counts, flags, messages): fleet mode keeps it in the state
    store between activities (:meth:`snapshot` / :meth:`restore`)."""

    source: SourceSettings
    connector: Connector
    client: TasksApi
    store: StateStore
    report: SyncReport
    pm: Any = None
    blocked: bool = False
    """The Tasks API cannot be used safely: plan and write nothing."""
    state_broken: bool = False
    """The state database failed: stop writing, report what was done."""
    failed: bool = False
    capped: bool = False
    interrupted: bool = False
    fetched_done: bool = False
    """:func:`fetch_and_apply` ran (a fleet retry of a later phase does not repeat it)."""
    completions_failed: bool = False
    """The operator completions could not be listed (the Tasks API is unreachable)."""
    source_unreachable: bool = False
    """The fetch failed on a transient or authentication error: no write-back is tried."""
    fetch_error: BaseException | None = field(default=None, repr=False)
    """What ended the fetch early (not kept by :meth:`snapshot`)."""

    @property
    def dry_run(self) -> bool:
        """Whether this run writes nothing."""
        return self.report.dry_run

    @contextlib.contextmanager
    def counting_requests(self) -> Iterator[None]:
        """Add the Tasks API requests sent within the block to the report: only this
        run's, through the client's ``tally`` (runs sharing one client, as in a fleet
        worker, do not count each other's); a client without one, by ``requests_made``."""
        tally = getattr(self.client, "tally", None)
        if tally is None:
            before = getattr(self.client, "requests_made", 0)
            try:
                yield
            finally:
                self.report.requests += getattr(self.client, "requests_made", 0) - before
            return
        with tally() as counted:
            try:
                yield
            finally:
                self.report.requests += counted.count

    def snapshot(self) -> dict[str, Any]:
        """What :meth:`restore` needs, JSON-ready (no record, no secret)."""
        return {"report": self.report.to_dict(), **{f: getattr(self, f) for f in _RUN_FLAGS}}

    @classmethod
    def restore(
        cls,
        data: dict[str, Any],
        source: SourceSettings,
        connector: Connector,
        client: TasksApi,
        store: StateStore,
        pm: Any = None,
    ) -> SyncRun:
        """A run from its :meth:`snapshot`, with live collaborators."""
        run = cls(source, connector, client, store, SyncReport.from_dict(data["report"]), pm=pm)
        for name in _RUN_FLAGS:
            setattr(run, name, bool(data.get(name)))
        return run


#: What :meth:`SyncRun.snapshot` keeps of a run besides its report.
_RUN_FLAGS = (
    "blocked",
    "state_broken",
    "failed",
    "capped",
    "interrupted",
    "fetched_done",
    "completions_failed",
    "source_unreachable",
)


def start_run(
    source: SourceSettings,
    connector: Connector,
    client: TasksApi,
    store: StateStore,
    *,
    pm: Any = None,
    dry_run: bool = False,
    force_close: bool = False,
    rebind: bool = False,
) -> SyncRun:
    """The first phase: verify the state, adopt the source's tasks when the state lost
    them, check (or record) the Tasks API the state belongs to, and record the operator
    completions (their write-back intents) since the last run. A dry run only verifies.

    Raises :class:`~fragment_core.sync.destination.DestinationMismatchError` when the
    source's state belongs to another Tasks API (nothing ran), unless ``rebind``: then
    the state is rebuilt from the configured one (see :func:`_check_state`)."""
    store.verify()
    report = SyncReport(
        source=source.name,
        connector=connector.name,
        dry_run=dry_run,
        started_at=utcnow(),
        forced_close=force_close,
    )
    run = SyncRun(source, connector, client, store, report, pm=pm)
    if dry_run:
        _warn_of_another_destination(source.name, client, store, report)
        return run
    with run.counting_requests():
        run.blocked = _check_state(source.name, client, store, report, rebind=rebind)
        if not run.blocked:
            record_completions(run)
    return run


def record_completions(run: SyncRun) -> int:
    """List the tasks operators completed and record their write-backs (see
    :func:`~fragment_core.sync.completions.detect_completions`); a failure is reported
    (and blocks the run when the Tasks API refused the credentials or the state failed)."""
    name = run.source.name
    try:
        new = detect_completions(name, run.connector, run.client, run.store)
    except AuthenticationError as exc:
        run.blocked = True
        run.report.messages.append(f"the Tasks API refused the credentials: {_error_text(exc)}")
        return 0
    except Exception as exc:
        if is_state_failure(exc):
            run.blocked = run.state_broken = True
            run.report.messages.append(_state_text(exc, run.store))
        else:
            run.completions_failed = True
            run.report.messages.append(f"could not list completed tasks: {_error_text(exc)}")
            log.error("could not list completed tasks: %s", _error_text(exc))
        return 0
    if new:
        log.info("operator completions found", extra={"source": name, "count": new})
    return new


def _counting_requests(
    phase: Callable[Concatenate[SyncRun, P], T],
) -> Callable[Concatenate[SyncRun, P], T]:
    """A phase whose Tasks API requests its run's report counts."""

    @functools.wraps(phase)
    def counted(run: SyncRun, /, *args: P.args, **kwargs: P.kwargs) -> T:
        with run.counting_requests():
            return phase(run, *args, **kwargs)

    return counted


@_counting_requests
def fetch_and_apply(
    run: SyncRun,
    *,
    full: bool = False,
    force_close: bool = False,
    remap: bool = False,
    verify: bool = False,
    batch_size: int = 100,
    stop: threading.Event | None = None,
    progress: Progress | None = None,
) -> Plan:
    """The second phase: fetch the records chunk by chunk, plan each chunk and send its
    writes while the fetch goes on, then the closes; commit the cursor once every write
    it covers is committed. Returns the plan (its counts; its writes were streamed).
    ``progress`` is told each chunk fetched and applied (fleet mode heartbeats there).
    ``verify`` (or the source's ``verify_every`` being due) first lists the source's
    tasks and repairs those deleted or changed in the Tasks API (see
    :mod:`fragment_core.sync.verify`)."""
    progress = progress or NoProgress()
    run.fetched_done = True
    verification = _start_verification(run, verify)
    # Writes start while the fetch goes on: each full chunk of creates, updates and
    # reopens is sent as soon as it is planned; the rest and the closes after the fetch.
    applier = None
    if not run.dry_run and not run.blocked:
        applier = StreamingApplier(
            run.source.name,
            run.client,
            run.store,
            batch_size=batch_size,
            stop=stop,
            progress=progress.applied,
        )
    options = {"full": full, "force_close": force_close, "remap": remap}
    plan = _plan_streaming(run, applier, verification, progress, **options)
    _report_plan(run, plan, verification)
    if run.dry_run:
        report = run.report
        report.created, report.updated = plan.planned["created"], plan.planned["updated"]
        report.reopened, report.closed = plan.planned["reopened"], len(plan.close)
        return plan
    _report_applied(run, _finish_applying(run, applier, plan))
    if not run.interrupted and not run.failed:
        _commit(run, plan, verified=verification is not None)
    return plan


def _plan_streaming(
    run: SyncRun,
    applier: StreamingApplier | None,
    verification: Verification | None,
    progress: Progress,
    **options: bool,
) -> Plan:
    """Plan the source's records, each chunk's writes handed to ``applier`` as it is
    planned; a state failure ends the plan incomplete (noted in the report)."""
    if run.blocked:
        return Plan(source=run.source.name, complete=False)
    try:
        plan, fetch = plan_source(
            run.source,
            run.connector,
            run.store,
            pm=run.pm,
            progress=progress,
            on_write=applier.on_write if applier is not None else None,
            on_fingerprint=applier.on_fingerprint if applier is not None else None,
            verification=verification,
            **options,
        )
    except BaseException as exc:
        if applier is not None:
            applier.abort()
        if not isinstance(exc, Exception) or not is_state_failure(exc):
            raise
        run.state_broken = True
        run.report.messages.append(_state_text(exc, run.store))
        return Plan(source=run.source.name, complete=False)
    run.fetch_error = fetch.exception
    run.source_unreachable = isinstance(fetch.exception, TransientError | AuthenticationError)
    return plan


def _report_plan(run: SyncRun, plan: Plan, verification: Verification | None) -> None:
    """The plan's counts and messages into the run's report and flags."""
    report = run.report
    report.mode = plan.mode
    report.fetched = plan.fetched
    report.unchanged = plan.unchanged
    report.not_mapped = plan.skipped
    report.dropped = plan.dropped
    report.withheld_closes = plan.withheld_closes
    report.record_errors.extend(plan.record_errors)
    if verification is not None and not run.blocked:
        report.verified = verification.listed
        report.recreated, report.rewritten = verification.recreated, verification.rewritten
        report.messages.append(verification.message())
    report.messages.extend(plan.messages)
    run.capped = plan.capped
    run.failed = run.failed or not plan.complete


def _finish_applying(run: SyncRun, applier: StreamingApplier | None, plan: Plan) -> ApplyResult:
    """Send the plan's last writes and closes; what reached the Tasks API (all of it, or
    what did before a failure, which fails the run)."""
    applied = ApplyResult()
    try:
        if applier is not None and not run.state_broken:
            applied = applier.finish(plan)
    except Exception as exc:
        run.failed = True
        if is_state_failure(exc):
            run.state_broken = True
            run.report.messages.append(_state_text(exc, run.store))
        else:
            run.report.messages.append(f"writing to the Tasks API failed: {_error_text(exc)}")
            log.error("writing to the Tasks API failed: %s", _error_text(exc))
    if applier is not None and (run.failed or run.state_broken):
        applied = applier.result  # what reached the Tasks API before the failure
    return applied


def _report_applied(run: SyncRun, applied: ApplyResult) -> None:
    """What was written into the run's report and flags."""
    report = run.report
    report.created, report.updated = applied.created, applied.updated
    report.reopened, report.closed = applied.reopened, applied.closed
    report.record_errors.extend(applied.errors)
    run.interrupted = applied.interrupted
    if applied.interrupted:
        report.messages.append("interrupted: stopped after the chunk in flight; state saved")


def _commit(run: SyncRun, plan: Plan, *, verified: bool) -> None:
    """Commit the source's cursor and fetch state; a state failure fails the run."""
    try:
        _commit_source_state(run.store, run.source.name, plan, verified=verified)
    except Exception as exc:
        if not is_state_failure(exc):
            raise
        run.failed = run.state_broken = True
        run.report.messages.append(_state_text(exc, run.store))


def write_back(
    run: SyncRun, *, stop: threading.Event | None = None, limit: int | None = None
) -> bool:
    """The third phase: run the source's due write-backs (at most ``limit``; each claimed
    in the outbox first, so no two processes call one). Returns whether more may be due
    (only when ``limit`` stopped it). Nothing runs after an interrupted or broken run."""
    if run.dry_run or run.interrupted or run.state_broken:
        return False
    report = run.report
    if run.source_unreachable:
        due = len(run.store.due_write_backs(run.source.name))
        if due:
            report.messages.append(
                f"{_plural(due, 'write-back')} not attempted: the source could not be "
                "reached; tried on the next run"
            )
        return False
    try:
        outcomes = run_write_backs(
            run.source.name, run.connector, run.store, run.pm, stop=stop, limit=limit
        )
    except Exception as exc:
        if not is_state_failure(exc):
            raise
        run.failed = run.state_broken = True
        report.messages.append(_state_text(exc, run.store))
        return False
    report.written_back += sum(o.ok for o in outcomes)
    report.write_back_failed += sum(not o.ok for o in outcomes)
    for o in outcomes:
        if not o.ok:
            report.messages.append(
                f"write-back of record {o.external_id!r} failed "
                f"(attempt {o.attempts}, retried on later runs): {o.message}"
            )
    if outcomes and outcomes[-1].transient:
        due = len(run.store.due_write_backs(run.source.name))  # the failed one waits
        if due > 0:
            report.messages.append(
                f"{_plural(due, 'more write-back')} not attempted after that failure; "
                "tried on the next run"
            )
        return False
    return limit is not None and len(outcomes) >= limit


def finish_run(run: SyncRun, *, save: bool = True) -> SyncReport:
    """The last phase: the outcome, the run history (``save``; fleet mode saves into
    the row it kept), the ``fragment_sync_finished`` hooks and the log line."""
    report = run.report
    failed = run.failed or run.state_broken or run.completions_failed
    report.outcome = _outcome(report, run.capped, failed=failed, interrupted=run.interrupted)
    report.finished_at = utcnow()
    if not report.dry_run and save:
        try:
            run.store.save_run(report)
        except Exception as exc:
            if not is_state_failure(exc):
                raise
            report.outcome = RunOutcome.FAILED
            if not run.state_broken:
                report.messages.append(_state_text(exc, run.store))
            report.messages.append("this run could not be saved in the run history")
    if run.pm is not None:
        for message in notify_sync_finished(run.pm, report):
            report.messages.append(message)
    log.info(
        "sync finished",
        extra={"source": report.source, "outcome": str(report.outcome), "counts": _counts(report)},
    )
    return report


def _start_verification(run: SyncRun, verify: bool) -> Verification | None:
    """The verification of a verifying run (asked for, or due by ``verify_every``), or
    ``None``; a listing that fails blocks the run (it writes nothing)."""
    every = getattr(run.source, "verify_every", None)
    name = run.source.name
    if run.blocked:
        return None
    if not verify and (
        run.dry_run or not verify_due(every, run.store.source_state(name), utcnow())
    ):
        return None
    try:
        return start_verification(name, run.client, run.store, dry_run=run.dry_run)
    except Exception as exc:
        run.blocked = True
        if is_state_failure(exc):
            run.state_broken = True
            run.report.messages.append(_state_text(exc, run.store))
        elif isinstance(exc, AuthenticationError):
            run.report.messages.append(f"the Tasks API refused the credentials: {_error_text(exc)}")
        else:
            run.report.messages.append(
                f"could not list the source's tasks to verify them: {_error_text(exc)}"
            )
        return None


def _warn_of_another_destination(
    name: str, client: TasksApi, store: StateStore, report: SyncReport
) -> None:
    """A dry run asks the Tasks API nothing (it never did): it only warns when the url the
    state was bound to is not the configured one."""
    recorded = Destination.recorded(store.source_state(name))
    url = normalize_url(client.url)
    if recorded is not None and recorded.url != url:
        report.messages.append(
            f"the state of this source belongs to the Tasks API at {recorded.describe()}, "
            f"not {url}: a real run is refused unless --rebind"
        )


def _check_state(
    name: str, client: TasksApi, store: StateStore, report: SyncReport, *, rebind: bool
) -> bool:
    """Before anything else: rebuild a lost state, and check (or record) which Tasks API
    the source's state belongs to (see :mod:`fragment_core.sync.destination`). ``True``
    when the run must stop; raises :class:`DestinationMismatchError` when the state
    belongs to another Tasks API and ``rebind`` is not set."""
    if state_is_lost(store, name):
        if _rebuild_if_lost(name, client, store, report):
            return True
        return _guarded(report, store, lambda: bind(store, name, Destination.of(client)))
    try:
        check_destination(name, client, store)
    except DestinationMismatchError:
        if not rebind:
            raise
        return _guarded(
            report,
            store,
            lambda: report.messages.append(rebuild_source(name, client, store).message()),
        )
    except Exception as exc:
        return _failed_to_ask(report, store, exc)
    return False


def _guarded(report: SyncReport, store: StateStore, action: Callable[[], object]) -> bool:
    """Run ``action`` (it asks the Tasks API); ``True`` (stop the run) when it failed."""
    try:
        action()
    except Exception as exc:
        return _failed_to_ask(report, store, exc)
    return False


def _failed_to_ask(report: SyncReport, store: StateStore, exc: Exception) -> bool:
    """Say why the state could not be checked; ``True``: the run stops."""
    if is_state_failure(exc):
        report.messages.append(_state_text(exc, store))
    elif isinstance(exc, AuthenticationError):
        report.messages.append(f"the Tasks API refused the credentials: {_error_text(exc)}")
    else:
        report.messages.append(
            f"could not ask the Tasks API which account it serves: {_error_text(exc)}"
        )
    return True


def _rebuild_if_lost(name: str, client: TasksApi, store: StateStore, report: SyncReport) -> bool:
    """Adopt the source's tasks when the state knows nothing of it (see
    :mod:`fragment_core.sync.rebuild`); ``True`` when that failed and the run must stop."""
    if not state_is_lost(store, name):
        return False
    try:
        rebuilt = rebuild_state(name, client, store)
    except Exception as exc:
        report.messages.append(
            "the state holds nothing of this source and it could not be rebuilt from the "
            f"Tasks API ({_error_text(exc)}): nothing was written; the next run tries again"
        )
        return True
    if rebuilt.adopted:
        report.messages.append(rebuilt.message())
    return False


def _commit_source_state(store: StateStore, name: str, plan: Plan, *, verified: bool) -> None:
    """Cursor and last complete fetch: only after the writes they cover are committed."""
    changes: dict[str, Any] = {}
    if plan.complete:
        if verified:
            changes["last_verified"] = utcnow()
        if plan.next_cursor is not None:
            changes["cursor"] = plan.next_cursor
        if plan.mode == FULL:
            changes["last_complete_fetch"] = utcnow()
            changes["complete_runs"] = store.source_state(name).complete_runs + 1
    if changes:
        store.update_source_state(name, **changes)


def _outcome(report: SyncReport, capped: bool, *, failed: bool, interrupted: bool) -> RunOutcome:
    if report.dry_run:
        return RunOutcome.DRY_RUN
    if failed:
        return RunOutcome.FAILED
    if capped:
        return RunOutcome.CAPPED
    if interrupted or report.record_errors or report.write_back_failed:
        return RunOutcome.PARTIAL
    return RunOutcome.OK


def _plural(count: int, noun: str) -> str:
    return f"{count} {noun}" + ("" if count == 1 else "s")


def _counts(report: SyncReport) -> dict[str, int]:
    return {
        "created": report.created,
        "updated": report.updated,
        "closed": report.closed,
        "reopened": report.reopened,
        "unchanged": report.unchanged,
        "failed_records": report.failed_records,
        "written_back": report.written_back,
        "requests": report.requests,
    }
