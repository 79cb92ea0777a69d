"""Conversation -> task: title, inbox link, due date from SLAs, custom fields."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fragment_intercom import IntercomConfig, IntercomConnector
from fragment_intercom.testing import ME_PATH, FakeIntercom

from fragment_core.errors import BadRecordError, ConfigurationError
from fragment_core.task import TaskStatus

WAITING = 1746176000


def _record(**fields: Any) -> dict[str, Any]:
    record: dict[str, Any] = {
        "type": "conversation",
        "id": "215473958422917",
        "title": None,
        "created_at": 1746172800,
        "updated_at": 1746176400,
        "waiting_since": WAITING,
        "state": "open",
        "priority": "priority",
        "admin_assignee_id": 991267,
        "team_assignee_id": "5017691",
        "tags": {"type": "tag.list", "tags": [{"type": "tag", "id": "7", "name": "vip"}]},
        "source": {
            "type": "conversation",
            "subject": "",
            "body": "<p>My invoice is <b>wrong</b> &amp; late</p><p>Please help</p>",
            "author": {"type": "user", "id": "u1", "name": "Jane Roe", "email": "jane@example.com"},
        },
        "sla_applied": None,
    }
    record.update(fields)
    return record


def _connector(**options: Any) -> IntercomConnector:
    values: dict[str, Any] = {"access_token": "x", "app_id": "abc123de"}
    values.update(options)
    return IntercomConnector(IntercomConfig(**values), source="support")


def test_a_conversation_maps_to_a_task_with_the_documented_fields() -> None:
    task = _connector().to_task(_record())
    assert task.external_id == "215473958422917"
    assert task.fields.title == "My invoice is wrong & late Please help"
    assert task.fields.url == (
        "https://app.intercom.com/a/inbox/abc123de/inbox/conversation/215473958422917"
    )
    assert task.fields.custom == {
        "state": "open",
        "priority": "priority",
        "team": "5017691",
        "admin_assignee": "991267",
        "contact_email": "jane@example.com",
        "tags": ["vip"],
    }
    assert task.external_status == TaskStatus.TODO
    assert task.external_created_at == datetime.fromtimestamp(1746172800, tz=UTC)
    assert task.external_updated_at == datetime.fromtimestamp(1746176400, tz=UTC)
    assert task.due_at is None  # no SLA applied, none configured


def test_the_title_prefers_the_title_then_the_subject_and_is_cut() -> None:
    connector = _connector(title_max_chars=20)
    assert connector.to_task(_record(title="Refund <i>now</i>")).fields.title == "Refund now"
    subject = _record(source={"subject": "<b>Order</b> 42 is late", "body": "<p>x</p>"})
    assert connector.to_task(subject).fields.title == "Order 42 is late"
    long = connector.to_task(_record()).fields.title
    assert len(long) == 20 and long.endswith("…")
    empty = _record(source={"subject": "", "body": "<p> </p>"})
    assert connector.to_task(empty).fields.title == "Intercom conversation 215473958422917"


def test_team_and_admin_ids_as_integers_or_strings_zero_is_unassigned() -> None:
    connector = _connector()
    as_ints = connector.to_task(_record(team_assignee_id=5017691, admin_assignee_id="0"))
    assert as_ints.fields.custom["team"] == "5017691"
    assert "admin_assignee" not in as_ints.fields.custom
    unassigned = connector.to_task(_record(team_assignee_id="0", admin_assignee_id=None))
    assert "team" not in unassigned.fields.custom


def test_due_at_from_the_applied_sla_else_the_configured_default() -> None:
    connector = _connector(sla_targets={"VIP 1h": "1h"}, default_sla="4h")
    waiting = datetime.fromtimestamp(WAITING, tz=UTC)
    vip = _record(sla_applied={"type": "conversation_sla_summary", "sla_name": "VIP 1h",
                               "sla_status": "active"})  # fmt: skip
    task = connector.to_task(vip)
    assert task.due_at == waiting + timedelta(hours=1)
    assert task.fields.custom["sla"] == "VIP 1h"
    other = _record(sla_applied={"sla_name": "Standard", "sla_status": "active"})
    assert connector.to_task(other).due_at == waiting + timedelta(hours=4)
    assert connector.to_task(_record()).due_at == waiting + timedelta(hours=4)
    cancelled = _record(sla_applied={"sla_name": "VIP 1h", "sla_status": "cancelled"})
    assert connector.to_task(cancelled).due_at == waiting + timedelta(hours=4)
    never_waited = _record(waiting_since=None)
    created = datetime.fromtimestamp(1746172800, tz=UTC)
    assert connector.to_task(never_waited).due_at == created + timedelta(hours=4)


def test_sla_durations_are_checked_when_the_config_loads() -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        IntercomConfig(access_token="x", sla_targets={"VIP": "soon"})


def test_contact_email_only_from_a_customer_author() -> None:
    admin_started = _record(source={"body": "hi", "author": {"type": "admin", "email": "a@x"}})
    assert "contact_email" not in _connector().to_task(admin_started).fields.custom


def test_states_map_to_external_status() -> None:
    connector = _connector()
    assert connector.to_task(_record(state="snoozed")).external_status == TaskStatus.TODO
    assert connector.to_task(_record(state="closed")).external_status == TaskStatus.DONE
    with pytest.raises(BadRecordError, match="'pending' is not a conversation state") as info:
        connector.to_task(_record(state="pending"))
    assert info.value.field == "state" and info.value.record_id == "215473958422917"


def test_the_workspace_code_comes_from_me_once_and_is_cached(intercom: FakeIntercom) -> None:
    intercom.add_conversations(3)
    connector = IntercomConnector(intercom.config(), source="support")
    urls = {connector.to_task(r).fields.url.split("/")[5] for r in connector.fetch_backlog()}
    assert urls == {"abc123de"}
    list(connector.fetch_backlog())
    assert len(intercom.api.requests_to("GET", ME_PATH)) == 1


def test_a_configured_app_id_needs_no_me(intercom: FakeIntercom) -> None:
    intercom.add_conversations(2)
    connector = IntercomConnector(intercom.config(app_id="zzz999"), source="support")
    assert {connector.to_task(r).fields.url for r in connector.fetch_backlog()} <= {
        f"https://app.intercom.com/a/inbox/zzz999/inbox/conversation/{i}"
        for i in intercom.conversations
    }
    assert not intercom.api.requests_to("GET", ME_PATH)


def test_url_template_placeholders_are_checked() -> None:
    with pytest.raises(ValueError, match="url_template may use only"):
        IntercomConfig(access_token="x", url_template="https://x/{ticket}")
    with pytest.raises(ValueError, match="close_note may use only"):
        IntercomConfig(access_token="x", close_note="done by {who}")


def test_region_picks_the_api_host_and_base_url_overrides_it() -> None:
    assert IntercomConfig(access_token="x").api_base_url == "https://api.intercom.io"
    assert IntercomConfig(access_token="x", region="eu").api_base_url == (
        "https://api.eu.intercom.io"
    )
    assert IntercomConfig(access_token="x", region="au").api_base_url == (
        "https://api.au.intercom.io"
    )
    custom = IntercomConfig(access_token="x", region="eu", base_url="http://127.0.0.1:9/")
    assert custom.api_base_url == "http://127.0.0.1:9"


def test_a_bad_stored_cursor_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="not a unix time"):
        list(_connector().fetch_changes("2025-05-01T00:00:00Z"))


FINGERPRINT = """
import hashlib
from fragment_intercom import IntercomConnector
from fragment_intercom.testing import FakeIntercom
fake = FakeIntercom(validate=False)
fake.add_conversations(2, tags=["1"], team_assignee_id=77)
with fake.api:
    connector = IntercomConnector(fake.config(app_id="abc123de"))
    for record in connector.fetch_backlog():
        print(hashlib.sha256(connector.fingerprint(record)).hexdigest())
"""


def test_a_conversations_fingerprint_is_the_same_in_every_process() -> None:
    # the runner skips mapping a record whose fingerprint it saw last run: the bytes must
    # not depend on the process (string hashing differs between processes)
    import os
    import subprocess
    import sys

    outputs = set()
    for seed in ("1", "2"):
        proc = subprocess.run(
            [sys.executable, "-c", FINGERPRINT], capture_output=True, text=True, timeout=60,
            env={**os.environ, "PYTHONHASHSEED": seed}, check=False,
        )  # fmt: skip
        assert proc.returncode == 0, proc.stderr[-2000:]
        outputs.add(proc.stdout)
    assert len(outputs) == 1 and len(outputs.pop().split()) == 2
