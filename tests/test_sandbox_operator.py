"""The sandbox's operator page is guarded: session or token, same origin, CSRF token."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import time
import uuid

import httpx
import pytest

from fragment_core.sandbox import run_sandbox
from fragment_core.sandbox.operator import SESSION_COOKIE
from fragment_core.sandbox.runner import OPERATOR_TOKEN_ENV, TOKEN_ENV


@pytest.fixture
def uid(api):
    uid = uuid.uuid4()
    api.put(f"/tasks/{uid}", json={"fields": {"title": "Review Ada"}}).raise_for_status()
    return uid


def _csrf(page: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', page)
    assert match, "the page's forms carry a CSRF token"
    return match.group(1)


def _status(api, uid) -> str:
    return api.get(f"/tasks/{uid}").json()["status"]


def test_the_proper_flow_signs_in_and_completes(sandbox, api, uid):
    with sandbox.operator_client() as operator:
        csrf = _csrf(operator.get("/").text)
        done = operator.post(
            f"/operator/tasks/{uid}/complete", data={"csrf": csrf, "outcome": "ok"}
        )
    assert done.status_code == 303 and done.headers["location"] == "/"
    assert _status(api, uid) == "DONE"


def test_sign_in_sets_a_strict_http_only_cookie_and_leaves_the_token_behind(sandbox):
    response = httpx.get(sandbox.operator_url)
    assert response.status_code == 303 and response.headers["location"] == "/"
    cookie = response.headers["set-cookie"].lower()
    assert cookie.startswith(SESSION_COOKIE) and "httponly" in cookie
    assert "samesite=strict" in cookie
    assert sandbox.operator_token not in response.headers["location"]


@pytest.mark.parametrize("token", ["", "wrong-token"])
def test_a_wrong_sign_in_token_gets_no_session(sandbox, token):
    response = httpx.get(f"{sandbox.base_url}/operator/login", params={"token": token})
    assert response.status_code == 403 and "set-cookie" not in response.headers


def test_the_api_token_also_signs_in(sandbox):
    response = httpx.get(f"{sandbox.base_url}/operator/login", params={"token": sandbox.token})
    assert response.status_code == 303 and SESSION_COOKIE in response.cookies


def test_no_session_is_refused(sandbox, api, uid):
    page = httpx.get(f"{sandbox.base_url}/")
    assert page.status_code == 401 and "Review Ada" not in page.text
    assert "/operator/login?token=" in page.text  # tells the person how to sign in
    for action in ("start", "complete"):
        response = httpx.post(
            f"{sandbox.base_url}/operator/tasks/{uid}/{action}",
            data={"outcome": "forged"},
            headers={"Origin": sandbox.base_url},
        )
        assert response.status_code == 401
    unknown = httpx.post(
        f"{sandbox.base_url}/operator/tasks/{uid}/complete",
        cookies={SESSION_COOKIE: "made-up"},
        data={"csrf": "made-up"},
    )
    assert unknown.status_code == 401
    assert _status(api, uid) == "TODO"


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "http://evil.example"},
        {"Origin": "null"},
        {"Origin": "http://127.0.0.1:1"},  # another port is another origin
        {"Referer": "http://evil.example/page"},
        {"Sec-Fetch-Site": "cross-site"},
        {"Sec-Fetch-Site": "same-site"},
    ],
)
def test_a_cross_origin_post_is_refused(sandbox, api, uid, headers):
    with sandbox.operator_client() as operator:
        csrf = _csrf(operator.get("/").text)
        operator.headers.pop("Origin")
        response = operator.post(
            f"/operator/tasks/{uid}/complete", data={"csrf": csrf}, headers=headers
        )
    assert response.status_code == 403
    assert "cross-origin" in response.json()["detail"]
    assert _status(api, uid) == "TODO"


def test_a_cross_origin_post_is_refused_even_with_the_api_token(sandbox, api, uid):
    response = httpx.post(
        f"{sandbox.base_url}/operator/tasks/{uid}/complete",
        headers={"Authorization": f"Bearer {sandbox.token}", "Origin": "http://evil.example"},
    )
    assert response.status_code == 403 and _status(api, uid) == "TODO"


@pytest.mark.parametrize("csrf", [None, "", "not-the-token", "other-session"])
def test_a_missing_or_wrong_csrf_token_is_refused(sandbox, api, uid, csrf):
    with sandbox.operator_client() as operator, sandbox.operator_client() as other:
        _csrf(operator.get("/").text)
        if csrf == "other-session":
            csrf = _csrf(other.get("/").text)
        data = {"outcome": "x"} if csrf is None else {"outcome": "x", "csrf": csrf}
        response = operator.post(f"/operator/tasks/{uid}/complete", data=data)
    assert response.status_code == 403 and "CSRF" in response.json()["detail"]
    assert _status(api, uid) == "TODO"


def test_a_foreign_host_header_is_refused(sandbox, api, uid):
    """DNS rebinding: a page of evil.example resolving to 127.0.0.1 is refused."""
    with sandbox.operator_client() as operator:
        csrf = _csrf(operator.get("/").text)
        headers = {"Host": "evil.example", "Origin": "http://evil.example"}
        assert operator.get("/", headers=headers).status_code == 403
        response = operator.post(
            f"/operator/tasks/{uid}/complete", data={"csrf": csrf}, headers=headers
        )
    assert response.status_code == 403 and _status(api, uid) == "TODO"


def test_allowed_hosts_are_answered(api):
    with run_sandbox(token="t", allowed_hosts=("sandbox.internal",)) as sandbox:
        host = {"Host": "sandbox.internal"}
        login = httpx.get(sandbox.operator_url, headers=host)
        assert login.status_code == 303


def test_scripts_may_use_the_api_token_without_a_session(sandbox, api, uid):
    bearer = {"Authorization": f"Bearer {sandbox.token}"}
    assert httpx.get(f"{sandbox.base_url}/", headers=bearer).status_code == 200
    response = httpx.post(f"{sandbox.base_url}/operator/tasks/{uid}/start", headers=bearer)
    assert response.status_code == 303 and _status(api, uid) == "STARTED"


def test_the_cli_prints_the_sign_in_url_on_start():
    env = {**os.environ, TOKEN_ENV: "cli-api-token", OPERATOR_TOKEN_ENV: "cli-operator-token"}
    env.pop("PYTHONWARNINGS", None)
    args = [sys.executable, "-m", "fragment_core", "sandbox", "--port", "0"]
    process = subprocess.Popen(
        args, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    try:
        assert process.stderr is not None
        line = process.stderr.readline()
        url = re.search(r"(http://\S+/operator/login\?token=cli-operator-token)", line)
        assert url, line
        assert "cli-api-token" not in line
        login = httpx.get(url.group(1), timeout=10)
        assert login.status_code == 303 and SESSION_COOKIE in login.cookies
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_a_subprocess_sandbox_hands_out_a_working_operator_client():
    with run_sandbox(in_thread=False) as sandbox, sandbox.operator_client() as operator:
        assert operator.get("/").status_code == 200


def test_sign_out_ends_the_session(sandbox, api, uid):
    with sandbox.operator_client() as browser:
        page = browser.get("/")
        assert page.status_code == 200 and 'action="/operator/logout"' in page.text
        csrf, session = _csrf(page.text), browser.cookies[SESSION_COOKIE]
        assert browser.post("/operator/logout", data={}).status_code == 403  # no CSRF token
        signed_out = browser.post("/operator/logout", data={"csrf": csrf})
        assert signed_out.status_code == 200 and "Signed out" in signed_out.text
        assert SESSION_COOKIE in signed_out.headers.get("set-cookie", "")  # cleared
    # the old cookie, sent again, no longer opens the page nor completes a task
    headers = {"Origin": sandbox.base_url}
    with httpx.Client(
        base_url=sandbox.base_url, cookies={SESSION_COOKIE: session}, headers=headers
    ) as replay:
        assert replay.get("/").status_code == 401
        done = replay.post(f"/operator/tasks/{uid}/complete", data={"csrf": csrf})
        assert done.status_code == 401
    assert _status(api, uid) == "TODO"


def test_a_session_expires(sandbox_factory):
    sandbox = sandbox_factory(operator_session_ttl=1.0)
    with sandbox.operator_client() as browser:
        assert browser.get("/").status_code == 200
        signed_in = httpx.get(sandbox.operator_url, timeout=10)
        assert "max-age=1" in signed_in.headers["set-cookie"].lower()
        time.sleep(1.2)
        expired = browser.get("/")
        assert expired.status_code == 401 and "Sign in" in expired.text
