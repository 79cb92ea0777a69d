"""The backlog: complete past the search API's 1,000 cap, checked against the search count."""

from __future__ import annotations

from typing import Any

import pytest
from fragment_zendesk import ZendeskConnector
from fragment_zendesk.client import RecordInvalidError
from fragment_zendesk.testing import FakeZendesk

from fragment_core.errors import IncompleteFetchError, TransientError
from fragment_core.testing.fakevendor import RateLimit

EXPORT = "/api/v2/search/export.json"


def test_backlog_of_2500_unsolved_tickets_is_fetched_completely(zendesk: FakeZendesk) -> None:
    wanted = set(zendesk.add_tickets(2500))
    zendesk.add_tickets(3, status="solved")
    zendesk.add_tickets(2, status="hold")
    zendesk.add_ticket(status="new")
    wanted |= {max(int(i) for i in zendesk.tickets)}
    connector = ZendeskConnector(zendesk.config(page_size=1000), source="support")

    records = list(connector.fetch_backlog())

    assert {r["id"] for r in records} == wanted
    assert len(records) == len(wanted)
    assert len(zendesk.api.requests_to("GET", EXPORT)) == 3  # 2,501 at 1,000 a page


def test_the_search_api_itself_stops_at_1000_which_is_why_the_export_is_used(
    zendesk: FakeZendesk,
) -> None:
    zendesk.add_tickets(1200)
    connector = ZendeskConnector(zendesk.config(), source="support")
    # zenpy alone would swallow the 422 at the cap and stop at 1,000, silently; through our
    # transport the cap is an error, and the backlog uses the uncapped export anyway
    with pytest.raises(RecordInvalidError, match="limited to 1000"):
        list(connector.client.zenpy.search("status<hold", type="ticket"))
    assert len(zendesk.api.requests_to("GET", "/api/v2/search.json")) == 11
    assert len(list(connector.fetch_backlog())) == 1200


def test_on_hold_is_optional_and_a_query_narrows_the_backlog(zendesk: FakeZendesk) -> None:
    zendesk.add_tickets(3)
    held = zendesk.add_ticket(status="hold")
    vip = zendesk.add_ticket(tags=["vip"])
    plain = ZendeskConnector(zendesk.config(), source="support")
    assert held not in {r["id"] for r in plain.fetch_backlog()}
    with_hold = ZendeskConnector(zendesk.config(include_on_hold=True), source="support")
    assert held in {r["id"] for r in with_hold.fetch_backlog()}
    assert with_hold.is_open({"status": "hold"}) and not plain.is_open({"status": "hold"})
    narrowed = ZendeskConnector(zendesk.config(query="tags:vip"), source="support")
    assert [r["id"] for r in narrowed.fetch_backlog()] == [vip]
    assert "incremental" not in narrowed.capabilities()
    assert "incremental" in plain.capabilities()


def test_a_short_page_is_caught_by_the_count_and_fails_the_fetch(zendesk: FakeZendesk) -> None:
    zendesk.add_tickets(250)
    zendesk.short_page_next(1, drop=3, path=EXPORT)
    connector = ZendeskConnector(zendesk.config(), source="support")
    with pytest.raises(IncompleteFetchError, match="247 of the 250"):
        list(connector.fetch_backlog())


def test_a_truncated_page_is_retried_then_fails_the_fetch(zendesk: FakeZendesk) -> None:
    zendesk.add_tickets(150)
    connector = ZendeskConnector(zendesk.config(retry_attempts=2), source="support")
    zendesk.fail_next(1, kind="truncate", path=EXPORT)
    assert len(list(connector.fetch_backlog())) == 150  # one cut answer: retried, complete

    zendesk.fail_next(2, kind="truncate", path=EXPORT)
    with pytest.raises(TransientError, match="not complete JSON"):
        list(connector.fetch_backlog())


def test_a_5xx_storm_fails_the_fetch(zendesk: FakeZendesk) -> None:
    zendesk.add_tickets(150)
    connector = ZendeskConnector(zendesk.config(retry_attempts=3), source="support")
    zendesk.fail_next(50, status=503, path=EXPORT)
    with pytest.raises(TransientError, match="HTTP 503"):
        list(connector.fetch_backlog())
    assert len(zendesk.api.requests_to("GET", EXPORT)) == 3


@pytest.mark.parametrize(
    "body",
    ["Rate limit exceeded", {"error": "APIRateLimitExceeded", "description": "Rate limit"}],
    ids=["text-plain", "json"],
)
def test_a_429_with_retry_after_is_waited_out(body: Any) -> None:
    """Zendesk's 429 may be text/plain or JSON: either way its Retry-After is waited out."""
    fake = FakeZendesk(export_limit=RateLimit(2, 1.0))
    fake.export_limit.body = body
    with fake.api:
        fake.add_tickets(450)
        connector = ZendeskConnector(fake.config(), source="support")
        assert len(list(connector.fetch_backlog())) == 450
        assert fake.export_limit.over >= 1  # some 429s were answered, and waited out
        assert not fake.invalid_requests


def test_a_view_narrows_the_backlog_and_its_count_checks_the_listing(
    zendesk: FakeZendesk,
) -> None:
    vip = zendesk.add_tickets(130, tags=["vip"])
    zendesk.add_ticket(tags=["vip"], status="solved")  # in the view, but not work
    zendesk.add_tickets(4)
    zendesk.views[77] = "tags:vip"
    connector = ZendeskConnector(zendesk.config(view_id=77), source="support")
    assert [r["id"] for r in connector.fetch_backlog()] == vip
    assert "incremental" not in connector.capabilities()

    zendesk.short_page_next(1, drop=2, path="/api/v2/views/77/tickets")
    with pytest.raises(IncompleteFetchError, match="129 of the 131"):
        list(connector.fetch_backlog())
    zendesk.view_counts_fresh = False  # a stale count checks nothing: the cursor's end rules
    zendesk.short_page_next(1, drop=2, path="/api/v2/views/77/tickets")
    assert len(list(connector.fetch_backlog())) == 128
