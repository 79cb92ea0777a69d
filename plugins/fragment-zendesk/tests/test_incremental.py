"""The cursor-based incremental export: its lag, its rate limit, and closes it reports."""

from __future__ import annotations

import pytest
from fragment_zendesk import ZendeskConnector
from fragment_zendesk.testing import FakeZendesk

from fragment_core.errors import ConfigurationError
from fragment_core.testing.fakevendor import RateLimit

INCREMENTAL = "/api/v2/incremental/tickets/cursor.json"


def _cursor(connector: ZendeskConnector) -> str:
    values = [connector.cursor_value(r) for r in connector.fetch_backlog()]
    return max(v for v in values if v is not None)


def test_nothing_changed_costs_one_request_and_changes_wait_out_the_lag(
    zendesk: FakeZendesk,
) -> None:
    ids = zendesk.add_tickets(20)
    connector = ZendeskConnector(zendesk.config(), source="support")
    cursor = _cursor(connector)
    zendesk.clock.advance(minutes=2)
    zendesk.api.reset()
    before = connector.client.requests_made
    unchanged = list(connector.fetch_changes(cursor))
    assert {r["id"] for r in unchanged} == set(ids)  # the overlap: re-read, not re-written
    assert len(zendesk.api.requests_to("GET", INCREMENTAL)) == 1
    # one incremental page plus the once-a-run names (fields, groups, people)
    assert connector.client.requests_made - before <= 4

    zendesk.change(ids[0], subject="changed just now")
    seen = {r["id"]: r for r in connector.fetch_changes(cursor)}
    assert ids[0] not in seen and ids[1] in seen  # changed in the last minute: left out
    zendesk.clock.advance(seconds=61)
    seen = {r["id"]: r for r in connector.fetch_changes(cursor)}
    assert seen[ids[0]]["subject"] == "changed just now"


def test_solved_closed_and_deleted_tickets_leave_the_backlog(zendesk: FakeZendesk) -> None:
    ids = zendesk.add_tickets(4)
    connector = ZendeskConnector(zendesk.config(), source="support")
    cursor = _cursor(connector)
    zendesk.change(ids[0], status="solved")
    zendesk.change(ids[1], status="closed")
    zendesk.change(ids[2], status="deleted")
    zendesk.clock.advance(minutes=2)
    records = {r["id"]: r for r in connector.fetch_changes(cursor)}
    assert [connector.is_open(records[i]) for i in ids] == [False, False, False, True]


def test_the_export_rate_limit_429_is_waited_out() -> None:
    fake = FakeZendesk(incremental_limit=RateLimit(1, 1.0))
    with fake.api:
        fake.add_tickets(30)
        fake.clock.advance(minutes=2)
        config = fake.config(incremental_page_size=10, incremental_requests_per_minute=600)
        connector = ZendeskConnector(config, source="support")
        assert len(list(connector.fetch_changes("1"))) == 30
        assert fake.incremental_limit.over >= 1  # 429s answered, and waited out
        assert not fake.unexpected_invalid()


def test_a_cursor_that_is_not_a_time_says_how_to_reset(zendesk: FakeZendesk) -> None:
    connector = ZendeskConnector(zendesk.config(), source="support")
    with pytest.raises(ConfigurationError, match="run a full sync"):
        list(connector.fetch_changes("MTU4MDc1Mzc5OC4wfHw0MzJ8"))
