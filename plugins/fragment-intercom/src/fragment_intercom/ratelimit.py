"""Intercom's ``X-RateLimit-*`` headers as a pacer: stop before the 429, not after it.

Every Intercom answer carries ``X-RateLimit-Limit``, ``X-RateLimit-Remaining`` and
``X-RateLimit-Reset`` (a unix time). :class:`RateLimitHeaders` watches them (an httpx
response hook on the Transport's client, so SDK calls are seen too) and, once the
remaining count is used up, holds the next request until the reset. A 429 that still
comes is waited out by the Transport's retry loop (it reads ``X-RateLimit-Reset`` too).
"""

from __future__ import annotations

import threading
import time

import httpx

from fragment_core.retries import MAX_HINTED_WAIT, Pacer

__all__ = ["RateLimitHeaders"]


def _number(value: str | None) -> float | None:
    if value is None:
        return None
    try:
        return float(value)
    except ValueError:
        return None


class RateLimitHeaders(Pacer):
    """A :class:`~fragment_core.retries.Pacer` (``per_minute`` spacing, off by default)
    that also waits for ``X-RateLimit-Reset`` once ``X-RateLimit-Remaining`` is 0."""

    def __init__(self, per_minute: float | None = None) -> None:
        super().__init__(per_minute)
        self.limit: float | None = None
        self.remaining: float | None = None
        self.reset_at: float | None = None
        self.waits = 0
        self._hold_until = 0.0
        self._state = threading.Lock()

    def observe(self, response: httpx.Response) -> None:
        """Read the headers of one answer (register as an httpx ``response`` hook)."""
        headers = response.headers
        remaining = _number(headers.get("x-ratelimit-remaining"))
        reset = _number(headers.get("x-ratelimit-reset"))
        with self._state:
            self.limit = _number(headers.get("x-ratelimit-limit")) or self.limit
            if remaining is not None:
                self.remaining = remaining
            if reset is not None:
                self.reset_at = reset
            if remaining is not None and remaining <= 0 and reset is not None:
                self._hold_until = max(self._hold_until, reset)

    def wait(self) -> None:
        """Space the call (``per_minute``), then wait for the reset if the budget is out."""
        super().wait()
        with self._state:
            delay = self._hold_until - time.time()
            if delay > 0:
                self.waits += 1
        if delay > 0:
            time.sleep(min(delay, MAX_HINTED_WAIT))
