"""Listing through the real SDK against the fake: pages, 429s, faults, one retry loop."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fragment_stripe import ReviewsConnector, WarningsConnector
from fragment_stripe.testing import FakeStripe

from fragment_core.errors import TransientError
from fragment_core.retries import RetryPolicy, retry_policy

QUICK = RetryPolicy(attempts=3, timeout=20.0, wait_initial=0.01, wait_max=0.05)


@pytest.fixture(autouse=True)
def quick_retries() -> Iterator[None]:
    with retry_policy(QUICK):
        yield


def _pages(fake: FakeStripe, path: str) -> list[dict[str, str]]:
    return [r.query for r in fake.api.requests if r.path == path]


def test_backlog_follows_has_more_and_starting_after_across_pages(
    stripe_fake: FakeStripe,
) -> None:
    ids = stripe_fake.add_reviews(25)
    closed = stripe_fake.add_review()
    stripe_fake.close_review(closed)
    connector = ReviewsConnector(stripe_fake.reviews_config(page_size=10), source="radar")

    records = list(connector.fetch_backlog())

    assert [r["id"] for r in records] == ids[::-1]  # newest first, each once, closed left out
    pages = _pages(stripe_fake, "/v1/reviews")
    assert len(pages) == 3
    assert "starting_after" not in pages[0]
    assert pages[1]["starting_after"] == ids[-10]  # the last id of the page before
    assert pages[2]["starting_after"] == ids[-20]
    assert all(p["limit"] == "10" and p["expand[0]"] == "data.charge" for p in pages)


def test_a_review_closed_while_paging_does_not_stop_the_listing(
    stripe_fake: FakeStripe,
) -> None:
    ids = stripe_fake.add_reviews(15)
    connector = ReviewsConnector(stripe_fake.reviews_config(page_size=5), source="radar")
    listing = connector.fetch_backlog()
    first = [next(listing)["id"] for _ in range(5)]
    stripe_fake.close_review(first[-1])  # the cursor of the next page is now closed
    rest = [r["id"] for r in listing]
    assert first + rest == ids[::-1]


def test_warnings_backlog_is_the_actionable_ones_of_the_lookback(stripe_fake: FakeStripe) -> None:
    recent = stripe_fake.add_warnings(3)
    stripe_fake.add_warnings(2, actionable=False)
    stripe_fake.add_warning(created=stripe_fake.now - 200 * 86400)  # past lookback_days
    connector = WarningsConnector(stripe_fake.warnings_config(), source="efw")
    assert [r["id"] for r in connector.fetch_backlog()] == recent[::-1]
    (query,) = _pages(stripe_fake, "/v1/radar/early_fraud_warnings")
    assert int(query["created[gte]"]) > stripe_fake.now - 121 * 86400


def test_incremental_fetch_asks_only_for_items_created_since_the_cursor(
    stripe_fake: FakeStripe,
) -> None:
    old = stripe_fake.add_reviews(3)
    connector = ReviewsConnector(stripe_fake.reviews_config(), source="radar")
    cursor = max(connector.cursor_value(r) or "" for r in connector.fetch_backlog())
    stripe_fake.api.requests.clear()
    assert [r["id"] for r in connector.fetch_changes(cursor)] == [old[-1]]  # "at or after"
    new = stripe_fake.add_review()
    assert [r["id"] for r in connector.fetch_changes(cursor)] == [new, old[-1]]
    assert len(stripe_fake.api.requests) == 2  # one request per incremental run


def test_stripe_429_is_waited_out(stripe_fake: FakeStripe) -> None:
    ids = stripe_fake.add_reviews(40)
    limit = stripe_fake.limit_rate(per_second=2)
    config = stripe_fake.reviews_config(page_size=10, rate_limit_wait_seconds=0.5)
    connector = ReviewsConnector(config, source="radar")
    with retry_policy(RetryPolicy(attempts=10, timeout=30.0, wait_initial=0.01)):
        records = list(connector.fetch_backlog())
    assert [r["id"] for r in records] == ids[::-1]
    assert limit.over >= 1, "the fake's limit was never reached: the test proves nothing"
    rejected = [r for r in stripe_fake.api.requests if r.path == "/v1/reviews"]
    assert len(rejected) == 4 + limit.over  # each 429 retried once, by our loop alone


def test_one_retry_loop_ours_the_sdk_does_not_retry(stripe_fake: FakeStripe) -> None:
    stripe_fake.add_reviews(3)
    stripe_fake.fail_next(1, status=500, body={"error": {"type": "api_error", "message": "x"}})
    connector = ReviewsConnector(stripe_fake.reviews_config(), source="radar")
    assert len(list(connector.fetch_backlog())) == 3
    assert len(stripe_fake.api.requests) == 2  # the 500, then our one retry


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 500, "body": {"error": {"type": "api_error", "message": "Internal"}}},
        {"status": 502, "body": "<html>Bad gateway</html>"},
        {"status": 503},  # a JSON body that is not Stripe's shape ({"error": "..."})
        {"kind": "truncate"},
        {"kind": "drop"},
    ],
    ids=["500", "502-html", "503-foreign-json", "truncated", "dropped"],
)
def test_fault_storm_fails_cleanly_with_a_transient_error(
    stripe_fake: FakeStripe, fault: dict[str, object]
) -> None:
    stripe_fake.add_reviews(30)
    connector = ReviewsConnector(stripe_fake.reviews_config(page_size=10), source="radar")
    listing = connector.fetch_backlog()
    assert len([next(listing) for _ in range(10)]) == 10
    stripe_fake.fail_next(50, **fault)  # type: ignore[arg-type]
    with pytest.raises(TransientError) as info:
        list(listing)
    assert "source 'radar' (stripe)" in str(info.value)
    assert stripe_fake.token not in str(info.value)
    assert len(stripe_fake.api.requests) == 1 + QUICK.attempts


def test_base_url_goes_through_the_sdk_base_addresses(stripe_fake: FakeStripe) -> None:
    stripe_fake.add_reviews(1)
    connector = ReviewsConnector(stripe_fake.reviews_config(), source="radar")
    list(connector.fetch_backlog())
    (request,) = stripe_fake.api.requests
    assert request.headers["authorization"] == "<redacted>"  # the fake logs it redacted
    assert request.headers["stripe-version"]
