"""HeaderPacer: a vendor's own rate-limit headers hold the next request until the reset.

A FakeAPI on loopback keeps a real window (``limit`` requests, then 429 until the reset)
and announces it in the configured headers, the reset as a unix time or as seconds.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from fragment_core.errors import RateLimitedError
from fragment_core.retries import HeaderPacer, RetryPolicy, reset_delay
from fragment_core.testing import FakeAPI, FakeRequest, FakeResponse
from fragment_core.transport import Transport

#: One attempt: a 429 fails the request at once instead of being waited out.
NO_RETRY = RetryPolicy(attempts=1, timeout=10.0, wait_initial=0.01, wait_max=0.01)

FORMATS = {
    "unix": ("X-RateLimit-Remaining", "X-RateLimit-Reset"),
    "seconds": ("Ratelimit-Remaining", "Ratelimit-Reset"),
}


class Window:
    """A vendor's fixed window: ``limit`` requests until ``reset_at`` (wall clock), which
    starts with the window's first request; more in the window are refused with a 429."""

    def __init__(self, limit: int, length: float, reset_format: str) -> None:
        self.limit, self.length, self.reset_format = limit, length, reset_format
        self.remaining_name, self.reset_name = FORMATS[reset_format]
        self.arrivals: list[float] = []  # wall clock, in arrival order
        self.resets: list[float] = []  # each window's reset moment
        self.starts: list[int] = []  # each window's first request (index in arrivals)
        self.statuses: list[int] = []
        self.used = 0
        self._lock = threading.Lock()

    def answer(self) -> FakeResponse:
        with self._lock:
            now = time.time()
            self.arrivals.append(now)
            if not self.resets or now >= self.resets[-1]:
                self.resets.append(now + self.length)
                self.starts.append(len(self.arrivals) - 1)
                self.used = 0
            self.used += 1
            remaining = max(0, self.limit - self.used)
            reset_at = self.resets[-1]
            if self.reset_format == "unix":
                reset = f"{reset_at:.3f}"
            else:  # seconds from now, rounded up so the client never comes early
                reset = f"{math.ceil((reset_at - now) * 1000) / 1000:.3f}"
            headers = {self.remaining_name: str(remaining), self.reset_name: reset}
            status = 429 if self.used > self.limit else 200
            self.statuses.append(status)
            return FakeResponse(status=status, json={"items": []}, headers=headers)


@pytest.fixture
def vendor() -> Iterator[tuple[FakeAPI, dict[str, Window]]]:
    api = FakeAPI(name="vendor")
    windows: dict[str, Window] = {}

    @api.route("GET", "/items")
    def items(req: FakeRequest) -> Any:
        return windows["items"].answer()

    with api:
        yield api, windows


def test_requests_flow_freely_while_the_window_has_requests_left(vendor: Any) -> None:
    """Remaining 4, 3, 2, 1, 0 with a reset 30 s away: the five requests go at once (and
    the header names match in any case)."""
    api, windows = vendor
    window = windows["items"] = Window(limit=5, length=30.0, reset_format="seconds")
    pacer = HeaderPacer(remaining_header="ratelimit-remaining", reset_header="RATELIMIT-RESET")
    with Transport(api.base_url, retry=NO_RETRY, pacer=pacer) as transport:
        for _ in range(5):
            transport.request("GET", "/items")
    # no hold (a wrongful one would be counted in waits, and last 30 s)
    assert window.statuses == [200] * 5 and pacer.waits == 0 and pacer.remaining == 0


@pytest.mark.parametrize("reset_format", ["unix", "seconds"])
def test_the_request_after_remaining_0_waits_for_the_reset(vendor: Any, reset_format: str) -> None:
    """Three requests a window of 0.8 s, seven requests: the request after a window's
    last one waits for its reset (read as a unix time or as seconds); no 429 ever comes."""
    api, windows = vendor
    window = windows["items"] = Window(limit=3, length=0.8, reset_format=reset_format)
    remaining_name, reset_name = FORMATS[reset_format]
    pacer = HeaderPacer(remaining_header=remaining_name, reset_header=reset_name)
    with Transport(api.base_url, retry=NO_RETRY, pacer=pacer) as transport:
        for _ in range(7):
            transport.request("GET", "/items")
    assert window.statuses == [200] * 7  # NO_RETRY: a 429 would have raised
    ends = [*window.starts[1:], len(window.arrivals)]
    spent = [k for k in range(len(window.starts) - 1) if ends[k] - window.starts[k] == 3]
    assert spent  # 3 requests take far less than 0.8 s: at least one window was used up
    for k in spent:  # the request after a used-up window came after its reset, held once
        assert window.arrivals[window.starts[k + 1]] >= window.resets[k]
    assert 1 <= pacer.waits <= len(spent)  # (a hold already over when read is no wait)


def test_headers_other_than_the_named_pair_are_ignored(vendor: Any) -> None:
    """The control: paced by other header names, the fourth request meets the 429."""
    api, windows = vendor
    window = windows["items"] = Window(limit=3, length=30.0, reset_format="seconds")
    pacer = HeaderPacer(remaining_header="X-Quota-Left", reset_header="X-Quota-Reset")
    with Transport(api.base_url, retry=NO_RETRY, pacer=pacer) as transport:
        for _ in range(3):
            transport.request("GET", "/items")
        with pytest.raises(RateLimitedError):
            transport.request("GET", "/items")
    assert window.statuses == [200, 200, 200, 429] and pacer.waits == 0
    assert pacer.remaining is None


def test_header_names_are_required() -> None:
    with pytest.raises(ValueError, match="remaining and a reset header name"):
        HeaderPacer(remaining_header=" ")


def test_reset_delay_reads_a_unix_time_or_seconds() -> None:
    now = 1_800_000_000.0
    assert reset_delay("1800000012", now=now) == 12.0  # a unix time
    assert reset_delay("12", now=now) == 12.0  # seconds from now
    assert reset_delay("1799999990", now=now) == 0.0  # already past
    assert reset_delay("soon", now=now) is None and reset_delay("inf", now=now) is None
