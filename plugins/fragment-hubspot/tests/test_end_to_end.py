"""fake HubSpot -> `fragment sync` -> sandbox -> completed in the sandbox -> write-back, once."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from click.testing import CliRunner
from fragment_hubspot.testing import FakeHubSpot

from fragment_core.cli import cli
from fragment_core.task import TaskStatus, task_uid
from fragment_core.testing.cli import sync_json, write_config

SOURCES = """\
[[sources]]
name = "crm"
connector = "hubspot"

[sources.options]
access_token = "${{HUBSPOT_TOKEN}}"
base_url = "{hubspot_url}"
search_requests_per_second = 0
completion_note = "Completed in Fragment."
"""


def _write_config(tmp_path: Path, sandbox: Any, hubspot: FakeHubSpot) -> Path:
    return write_config(tmp_path, sandbox.url, SOURCES.format(hubspot_url=hubspot.api.base_url))


def _sync(config: Path, env: dict[str, str]) -> dict[str, Any]:
    # exit 4 = partial: the one malformed HubSpot task is reported, the rest applied
    return sync_json(config, env, "crm", code=4, secrets=[env["HUBSPOT_TOKEN"]])


def test_sync_then_complete_in_fragment_writes_back_once(
    hubspot: FakeHubSpot, sandbox: Any, tmp_path: Path
) -> None:
    ids = hubspot.add_tasks(5)
    broken = hubspot.add_task(hs_timestamp="whenever")
    config = _write_config(tmp_path, sandbox, hubspot)
    env = {"FRAGMENT_TOKEN": sandbox.token, "HUBSPOT_TOKEN": hubspot.token}

    first = _sync(config, env)
    assert first["created"] == 5
    (error,) = first["record_errors"]
    assert error["record_id"] == broken and error["field"] == "hs_timestamp"

    client = sandbox.client()
    done_id = ids[2]
    uid = task_uid("crm", done_id)
    synced = client.get_task(uid)
    assert synced.fields["url"] == f"https://app.hubspot.com/contacts/4242/record/0-27/{done_id}"
    assert synced.fields["title"] == f"Follow up {done_id}"
    client.patch_task(uid, {"status": TaskStatus.DONE.value})

    second = _sync(config, env)
    assert second["written_back"] == 1
    assert second["not_mapped"] == 5  # unchanged in HubSpot: not mapped again; the broken one is
    assert hubspot.completions(done_id) == 1
    assert hubspot.tasks[done_id]["properties"]["hs_task_status"] == "COMPLETED"

    third = _sync(config, env)
    assert third["written_back"] == 0
    assert hubspot.completions(done_id) == 1
    patches = hubspot.api.requests_to("PATCH", f"/crm/v3/objects/tasks/{done_id}")
    assert len(patches) == 1
    assert client.get_task(uid).status == TaskStatus.DONE  # not reopened


def test_fragment_check_says_what_is_wrong(
    hubspot: FakeHubSpot, sandbox: Any, tmp_path: Path
) -> None:
    config = _write_config(tmp_path, sandbox, hubspot)
    env = {"FRAGMENT_TOKEN": sandbox.token, "HUBSPOT_TOKEN": "pat-na1-rotated-long-ago"}
    result = CliRunner().invoke(cli, ["--config", str(config), "check"], env=env)
    assert result.exit_code != 0
    assert "HubSpot rejected the access token" in result.output
    assert "pat-na1-rotated-long-ago" not in result.output

    hubspot.scopes.discard("crm.objects.contacts.read")
    env["HUBSPOT_TOKEN"] = hubspot.token
    result = CliRunner().invoke(cli, ["--config", str(config), "check"], env=env)
    assert result.exit_code != 0
    assert "lacks the scope crm.objects.contacts.read" in result.output
