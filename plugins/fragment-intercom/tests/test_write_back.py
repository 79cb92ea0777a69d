"""Write-back: close as the configured admin, with an optional note; idempotent."""

from __future__ import annotations

import pytest
from fragment_intercom import IntercomConnector
from fragment_intercom.testing import PARTS_PATH, FakeIntercom

from fragment_core.errors import WriteBackError
from fragment_core.testing.contract import completion_for


def _parts(fake: FakeIntercom, conversation_id: str) -> list[dict]:
    path = PARTS_PATH.format(conversation_id=conversation_id)
    return [r.json() for r in fake.api.requests_to("POST", path)]


def test_close_as_the_configured_admin_with_a_note(intercom: FakeIntercom) -> None:
    intercom.admins.add("424242")
    (conversation_id,) = intercom.add_conversations(1)
    connector = IntercomConnector(
        intercom.config(admin_id="424242", close_note="Closed from Fragment ({source})"),
        source="support",
    )
    task = connector.to_task(next(iter(connector.fetch_backlog())))

    said = connector.on_complete(*completion_for(connector, task))

    assert said == f"closed Intercom conversation {conversation_id}"
    assert _parts(intercom, conversation_id) == [
        {"message_type": "close", "type": "admin", "admin_id": "424242",
         "body": "Closed from Fragment (support)"},
    ]  # fmt: skip
    assert intercom.conversations[conversation_id]["state"] == "closed"
    assert intercom.notes[conversation_id] == ["Closed from Fragment (support)"]


def test_without_admin_id_the_tokens_admin_closes_and_no_note_no_body(
    intercom: FakeIntercom,
) -> None:
    (conversation_id,) = intercom.add_conversations(1)
    connector = IntercomConnector(intercom.config(), source="support")
    task = connector.to_task(next(iter(connector.fetch_backlog())))
    connector.on_complete(*completion_for(connector, task))
    assert _parts(intercom, conversation_id) == [
        {"message_type": "close", "type": "admin", "admin_id": intercom.admin_id}
    ]


def test_an_already_closed_conversation_is_done_with_nothing_sent(
    intercom: FakeIntercom,
) -> None:
    (conversation_id,) = intercom.add_conversations(1)
    connector = IntercomConnector(intercom.config(), source="support")
    task = connector.to_task(next(iter(connector.fetch_backlog())))
    intercom.update(conversation_id, state="closed")  # an agent closed it meanwhile

    said = connector.on_complete(*completion_for(connector, task))

    assert said == f"Intercom conversation {conversation_id} was already closed"
    assert _parts(intercom, conversation_id) == []
    assert intercom.closes(conversation_id) == 0


def test_a_snoozed_conversation_is_closed(intercom: FakeIntercom) -> None:
    conversation_id = intercom.add_conversation(state="snoozed")
    connector = IntercomConnector(intercom.config(include_snoozed=True), source="support")
    task = connector.to_task(next(iter(connector.fetch_backlog())))
    connector.on_complete(*completion_for(connector, task))
    assert intercom.closes(conversation_id) == 1


def test_a_deleted_conversation_is_a_write_back_error(intercom: FakeIntercom) -> None:
    (conversation_id,) = intercom.add_conversations(1)
    connector = IntercomConnector(intercom.config(), source="support")
    task = connector.to_task(next(iter(connector.fetch_backlog())))
    del intercom.conversations[conversation_id]
    with pytest.raises(WriteBackError, match="no longer exists"):
        connector.on_complete(*completion_for(connector, task))


def test_an_id_that_is_not_digits_is_never_sent(intercom: FakeIntercom) -> None:
    connector = IntercomConnector(intercom.config(app_id="abc123de"), source="support")
    task = connector.to_task({"id": "../admins", "state": "open", "type": "conversation"})
    with pytest.raises(WriteBackError, match="not an Intercom conversation id"):
        connector.on_complete(*completion_for(connector, task))
    assert not intercom.api.requests
