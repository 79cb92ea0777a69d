"""The shared retry helpers read every vendor's rate-limit signal."""

from __future__ import annotations

from datetime import timedelta
from email.utils import formatdate

import pytest

from fragment_core.errors import (
    AuthenticationError,
    ConfigurationError,
    RateLimitedError,
    TransientError,
)
from fragment_core.retries import (
    backoff_hook,
    call_with_retries,
    error_for_status,
    retry_after_from_headers,
)

NOW = 1_750_000_000.0


@pytest.mark.parametrize(
    ("headers", "expected"),
    [
        ({"Retry-After": "3"}, 3.0),  # Tasks API, Zendesk, HubSpot
        ({"retry-after-ms": "1500"}, 1.5),
        ({"Retry-After": formatdate(NOW + 7, usegmt=True)}, 7.0),
        ({"X-RateLimit-Reset": str(int(NOW + 12))}, 12.0),  # Intercom: a unix time
        ({"Ratelimit-Reset": "4"}, 4.0),  # ComplyAdvantage Mesh: seconds
        ({"Stripe-Should-Retry": "true"}, None),  # Stripe: no wait hint
        ({}, None),
    ],
)
def test_retry_after_from_each_vendor_scheme(headers: dict, expected: float | None) -> None:
    assert retry_after_from_headers(headers, now=NOW) == expected


def test_status_mapping() -> None:
    limited = error_for_status(429, {"Retry-After": "2"}, "slow down", where="x")
    assert isinstance(limited, RateLimitedError) and limited.retry_after == 2.0
    assert isinstance(error_for_status(503, {}, "down", where="x"), TransientError)
    assert isinstance(error_for_status(401, {}, "no", where="x"), AuthenticationError)
    assert isinstance(error_for_status(404, {}, "gone", where="x"), ConfigurationError)
    assert error_for_status(200, {}, "", where="x") is None
    assert str(error_for_status(404, {}, "gone", where="source 'a'")).startswith("source 'a':")


def test_backoff_hook_waits_exactly_the_hint() -> None:
    assert backoff_hook(RateLimitedError("x", retry_after=2)) == timedelta(seconds=2)
    assert backoff_hook(TransientError("x")) is True
    assert backoff_hook(ConfigurationError("x")) is False


def test_call_with_retries_retries_transient_and_not_others() -> None:
    calls = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise RateLimitedError("429", retry_after=0)
        return "ok"

    assert call_with_retries(flaky) == "ok"
    assert len(calls) == 3

    def broken() -> None:
        calls.append(1)
        raise ConfigurationError("bad")

    calls.clear()
    with pytest.raises(ConfigurationError):
        call_with_retries(broken)
    assert len(calls) == 1


def test_pacer_spaces_calls_evenly() -> None:
    import time

    from fragment_core.retries import Pacer

    pacer = Pacer.per_second(20)  # one call every 50 ms
    start = time.monotonic()
    for _ in range(5):
        pacer.wait()
    assert time.monotonic() - start >= 0.19  # the first goes at once, four waits follow
    Pacer(None).wait()  # off: returns at once


def test_retry_policy_bounds_attempts_in_its_context() -> None:
    from fragment_core.retries import RetryPolicy, retry_policy

    calls = []

    def down() -> None:
        calls.append(1)
        raise TransientError("unreachable")

    with (
        retry_policy(RetryPolicy(attempts=2, wait_initial=0, wait_max=0)),
        pytest.raises(TransientError),
    ):
        call_with_retries(down)
    assert len(calls) == 2


def test_one_rate_budget_class_paces_counts_and_heeds_the_servers_budget() -> None:
    """Pacer is a RateBudget spacing calls from their send; a RateBudget counts a place
    from the answer; both hold the next request back when an answer said the server's
    own budget is spent (Remaining 0) until the reset it announced."""
    import time

    import httpx

    from fragment_core.retries import Pacer, RateBudget

    assert isinstance(Pacer.per_second(4), RateBudget)
    for budget in (RateBudget(100, period=60), Pacer(None)):
        spent = httpx.Response(200, headers={"RateLimit-Remaining": "0", "RateLimit-Reset": "0.3"})
        budget.observe(spent)
        started = time.monotonic()
        with budget.place():
            pass
        assert time.monotonic() - started >= 0.28 and budget.waits == 1
        budget.observe(httpx.Response(200, headers={"X-RateLimit-Remaining": "5"}))
        started = time.monotonic()
        budget.wait()  # budget left, reset passed: at once
        assert budget.waits == 1  # no second hold
