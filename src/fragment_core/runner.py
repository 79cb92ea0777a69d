"""``fragment run``: every source at its interval, in one process.

Each enabled source gets a thread that runs :func:`~fragment_core.sync.engine.sync_source`
every ``every`` (default 5 minutes) with jitter, so sources run concurrently but one
source never runs twice at once. The engine fetches incrementally between full fetches
(``full_every``) for connectors that support it. Setting the stop event (SIGINT/SIGTERM
in the CLI) lets each run finish the chunk in flight, save its state and return.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable
from typing import Any

from fragment_core.config import Settings, SourceSettings
from fragment_core.connector import Connector
from fragment_core.reports import RunOutcome, SyncReport
from fragment_core.state import StateStore
from fragment_core.state.faults import StateError
from fragment_core.state.lease import LeaseHeldError
from fragment_core.sync.destination import DestinationMismatchError
from fragment_core.sync.engine import sync_source

log = logging.getLogger(__name__)

#: Each wait is the interval times a random factor in ``1 ± JITTER``.
JITTER = 0.1


def open_tasks_client(settings: Settings, store: StateStore | None = None) -> Any:
    """A Tasks API client configured from ``[tasks_api]``; with a ``store``, its rate
    budget is shared by every process using that store."""
    from fragment_core.tasks_api import TasksClient

    return TasksClient.from_settings(settings.tasks_api, store=store)


class Runner:
    """Schedules every enabled source of ``settings`` until ``stop`` is set.

    One Tasks API client and one state store serve all sources; the client's rate budget
    is shared through the store with every other process using it.
    """

    def __init__(
        self,
        settings: Settings,
        *,
        pm: Any = None,
        registry: Any = None,
        client: Any = None,
        store: StateStore | None = None,
        jitter: float = JITTER,
        on_report: Callable[[SyncReport], None] | None = None,
        wait: bool = False,
    ) -> None:
        self.settings = settings
        self.pm = pm
        self.registry = registry
        self.store = (
            store
            if store is not None
            else StateStore(settings.state.url, lease_ttl=settings.state.lease_ttl)
        )
        self.client = client if client is not None else open_tasks_client(settings, self.store)
        self.jitter = jitter
        self.on_report = on_report
        self.wait = wait
        self.busy: list[str] = []
        """Sources whose run was skipped: another run held their lease."""
        self.other_destination: list[str] = []
        """Sources whose run was refused: their state belongs to another Tasks API."""
        self.stop = threading.Event()
        self._locks: dict[str, threading.Lock] = {}
        self.reports: list[SyncReport] = []
        self.fatal: StateError | None = None
        """Set when the state cannot be used any more (its file deleted or replaced): every
        source stops; ``fragment run`` exits with the error."""

    def sources(self) -> list[SourceSettings]:
        """The enabled sources."""
        return [s for s in self.settings.sources if s.enabled]

    def run_once(self, source: SourceSettings, connector: Connector) -> SyncReport | None:
        """One run of ``source``, unless a run of it is already going (then ``None``)."""
        lock = self._locks.setdefault(source.name, threading.Lock())
        if not lock.acquire(blocking=False):
            log.warning("previous run still going; skipped", extra={"source": source.name})
            return None
        try:
            report = sync_source(
                source,
                connector,
                self.client,
                self.store,
                wait=self.wait,
                pm=self.pm,
                batch_size=self.settings.tasks_api.batch_size,
                stop=self.stop,
            )
        except LeaseHeldError as exc:
            log.warning("%s; run skipped", exc, extra={"source": source.name})
            self.busy.append(source.name)
            return None
        except DestinationMismatchError as exc:
            log.error("run refused: %s", exc, extra={"source": source.name})
            self.other_destination.append(source.name)
            return None
        finally:
            lock.release()
        self.reports.append(report)
        if self.on_report is not None:
            self.on_report(report)
        return report

    def _next_wait(self, source: SourceSettings) -> float:
        seconds = source.every.total_seconds()
        return max(0.0, seconds * (1 + random.uniform(-self.jitter, self.jitter)))

    def _loop(self, source: SourceSettings, once: bool) -> None:
        connector = self.registry.build(source)
        try:
            # spread the first runs a little so sources do not all start at once
            if not once and self.stop.wait(random.uniform(0, self.jitter)):
                return
            while not self.stop.is_set():
                started = time.monotonic()
                try:
                    self.run_once(source, connector)
                except StateError as exc:  # carrying on would write into a lost state
                    log.error("state unusable; stopping: %s", exc, extra={"source": source.name})
                    self.fatal = self.fatal or exc
                    self.stop.set()
                    return
                except Exception:  # the engine reports failures; this is a bug guard
                    log.exception("run crashed", extra={"source": source.name})
                if once:
                    return
                elapsed = time.monotonic() - started
                if self.stop.wait(max(0.0, self._next_wait(source) - elapsed)):
                    return
        finally:
            connector.close()

    def run(self, *, once: bool = False) -> list[SyncReport]:
        """Run until :attr:`stop` is set (or each source once with ``once``)."""
        threads = [
            threading.Thread(
                target=self._loop, args=(source, once), name=f"fragment:{source.name}", daemon=True
            )
            for source in self.sources()
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            while thread.is_alive():
                thread.join(timeout=0.2)
        return self.reports

    def worst_outcome(self) -> RunOutcome:
        """The most severe outcome among the runs so far (``ok`` when none)."""
        order = [
            RunOutcome.OK,
            RunOutcome.DRY_RUN,
            RunOutcome.PARTIAL,
            RunOutcome.CAPPED,
            RunOutcome.FAILED,
        ]
        worst = RunOutcome.OK
        for report in self.reports:
            if order.index(report.outcome) > order.index(worst):
                worst = report.outcome
        return worst
