"""A Tasks API rate budget shared by every process using one state store.

Each process's :class:`~fragment_core.retries.RateBudget` counts only its own requests,
so N processes on one Tasks API (fleet workers, a ``fragment run`` and a manual
``fragment sync``) would send N times the budget. :class:`SharedRateBudget` keeps the
budget's places in the state store instead: ``limit`` rows per destination in
``fragment_rate_slots``, each holding when its request's place in the window started.
A request takes a free place (one whose start is ``period`` seconds old) with one
conditional ``UPDATE ... RETURNING`` (atomic on SQLite, which serializes writers; on
Postgres ``FOR UPDATE SKIP LOCKED`` keeps concurrent takers on different rows), marks it
in flight, and sets its start when the answer arrives, as the in-memory budget does.
When every place is taken, it waits for the oldest to leave the window.

Times are seconds since the epoch by the database's clock on Postgres (processes on
several machines agree on it) and by this machine's clock on SQLite (one machine).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import sqlalchemy as sa

from fragment_core.retries import RateBudget
from fragment_core.state.faults import STATE_ERRORS, state_error
from fragment_core.state.schema import rate_slots

#: How long a place taken by a request still in flight counts as used (a process that
#: died mid-request frees its place after this plus the period). Longer than any
#: request's timeout.
IN_FLIGHT_HOLD = 300.0

#: How often a caller re-checks a budget whose free places are all held in flight.
SHARED_POLL = 0.05


class SharedRateBudget(RateBudget):
    """At most ``limit`` Tasks API requests to ``destination`` in any ``period`` seconds,
    across every process whose store shares ``engine``.

    A drop-in :class:`~fragment_core.retries.RateBudget` (``observe`` still heeds the
    server's own headers in this process); :meth:`acquire` returns ``[slot number]``.
    Every process should use the same ``limit``: places are numbered ``0..limit-1``.
    """

    def __init__(
        self,
        engine: sa.Engine,
        destination: str,
        limit: int,
        period: float = 60.0,
        *,
        url: str = "",
    ) -> None:
        super().__init__(limit, period)
        self.engine = engine
        self.destination = destination
        self._url = url
        self._postgres = engine.dialect.name == "postgresql"
        # SQLite serializes writers anyway; this process's threads take turns here, so an
        # in-memory store (one connection shared by every thread) is never used at once
        self._turns: Any = contextlib.nullcontext() if self._postgres else threading.Lock()
        self._guarded(self._create_slots)

    # -- the clock ------------------------------------------------------------------------
    def _now(self) -> Any:
        """Now, as a SQL expression (Postgres: the server's clock) or a bound value."""
        if self._postgres:
            return sa.func.extract("epoch", sa.func.clock_timestamp())
        return sa.literal(time.time(), sa.Float)

    def _guarded(self, fn: Any, *args: Any) -> Any:
        try:
            with self._turns:
                return fn(*args)
        except STATE_ERRORS as exc:
            raise state_error(exc, self._url) from None

    def _create_slots(self) -> None:
        assert self.limit is not None
        rows = [
            {"destination": self.destination, "slot": n, "started": 0.0}
            for n in range(int(self.limit))
        ]
        if self._postgres:
            from sqlalchemy.dialects.postgresql import insert
        else:
            from sqlalchemy.dialects.sqlite import insert  # type: ignore[assignment]
        with self.engine.begin() as conn:
            conn.execute(insert(rate_slots).on_conflict_do_nothing(), rows)

    # -- places ---------------------------------------------------------------------------
    def _take(self) -> int | float:
        """Take a free place and return its number, or return (as a float) the seconds
        until one may be free."""
        assert self.limit is not None
        now = self._now()
        free = sa.and_(
            rate_slots.c.destination == self.destination,
            rate_slots.c.slot < int(self.limit),
            rate_slots.c.started <= now - self.period,
        )
        pick = sa.select(rate_slots.c.slot).where(free).order_by(rate_slots.c.started).limit(1)
        if self._postgres:
            pick = pick.with_for_update(skip_locked=True)
        stmt = (
            rate_slots.update()
            .where(free, rate_slots.c.slot == pick.scalar_subquery())
            .values(started=now + IN_FLIGHT_HOLD)
            .returning(rate_slots.c.slot)
        )
        with self.engine.begin() as conn:
            taken = conn.execute(stmt).scalar()
            if taken is not None:
                return int(taken)
            row = conn.execute(
                sa.select(sa.func.min(rate_slots.c.started), now).where(
                    rate_slots.c.destination == self.destination,
                    rate_slots.c.slot < int(self.limit),
                )
            ).one()
        oldest, at = float(row[0]), float(row[1])
        if oldest > at:  # every place in flight: an answer will free one
            return SHARED_POLL
        return max(oldest + self.period - at, 0.001)

    def _settle(self, slot: int) -> None:
        with self.engine.begin() as conn:
            conn.execute(
                rate_slots.update()
                .where(rate_slots.c.destination == self.destination, rate_slots.c.slot == slot)
                .values(started=self._now())
            )

    def acquire(self) -> list[float]:
        """Block until a place in the shared window is free, take it, and return
        ``[its number]`` (give it to :meth:`settle`)."""
        self._wait_for_reset()
        while True:
            taken = self._guarded(self._take)
            if isinstance(taken, int):
                return [float(taken)]
            time.sleep(min(taken, self.period))

    def settle(self, slot: list[float]) -> None:
        """The request of ``slot`` is over: its place in the window starts now."""
        self._guarded(self._settle, int(slot[0]))

    @contextmanager
    def place(self) -> Iterator[None]:
        """Hold a shared place for the request made inside (settled when it ends)."""
        slot = self.acquire()
        try:
            yield
        finally:
            self.settle(slot)
