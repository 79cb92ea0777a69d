"""fake Zendesk -> `fragment sync` -> sandbox -> completed in the sandbox -> write-back, once;
a ticket solved in Zendesk closes its task with no write-back echo; failures close nothing."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fragment_zendesk.testing import FakeZendesk

from fragment_core.task import TaskStatus, task_uid
from fragment_core.testing.cli import sync_json, write_config

SOURCES = """\
[[sources]]
name = "support"
connector = "zendesk"

[sources.options]
subdomain = "acme"
email = "{email}"
token = "${{ZENDESK_TOKEN}}"
base_url = "{base_url}"
ca_bundle = "{ca_bundle}"
retry_attempts = 2
incremental_requests_per_minute = 600
custom_fields = ["Plan"]
completion_note = "Solved in Fragment."
"""


def _write_config(tmp_path: Path, sandbox: Any, zendesk: FakeZendesk) -> Path:
    sources = SOURCES.format(
        email=zendesk.email,
        base_url=zendesk.api.base_url,
        ca_bundle=Path(zendesk.ca_bundle).as_posix(),
    )
    return write_config(tmp_path, sandbox.url, sources)


def _sync(config: Path, env: dict[str, str], *flags: str, code: int = 0) -> dict[str, Any]:
    return sync_json(config, env, "support", *flags, code=code, secrets=[env["ZENDESK_TOKEN"]])


def test_sync_complete_write_back_once_and_solved_at_source_closes_without_echo(
    zendesk: FakeZendesk, sandbox: Any, tmp_path: Path
) -> None:
    ids = zendesk.add_tickets(5)
    broken = zendesk.add_malformed(created_at="last tuesday")
    config = _write_config(tmp_path, sandbox, zendesk)
    env = {"FRAGMENT_TOKEN": sandbox.token, "ZENDESK_TOKEN": zendesk.api_token}

    first = _sync(config, env, code=4)  # partial: the malformed ticket is reported, skipped
    assert first["created"] == 5
    (error,) = first["record_errors"]
    assert error["record_id"] == str(broken) and error["field"] == "created_at"

    client = sandbox.client()
    done, solved_by_agent = ids[1], ids[3]
    synced = client.get_task(task_uid("support", str(done)))
    assert synced.fields["url"] == f"https://acme.zendesk.com/agent/tickets/{done}"
    assert synced.fields["Plan"] == "gold" and synced.fields["group"] == "Billing"
    client.patch_task(task_uid("support", str(done)), {"status": TaskStatus.DONE.value})

    zendesk.clock.advance(minutes=2)
    second = _sync(config, env, code=4)
    assert second["written_back"] == 1
    assert zendesk.solves(done) == 1
    assert zendesk.tickets[str(done)]["status"] == "solved"
    (note,) = zendesk.tickets[str(done)]["fragment_comments"]
    assert note == {"body": "Solved in Fragment.", "public": False}

    zendesk.change(solved_by_agent, status="solved")  # an agent solves it in Zendesk
    zendesk.clock.advance(minutes=2)
    third = _sync(config, env, code=4)
    assert third["written_back"] == 0 and third["closed"] == 1
    assert client.get_task(task_uid("support", str(solved_by_agent))).status == TaskStatus.DONE
    assert zendesk.requests_to_put(solved_by_agent) == 0  # no echo
    assert zendesk.requests_to_put(done) == 1  # written back once, ever
    assert zendesk.solves(done) == 1


def test_a_failing_fetch_closes_nothing(zendesk: FakeZendesk, sandbox: Any, tmp_path: Path) -> None:
    ids = zendesk.add_tickets(4)
    config = _write_config(tmp_path, sandbox, zendesk)
    env = {"FRAGMENT_TOKEN": sandbox.token, "ZENDESK_TOKEN": zendesk.api_token}
    assert _sync(config, env, "--full")["created"] == 4
    client = sandbox.client()

    for gone in ids[:3]:
        zendesk.change(gone, status="solved")
    zendesk.fail_next(50, status=503, path="/api/v2/search/export.json")
    failed = _sync(config, env, "--full", code=1)
    assert failed["closed"] == 0
    zendesk.api.reset()
    zendesk.short_page_next(1, drop=1, path="/api/v2/search/export.json")
    assert _sync(config, env, "--full", code=1)["closed"] == 0
    zendesk.fail_next(5, kind="truncate", path="/api/v2/search/export.json")
    assert _sync(config, env, "--full", code=1)["closed"] == 0
    assert all(
        client.get_task(task_uid("support", str(i))).status != TaskStatus.DONE for i in ids
    )


def test_closes_the_incremental_export_reports_count_against_the_blast_radius_cap(
    zendesk: FakeZendesk, sandbox: Any, tmp_path: Path
) -> None:
    ids = zendesk.add_tickets(30)
    config = _write_config(tmp_path, sandbox, zendesk)
    env = {"FRAGMENT_TOKEN": sandbox.token, "ZENDESK_TOKEN": zendesk.api_token}
    assert _sync(config, env)["created"] == 30
    for solved in ids[:25]:
        zendesk.change(solved, status="solved")
    zendesk.clock.advance(minutes=2)
    zendesk.api.reset()
    capped = _sync(config, env, code=3)
    assert capped["closed"] == 0
    assert any("25 reported closed by the source" in m for m in capped["messages"])
    assert zendesk.api.requests_to("GET", "/api/v2/incremental/tickets/cursor.json")
    assert not zendesk.api.requests_to("GET", "/api/v2/search/export.json")  # incremental
