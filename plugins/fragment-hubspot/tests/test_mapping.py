"""Mapping a HubSpot task to a Fragment task, incremental fetch, write-back."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fragment_hubspot import HubSpotConnector
from fragment_hubspot.testing import SEARCH_PATH, FakeHubSpot

from fragment_core.errors import WriteBackError
from fragment_core.task import TaskStatus
from fragment_core.testing.contract import completion_for


def test_mapping_of_every_documented_field(hubspot: FakeHubSpot) -> None:
    task_id = hubspot.add_task(
        hs_task_subject="Call back ACME about renewal",
        hs_task_body="<p>Ask about <b>seat&nbsp;count</b></p><p>" + "x" * 600 + "</p>",
        hs_timestamp="1746543600000",  # epoch ms, as HubSpot also accepts
        hs_task_priority="HIGH",
        hs_task_type="CALL",
        hubspot_owner_id="61230045",
        hs_task_status="IN_PROGRESS",
    )
    connector = HubSpotConnector(hubspot.config(body_max_chars=40), source="crm")
    task = connector.to_task(next(iter(connector.fetch_backlog())))
    assert task.external_id == task_id
    assert task.fields.title == "Call back ACME about renewal"
    assert task.fields.url == f"https://app.hubspot.com/contacts/4242/record/0-27/{task_id}"
    assert task.due_at == datetime(2025, 5, 6, 15, 0, tzinfo=UTC)
    custom = task.fields.custom
    assert custom["priority"] == "HIGH" and custom["type"] == "CALL"
    assert custom["owner"] == "61230045" and custom["status"] == "IN_PROGRESS"
    assert custom["body"].startswith("Ask about seat count\nxxx") and len(custom["body"]) == 40
    assert task.external_status == TaskStatus.STARTED
    assert task.external_updated_at is not None


def test_incremental_fetch_returns_tasks_modified_since_the_cursor(hubspot: FakeHubSpot) -> None:
    old, changed, closed = hubspot.add_tasks(3)
    connector = HubSpotConnector(hubspot.config(), source="crm")
    cursor = max(connector.cursor_value(r) for r in connector.fetch_backlog())
    hubspot.update(changed, hs_task_subject="New subject")
    hubspot.update(closed, hs_task_status="COMPLETED")
    fresh = hubspot.add_task()

    records = {r["id"]: r for r in connector.fetch_changes(cursor)}

    # GTE keeps the record at the cursor itself (unchanged content: no write downstream)
    assert set(records) - {old} == {changed, closed, fresh}
    assert connector.is_open(records[changed]) and not connector.is_open(records[closed])
    body = hubspot.api.requests_to("POST", SEARCH_PATH)[-1].json()
    (window,) = body["filterGroups"][0]["filters"]
    assert window["propertyName"] == "hs_lastmodifieddate" and window["operator"] == "GTE"
    assert connector.cursor_value(records[fresh]) > cursor


def test_incremental_fetch_overlaps_the_cursor_for_late_indexed_changes(
    hubspot: FakeHubSpot,
) -> None:
    # HubSpot's search index can show a change seconds late: a task modified before the
    # cursor may appear only after the run that set the cursor
    (first,) = hubspot.add_tasks(1)
    connector = HubSpotConnector(hubspot.config(cursor_overlap_seconds=30), source="crm")
    cursor = connector.cursor_value(next(iter(connector.fetch_backlog())))
    assert cursor is not None
    at_cursor = datetime.fromisoformat(cursor.replace("Z", "+00:00"))
    late = hubspot.add_task(modified=at_cursor - timedelta(seconds=20))
    too_old = hubspot.add_task(modified=at_cursor - timedelta(seconds=40))

    ids = {r["id"] for r in connector.fetch_changes(cursor)}
    assert late in ids and first in ids and too_old not in ids

    exact = HubSpotConnector(hubspot.config(cursor_overlap_seconds=0), source="crm")
    assert {r["id"] for r in exact.fetch_changes(cursor)} == {first}


def test_is_open_applies_the_configured_filters_to_changes(hubspot: FakeHubSpot) -> None:
    connector = HubSpotConnector(hubspot.config(owner_ids=["7"]), source="crm")
    moved = {"id": "1", "properties": {"hubspot_owner_id": "8", "hs_task_status": "WAITING"}}
    kept = {"id": "2", "properties": {"hubspot_owner_id": "7", "hs_task_status": "WAITING"}}
    assert not connector.is_open(moved) and connector.is_open(kept)


def test_write_back_completes_once_and_appends_the_note(hubspot: FakeHubSpot) -> None:
    (task_id,) = hubspot.add_tasks(1)
    connector = HubSpotConnector(
        hubspot.config(completion_note="Done in Fragment at {done_at}."), source="crm"
    )
    task = connector.to_task(next(iter(connector.fetch_backlog())))
    remote, completion = completion_for(connector, task)

    assert connector.on_complete(remote, completion) == f"completed HubSpot task {task_id}"
    assert "already" in (connector.on_complete(remote, completion) or "")

    assert hubspot.completions(task_id) == 1
    properties = hubspot.tasks[task_id]["properties"]
    assert properties["hs_task_status"] == "COMPLETED"
    assert properties["hs_task_body"].endswith(
        "<p>Done in Fragment at 2025-01-02T03:04:05.000Z.</p>"
    )
    (patch,) = hubspot.api.requests_to("PATCH", f"/crm/v3/objects/tasks/{task_id}")
    assert patch.json()["properties"]["hs_task_status"] == "COMPLETED"


def test_write_back_of_a_deleted_task_is_a_clear_error(hubspot: FakeHubSpot) -> None:
    (task_id,) = hubspot.add_tasks(1)
    connector = HubSpotConnector(hubspot.config(), source="crm")
    task = connector.to_task(next(iter(connector.fetch_backlog())))
    del hubspot.tasks[task_id]
    with pytest.raises(WriteBackError, match=f"HubSpot task {task_id} no longer exists"):
        connector.on_complete(*completion_for(connector, task))


def test_config_errors_name_the_option() -> None:
    from fragment_hubspot import HubSpotConfig
    from pydantic import ValidationError

    with pytest.raises(ValidationError, match="url_template"):
        HubSpotConfig(access_token="t", url_template="https://x/{nope}")
    with pytest.raises(ValidationError, match="page_size"):
        HubSpotConfig(access_token="t", page_size=500)


@pytest.mark.parametrize(
    "hostile", ["..", ".", "../../v3/owners", "1/../2", "1?x=y", "1#x", "1%2F2"]
)
def test_no_id_changes_a_write_back_path(hubspot: FakeHubSpot, hostile: str) -> None:
    from fragment_core.task import Task

    hubspot.add_tasks(1)
    connector = HubSpotConnector(hubspot.config(), source="crm")
    task = Task.new(external_id=hostile, title="t")
    with pytest.raises(WriteBackError, match="is not a HubSpot task id"):
        connector.on_complete(*completion_for(connector, task))
    assert hubspot.api.requests == []


def test_a_write_back_reaches_exactly_the_task_path(hubspot: FakeHubSpot) -> None:
    (task_id,) = hubspot.add_tasks(1)
    connector = HubSpotConnector(hubspot.config(), source="crm")
    task = connector.to_task(next(iter(connector.fetch_backlog())))
    hubspot.api.requests.clear()
    connector.on_complete(*completion_for(connector, task))
    paths = {(r.method, r.raw_path) for r in hubspot.api.requests}
    assert paths == {
        ("GET", f"/crm/v3/objects/tasks/{task_id}"),
        ("PATCH", f"/crm/v3/objects/tasks/{task_id}"),
    }
