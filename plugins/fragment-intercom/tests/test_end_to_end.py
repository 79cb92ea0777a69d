"""fake Intercom -> `fragment sync` -> sandbox -> completed in the sandbox -> closed, once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fragment_intercom.testing import PARTS_PATH, SEARCH_PATH, FakeIntercom

from fragment_core.task import TaskStatus, task_uid
from fragment_core.testing.cli import sync_json, write_config

SOURCES = """\
[[sources]]
name = "support"
connector = "intercom"

[sources.options]
access_token = "${{INTERCOM_TOKEN}}"
base_url = "{intercom_url}"
close_note = "Closed from Fragment."
default_sla = "4h"
{extra}
"""


def _write_config(tmp_path: Path, sandbox: Any, intercom: FakeIntercom, extra: str = "") -> Path:
    sources = SOURCES.format(intercom_url=intercom.api.base_url, extra=extra)
    return write_config(tmp_path, sandbox.url, sources)


def _sync(config: Path, env: dict[str, str], expect: int) -> dict[str, Any]:
    return sync_json(config, env, "support", code=expect, secrets=[env["INTERCOM_TOKEN"]])


def _closes_sent(intercom: FakeIntercom, conversation_id: str) -> int:
    path = PARTS_PATH.format(conversation_id=conversation_id)
    return len(intercom.api.requests_to("POST", path))


def test_sync_complete_in_fragment_closes_in_intercom_once_and_no_echo(
    intercom: FakeIntercom, sandbox: Any, tmp_path: Path
) -> None:
    ids = intercom.add_conversations(5, created_at=intercom.now() - 600)
    broken = intercom.add_conversation(waiting_since=10**15)
    config = _write_config(tmp_path, sandbox, intercom)
    env = {"FRAGMENT_TOKEN": sandbox.token, "INTERCOM_TOKEN": intercom.token}

    # exit 4 = partial: the malformed conversation is reported and skipped, the rest synced
    first = _sync(config, env, expect=4)
    assert first["created"] == 5
    (error,) = first["record_errors"]
    assert error["record_id"] == broken and error["field"] == "waiting_since"

    client = sandbox.client()
    done_id, resolved_id = ids[1], ids[3]
    uid = task_uid("support", done_id)
    synced = client.get_task(uid)
    assert synced.fields["url"] == (
        f"https://app.intercom.com/a/inbox/abc123de/inbox/conversation/{done_id}"
    )
    assert synced.fields["title"] == f"Question {done_id}"
    assert synced.fields["contact_email"].endswith("@example.com")
    client.patch_task(uid, {"status": TaskStatus.DONE.value})  # an operator completes it
    intercom.clock.advance(seconds=60)
    intercom.update(resolved_id, state="closed")  # an agent closes another in Intercom

    second = _sync(config, env, expect=4)
    assert second["written_back"] == 1 and second["mode"] == "incremental"
    assert second["closed"] == 1
    assert _closes_sent(intercom, done_id) == 1
    assert intercom.closes(done_id) == 1
    assert intercom.notes[done_id] == ["Closed from Fragment."]
    assert _closes_sent(intercom, resolved_id) == 0  # resolved at the source: no echo
    assert client.get_task(task_uid("support", resolved_id)).status == TaskStatus.DONE

    third = _sync(config, env, expect=4)
    assert third["written_back"] == 0 and third["closed"] == 0
    assert _closes_sent(intercom, done_id) == 1
    assert _closes_sent(intercom, resolved_id) == 0
    assert client.get_task(uid).status == TaskStatus.DONE  # not reopened


def test_a_5xx_storm_or_a_truncated_page_fails_the_run_with_nothing_closed(
    intercom: FakeIntercom, sandbox: Any, tmp_path: Path
) -> None:
    intercom.add_conversations(120)  # three pages
    extra = "max_attempts = 2\npage_size = 50"
    config = _write_config(tmp_path, sandbox, intercom, extra=extra)
    env = {"FRAGMENT_TOKEN": sandbox.token, "INTERCOM_TOKEN": intercom.token}
    assert _sync(config, env, expect=0)["created"] == 120
    client = sandbox.client()

    for fault in ({"status": 503}, {"kind": "truncate"}):
        # page 1 answers (a zero-second "timeout" fault passes it through), every later
        # search fails: a full fetch cut short after 50 of the 120 conversations
        intercom.fail_next(1, kind="timeout", seconds=0, path=SEARCH_PATH)
        intercom.fail_next(20, path=SEARCH_PATH, **fault)
        report = sync_json(config, env, "support", "--full", code=1, secrets=[intercom.token])
        assert report["outcome"] == "failed" and report["closed"] == 0
        assert len(list(client.list_tasks(status=TaskStatus.TODO))) == 120  # none closed
        intercom.api.reset()
