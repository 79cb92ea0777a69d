"""Backlog fetch: the search body HubSpot gets, filters, and paging past the 10,000 cap."""

from __future__ import annotations

import time

import pytest
from fragment_hubspot import HubSpotConnector
from fragment_hubspot.search import MODIFIED
from fragment_hubspot.testing import SEARCH_PATH, FakeHubSpot, iso

from fragment_core.errors import IncompleteFetchError, TransientError


def _search_bodies(fake: FakeHubSpot) -> list[dict]:
    return [r.json() for r in fake.api.requests_to("POST", SEARCH_PATH)]


def test_25000_open_tasks_are_fetched_through_the_10000_cap(hubspot: FakeHubSpot) -> None:
    # seven tasks share each modification instant, so every window boundary splits ties
    base = time.time() - 86_400
    for i in range(25_000):
        hubspot.add_task(modified=iso_from(base + (i // 7)))
    hubspot.add_tasks(40, hs_task_status="COMPLETED")
    connector = HubSpotConnector(hubspot.config(), source="crm")

    ids = [record["id"] for record in connector.fetch_backlog()]

    assert len(ids) == 25_000 and len(set(ids)) == 25_000
    assert set(ids) == hubspot.open_ids()
    bodies = _search_bodies(hubspot)
    assert max(int(b.get("after") or 0) for b in bodies) < 10_000  # never paged past the cap
    windows = [b for b in bodies if "after" not in b]
    assert len(windows) >= 3  # 25,000 needs at least three queries of 10,000


def iso_from(seconds: float) -> str:
    from datetime import UTC, datetime

    return iso(datetime.fromtimestamp(seconds, tz=UTC))


def test_more_than_a_window_in_one_instant_is_paged_by_object_id() -> None:
    fake = FakeHubSpot(result_cap=100)
    fake.add_tasks(30)
    fake.add_tasks(260, same_instant=True)  # a bulk import: 260 tasks, one timestamp
    fake.add_tasks(30)
    with fake.api:
        connector = HubSpotConnector(fake.config(page_size=20, search_result_cap=100), source="crm")
        ids = [record["id"] for record in connector.fetch_backlog()]
    assert sorted(ids) == sorted(fake.open_ids()) and len(ids) == 320
    assert not fake.invalid_requests
    sorts = {b["sorts"][0]["propertyName"] for b in _search_bodies(fake)}
    assert sorts == {MODIFIED, "hs_object_id"}


def test_search_body_has_the_documented_shape_and_filters(hubspot: FakeHubSpot) -> None:
    mine = hubspot.add_task(
        hubspot_owner_id="7",
        hs_task_priority="HIGH",
        hs_task_type="CALL",
        hs_queue_membership_ids="11;12",
        hs_custom_score="9",
    )
    hubspot.add_task(
        hubspot_owner_id="8",
        hs_task_priority="HIGH",
        hs_task_type="CALL",
        hs_queue_membership_ids="12",
    )
    hubspot.add_task(hubspot_owner_id="7", hs_task_priority="LOW", hs_task_type="CALL")
    config = hubspot.config(
        owner_ids=["7"],
        priorities=["high"],
        task_types=["CALL"],
        queue_ids=["12"],
        extra_properties=["hs_custom_score"],
    )
    connector = HubSpotConnector(config, source="crm")

    records = list(connector.fetch_backlog())

    assert [r["id"] for r in records] == [mine]
    (body,) = _search_bodies(hubspot)
    filters = body["filterGroups"][0]["filters"]
    assert {"propertyName": "hs_task_status", "operator": "NEQ", "value": "COMPLETED"} in filters
    assert {"propertyName": "hs_task_priority", "operator": "IN", "values": ["HIGH"]} in filters
    assert body["sorts"] == [{"propertyName": MODIFIED, "direction": "ASCENDING"}]
    assert body["limit"] == 200 and "hs_custom_score" in body["properties"]
    task = connector.to_task(records[0])
    assert task.fields.custom["hs_custom_score"] == "9"


def test_associated_record_ids_when_asked(hubspot: FakeHubSpot) -> None:
    first, second = hubspot.add_tasks(2)
    hubspot.associations["contacts"] = {first: ["501", "502"]}
    hubspot.associations["companies"] = {second: ["901"]}
    connector = HubSpotConnector(
        hubspot.config(associations=["contacts", "companies"]), source="crm"
    )
    tasks = {t.external_id: t for t in map(connector.to_task, connector.fetch_backlog())}
    assert tasks[first].fields.custom["associated_contacts"] == ["501", "502"]
    assert tasks[first].fields.custom["associated_companies"] == []
    assert tasks[second].fields.custom["associated_companies"] == ["901"]


def test_search_rate_is_paced_below_hubspots_per_second_limit() -> None:
    fake = FakeHubSpot(search_limit_per_second=5)
    fake.add_tasks(12)
    with fake.api:
        connector = HubSpotConnector(
            fake.config(page_size=1, search_requests_per_second=4), source="crm"
        )
        started = time.monotonic()
        assert len(list(connector.fetch_backlog())) == 12
        elapsed = time.monotonic() - started
    assert fake.searches_over_limit == 0  # never tripped the fake's 5/s limit
    assert elapsed >= 11 / 4 - 0.1


def test_a_listing_that_shrinks_while_paged_is_incomplete_not_the_end(
    hubspot: FakeHubSpot,
) -> None:
    # 50 open tasks, 20 a page; one is completed after the first page: the offsets shift,
    # so a task the fetch never saw would look gone and be closed, were this the end
    hubspot.add_tasks(50)
    connector = HubSpotConnector(hubspot.config(page_size=20), source="crm")
    records = connector.fetch_backlog()
    first = next(records)
    hubspot.update(first["id"], hs_task_status="COMPLETED")
    with pytest.raises(IncompleteFetchError, match=r"after 49 of the 50 items") as caught:
        list(records)
    assert isinstance(caught.value, TransientError)
    assert caught.value.where is not None


def test_a_short_page_is_incomplete_not_the_end(hubspot: FakeHubSpot) -> None:
    # FakeVendor's short-page fault: a page one item short, total and cursor unchanged
    hubspot.add_tasks(50)
    hubspot.short_page_next(1)
    connector = HubSpotConnector(hubspot.config(page_size=20), source="crm")
    with pytest.raises(IncompleteFetchError, match=r"49 of the 50 items"):
        list(connector.fetch_backlog())
