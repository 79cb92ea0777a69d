"""Production-like behaviour on demand: latency, a rate limit with 429, seeded faults.

An ASGI middleware in front of the ``/api/v1`` routes. A fault is drawn per request from
a seeded random generator, so a run can be reproduced:

* ``500`` / ``502`` / ``503`` / ``429`` answered before the request is applied;
* ``drop_before``: the connection is cut before the request is applied;
* ``drop_after``: the request is applied, then the connection is cut instead of answering.

A cut connection is real: the middleware starts a response announcing a body it never
sends and raises, so uvicorn closes the socket and the client sees a transport error.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import random
import secrets
import threading
import time
from collections import Counter, deque
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from fragment_core.sandbox.settings import RateLimit, SandboxSettings

API_PREFIX = "/api/v1"
FAULT_KINDS = ("500", "502", "503", "429", "drop_before", "drop_after")


class ConnectionDropped(Exception):
    """Raised inside the app to make the server cut the connection (fault injection)."""


class _QuietDrops(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        return not isinstance(exc, ConnectionDropped)


def quiet_dropped_connections() -> None:
    """Keep injected connection drops out of uvicorn's error log."""
    logger = logging.getLogger("uvicorn.error")
    if not any(isinstance(f, _QuietDrops) for f in logger.filters):
        logger.addFilter(_QuietDrops())


class SlidingWindow:
    """At most ``limit.requests`` admissions in any ``limit.period`` seconds."""

    def __init__(self, limit: RateLimit) -> None:
        self.limit = limit
        self._times: deque[float] = deque()
        self._lock = threading.Lock()

    def admit(self, now: float | None = None) -> float:
        """Admit one request and return 0, or return the seconds until one would fit."""
        now = time.monotonic() if now is None else now
        with self._lock:
            while self._times and self._times[0] <= now - self.limit.period:
                self._times.popleft()
            if len(self._times) < self.limit.requests:
                self._times.append(now)
                return 0.0
            return self._times[0] + self.limit.period - now


class SandboxStats:
    """What the sandbox answered, for tests and benchmarks (``GET /_sandbox/stats``)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.requests = 0
        self.writes_in_flight = 0
        self.writes_in_flight_peak = 0
        self.statuses: Counter[int] = Counter()
        self.faults: Counter[str] = Counter()
        self.user_agents: Counter[str] = Counter()
        self.rate_limited = 0

    def count(self, *, status: int | None = None, fault: str | None = None) -> None:
        with self._lock:
            if status is not None:
                self.statuses[status] += 1
            if fault is not None:
                self.faults[fault] += 1

    def snapshot(self) -> dict[str, Any]:
        with self._lock:
            return {
                "requests": self.requests,
                "statuses": {str(k): v for k, v in sorted(self.statuses.items())},
                "faults": dict(sorted(self.faults.items())),
                "rate_limited": self.rate_limited,
                "writes_in_flight_peak": self.writes_in_flight_peak,
                "user_agents": dict(self.user_agents),
            }


async def _send_json(
    send: Send, status: int, body: dict[str, Any], headers: dict[str, str] | None = None
) -> None:
    content = json.dumps(body).encode()
    raw_headers = [
        (b"content-type", b"application/json"),
        (b"content-length", str(len(content)).encode()),
    ]
    raw_headers += [(k.encode(), v.encode()) for k, v in (headers or {}).items()]
    await send({"type": "http.response.start", "status": status, "headers": raw_headers})
    await send({"type": "http.response.body", "body": content})


async def _drop(send: Send) -> None:
    await send(
        {
            "type": "http.response.start",
            "status": 200,
            "headers": [(b"content-type", b"application/json"), (b"content-length", b"4096")],
        }
    )
    await send({"type": "http.response.body", "body": b'{"items": [', "more_body": True})
    raise ConnectionDropped("injected fault: connection dropped")


class TokenRevocation:
    """The API token revoked on demand, at once or after a number of writes (a token
    rotated mid-run, as happens in production): from then on every request gets 401."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.revoked = False
        self._writes_left: int | None = None

    def arm(self, after_writes: int = 0) -> None:
        """Revoke the token now (``0``) or once ``after_writes`` more writes passed (which
        lets it through again until then)."""
        with self._lock:
            self.revoked = after_writes <= 0
            self._writes_left = after_writes if after_writes > 0 else None

    def admit(self, method: str) -> bool:
        """Whether a request holding the token is still let through (counts writes)."""
        with self._lock:
            if self.revoked:
                return False
            if self._writes_left is not None and method != "GET":
                self._writes_left -= 1
                if self._writes_left <= 0:
                    self.revoked, self._writes_left = True, None
            return True


class WriteGate:
    """Counts the write requests in flight (and their peak, in ``stats``) and, when
    ``hold`` is set, holds the first ones until ``hold`` are in flight at once (at most
    ``timeout`` seconds), then lets every request through: with it a test proves that a
    client overlaps its writes whatever the load of the machine."""

    def __init__(self, stats: SandboxStats, hold: int = 0, timeout: float = 10.0) -> None:
        self.stats, self.hold, self.timeout = stats, hold, timeout
        self._open: asyncio.Event | None = None

    async def enter(self) -> None:
        """One write request arrived: count it, and wait while the gate is held."""
        with self.stats._lock:
            self.stats.writes_in_flight += 1
            in_flight = self.stats.writes_in_flight
            self.stats.writes_in_flight_peak = max(self.stats.writes_in_flight_peak, in_flight)
        if self.hold <= 0:
            return
        if self._open is None:  # made here: it belongs to the server's event loop
            self._open = asyncio.Event()
        if in_flight >= self.hold:
            self._open.set()
        try:
            await asyncio.wait_for(self._open.wait(), self.timeout)
        except TimeoutError:
            self._open.set()  # never reached: let everything through (the test then fails)

    def leave(self) -> None:
        """That write request is answered (or cut)."""
        with self.stats._lock:
            self.stats.writes_in_flight -= 1


class ProductionLikeMiddleware:
    """Token check, latency, rate limit and seeded faults in front of the API routes.

    The token is checked here, before the body is read, so a request without it gets
    401 whatever else is wrong with it.
    """

    def __init__(
        self,
        app: ASGIApp,
        settings: SandboxSettings,
        stats: SandboxStats,
        revocation: TokenRevocation | None = None,
    ) -> None:
        self.app = app
        self.settings = settings
        self.stats = stats
        self.revocation = revocation or TokenRevocation()
        self.window = SlidingWindow(settings.rate_limit) if settings.rate_limit else None
        self._random = random.Random(settings.seed)
        self._random_lock = threading.Lock()
        self._token = settings.token.get_secret_value().encode()
        self.writes = WriteGate(stats, settings.hold_writes)

    def _authorized(self, scope: Scope) -> bool:
        for name, value in scope["headers"]:
            if name == b"authorization":
                scheme, _, token = value.partition(b" ")
                return (
                    scheme.lower() == b"bearer"
                    and secrets.compare_digest(token.strip(), self._token)
                    and self.revocation.admit(scope["method"])
                )
        return False

    def draw_fault(self) -> str | None:
        """The fault for the next request, or ``None`` (seeded, in arrival order)."""
        if self.settings.faults <= 0:
            return None
        with self._random_lock:
            if self._random.random() >= self.settings.faults:
                return None
            return self._random.choice(FAULT_KINDS)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not scope["path"].startswith(API_PREFIX):
            await self.app(scope, receive, send)
            return
        agent = next((v for k, v in scope["headers"] if k == b"user-agent"), b"")
        with self.stats._lock:
            self.stats.requests += 1
            self.stats.user_agents[agent.decode("latin-1")[:100]] += 1

        async def counting_send(message: Message) -> None:
            if message["type"] == "http.response.start":
                self.stats.count(status=message["status"])
            await send(message)

        if scope["method"] in ("GET", "HEAD"):
            await self._handle(scope, receive, send, counting_send)
            return
        await self.writes.enter()
        try:
            await self._handle(scope, receive, send, counting_send)
        finally:
            self.writes.leave()

    async def _handle(
        self, scope: Scope, receive: Receive, send: Send, counting_send: Send
    ) -> None:
        if self.settings.latency:
            await asyncio.sleep(self.settings.latency)
        if not self._authorized(scope):
            await _send_json(
                counting_send,
                401,
                {"detail": "missing or invalid bearer token"},
                {"www-authenticate": "Bearer"},
            )
            return
        if await self._rate_limited(counting_send):
            return
        fault = self.draw_fault()
        if fault is None:
            await self.app(scope, receive, counting_send)
            return
        self.stats.count(fault=fault)
        await self._inject(fault, scope, receive, send, counting_send)

    async def _rate_limited(self, send: Send) -> bool:
        """Answer 429 (and return True) when the request is over the sustained rate limit."""
        if self.window is None:
            return False
        wait = self.window.admit()
        if wait <= 0:
            return False
        with self.stats._lock:
            self.stats.rate_limited += 1
        limit = self.window.limit
        await _send_json(
            send,
            429,
            {"detail": f"rate limit of {limit.requests} requests per {limit.period:g}s"},
            {"retry-after": str(max(1, math.ceil(wait)))},
        )
        return True

    async def _inject(
        self, fault: str, scope: Scope, receive: Receive, send: Send, counting_send: Send
    ) -> None:
        """Answer with ``fault`` instead of (or, for ``drop_after``, after) the app."""
        if fault == "drop_before":
            await _drop(send)
        elif fault == "drop_after":

            async def swallow(message: Message) -> None:
                return None

            await self.app(scope, receive, swallow)
            await _drop(send)
        elif fault == "429":
            retry_after = f"{self.settings.fault_retry_after:g}"
            await _send_json(
                counting_send,
                429,
                {"detail": "injected fault: too many requests"},
                {"retry-after": retry_after},
            )
        else:
            await _send_json(counting_send, int(fault), {"detail": f"injected fault: {fault}"})
