"""Security: secrets never appear in logs, errors, reprs, reports or the state database;
the sandbox refuses a missing or wrong token; TLS verification is never turned off.

The secrets scan runs real ``fragment`` processes (debug logging, text and JSON logs)
through syncs, write-backs and failures whose error bodies echo the secrets back, then
searches everything they printed and the state database for the test secrets.
"""

from __future__ import annotations

import json
import os
import re
import ssl
import subprocess
import sys
import threading
import uuid
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import httpx
import pytest
import stamina
import trustme
from fragment_hubspot.config import HubSpotConfig
from fragment_hubspot.connector import HubSpotConnector
from fragment_hubspot.testing import SEARCH_PATH, FakeHubSpot, error_body

from fragment_core.config import load_settings
from fragment_core.connectors.http import HttpConnector
from fragment_core.errors import AuthenticationError, FragmentError, TransientError
from fragment_core.plugins import get_registry
from fragment_core.sandbox.runner import run_sandbox
from fragment_core.state import StateStore
from fragment_core.task import Task, task_uid
from fragment_core.tasks_api import TasksClient
from fragment_core.testing import FakeAPI, FakeRequest, FakeResponse

ROOT = Path(__file__).resolve().parents[1]
FRAGMENT_TOKEN = "fragtok-5d7a61c0-secret"
API_KEY = "apikey-0f3b92e4-secret"
HUBSPOT_TOKEN = "pat-na1-9c1d2e3f-4a5b-6c7d-8e9f-secret"
SECRETS = (FRAGMENT_TOKEN, API_KEY, HUBSPOT_TOKEN)


def leaked(text: str | bytes) -> list[str]:
    """The test secrets found in ``text``."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return [s for s in SECRETS if s in text]


# -- secrets in everything a run leaves behind --------------------------------------------
def _backoffice() -> FakeAPI:
    api = FakeAPI("backoffice")
    tickets = {str(i): "open" for i in range(1, 6)}

    @api.route("GET", "/tickets")
    def listing(req: FakeRequest) -> Any:
        if req.query.get("api_key") != API_KEY:
            return FakeResponse(status=401, json={"error": f"bad key {req.query.get('api_key')}"})
        return [{"id": k, "subject": f"Ticket {k}"} for k, v in tickets.items() if v == "open"]

    @api.route("PATCH", "/tickets/{ticket_id}")
    def close(req: FakeRequest) -> Any:
        tickets[req.path_params["ticket_id"]] = "done"
        return {"ok": True}

    return api


CONFIG = """\
[tasks_api]
url = "{tasks_url}"
token = "${{FRAGMENT_TOKEN}}"
rate_limit = 0

[state]
url = "sqlite:///{state}"

[[sources]]
name = "office"
connector = "http"
[sources.options]
base_url = "{office_url}"
auth = {{type = "api_key", key = "${{OFFICE_KEY}}", location = "query", name = "api_key"}}
backlog = {{path = "/tickets"}}
mapping = {{external_id = "id", title = "subject"}}
write_back = {{method = "PATCH", path = "/tickets/{{external_id}}"}}

[[sources]]
name = "crm"
connector = "hubspot"
[sources.options]
access_token = "${{HUBSPOT_TOKEN}}"
base_url = "{hubspot_url}"
search_requests_per_second = 0
"""


def test_secrets_never_in_output_logs_reports_or_state(tmp_path: Path) -> None:
    hubspot = FakeHubSpot(token=HUBSPOT_TOKEN)
    hubspot.add_tasks(3)
    office = _backoffice()
    state = tmp_path / "state.db"
    captured: list[bytes] = []
    with office, hubspot.api, run_sandbox(token=FRAGMENT_TOKEN) as sandbox:
        config = tmp_path / "fragment.toml"
        config.write_text(
            CONFIG.format(
                tasks_url=sandbox.url,
                state=state.as_posix(),
                office_url=office.base_url,
                hubspot_url=hubspot.api.base_url,
            )
        )
        env = {
            **os.environ,
            "FRAGMENT_TOKEN": FRAGMENT_TOKEN,
            "OFFICE_KEY": API_KEY,
            "HUBSPOT_TOKEN": HUBSPOT_TOKEN,
        }

        def fragment(*args: str, token: str = FRAGMENT_TOKEN) -> subprocess.CompletedProcess:
            done = subprocess.run(
                [sys.executable, "-m", "fragment_core", "--config", str(config), *args],
                env={**env, "FRAGMENT_TOKEN": token},
                capture_output=True,
                timeout=120,
            )
            captured.extend([done.stdout, done.stderr])
            assert b"Traceback" not in done.stderr, done.stderr.decode()
            return done

        for source in ("office", "crm"):
            assert fragment("-vv", "sync", source, "--json").returncode == 0
        with sandbox.client() as client:
            for source, eid in (("office", "2"), ("crm", sorted(hubspot.tasks)[0])):
                client.patch_task(task_uid(source, eid), {"status": "DONE", "form_data": {}})
        for source in ("office", "crm"):
            written = fragment("-vv", "--log-format", "json", "sync", source, "--json")
            assert json.loads(written.stdout)["written_back"] == 1
        # failures whose error bodies echo the secrets back
        office.fail_next(1, status=401, body={"error": f"invalid key {API_KEY}"})
        echoed = error_body(f"Invalid token {HUBSPOT_TOKEN}", "INVALID_AUTHENTICATION")
        hubspot.api.fail_next(1, status=401, body=echoed, path=SEARCH_PATH)
        assert fragment("-vv", "sync", "office").returncode == 1
        assert fragment("-vv", "sync", "crm").returncode == 1
        wrong = fragment("-vv", "sync", "office", token=FRAGMENT_TOKEN[::-1])
        assert wrong.returncode == 1
        captured.append(FRAGMENT_TOKEN[::-1].encode())  # (scanned below; not a test secret)
        # a write-back refused with a body that echoes the key: the outbox's last error,
        # the report, `state show`, `state history` and `status` keep the vendor's words
        # but not the key
        with sandbox.client() as client:
            client.patch_task(task_uid("office", "3"), {"status": "DONE", "form_data": {}})
        office.fail_next(
            1, status=422, body={"error": f"ticket 3 is locked (key {API_KEY})"},
            path="/tickets/3",
        )  # fmt: skip
        refused = fragment("-vv", "--log-format", "json", "sync", "office", "--json")
        report = json.loads(refused.stdout)
        assert report["write_back_failed"] == 1
        assert "ticket 3 is locked" in " ".join(report["messages"])
        shown = fragment("state", "show", "office", "--json")
        assert shown.returncode == 0 and b"ticket 3 is locked" in shown.stdout
        history = fragment("state", "history", "office", "--json")
        assert history.returncode == 0 and b"ticket 3 is locked" in history.stdout
        status = fragment("status", "--json")
        assert b"ticket 3 is locked" in status.stdout
        fragment("-vv", "check")
        fragment("config", "validate", "--json")
        fragment("connectors", "show", "http", "--json")
        # the fakes' request logs keep no secret either (what a recorded fixture would hold)
        requests = [*office.requests, *hubspot.api.requests]
        assert requests and not leaked(repr(requests))

    everything = b"\n".join(captured[:-1])
    assert b"written_back" in everything and b"office" in everything  # scanned real output
    assert not leaked(everything), leaked(everything)
    for path in tmp_path.glob("state.db*"):
        data = path.read_bytes()
        assert b"fragment_outbox" in data or path.name != "state.db"
        assert not leaked(data), (path.name, leaked(data))
    store = StateStore(f"sqlite:///{state.as_posix()}")
    reports = [r for s in ("office", "crm") for r in store.last_runs(s, limit=20)]
    assert len(reports) >= 6 and not leaked(json.dumps(reports))
    assert not leaked(repr(store))
    store.close()


def test_secrets_never_in_reprs_or_errors(tmp_path: Path) -> None:
    config = tmp_path / "fragment.toml"
    config.write_text(
        CONFIG.format(
            tasks_url="http://127.0.0.1:9/api/v1",
            state=(tmp_path / "s.db").as_posix(),
            office_url="http://127.0.0.1:9",
            hubspot_url="http://127.0.0.1:9",
        )
    )
    env = {"FRAGMENT_TOKEN": FRAGMENT_TOKEN, "OFFICE_KEY": API_KEY, "HUBSPOT_TOKEN": HUBSPOT_TOKEN}
    settings = load_settings(config, registry=get_registry(), env=env)
    office, crm = settings.sources
    objects: list[Any] = [settings, settings.tasks_api, office, crm, office.options, crm.options]
    objects += [HttpConnector(office.options, source="office")]
    objects += [HubSpotConnector(crm.options, source="crm")]
    client = TasksClient(settings.tasks_api.url, settings.tasks_api.token)
    objects.append(client)
    for thing in objects:
        assert not leaked(repr(thing)) and not leaked(str(thing)), type(thing)
        dump = getattr(thing, "model_dump_json", None)
        if dump is not None:
            assert not leaked(dump()), type(thing)
    # a secret in a wrong place of the config is not echoed in the error
    config.write_text(config.read_text().replace("rate_limit = 0", f'rate_limit = "{API_KEY}"'))
    with pytest.raises(FragmentError) as caught:
        load_settings(config, registry=get_registry(), env=env)
    assert "rate_limit" in str(caught.value)
    client.close()


# -- the sandbox refuses a missing or wrong token -----------------------------------------
@pytest.fixture(scope="module")
def guarded() -> Iterator[Any]:
    with run_sandbox(token=FRAGMENT_TOKEN) as handle:
        yield handle


UID = str(uuid.uuid4())
BODY = {"fields": {"title": "t", "external_id": "1"}}
ROUTES = [
    ("GET", "/accounts/me", None),
    ("GET", "/tasks", None),
    ("GET", f"/tasks/{UID}", None),
    ("PUT", f"/tasks/{UID}", BODY),
    ("PATCH", f"/tasks/{UID}", {"status": "DONE"}),
    ("DELETE", f"/tasks/{UID}", None),
    ("POST", "/tasks", BODY),
    ("PUT", "/tasks/batch", {"items": [{**BODY, "uid": UID}]}),
    ("PATCH", "/tasks/batch", {"items": [{"uid": UID, "status": "DONE"}]}),
]
BAD_AUTH = {
    "missing": {},
    "wrong": {"Authorization": "Bearer wrong-token"},
    "scheme only": {"Authorization": "Bearer"},
    "basic": {"Authorization": f"Basic {FRAGMENT_TOKEN}"},
    "prefix": {"Authorization": f"Bearer {FRAGMENT_TOKEN[:-1]}"},
    "longer": {"Authorization": f"Bearer {FRAGMENT_TOKEN}x"},
    "case": {"Authorization": f"Bearer {FRAGMENT_TOKEN.upper()}"},
}


@pytest.mark.parametrize("method,path,body", ROUTES, ids=[f"{m} {p}" for m, p, _ in ROUTES])
def test_the_sandbox_refuses_a_missing_or_wrong_token(
    guarded: Any, method: str, path: str, body: Any
) -> None:
    for label, headers in BAD_AUTH.items():
        response = httpx.request(method, guarded.url + path, json=body, headers=headers, timeout=10)
        assert response.status_code == 401, (label, response.status_code, response.text)
        assert response.headers.get("www-authenticate") == "Bearer"
        assert FRAGMENT_TOKEN not in response.text
    assert guarded.stats()["tasks"] == 0  # nothing was written by any of them
    right = httpx.get(
        guarded.url + "/tasks", headers={"Authorization": f"Bearer {FRAGMENT_TOKEN}"}, timeout=10
    )
    assert right.status_code == 200


def test_a_client_with_a_wrong_token_fails_at_once_without_showing_it(guarded: Any) -> None:
    wrong = "wrong-" + FRAGMENT_TOKEN
    with TasksClient(guarded.url, wrong, rate_limit=None) as client:
        with pytest.raises(AuthenticationError) as caught:
            client.upsert_task(Task.new(external_id="1", title="t").for_source("s"))
        assert client.requests_made == 1  # a 401 is not retried
    assert wrong not in str(caught.value) and "401" in str(caught.value)
    assert guarded.stats()["tasks"] == 0


# -- TLS verification ---------------------------------------------------------------------
SOURCE_DIRS = [ROOT / "src", *sorted((ROOT / "plugins").glob("*/src"))]
DISABLING = re.compile(
    r"verify\s*=\s*False|verify_ssl\s*=\s*False|CERT_NONE|check_hostname\s*=\s*False"
    r"|_create_unverified_context|PYTHONHTTPSVERIFY|disable_warnings|cert_reqs\s*=\s*['\"]?"
    r"(CERT_)?NONE|InsecureRequestWarning|ssl_verify\s*=\s*False|\"verify\":\s*False"
)


def test_no_code_turns_tls_verification_off() -> None:
    files = [p for d in SOURCE_DIRS for p in d.rglob("*.py")]
    assert len(files) > 40, "the scan found too few files to mean anything"
    offending = [
        f"{path.relative_to(ROOT)}:{number}: {line.strip()}"
        for path in files
        for number, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if DISABLING.search(line)
    ]
    assert offending == []


@pytest.fixture(scope="module")
def untrusted_https() -> Iterator[tuple[str, list[str], trustme.CA]]:
    """An HTTPS server on loopback whose certificate no default trust store accepts."""
    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            seen.append(self.headers.get("Authorization") or "")
            body = b'{"items": [], "results": [], "portalId": 1, "uiDomain": "x"}'
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        do_POST = do_GET

        def log_message(self, *args: Any) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    server.socket = context.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}", seen, ca
    server.shutdown()
    server.server_close()


def test_tls_certificates_are_verified(untrusted_https: Any) -> None:
    url, seen, ca = untrusted_https
    # positive control: the server works for a client that trusts its CA
    with ca.cert_pem.tempfile() as ca_file:
        assert httpx.get(url + "/control", verify=ssl.create_default_context(cafile=ca_file))
    assert seen == [""]

    client = TasksClient(url + "/api/v1", FRAGMENT_TOKEN, rate_limit=None, retry_attempts=1)
    with client, pytest.raises(TransientError, match="CERTIFICATE_VERIFY_FAILED"):
        client.me()

    http = HttpConnector(
        {
            "base_url": url,
            "auth": {"type": "bearer", "token": API_KEY},
            "backlog": {"path": "/tickets"},
            "mapping": {"external_id": "id", "title": "subject"},
        },
        source="tls",
    )
    with pytest.raises(FragmentError, match="CERTIFICATE_VERIFY_FAILED"):
        http.session.request("GET", "/tickets", key="options.backlog.path", retries=False)
    http.close()

    config = HubSpotConfig(
        access_token=HUBSPOT_TOKEN,
        base_url=url,
        search_requests_per_second=0,
        portal_id=1,
        app_host="app.hubspot.com",
    )
    hubspot = HubSpotConnector(config, source="tls-hs")
    with (
        stamina.set_testing(True, attempts=1),
        pytest.raises(FragmentError, match="CERTIFICATE_VERIFY_FAILED"),
    ):
        list(hubspot.fetch_backlog())
    assert seen == [""], "a credential was sent over an unverified connection"
