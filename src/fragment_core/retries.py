"""Shared retry and rate-limit helpers for the Tasks API client and every connector.

Five vendors signal "slow down" five ways; :func:`retry_after_from_headers` reads them all:

============================  ==========================================================
header                        meaning
============================  ==========================================================
``Retry-After``               seconds, or an HTTP date (RFC 9110; Tasks API, Zendesk, HubSpot)
``retry-after-ms``            milliseconds
``X-RateLimit-Reset``         a unix time (Intercom) or, if small, seconds from now
``Ratelimit-Reset``           seconds from now (IETF draft; ComplyAdvantage Mesh)
============================  ==========================================================

:func:`call_with_retries` retries :class:`TransientError` with exponential backoff and
jitter (through stamina), waiting exactly the hinted time for :class:`RateLimitedError`.
"""

from __future__ import annotations

import email.utils
import logging
import math
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from dataclasses import dataclass
from datetime import timedelta
from typing import ParamSpec, TypeVar

import httpx
import stamina
from stamina.instrumentation import RetryDetails, set_on_retry_hooks

from fragment_core.errors import (
    AuthenticationError,
    ConfigurationError,
    FragmentError,
    RateLimitedError,
    TransientError,
)

P = ParamSpec("P")
T = TypeVar("T")

#: Longest wait we accept from a server hint before capping it (seconds).
MAX_HINTED_WAIT = 300.0
#: A reset value above this is read as a unix timestamp rather than a delay.
_EPOCH_THRESHOLD = 10**9


def _number(value: str | None) -> float | None:
    try:
        return float(value) if value is not None else None
    except ValueError:
        return None


def _header(headers: Mapping[str, str], name: str) -> str | None:
    lowered = name.lower()
    for key, value in headers.items():
        if key.lower() == lowered:
            return value
    return None


def retry_after_from_headers(
    headers: Mapping[str, str], *, now: float | None = None
) -> float | None:
    """Seconds to wait according to any rate-limit header present, or ``None``."""
    now = time.time() if now is None else now
    value = _header(headers, "retry-after-ms")
    if value is not None:
        try:
            return max(0.0, float(value) / 1000)
        except ValueError:
            pass
    value = _header(headers, "retry-after")
    if value is not None:
        try:
            return max(0.0, float(value))
        except ValueError:
            parsed = email.utils.parsedate_to_datetime(value) if value.strip() else None
            if parsed is not None:
                return max(0.0, parsed.timestamp() - now)
    for name in ("x-ratelimit-reset", "ratelimit-reset"):
        value = _header(headers, name)
        if value is None:
            continue
        wait = reset_delay(value, now=now)
        if wait is not None:
            return wait
    return None


def reset_delay(value: str, *, now: float | None = None) -> float | None:
    """Seconds until a rate-limit reset header's moment: the value is a unix time when it
    is above 10^9 (``X-RateLimit-Reset`` of Intercom, GitHub) and seconds from now
    otherwise (``RateLimit-Reset``); ``None`` when it is not a number."""
    try:
        number = float(value)
    except ValueError:
        return None
    if not math.isfinite(number):
        return None
    if number > _EPOCH_THRESHOLD:
        return max(0.0, number - (time.time() if now is None else now))
    return max(0.0, number)


def backoff_hook(exc: BaseException) -> bool | timedelta:
    """stamina backoff hook: retry transient errors, waiting any server hint exactly."""
    if isinstance(exc, RateLimitedError):
        if exc.retry_after is not None:
            return timedelta(seconds=min(exc.retry_after, MAX_HINTED_WAIT))
        return True
    return isinstance(exc, TransientError)


@dataclass(frozen=True)
class RetryPolicy:
    """How hard :func:`call_with_retries` tries before giving up."""

    attempts: int = 8
    timeout: float = 600.0
    wait_initial: float = 0.2
    wait_max: float = 30.0


#: The default policy: patient, for unattended syncs.
DEFAULT = RetryPolicy()
#: The policy in force in this context (thread / task); see :func:`retry_policy`.
_policy: ContextVar[RetryPolicy] = ContextVar("fragment_retry_policy", default=DEFAULT)

#: Few, short retries: for interactive commands such as ``fragment check``, where a person
#: waits for the answer and an unreachable host should be reported in seconds.
QUICK = RetryPolicy(attempts=2, timeout=15.0, wait_initial=0.2, wait_max=2.0)


@contextmanager
def retry_policy(policy: RetryPolicy) -> Iterator[RetryPolicy]:
    """Use ``policy`` for every :func:`call_with_retries` in this context."""
    token = _policy.set(policy)
    try:
        yield policy
    finally:
        _policy.reset(token)


#: What is being retried in this context, for the retry log line (see :func:`operation`).
_operation: ContextVar[str] = ContextVar("fragment_retry_operation", default="")
retry_log = logging.getLogger("fragment_core.retries")


@contextmanager
def operation(name: str) -> Iterator[None]:
    """Name what the retries in this context retry (``"GET /crm/v3/objects/tasks"``,
    ``"write-back of record 'T-1'"``); the retry log line says it."""
    token = _operation.set(name)
    try:
        yield
    finally:
        _operation.reset(token)


def _log_retry(details: RetryDetails) -> None:
    """One line per scheduled retry: source, operation, attempt and wait, in our words."""
    from fragment_core.logs import current_source

    cause = details.caused_by
    what = _operation.get() or (cause.where if isinstance(cause, FragmentError) else None)
    what = what or details.name
    if isinstance(cause, FragmentError):
        reason = cause.message
    else:
        reason = f"{type(cause).__name__}: {cause}"
    source = current_source()
    prefix = f"{source}: " if source else ""
    retry_log.warning(
        "%s%s failed (attempt %d): %s; retrying in %.1f s",
        prefix,
        what,
        details.retry_num,
        reason,
        details.wait_for,
        extra={
            "operation": what,
            "attempt": details.retry_num,
            "wait_seconds": round(details.wait_for, 3),
            "error": type(cause).__name__,
        },
    )


def log_retries() -> None:
    """Log every retry one line each (:func:`_log_retry`) instead of stamina's own
    ``stamina.retry_scheduled`` records. The CLI calls this when it sets up logging."""
    set_on_retry_hooks([_log_retry])


def call_with_retries(
    fn: Callable[P, T],
    *args: P.args,
    **kwargs: P.kwargs,
) -> T:
    """Call ``fn``, retrying :class:`TransientError` under the current :class:`RetryPolicy`
    (by default 8 attempts within 10 minutes)."""
    policy = _policy.get()
    for attempt in stamina.retry_context(
        on=backoff_hook,
        attempts=policy.attempts,
        timeout=policy.timeout,
        wait_initial=policy.wait_initial,
        wait_max=policy.wait_max,
    ):
        with attempt:
            return fn(*args, **kwargs)
    raise AssertionError("unreachable")  # pragma: no cover


def error_for_status(
    status: int,
    headers: Mapping[str, str],
    message: str,
    *,
    where: str,
) -> FragmentError | None:
    """Map an HTTP status to the error class the runner acts on (``None`` for 2xx/3xx).

    ``message`` must already be free of secrets. 429 -> RateLimitedError with the hinted
    wait; 5xx, 408 -> TransientError; 401/403 -> AuthenticationError; 404 and other 4xx
    -> ConfigurationError.
    """
    if status < 400:
        return None
    if status == 429:
        return RateLimitedError(
            f"rate limited (HTTP 429): {message}",
            retry_after=retry_after_from_headers(headers),
            where=where,
        )
    if status >= 500 or status == 408:
        return TransientError(f"HTTP {status}: {message}", where=where)
    if status in (401, 403):
        return AuthenticationError(f"HTTP {status}: {message}", where=where)
    return ConfigurationError(f"HTTP {status}: {message}", where=where)


def raise_for_response(response: httpx.Response, *, where: str) -> httpx.Response:
    """Raise the typed error for a failed httpx response; return it when it succeeded."""
    if response.status_code < 400:
        return response
    text = response.text[:500] if response.content else response.reason_phrase
    error = error_for_status(response.status_code, response.headers, text, where=where)
    assert error is not None
    raise error


def transport_error(exc: httpx.TransportError, *, where: str) -> TransientError:
    """Turn a connection error or timeout into a :class:`TransientError` (no URL secrets)."""
    return TransientError(f"{type(exc).__name__}: {exc}", where=where)


class RateBudget:
    """The one rate budget: at most ``limit`` requests in any ``period`` seconds, shared by
    all threads, that also heeds what the server says of its own budget.

    A request's place in the window starts when its answer arrives (:meth:`place`), not
    when it was sent: the server counted it somewhere in between, and requests in flight
    are not all equally late, so counting from the send could overrun the server's
    window now and then (a 429) when the budget equals the server's. :meth:`wait` takes a
    place that starts at once (for a call made outside :meth:`place`).

    :meth:`observe` reads an answer's ``X-RateLimit-Remaining`` / ``RateLimit-Remaining``:
    at 0, the next request waits for the reset it announced (``X-RateLimit-Reset``, a unix
    time or seconds; ``RateLimit-Reset``, seconds), so a vendor's window is not tripped.
    A :class:`~fragment_core.transport.Transport` gives it every answer.

    ``limit`` of ``None`` counts nothing (only :meth:`observe` holds requests back).
    The Tasks API client holds one (60 a minute by default); :class:`Pacer` is the same
    class spacing calls evenly, for vendor limits stated as a rate.
    """

    #: How often a caller re-checks a budget whose every place is held by a request in flight.
    POLL = 0.01
    #: The (remaining, reset) header pairs :meth:`observe` reads, the first present wins;
    #: :class:`HeaderPacer` names a vendor's own.
    _budget_headers: tuple[tuple[str, str], ...] = (
        ("x-ratelimit-remaining", "x-ratelimit-reset"),
        ("ratelimit-remaining", "ratelimit-reset"),
    )

    def __init__(self, limit: int | None, period: float = 60.0) -> None:
        if limit is not None and limit < 1:
            raise ValueError("a rate budget needs a limit of at least 1 request")
        self.limit: float | None = limit
        self.period = period
        self._capacity = limit  # what acquire() counts against (``limit`` is informative)
        self.waits = 0
        """How many times :meth:`observe`'s hold made a request wait."""
        self._slots: list[list[float]] = []  # [start]; inf while the request is in flight
        self.remaining: float | None = None
        """The server's remaining count as the last answer said it (``None``: not yet)."""
        self._server_reset_at = 0.0  # monotonic; set by observe()
        self._lock = threading.Lock()

    def acquire(self) -> list[float]:
        """Block until one more request fits in the budget, count it, and return its place
        (give it to :meth:`settle` once the request is answered or failed)."""
        self._wait_for_reset()
        while True:
            with self._lock:
                now = time.monotonic()
                if self._capacity is None:
                    return [now]
                self._slots = [s for s in self._slots if s[0] > now - self.period]
                if len(self._slots) < self._capacity:
                    slot = [math.inf]
                    self._slots.append(slot)
                    return slot
                oldest = min(s[0] for s in self._slots)
            time.sleep(self.POLL if oldest == math.inf else oldest + self.period - now)

    def settle(self, slot: list[float]) -> None:
        """The request of ``slot`` is over: its place in the window starts now."""
        with self._lock:
            slot[0] = time.monotonic()

    @contextmanager
    def place(self) -> Iterator[None]:
        """Hold a place for the request made inside (settled when it ends, however)."""
        slot = self.acquire()
        try:
            yield
        finally:
            self.settle(slot)

    def wait(self) -> None:
        """Block until the next call may go; its place starts now."""
        self.settle(self.acquire())

    def observe(self, response: httpx.Response) -> None:
        """Read the server's own budget from an answer (see the class docstring)."""
        for remaining_name, reset_name in self._budget_headers:
            remaining = _number(_header(response.headers, remaining_name))
            if remaining is None:
                continue
            self.remaining = remaining
            value = _header(response.headers, reset_name)
            reset = reset_delay(value) if value is not None else None
            if remaining <= 0 and reset:
                with self._lock:
                    hold = time.monotonic() + min(reset, MAX_HINTED_WAIT)
                    self._server_reset_at = max(self._server_reset_at, hold)
            return

    def _wait_for_reset(self) -> None:
        with self._lock:
            delay = self._server_reset_at - time.monotonic()
            if delay > 0:
                self.waits += 1
        if delay > 0:
            time.sleep(delay)


class Pacer(RateBudget):
    """Spaces calls evenly: at most one every ``60 / per_minute`` seconds (thread-safe).

    A :class:`RateBudget` of one request per interval whose place starts when the call is
    sent (:meth:`place` is :meth:`wait`), so calls go at a steady rate whatever their
    latency: for vendor limits stated as a rate (HubSpot's search API: 4 requests a
    second; a back-office API's ``rate_limit`` option). ``per_minute`` of ``None`` or 0
    turns the spacing off (:meth:`observe` still holds requests back).
    """

    def __init__(self, per_minute: float | None) -> None:
        self.interval = 60.0 / per_minute if per_minute else 0.0
        super().__init__(1 if per_minute else None, self.interval or 60.0)

    @classmethod
    def per_second(cls, rate: float | None) -> Pacer:
        """A pacer allowing ``rate`` calls a second."""
        return cls(rate * 60 if rate else None)

    @contextmanager
    def place(self) -> Iterator[None]:
        """Wait for the next slot, then run the request made inside."""
        self.wait()
        yield


class HeaderPacer(Pacer):
    """A :class:`Pacer` fed by a vendor's rate-limit headers on every answer: once an
    answer's ``remaining_header`` says 0, the next request waits until the moment its
    ``reset_header`` announced (read by :func:`reset_delay`: a unix time or seconds from
    now), so the vendor's window is never tripped into a 429.

    ``HeaderPacer(per_minute, remaining_header="Ratelimit-Remaining",
    reset_header="Ratelimit-Reset")``; names are case-insensitive, and headers other than
    the named pair are ignored. Give it to ``Transport(pacer=...)``, which shows it every
    answer (SDK calls through ``Transport.httpx_client`` included). ``per_minute`` spaces
    calls as :class:`Pacer` does (``None`` or 0: no spacing). ``waits`` counts the requests
    held back; ``remaining`` is the last count seen. A 429 that comes anyway is waited out
    by the Transport's retries.
    """

    def __init__(
        self,
        per_minute: float | None = None,
        *,
        remaining_header: str = "X-RateLimit-Remaining",
        reset_header: str = "X-RateLimit-Reset",
    ) -> None:
        super().__init__(per_minute)
        if not remaining_header.strip() or not reset_header.strip():
            raise ValueError("a HeaderPacer needs a remaining and a reset header name")
        self.remaining_header = remaining_header
        self.reset_header = reset_header
        self._budget_headers = ((remaining_header, reset_header),)
