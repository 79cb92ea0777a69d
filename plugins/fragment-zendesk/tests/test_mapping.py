"""Mapping (agent URL, due date or SLA, names for ids) and write-back (422 closed = done)."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest
from fragment_zendesk import ZendeskConnector
from fragment_zendesk.testing import FakeZendesk

from fragment_core.errors import WriteBackError
from fragment_core.testing.contract import completion_for


def _task_of(connector: ZendeskConnector, ticket_id: int):  # type: ignore[no-untyped-def]
    record = next(r for r in connector.fetch_backlog() if r["id"] == ticket_id)
    return connector.to_task(record)


def test_mapping_uses_agent_url_due_date_or_sla_and_names(zendesk: FakeZendesk) -> None:
    dated = zendesk.add_ticket(
        due_at="2025-06-01T12:00:00Z",
        custom_fields=[{"id": 360001, "value": "gold"}, {"id": 360002, "value": "EMEA"}],
        tags=["vip", "printer"],
    )
    undated = zendesk.add_ticket(created_at="2025-05-01T10:00:00Z")
    connector = ZendeskConnector(zendesk.config(sla_hours=8), source="support")
    task = _task_of(connector, dated)
    fields = task.fields.model_dump()
    assert fields["url"] == f"https://acme.zendesk.com/agent/tickets/{dated}"
    assert task.due_at == datetime(2025, 6, 1, 12, tzinfo=UTC)
    assert fields["group"] == "Billing" and fields["assignee"] == "Ada Agent"
    assert fields["requester_email"] == "carl@example.org"
    assert fields["Plan"] == "gold" and fields["Region"] == "EMEA"
    assert fields["priority"] == "high" and fields["type"] == "incident"
    assert fields["tags"] == ["vip", "printer"]
    sla = _task_of(connector, undated)
    assert sla.due_at == datetime(2025, 5, 1, 10, tzinfo=UTC) + timedelta(hours=8)

    only_plan = ZendeskConnector(zendesk.config(custom_fields=["Plan"]), source="support")
    picked = _task_of(only_plan, dated).fields.model_dump()
    assert picked["Plan"] == "gold" and "Region" not in picked


def test_names_are_looked_up_once_per_run(zendesk: FakeZendesk) -> None:
    zendesk.add_tickets(250)
    connector = ZendeskConnector(zendesk.config(), source="support")
    list(connector.fetch_backlog())
    for path in ("/api/v2/ticket_fields.json", "/api/v2/groups.json"):
        assert len(zendesk.api.requests_to("GET", path)) == 1
    assert len(zendesk.api.requests_to("GET", "/api/v2/users/show_many.json")) == 1


def test_write_back_solves_with_note_and_closed_ticket_counts_as_done(
    zendesk: FakeZendesk,
) -> None:
    first, closed_meanwhile, unassigned = zendesk.add_tickets(3)
    config = zendesk.config(completion_note="Done in Fragment ({source}).")
    connector = ZendeskConnector(config, source="support")
    tasks = {r["id"]: connector.to_task(r) for r in connector.fetch_backlog()}

    assert connector.on_complete(*completion_for(connector, tasks[first])) == (
        f"set Zendesk ticket {first} to solved"
    )
    assert zendesk.tickets[str(first)]["fragment_comments"] == [
        {"body": "Done in Fragment (support).", "public": False}
    ]
    zendesk.closed_before_update.add(closed_meanwhile)  # closed between our read and write
    said = connector.on_complete(*completion_for(connector, tasks[closed_meanwhile]))
    assert said == f"Zendesk ticket {closed_meanwhile} was already closed"
    assert zendesk.requests_to_put(closed_meanwhile) == 1  # its 422 was the answer

    zendesk.require_assignee_to_solve = True
    zendesk.change(unassigned, assignee_id=None)
    with pytest.raises(WriteBackError, match="needs an assignee"):
        connector.on_complete(*completion_for(connector, tasks[unassigned]))


def test_a_configured_status_is_set_instead_of_solved(zendesk: FakeZendesk) -> None:
    ticket = zendesk.add_ticket()
    connector = ZendeskConnector(zendesk.config(solve_status="pending"), source="support")
    task = _task_of(connector, ticket)
    connector.on_complete(*completion_for(connector, task))
    assert zendesk.tickets[str(ticket)]["status"] == "pending"
