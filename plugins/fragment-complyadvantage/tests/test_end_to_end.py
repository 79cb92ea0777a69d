"""fake ComplyAdvantage / Mesh -> `fragment sync` -> sandbox -> completed in the sandbox ->
the next run's write-back arrives at the fake, once; a record resolved at the source closes
its task with no write-back; `fragment check` says what is wrong without the secret."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from click.testing import CliRunner
from fragment_complyadvantage.testing import FakeComplyAdvantage, FakeMesh

from fragment_core.cli import cli
from fragment_core.task import TaskStatus, task_uid
from fragment_core.testing.cli import sync_json, write_config

SOURCES = """\
[[sources]]
name = "screening"
connector = "complyadvantage"

[sources.options]
api_key = "${{CA_API_KEY}}"
base_url = "{ca_url}"
outcome_map = {{ cleared = "false_positive" }}

[[sources]]
name = "cases"
connector = "complyadvantage-mesh"

[sources.options]
username = "{mesh_user}"
password = "${{MESH_PASSWORD}}"
realm = "{mesh_realm}"
base_url = "{mesh_url}"
decision_stage = "Approved"
alert_transition_pause = 0
"""


def _write_config(tmp_path: Path, sandbox: Any, ca: FakeComplyAdvantage, mesh: FakeMesh) -> Path:
    return write_config(
        tmp_path,
        sandbox.url,
        SOURCES.format(
            ca_url=ca.api.base_url,
            mesh_url=mesh.api.base_url,
            mesh_user=mesh.username,
            mesh_realm=mesh.realm,
        ),
    )


def _env(sandbox: Any, ca: FakeComplyAdvantage, mesh: FakeMesh) -> dict[str, str]:
    return {"FRAGMENT_TOKEN": sandbox.token, "CA_API_KEY": ca.token, "MESH_PASSWORD": mesh.password}


def _sync(config: Path, env: dict[str, str], source: str, code: int) -> dict[str, Any]:
    secrets = [env["CA_API_KEY"], env["MESH_PASSWORD"]]
    return sync_json(config, env, source, code=code, secrets=secrets)


def test_searches_sync_complete_write_back_once_and_no_echo(
    ca: FakeComplyAdvantage, mesh: FakeMesh, sandbox: Any, tmp_path: Path
) -> None:
    ids = ca.add_searches(5)
    broken = ca.add_search(share_url=None)
    config = _write_config(tmp_path, sandbox, ca, mesh)
    env = _env(sandbox, ca, mesh)

    first = _sync(config, env, "screening", 4)  # 4: partial, the malformed search reported
    assert first["created"] == 5
    (error,) = first["record_errors"]
    assert error["record_id"] == broken and error["field"] == "share_url"

    client = sandbox.client()
    done_id, gone_id = ids[1], ids[3]
    uid = task_uid("screening", done_id)
    synced = client.get_task(uid)
    assert synced.fields["url"] == ca.searches[done_id]["share_url"]
    assert synced.fields["title"] == f"{ca.searches[done_id]['search_term']} (3 hits)"
    client.patch_task(uid, {"status": TaskStatus.DONE.value, "form_data": {"outcome": "cleared"}})
    ca.resolve(gone_id, "no_match")  # resolved by an analyst in ComplyAdvantage

    second = _sync(config, env, "screening", 4)
    assert second["written_back"] == 1 and second["closed"] == 1
    assert ca.updates(done_id) == 1 and ca.searches[done_id]["match_status"] == "false_positive"
    assert ca.updates(gone_id) == 0  # closed because resolved at the source: no echo
    assert client.get_task(task_uid("screening", gone_id)).status == TaskStatus.DONE

    third = _sync(config, env, "screening", 4)
    assert third["written_back"] == 0 and third["closed"] == 0
    assert len(ca.api.requests_to("PATCH", f"/searches/{done_id}")) == 1
    patched = {r.path for r in ca.api.requests if r.method == "PATCH"}
    assert patched == {f"/searches/{done_id}"}


def test_mesh_sync_complete_write_back_once_and_no_echo(
    ca: FakeComplyAdvantage, mesh: FakeMesh, sandbox: Any, tmp_path: Path
) -> None:
    ids = mesh.add_cases(5)
    broken = mesh.add_case(review_items_count="several")
    config = _write_config(tmp_path, sandbox, ca, mesh)
    env = _env(sandbox, ca, mesh)

    first = _sync(config, env, "cases", 4)
    assert first["created"] == 5
    (error,) = first["record_errors"]
    assert error["record_id"] == broken and error["field"] == "review_items_count"

    client = sandbox.client()
    done_id, gone_id = ids[0], ids[4]
    uid = task_uid("cases", done_id)
    synced = client.get_task(uid)
    assert synced.fields["url"] == f"https://mesh.complyadvantage.com/cases/{done_id}"
    assert synced.fields["stage"] == "Not started"
    client.patch_task(uid, {"status": TaskStatus.DONE.value})
    mesh.move(gone_id, "Rejected")  # decided by a reviewer in Mesh

    second = _sync(config, env, "cases", 4)
    assert second["written_back"] == 1 and second["closed"] == 1
    assert mesh.decisions(done_id) == 1
    assert mesh.cases[done_id]["stage"]["name"] == "Approved"
    assert {a["state"] for a in mesh.alerts_of(done_id)} == {"POSITIVE_END_STATE"}
    assert mesh.decisions(gone_id) == 0  # no echo
    assert {a["state"] for a in mesh.alerts_of(gone_id)} == {"OPEN"}

    third = _sync(config, env, "cases", 4)
    assert third["written_back"] == 0
    assert len(mesh.api.requests_to("POST", f"/v2/cases/{done_id}/transition")) == 1
    assert mesh.tokens_issued == 3  # one per run: each run's client signs in once


def test_fragment_check_says_what_is_wrong_without_secrets(
    ca: FakeComplyAdvantage, mesh: FakeMesh, sandbox: Any, tmp_path: Path
) -> None:
    config = _write_config(tmp_path, sandbox, ca, mesh)
    env = _env(sandbox, ca, mesh)
    good = CliRunner().invoke(cli, ["--config", str(config), "check"], env=env)
    assert good.exit_code == 0, good.output
    assert "signed in as" in good.output and "search listing" in good.output

    env.update(CA_API_KEY="ca-key-revoked-3141", MESH_PASSWORD="mesh-password-expired-2718")
    bad = CliRunner().invoke(cli, ["--config", str(config), "check"], env=env)
    assert bad.exit_code == 1
    text = " ".join(bad.output.split())
    assert "ComplyAdvantage rejected the API key" in text
    assert "Mesh refused to sign in user" in text and "region" in text
    assert "ca-key-revoked-3141" not in bad.output
    assert "mesh-password-expired-2718" not in bad.output
