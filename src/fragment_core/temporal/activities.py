"""The activities of a fleet run: the engine's phases, called as they are by ``fragment sync``.

Each activity takes the source's lease under the run's owner id (the workflow's first
run id), so every activity of one run, on any worker, holds the same lease, and any
other run of the source is refused; it keeps the run's report in the state's run history
(a row whose outcome is ``running``) between activities, and hands the workflow only
counts and cursors. A retried activity starts from the row as the last finished
activity left it: its writes are idempotent (PUT by uid, the outbox claims), so a worker
lost mid-activity costs a re-fetch, never a duplicate.
"""

from __future__ import annotations

import contextvars
import functools
import logging
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import timedelta
from typing import Any, TypeVar

from temporalio import activity
from temporalio.exceptions import ApplicationError

from fragment_core.config import Settings, SourceSettings
from fragment_core.connector import Connector
from fragment_core.errors import (
    AuthenticationError,
    ConfigurationError,
    PluginError,
    RateLimitedError,
    TransientError,
)
from fragment_core.redaction import redact
from fragment_core.reports import RunOutcome
from fragment_core.state import StateStore
from fragment_core.state.faults import StateError
from fragment_core.state.lease import LeaseHeldError
from fragment_core.sync.destination import DestinationMismatchError
from fragment_core.sync.engine import (
    SyncRun,
    fetch_and_apply,
    finish_run,
    start_run,
    write_back,
)
from fragment_core.sync.plan import Plan
from fragment_core.sync.ports import TasksApi
from fragment_core.temporal.types import (
    MESSAGES,
    Applied,
    RunRef,
    RunSummary,
    Started,
    WroteBack,
)

log = logging.getLogger(__name__)

#: Attempts of the fetch-and-apply activity whose fetch failed on a transient error:
#: before the last one it is retried (after the vendor's reset for a rate limit).
FETCH_ATTEMPTS = 3

F = TypeVar("F", bound=Callable[..., Any])


def to_application_error(exc: BaseException) -> ApplicationError:
    """Our error classes as Temporal sees them: configuration, authentication, plugin,
    lease and state errors are not retried; a rate limit is retried after the vendor's
    reset; the rest (transient errors, a database that is away) back off and retry."""
    if isinstance(exc, ApplicationError):
        return exc
    message = redact(str(exc)) or type(exc).__name__
    name = type(exc).__name__
    if isinstance(exc, RateLimitedError):
        delay = timedelta(seconds=exc.retry_after) if exc.retry_after else None
        return ApplicationError(message, type="RateLimitedError", next_retry_delay=delay)
    permanent = (
        ConfigurationError,
        AuthenticationError,
        PluginError,
        LeaseHeldError,
        StateError,
        DestinationMismatchError,
    )
    if isinstance(exc, permanent):
        return ApplicationError(message, type=name, non_retryable=True)
    if isinstance(exc, TransientError):
        return ApplicationError(message, type="TransientError")
    return ApplicationError(message, type=name)


def _translated(function: F) -> F:
    """Raise our errors as :class:`ApplicationError` (see :func:`to_application_error`)."""

    @functools.wraps(function)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        try:
            return function(*args, **kwargs)
        except ApplicationError:
            raise
        except Exception as exc:
            kind = type(exc).__name__
            log.warning("activity failed: %s", redact(str(exc)), extra={"error": kind})
            raise to_application_error(exc) from None

    return wrapper  # type: ignore[return-value]


class _Beat:
    """Heartbeats the activity from a thread with the latest progress (a lost worker is
    noticed after the heartbeat timeout), and sets ``stop`` when Temporal cancels the
    activity or the worker shuts down (the engine then stops after the chunk in flight)."""

    def __init__(self, stop: threading.Event) -> None:
        self.stop = stop
        self.details = {"fetched": 0, "applied": 0}
        info = activity.info()
        timeout = info.heartbeat_timeout or timedelta(seconds=30)
        self.interval = max(timeout.total_seconds() / 4, 0.2)
        self._done = threading.Event()
        context = contextvars.copy_context()
        self._thread = threading.Thread(target=context.run, args=(self._loop,), daemon=True)

    def fetched(self, count: int) -> None:
        """Records fetched so far."""
        self.details["fetched"] = count

    def planned(self, plan: Plan) -> None:
        """The plan is ready."""

    def applied(self, count: int) -> None:
        """``count`` more plan items were applied."""
        self.details["applied"] += count

    def _loop(self) -> None:
        while not self._done.wait(self.interval):
            try:
                activity.heartbeat(dict(self.details))
            except Exception:  # the worker is going away; the stop below follows
                log.debug("heartbeat failed", exc_info=True)
            if activity.is_cancelled() or activity.is_worker_shutdown():
                self.stop.set()

    def __enter__(self) -> _Beat:
        activity.heartbeat(dict(self.details))
        self._thread.start()
        return self

    def __exit__(self, *_exc: object) -> None:
        self._done.set()
        self._thread.join(timeout=5)


class FleetActivities:
    """The activities one worker runs, sharing its state store, its Tasks API client
    (its rate budget shared through the store with every worker) and one connector per
    source."""

    def __init__(
        self,
        settings: Settings,
        *,
        registry: Any,
        pm: Any = None,
        store: StateStore | None = None,
        client: TasksApi | None = None,
    ) -> None:
        from fragment_core.runner import open_tasks_client

        self.settings = settings
        self.registry = registry
        self.pm = pm
        self.lease_ttl = settings.fleet.lease_ttl or settings.state.lease_ttl
        self.store = store or StateStore(settings.state.url, lease_ttl=self.lease_ttl)
        self.client: TasksApi = (
            client if client is not None else open_tasks_client(settings, self.store)
        )
        self._connectors: dict[str, Connector] = {}
        self._lock = threading.Lock()

    def all(self) -> list[Callable[..., Any]]:
        """Every activity, for the worker."""
        return [self.begin, self.fetch_and_apply, self.write_backs, self.finish, self.abandon]

    def close(self) -> None:
        """Close the connectors, the client and the store."""
        for connector in self._connectors.values():
            connector.close()
        close = getattr(self.client, "close", None)
        if close is not None:
            close()
        self.store.close()

    # -- helpers ------------------------------------------------------------------------------
    def _source(self, name: str) -> SourceSettings:
        try:
            return self.settings.source(name)
        except KeyError:
            where = str(self.settings.path or "")
            raise ConfigurationError(
                f"source {name!r} is not in this worker's configuration", where=where
            ) from None

    def _connector(self, source: SourceSettings) -> Connector:
        with self._lock:
            connector = self._connectors.get(source.name)
            if connector is None:
                connector = self._connectors[source.name] = self.registry.build(source)
            return connector

    @contextmanager
    def _held(self, ref: RunRef, stop: threading.Event | None = None) -> Iterator[SyncRun]:
        """The run of ``ref``, restored from its row, with the source's lease held."""
        source = self._source(ref.source)
        connector = self._connector(source)
        on_lost = stop.set if stop is not None else None
        with self.store.lease(
            source.name, run_id=ref.owner, keep=True, ttl=self.lease_ttl, on_lost=on_lost
        ):
            data = self.store.run_row(ref.run_row)
            if data is None:
                raise StateError(
                    f"the run history has no row {ref.run_row} for source {source.name!r}",
                    url=self.store.url,
                    hint="the state store was replaced while the run went on",
                )
            yield SyncRun.restore(
                _restore_data(data), source, connector, self.client, self.store, self.pm
            )

    def _save(self, ref: RunRef, run: SyncRun, outcome: str = "running") -> None:
        self.store.update_run_row(ref.run_row, _row_data(run, ref.owner), outcome=outcome)

    # -- activities ---------------------------------------------------------------------------
    @activity.defn(name="fragment.begin")
    @_translated
    def begin(self, ref: RunRef) -> Started:
        """Take the lease, record operator completions, open the run's row."""
        source = self._source(ref.source)
        connector = self._connector(source)
        try:
            with self.store.lease(source.name, run_id=ref.owner, keep=True, ttl=self.lease_ttl):
                mine = self._abandon_others(source.name, ref.owner)
                if mine is not None:  # this activity ran before, its answer was lost
                    return Started(run_row=mine)
                run = start_run(
                    source,
                    connector,
                    self.client,
                    self.store,
                    pm=self.pm,
                    force_close=ref.force_close,
                    rebind=ref.rebind,
                )
                row = self.store.start_run_row(source.name, _row_data(run, ref.owner))
                return Started(run_row=row)
        except LeaseHeldError as exc:
            log.warning("%s; fleet run skipped", exc, extra={"source": source.name})
            return Started(busy=str(exc))

    def _abandon_others(self, source: str, owner: str) -> int | None:
        """Mark the source's ``running`` rows of other owners failed (their runs are
        gone: this run holds the lease); return this owner's row, if it has one."""
        mine = None
        for row_id, data in self.store.running_rows(source):
            if (data.get("fleet") or {}).get("owner") == owner:
                mine = row_id
                continue
            data["messages"] = [
                *data.get("messages", []),
                "this fleet run ended without finishing (its workflow was terminated or lost)",
            ]
            self.store.update_run_row(row_id, data, outcome=str(RunOutcome.FAILED))
        return mine

    @activity.defn(name="fragment.fetch_and_apply")
    @_translated
    def fetch_and_apply(self, ref: RunRef) -> Applied:
        """Fetch, plan and apply chunk by chunk (heartbeating), then the closes."""
        stop = threading.Event()
        with self._held(ref, stop) as run:
            if not run.fetched_done:
                with _Beat(stop) as beat:
                    plan = fetch_and_apply(
                        run,
                        full=ref.full,
                        force_close=ref.force_close,
                        remap=ref.remap,
                        verify=ref.verify,
                        batch_size=self.settings.tasks_api.batch_size,
                        stop=stop,
                        progress=beat,
                    )
                if stop.is_set() and (activity.is_worker_shutdown() or activity.is_cancelled()):
                    raise ApplicationError("the worker is shutting down: retried on another")
                error = run.fetch_error
                if isinstance(error, TransientError) and activity.info().attempt < FETCH_ATTEMPTS:
                    raise to_application_error(error)
                self._save(ref, run)
                cursor = plan.next_cursor
            else:
                cursor = self.store.source_state(ref.source).cursor
            report = run.report
            return Applied(
                fetched=report.fetched,
                created=report.created,
                updated=report.updated,
                closed=report.closed,
                reopened=report.reopened,
                complete=not run.failed,
                cursor=cursor,
            )

    @activity.defn(name="fragment.write_backs")
    @_translated
    def write_backs(self, ref: RunRef) -> WroteBack:
        """Run up to ``ref.write_back_batch`` due write-backs."""
        stop = threading.Event()
        with self._held(ref, stop) as run, _Beat(stop):
            before = (run.report.written_back, run.report.write_back_failed)
            more = write_back(run, stop=stop, limit=ref.write_back_batch)
            self._save(ref, run)
            if stop.is_set() and (activity.is_worker_shutdown() or activity.is_cancelled()):
                raise ApplicationError("the worker is shutting down: retried on another")
            return WroteBack(
                written_back=run.report.written_back - before[0],
                failed=run.report.write_back_failed - before[1],
                more=more and not stop.is_set(),
            )

    @activity.defn(name="fragment.finish")
    @_translated
    def finish(self, ref: RunRef) -> RunSummary:
        """The outcome, the run history, the hooks; give the lease back."""
        with self._held(ref) as run:
            report = finish_run(run, save=False)
            self._save(ref, run, outcome=str(report.outcome))
        self.store.release_lease(ref.source, ref.owner)
        return _summary(ref, run)

    @activity.defn(name="fragment.abandon")
    @_translated
    def abandon(self, ref: RunRef, reason: str) -> RunSummary:
        """A run that cannot go on: its row says why, its lease is given back."""
        data = self.store.run_row(ref.run_row) if ref.run_row else None
        outcome = str(RunOutcome.FAILED)
        if data is not None:
            data["messages"] = [*data.get("messages", []), f"fleet run failed: {reason}"]
            self.store.update_run_row(ref.run_row, data, outcome=outcome)
        self.store.release_lease(ref.source, ref.owner)
        return RunSummary(ref.source, outcome, ref.run_row or None, messages=[reason])


def _row_data(run: SyncRun, owner: str) -> dict[str, Any]:
    snapshot = run.snapshot()
    report = snapshot.pop("report")
    info = activity.info()
    report["fleet"] = {
        "owner": owner,
        "workflow_id": info.workflow_id,
        "workflow_run_id": info.workflow_run_id,
        "flags": snapshot,
    }
    return report


def _restore_data(data: dict[str, Any]) -> dict[str, Any]:
    fleet = data.get("fleet") or {}
    report = {k: v for k, v in data.items() if k != "fleet"}
    return {"report": report, **(fleet.get("flags") or {})}


def _summary(ref: RunRef, run: SyncRun) -> RunSummary:
    report = run.report
    counts = {
        "fetched": report.fetched,
        "created": report.created,
        "updated": report.updated,
        "closed": report.closed,
        "reopened": report.reopened,
        "unchanged": report.unchanged,
        "failed_records": report.failed_records,
        "written_back": report.written_back,
        "write_back_failed": report.write_back_failed,
        "requests": report.requests,
    }
    return RunSummary(
        source=ref.source,
        outcome=str(report.outcome),
        run_row=ref.run_row,
        counts=counts,
        messages=[redact(m) for m in report.messages[:MESSAGES]],
    )


__all__ = ["FleetActivities", "to_application_error"]
