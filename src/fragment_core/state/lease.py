"""One run per source: a lease row in the state store, across processes and machines.

A run takes its source's lease before it writes anything and gives it back when it
ends. The row names its owner (host, pid, a random run id), since when it is held, its
last heartbeat and when it expires. While the run goes on a heartbeat thread pushes the
expiry forward; an owner that died (SIGKILL, a lost machine) stops doing so and its lease
expires after the TTL, when the next run takes it over (at once when the owner ran on the
same host and its process is gone).

The take is serialized by the database: SQLite ``BEGIN IMMEDIATE`` (one writer at a
time), a Postgres transaction-scoped advisory lock on the source name.
"""

from __future__ import annotations

import hashlib
import logging
import os
import socket
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import sqlalchemy as sa

from fragment_core.errors import FragmentError
from fragment_core.state.schema import leases

log = logging.getLogger(__name__)

#: How long a lease lives without a heartbeat (``[state] lease_ttl``).
DEFAULT_TTL = timedelta(minutes=2)


@dataclass(frozen=True)
class LeaseHolder:
    """Who holds a source's lease."""

    source: str
    run_id: str
    host: str
    pid: int
    since: datetime
    heartbeat_at: datetime
    expires_at: datetime

    def describe(self) -> str:
        """One line: ``source X is being synced by PID 12 on HOST since T``."""
        since = self.since.strftime("%Y-%m-%d %H:%M:%S UTC")
        return (
            f"source {self.source!r} is being synced by PID {self.pid} on {self.host} "
            f"since {since} (lease expires {self.expires_at.strftime('%H:%M:%S UTC')} "
            "unless renewed)"
        )


class LeaseHeldError(FragmentError):
    """Another run holds the source's lease: this run did nothing (see ``--wait``)."""

    def __init__(self, holder: LeaseHolder) -> None:
        super().__init__(holder.describe())
        self.holder = holder


class Lease:
    """A lease this process holds (see :meth:`StateStore.lease`)."""

    def __init__(
        self,
        engine: sa.Engine,
        source: str,
        ttl: timedelta,
        on_lost: Callable[[], None] | None = None,
        run_id: str | None = None,
    ) -> None:
        self.engine, self.source, self.ttl = engine, source, ttl
        self.on_lost = on_lost
        self.run_id = run_id or str(uuid.uuid4())
        self.host = socket.gethostname()
        self.pid = os.getpid()
        self.lost = threading.Event()
        """Set when a heartbeat found the lease taken by another run (it had expired)."""
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    # -- take / renew / release ---------------------------------------------------------------
    def try_take(self) -> LeaseHolder | None:
        """Take the lease if it is free or expired; else return who holds it."""
        now = _now()
        with self.engine.begin() as conn:
            _serialize(conn, self.source)
            row = conn.execute(sa.select(leases).where(leases.c.source == self.source)).first()
            if row is not None and row.run_id != self.run_id and self._live(row, now):
                return _holder(row)
            values = {
                "run_id": self.run_id,
                "host": self.host[:255],
                "pid": self.pid,
                "since": now,
                "heartbeat_at": now,
                "expires_at": now + self.ttl,
            }
            if row is None:
                conn.execute(leases.insert().values(source=self.source, **values))
            else:
                if row.run_id != self.run_id:
                    log.warning(
                        "expired lease taken over",
                        extra={"source": self.source, "previous": f"{row.pid}@{row.host}"},
                    )
                conn.execute(leases.update().where(leases.c.source == self.source).values(**values))
        return None

    def _live(self, row: Any, now: datetime) -> bool:
        """Whether the lease of ``row`` still stands: not expired, and when its owner ran
        on this host, that process still exists (a killed run's lease is free at once)."""
        if row.expires_at <= now:
            return False
        return row.host != self.host or _process_exists(row.pid)

    def renew(self) -> bool:
        """Push the expiry forward; ``False`` when the lease is no longer this run's."""
        now = _now()
        with self.engine.begin() as conn:
            result = conn.execute(
                leases.update()
                .where(leases.c.source == self.source, leases.c.run_id == self.run_id)
                .values(heartbeat_at=now, expires_at=now + self.ttl)
            )
        return result.rowcount == 1

    def stop_heartbeat(self) -> None:
        """Stop renewing, and keep the row: the lease expires after its TTL unless the
        same run (its ``run_id``) takes it again first (fleet mode, between activities)."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def release(self) -> None:
        """Give the lease back (only if it is still this run's)."""
        self.stop_heartbeat()
        with self.engine.begin() as conn:
            conn.execute(
                leases.delete().where(
                    leases.c.source == self.source, leases.c.run_id == self.run_id
                )
            )

    # -- heartbeat ----------------------------------------------------------------------------
    def start_heartbeat(self) -> None:
        """Renew the lease every third of its TTL until :meth:`release`."""
        self._thread = threading.Thread(
            target=self._beat, name=f"fragment-lease:{self.source}", daemon=True
        )
        self._thread.start()

    def _beat(self) -> None:
        interval = max(self.ttl.total_seconds() / 3, 0.05)
        while not self._stop.wait(interval):
            try:
                if not self.renew():
                    log.error(
                        "lease lost: another run took over this source",
                        extra={"source": self.source},
                    )
                    self.lost.set()
                    if self.on_lost is not None:
                        self.on_lost()
                    return
            except Exception:  # a database hiccup: try again at the next beat
                log.warning("lease heartbeat failed", extra={"source": self.source})


def take_lease(
    engine: sa.Engine,
    source: str,
    *,
    ttl: timedelta,
    wait: bool | float = False,
    on_lost: Callable[[], None] | None = None,
    cancel: threading.Event | None = None,
    run_id: str | None = None,
) -> Lease:
    """Take ``source``'s lease and start its heartbeat.

    ``wait=False`` raises :class:`LeaseHeldError` at once when another run holds it;
    ``wait=True`` waits as long as it takes (or until ``cancel`` is set); a number waits
    that many seconds at most. ``on_lost`` is called if the lease is lost mid-run.
    ``run_id`` names the run (default: a random one); a lease held under the same
    ``run_id`` is taken again at once (a fleet run's next activity, on any worker).
    """
    lease = Lease(engine, source, ttl, on_lost, run_id)
    deadline = None if wait is True or wait is False else time.monotonic() + float(wait)
    poll = min(max(ttl.total_seconds() / 4, 0.05), 1.0)
    logged = False
    while True:
        holder = lease.try_take()
        if holder is None:
            lease.start_heartbeat()
            return lease
        if wait is False or (deadline is not None and time.monotonic() >= deadline):
            raise LeaseHeldError(holder)
        if cancel is not None and cancel.is_set():
            raise LeaseHeldError(holder)
        if not logged:
            log.info("waiting for the lease: %s", holder.describe(), extra={"source": source})
            logged = True
        if cancel is not None:
            cancel.wait(poll)
        else:
            time.sleep(poll)


def lease_holder(engine: sa.Engine, source: str) -> LeaseHolder | None:
    """Who holds ``source``'s lease now (``None`` when nobody, or it expired)."""
    with engine.connect() as conn:
        row = conn.execute(sa.select(leases).where(leases.c.source == source)).first()
    if row is None or row.expires_at <= _now():
        return None
    return _holder(row)


def _serialize(conn: sa.Connection, source: str) -> None:
    """Make the read-then-write of a take atomic against every other process."""
    if conn.dialect.name == "sqlite":
        conn.exec_driver_sql("BEGIN IMMEDIATE")
    else:
        key = int.from_bytes(hashlib.sha256(source.encode()).digest()[:8], "big", signed=True)
        conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": key})


def _process_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # exists, another user's
        return True
    return True


def _holder(row: Any) -> LeaseHolder:
    return LeaseHolder(
        source=row.source,
        run_id=row.run_id,
        host=row.host,
        pid=row.pid,
        since=row.since,
        heartbeat_at=row.heartbeat_at,
        expires_at=row.expires_at,
    )


def _now() -> datetime:
    return datetime.now(UTC)
