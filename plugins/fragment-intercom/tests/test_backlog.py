"""Backlog and incremental fetches: the search Intercom gets, paging by hand, filters."""

from __future__ import annotations

import base64
import json
from datetime import timedelta

import pytest
from fragment_intercom import IntercomConnector
from fragment_intercom.client import NO_SDK_RETRIES
from fragment_intercom.testing import SEARCH_PATH, FakeIntercom
from intercom import SingleFilterSearchRequest, StartingAfterPaging

from fragment_core.errors import IncompleteFetchError, TransientError


def _searches(fake: FakeIntercom) -> list[dict]:
    return [r.json() for r in fake.api.requests_to("POST", SEARCH_PATH)]


def test_a_search_of_several_pages_is_fetched_completely_each_page_once(
    intercom: FakeIntercom,
) -> None:
    ids = intercom.add_conversations(700)  # 150 a page: five pages
    intercom.add_conversations(20, state="closed")
    connector = IntercomConnector(intercom.config(), source="support")

    fetched = [record["id"] for record in connector.fetch_backlog()]

    assert sorted(fetched) == sorted(ids) and len(fetched) == 700
    bodies = _searches(intercom)
    assert len(bodies) == 5  # ceil(700 / 150): no page asked twice, none skipped
    cursors = [(b.get("pagination") or {}).get("starting_after") for b in bodies]
    assert cursors[0] is None and None not in cursors[1:]
    assert len(set(cursors)) == 5
    assert {b["pagination"]["per_page"] for b in bodies} == {150}
    assert bodies[0]["query"] == {"field": "state", "operator": "=", "value": "open"}
    # every request pins the API version (the SDK sends none of its own)
    assert {r.headers.get("intercom-version") for r in intercom.api.requests} == {"2.14"}


def test_the_sdk_pager_repeats_page_one_which_is_why_we_page_by_hand(
    intercom: FakeIntercom,
) -> None:
    # python-intercom 5.x: search()'s next-page callback reuses the first pagination
    intercom.add_conversations(9)
    client = IntercomConnector(intercom.config()).client
    pager = client.sdk.conversations.search(
        query=SingleFilterSearchRequest(field="state", operator="=", value="open"),
        pagination=StartingAfterPaging(per_page=3),
        request_options=NO_SDK_RETRIES,
    )
    pages = []
    for page in pager.iter_pages():
        pages.append([c.id for c in page.items or []])
        if len(pages) == 3:
            break
    assert pages[0] == pages[1] == pages[2]  # page 1, three times
    assert all("starting_after" not in b["pagination"] for b in _searches(intercom))


def test_team_admin_and_tag_narrow_the_search(intercom: FakeIntercom) -> None:
    mine = intercom.add_conversation(team_assignee_id=77, admin_assignee_id=5, tags=["9"])
    intercom.add_conversation(team_assignee_id=78, admin_assignee_id=5, tags=["9"])
    intercom.add_conversation(team_assignee_id=77, admin_assignee_id=6, tags=["9"])
    intercom.add_conversation(team_assignee_id=77, admin_assignee_id=5)
    config = intercom.config(team_ids=["77"], admin_ids=[5], tag_ids=["9", "10"])
    connector = IntercomConnector(config)

    assert [r["id"] for r in connector.fetch_backlog()] == [mine]
    (body,) = _searches(intercom)
    assert body["query"] == {
        "operator": "AND",
        "value": [
            {"field": "state", "operator": "=", "value": "open"},
            {"field": "team_assignee_id", "operator": "IN", "value": ["77"]},
            {"field": "admin_assignee_id", "operator": "IN", "value": ["5"]},
            {"field": "tag_ids", "operator": "IN", "value": ["9", "10"]},
        ],
    }


def test_snoozed_conversations_are_in_the_backlog_only_when_asked(
    intercom: FakeIntercom,
) -> None:
    open_ids = intercom.add_conversations(2)
    snoozed = intercom.add_conversation(state="snoozed", snoozed_until=intercom.now() + 3600)
    assert {r["id"] for r in IntercomConnector(intercom.config()).fetch_backlog()} == set(open_ids)
    with_snoozed = IntercomConnector(intercom.config(include_snoozed=True))
    assert {r["id"] for r in with_snoozed.fetch_backlog()} == {*open_ids, snoozed}
    assert _searches(intercom)[-1]["query"] == {
        "field": "state", "operator": "IN", "value": ["open", "snoozed"],
    }  # fmt: skip
    assert with_snoozed.is_open(intercom.conversations[snoozed])


def test_incremental_asks_for_conversations_updated_since_the_cursor(
    intercom: FakeIntercom,
) -> None:
    old = intercom.add_conversations(5, created_at=intercom.now() - 3600)
    connector = IntercomConnector(intercom.config(team_ids=["77"]), source="support")
    cursor = str(intercom.now())
    intercom.clock.advance(seconds=600)
    intercom.update(old[0], state="closed")
    intercom.update(old[1], team_assignee_id=77)
    intercom.update(old[2], team_assignee_id=78)

    changed = {r["id"]: r for r in connector.fetch_changes(cursor)}

    (body,) = _searches(intercom)
    assert body["query"] == {"field": "updated_at", "operator": ">", "value": int(cursor) - 60}
    assert set(changed) == {old[0], old[1], old[2]}
    assert not connector.is_open(changed[old[0]])  # closed at the source
    assert connector.is_open(changed[old[1]])
    assert not connector.is_open(changed[old[2]])  # moved to another team
    assert connector.cursor_value(changed[old[1]]) == str(intercom.now())


def test_an_incremental_run_with_nothing_changed_is_one_search(intercom: FakeIntercom) -> None:
    start = intercom.now() - 86_400
    for i in range(400):  # a day of conversations, one every 200 s
        intercom.add_conversation(created_at=start + 200 * i)
    connector = IntercomConnector(intercom.config(app_id="abc123de"), source="support")
    cursor = max(connector.cursor_value(c) or "" for c in intercom.conversations.values())
    intercom.clock.advance(seconds=300)

    again = list(connector.fetch_changes(cursor))

    assert [r["updated_at"] for r in again] == [int(cursor)]  # only the overlap re-read
    assert len(intercom.api.requests) == 1  # one search, no /me (app_id set)


def test_a_short_page_is_incomplete_not_the_end(intercom: FakeIntercom) -> None:
    # FakeVendor's short-page fault: a page one item short, total_count and cursor unchanged
    intercom.add_conversations(320)
    intercom.short_page_next(1)
    connector = IntercomConnector(intercom.config(), source="support")
    with pytest.raises(IncompleteFetchError, match=r"after 319 of the 320 items"):
        list(connector.fetch_backlog())


def test_a_conversation_closed_while_paging_makes_the_fetch_incomplete(
    intercom: FakeIntercom,
) -> None:
    ids = intercom.add_conversations(320)
    connector = IntercomConnector(intercom.config(), source="support")
    records = connector.fetch_backlog()
    next(records)
    intercom.update(ids[-1], state="closed", updated_at=intercom.now())  # on a later page
    with pytest.raises(IncompleteFetchError, match="Intercom's open conversations") as caught:
        list(records)
    assert isinstance(caught.value, TransientError)  # the run fails and is retried later


def test_the_starting_after_cursor_is_intercoms_opaque_token(intercom: FakeIntercom) -> None:
    intercom.add_conversations(4)
    connector = IntercomConnector(intercom.config(page_size=2))
    assert len(list(connector.fetch_backlog())) == 4
    token = _searches(intercom)[1]["pagination"]["starting_after"]
    assert json.loads(base64.b64decode(token))[2] == 2  # [updated_at ms, id, page]


def test_a_change_the_search_index_shows_late_is_found_by_the_next_incremental() -> None:
    # the search index lags 30 s behind writes: the cursor comes from what the search
    # showed, so a change it did not show yet is still after the cursor next time
    fake = FakeIntercom(search_lag=timedelta(seconds=30))
    ids = [fake.add_conversation(created_at=fake.now() - 3600) for _ in range(3)]
    fake.clock.advance(seconds=60)
    with fake.api:
        connector = IntercomConnector(fake.config(app_id="abc123de"), source="support")
        cursor = max(connector.cursor_value(r) or "" for r in connector.fetch_backlog())
        fake.update(ids[0], state="closed")

        first = {r["id"]: r for r in connector.fetch_changes(cursor)}
        assert ids[0] not in first or first[ids[0]]["state"] == "open"  # not shown yet

        fake.clock.advance(seconds=31)
        second = {r["id"]: r for r in connector.fetch_changes(cursor)}
        assert second[ids[0]]["state"] == "closed"
        assert not connector.is_open(second[ids[0]])
    assert not fake.invalid_requests
