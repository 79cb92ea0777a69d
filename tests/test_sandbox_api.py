"""The sandbox Tasks API over real loopback HTTP, with a plain httpx client."""

from __future__ import annotations

import re
import time
import uuid

import httpx
import pytest

from fragment_core.sandbox import run_sandbox


def _put(api, uid, body):
    response = api.put(f"/tasks/{uid}", json=body)
    assert response.status_code == 200, response.text
    return response.json()


def test_no_code_payload_is_accepted_as_is(sandbox):
    payload = {
        "fields": {
            "title": "Review refund",
            "url": "https://example.com/r/1",
            "category": "refunds",
            "name": "Ada",
            "priority": "high",
            "external_id": "r-1",
        }
    }
    response = httpx.post(
        f"{sandbox.url}/tasks",
        json=payload,
        headers={"Authorization": f"Bearer {sandbox.token}", "Content-Type": "application/json"},
    )
    assert response.status_code == 200
    task = response.json()
    assert task["fields"] == payload["fields"]
    assert task["status"] == "TODO"
    assert uuid.UUID(task["uid"])
    assert task["due_at"] == task["created_at"]
    assert task["due_at"].endswith("Z")


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/accounts/me"),
        ("GET", "/tasks"),
        ("POST", "/tasks"),
        ("GET", f"/tasks/{uuid.uuid4()}"),
        ("PUT", "/tasks/batch"),
        ("DELETE", f"/tasks/{uuid.uuid4()}"),
    ],
)
def test_every_route_requires_the_token(sandbox, method, path):
    missing = httpx.request(method, sandbox.url + path, content=b"{bad json")
    wrong = httpx.request(
        method, sandbox.url + path, headers={"Authorization": "Bearer nope"}, json={}
    )
    assert missing.status_code == wrong.status_code == 401
    assert wrong.headers["www-authenticate"] == "Bearer"
    assert sandbox.token not in wrong.text


def test_accounts_me(api):
    response = api.get("/accounts/me")
    assert response.status_code == 200
    assert set(response.json()) >= {"uid", "email", "name", "role"}


@pytest.mark.parametrize(
    ("body", "loc_part"),
    [
        ({"fields": {"url": "https://x"}}, "fields"),
        ({"fields": {"title": ""}}, "fields"),
        ({"fields": {"title": "t"}, "status": "CLOSED"}, "status"),
        ({"fields": {"title": "t"}, "due_at": "yesterday"}, "due_at"),
        ({"fields": {"title": "t"}, "colour": "red"}, "colour"),
        ({}, "fields"),
    ],
)
def test_invalid_bodies_get_422_naming_the_field(api, body, loc_part):
    response = api.post("/tasks", json=body)
    assert response.status_code == 422
    detail = response.json()["detail"]
    assert any(loc_part in [str(p) for p in item["loc"]] for item in detail), detail
    assert all(item["msg"] for item in detail)


def test_malformed_json_and_bad_uid_get_422(api):
    bad_json = api.post(
        "/tasks", content=b'{"fields": {', headers={"Content-Type": "application/json"}
    )
    assert bad_json.status_code == 422
    assert bad_json.json()["detail"][0]["type"] == "json_invalid"
    bad_uid = api.get("/tasks/not-a-uuid")
    assert bad_uid.status_code == 422
    assert bad_uid.json()["detail"][0]["loc"] == ["path", "uid"]


def test_unknown_uid_is_404(api):
    uid = uuid.uuid4()
    assert api.get(f"/tasks/{uid}").status_code == 404
    assert api.patch(f"/tasks/{uid}", json={"status": "DONE"}).status_code == 404
    assert api.delete(f"/tasks/{uid}").status_code == 404


def test_put_is_an_idempotent_upsert(api):
    uid = uuid.uuid4()
    first = _put(api, uid, {"fields": {"title": "A", "n": 1}})
    time.sleep(0.01)
    again = _put(api, uid, {"fields": {"title": "A", "n": 1}})
    assert again == first  # updated_at included
    changed = _put(api, uid, {"fields": {"title": "B"}})
    assert changed["fields"] == {"title": "B"}  # fields replaced wholesale
    assert changed["updated_at"] > first["updated_at"]
    assert changed["created_at"] == first["created_at"]


def test_put_keeps_attributes_it_does_not_name(api):
    uid = uuid.uuid4()
    _put(api, uid, {"fields": {"title": "A"}})
    api.patch(f"/tasks/{uid}", json={"status": "DONE", "form_data": {"outcome": "ok"}})
    after = _put(api, uid, {"fields": {"title": "A2"}})
    assert after["status"] == "DONE"
    assert after["form_data"] == {"outcome": "ok"}


def test_put_with_a_different_uid_in_the_body_is_refused(api):
    response = api.put(
        f"/tasks/{uuid.uuid4()}", json={"uid": str(uuid.uuid4()), "fields": {"title": "t"}}
    )
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "uid"]


def test_post_with_a_taken_uid_is_409(api):
    uid = str(uuid.uuid4())
    assert api.post("/tasks", json={"uid": uid, "fields": {"title": "t"}}).status_code == 200
    conflict = api.post("/tasks", json={"uid": uid, "fields": {"title": "t"}})
    assert conflict.status_code == 409
    assert uid in conflict.json()["detail"]


def test_patch_merges_fields_and_status_sets_timestamps(api):
    uid = uuid.uuid4()
    _put(api, uid, {"fields": {"title": "A", "keep": 1}})
    started = api.patch(f"/tasks/{uid}", json={"status": "STARTED", "fields": {"x": 2}}).json()
    assert started["fields"] == {"title": "A", "keep": 1, "x": 2}
    assert started["started_at"] and started["done_at"] is None
    done = api.patch(f"/tasks/{uid}", json={"status": "DONE"}).json()
    assert done["done_at"] >= done["started_at"]
    reopened = api.patch(f"/tasks/{uid}", json={"status": "TODO"}).json()
    assert reopened["done_at"] is None
    assert reopened["status"] == "TODO"


def test_patch_cannot_blank_the_title(api):
    uid = uuid.uuid4()
    _put(api, uid, {"fields": {"title": "A"}})
    response = api.patch(f"/tasks/{uid}", json={"fields": {"title": None}})
    assert response.status_code == 422
    assert "fields.title" in response.text


def test_assignee_email_assigns_a_user(api):
    uid = uuid.uuid4()
    task = _put(api, uid, {"fields": {"title": "A"}, "assignee_email": "ada@example.com"})
    assert task["assignee"]["email"] == "ada@example.com"
    assert task["assignee_uid"] == task["assignee"]["uid"]


def test_delete_removes_the_task(api):
    uid = uuid.uuid4()
    _put(api, uid, {"fields": {"title": "A"}})
    assert api.delete(f"/tasks/{uid}").json()["uid"] == str(uid)
    assert api.get(f"/tasks/{uid}").status_code == 404


def test_batch_put_reports_item_errors_and_applies_the_rest(api):
    good = [{"uid": str(uuid.uuid4()), "fields": {"title": f"t{i}"}} for i in range(3)]
    items = [good[0], {"uid": str(uuid.uuid4()), "fields": {}}, good[1], {"fields": {"title": "x"}}]
    items.append(good[2])
    response = api.put("/tasks/batch", json={"items": items})
    assert response.status_code == 200
    body = response.json()
    assert [t["uid"] for t in body["items"]] == [g["uid"] for g in good]
    assert [(e["index"], e["status"]) for e in body["errors"]] == [(1, 422), (3, 422)]
    assert "fields.title" in body["errors"][0]["detail"]
    assert "uid" in body["errors"][1]["detail"]
    assert body["errors"][0]["uid"] == items[1]["uid"]


def test_batch_post_and_patch(api):
    taken = str(uuid.uuid4())
    _put(api, taken, {"fields": {"title": "old"}})
    created = api.post(
        "/tasks/batch",
        json={"items": [{"fields": {"title": "new"}}, {"uid": taken, "fields": {"title": "x"}}]},
    ).json()
    assert len(created["items"]) == 1
    assert created["errors"][0]["status"] == 409
    new_uid = created["items"][0]["uid"]
    missing = str(uuid.uuid4())
    patched = api.patch(
        "/tasks/batch",
        json={"items": [{"uid": new_uid, "status": "DONE"}, {"uid": missing, "status": "DONE"}]},
    ).json()
    assert patched["items"][0]["status"] == "DONE"
    assert patched["errors"] == [
        {"index": 1, "uid": missing, "status": 404, "detail": f"no task with uid {missing}"}
    ]


def test_batch_over_the_maximum_is_refused_naming_the_limit(sandbox_factory):
    sandbox = sandbox_factory(max_batch=3)
    items = [{"uid": str(uuid.uuid4()), "fields": {"title": "t"}} for _ in range(4)]
    response = httpx.put(
        f"{sandbox.url}/tasks/batch",
        json={"items": items},
        headers={"Authorization": f"Bearer {sandbox.token}"},
    )
    assert response.status_code == 422
    assert "at most 3 items" in response.json()["detail"][0]["msg"]


def test_list_paginates_by_cursor_with_meta(api):
    uids = {str(uuid.uuid4()) for _ in range(7)}
    api.put("/tasks/batch", json={"items": [{"uid": u, "fields": {"title": u}} for u in uids]})
    seen, cursor, pages = [], None, 0
    while True:
        params = {"limit": 3, **({"cursor": cursor} if cursor else {})}
        page = api.get("/tasks", params=params).json()
        pages += 1
        assert page["meta"]["limit"] == 3
        assert page["meta"]["total_count"] == 7
        assert page["meta"]["self_cursor"] == cursor
        seen += [t["uid"] for t in page["items"]]
        cursor = page["meta"]["next_cursor"]
        if cursor is None:
            break
    assert pages == 3
    assert sorted(seen) == sorted(uids)


def test_list_filters(api):
    a, b, c = (str(uuid.uuid4()) for _ in range(3))
    api.put(
        "/tasks/batch",
        json={
            "items": [
                {"uid": a, "fields": {"title": "a", "sync_source": "support", "n": 5}},
                {"uid": b, "fields": {"title": "b", "sync_source": "billing", "vip": True}},
                {"uid": c, "fields": {"title": "c", "sync_source": "support"}},
            ]
        },
    )
    api.patch(f"/tasks/{b}", json={"status": "DONE"})
    mark = api.get(f"/tasks/{b}").json()["updated_at"]
    api.patch(f"/tasks/{c}", json={"status": "STARTED"})

    def uids(**params):
        return {t["uid"] for t in api.get("/tasks", params=params).json()["items"]}

    assert uids(status="DONE") == {b}
    assert uids(status="DONE,STARTED") == {b, c}
    assert uids(status=["TODO", "STARTED"]) == {a, c}
    assert uids(**{"fields.sync_source": "support"}) == {a, c}
    assert uids(**{"fields.n": "5"}) == {a}
    assert uids(**{"fields.vip": "true"}) == {b}
    assert uids(updated_after=mark) == {c}
    assert uids(updated_after=mark, order_by="updated_at") == {c}
    bad = api.get("/tasks", params={"status": "OPEN"})
    assert bad.status_code == 422
    assert bad.json()["detail"][0]["loc"] == ["query", "status"]
    assert api.get("/tasks", params={"cursor": "garbage"}).status_code == 422
    assert api.get("/tasks", params={"limit": 5000}).status_code == 422


def test_rate_limit_answers_429_with_retry_after(sandbox_factory):
    sandbox = sandbox_factory(rate_limit="3/min")
    headers = {"Authorization": f"Bearer {sandbox.token}"}
    statuses = [httpx.get(f"{sandbox.url}/tasks", headers=headers).status_code for _ in range(4)]
    assert statuses == [200, 200, 200, 429]
    limited = httpx.get(f"{sandbox.url}/tasks", headers=headers)
    assert limited.status_code == 429
    assert 1 <= int(limited.headers["retry-after"]) <= 60


def test_faults_are_seeded_and_drop_connections(sandbox_factory):
    outcomes = []
    for _ in range(2):
        sandbox = sandbox_factory(faults=0.6, seed=7, fault_retry_after=0)
        run = []
        headers = {"Authorization": f"Bearer {sandbox.token}"}
        with httpx.Client(base_url=sandbox.url, headers=headers) as client:
            for i in range(60):
                try:
                    body = {"fields": {"title": "t"}}
                    run.append(client.put(f"/tasks/{uuid.UUID(int=i)}", json=body).status_code)
                except httpx.TransportError:
                    run.append("dropped")
        outcomes.append(run)
    assert outcomes[0] == outcomes[1]
    assert {500, 502, 503, 429, 200} <= set(outcomes[0])
    assert "dropped" in outcomes[0]
    stats = sandbox.stats()
    faults = stats["faults"]
    assert faults.get("drop_after") and faults.get("drop_before")
    assert outcomes[0].count("dropped") == faults["drop_after"] + faults["drop_before"]
    # A drop after applying still wrote the task; a drop before did not.
    assert stats["tasks"] == outcomes[0].count(200) + faults["drop_after"]


def test_latency_delays_responses(sandbox_factory):
    sandbox = sandbox_factory(latency="50ms")
    headers = {"Authorization": f"Bearer {sandbox.token}"}
    start = time.monotonic()
    for _ in range(3):
        httpx.get(f"{sandbox.url}/accounts/me", headers=headers).raise_for_status()
    assert time.monotonic() - start >= 0.15


def test_operator_page_starts_and_completes_tasks(sandbox, api):
    uid = uuid.uuid4()
    _put(api, uid, {"fields": {"title": "Call <Ada>", "url": "https://example.com/1"}})
    with sandbox.operator_client() as operator:  # signed in through the printed URL
        page = operator.get("/")
        assert page.status_code == 200
        assert "Call &lt;Ada&gt;" in page.text
        assert f"/operator/tasks/{uid}/start" in page.text
        csrf = re.search(r'name="csrf" value="([^"]+)"', page.text).group(1)
        started = operator.post(f"/operator/tasks/{uid}/start", data={"csrf": csrf})
        assert started.status_code == 303
        assert api.get(f"/tasks/{uid}").json()["status"] == "STARTED"
        operator.post(
            f"/operator/tasks/{uid}/complete", data={"csrf": csrf, "outcome": "refunded"}
        )
        task = api.get(f"/tasks/{uid}").json()
        assert task["status"] == "DONE"
        assert task["form_data"] == {"outcome": "refunded"}
        assert "refunded" in operator.get("/?status=DONE").text  # the default shows open ones


def test_openapi_describes_the_api(sandbox):
    schema = httpx.get(f"{sandbox.base_url}/openapi.json").json()
    paths = schema["paths"]
    assert set(paths["/api/v1/tasks/batch"]) == {"post", "put", "patch"}
    assert set(paths["/api/v1/tasks/{uid}"]) == {"get", "put", "patch", "delete"}
    assert set(paths["/api/v1/tasks"]) == {"get", "post"}
    assert "/api/v1/accounts/me" in paths
    assert "HTTPBearer" in schema["components"]["securitySchemes"]


def test_file_database_survives_a_restart(tmp_path):
    db = tmp_path / "sandbox.db"
    uid = uuid.uuid4()
    with run_sandbox(token="t", db=str(db)) as sandbox:
        httpx.put(
            f"{sandbox.url}/tasks/{uid}",
            json={"fields": {"title": "kept"}},
            headers={"Authorization": "Bearer t"},
        ).raise_for_status()
    with run_sandbox(token="t", db=str(db)) as sandbox:
        got = httpx.get(f"{sandbox.url}/tasks/{uid}", headers={"Authorization": "Bearer t"})
        assert got.json()["fields"]["title"] == "kept"


def test_cli_subprocess_sandbox(tmp_path):
    with run_sandbox(token="sub-token", in_thread=False, db=str(tmp_path / "s.db")) as sandbox:
        client = sandbox.client()
        assert client.me()["role"] == "super_admin"
        client.close()


def test_cli_rejects_bad_options_naming_them():
    from click.testing import CliRunner

    from fragment_core.cli import cli

    result = CliRunner().invoke(cli, ["sandbox", "--rate-limit", "fast"])
    assert result.exit_code == 2
    assert "--rate-limit" in result.output and "60/min" in result.output
    result = CliRunner().invoke(cli, ["sandbox", "--latency", "soon"])
    assert result.exit_code == 2 and "--latency" in result.output


def test_the_token_can_be_revoked_after_n_writes_by_its_holder_only(sandbox_factory):
    sandbox = sandbox_factory()
    refused = httpx.post(f"{sandbox.base_url}/_sandbox/revoke-token", timeout=10)
    assert refused.status_code == 401  # a page in a browser cannot revoke it
    headers = {"Authorization": f"Bearer {sandbox.token}"}
    with httpx.Client(base_url=sandbox.url, headers=headers, timeout=10) as api:
        sandbox.revoke_token(after_writes=2)
        body = {"fields": {"title": "t"}}
        assert api.post("/tasks", json=body).status_code == 200
        assert api.get("/tasks").status_code == 200  # reads do not count
        assert api.post("/tasks", json=body).status_code == 200  # the second write
        assert api.get("/tasks").status_code == 401
        assert api.post("/tasks", json=body).status_code == 401
        sandbox.revoke_token(after_writes=10)  # the holder lets it through again
        assert api.get("/tasks").status_code == 200
        sandbox.revoke_token()
        assert api.get("/accounts/me").status_code == 401
