"""Credentials never leave their origin (issue 14.4): two FakeAPI servers on loopback.

A redirect (302 or 307) to another origin fails the fetch with an error naming the
source and the target, and nothing, credentials least of all, reaches the other origin.
``127.0.0.1`` and ``localhost`` are different origins, as are two ports.
"""

from __future__ import annotations

import base64
import logging
import socket
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fragment_core.connectors.http import HttpConnector
from fragment_core.errors import AuthenticationError, ConfigurationError, TransientError
from fragment_core.retries import RateBudget, RetryPolicy
from fragment_core.testing import FakeAPI, FakeRequest, FakeResponse
from fragment_core.transport import (
    BasicAuth,
    BearerAuth,
    CrossOriginError,
    HeaderAuth,
    QueryAuth,
    Transport,
    guarded_client,
    origin_of,
)

TOKEN = "tok-51ab-very-secret"
API_KEY = "key-90fe-very-secret"
PASSWORD = "pw-33cd-very-secret"

AUTHS = {
    "bearer": {"type": "bearer", "token": TOKEN},
    "basic": {"type": "basic", "username": "sync", "password": PASSWORD},
    "api_key_header": {"type": "api_key", "key": API_KEY},
    "api_key_query": {"type": "api_key", "key": API_KEY, "location": "query", "name": "api_key"},
}
SECRETS = (TOKEN, API_KEY, PASSWORD, base64.b64encode(f"sync:{PASSWORD}".encode()).decode())


def _carries_secret(req: Any) -> bool:
    text = " ".join(f"{k}: {v}" for k, v in req.headers.items()) + " " + str(req.query)
    return any(secret in text for secret in SECRETS)


@pytest.fixture
def servers() -> Iterator[tuple[FakeAPI, FakeAPI, list[Any]]]:
    """``home`` (the configured base_url) and ``other``; ``seen`` logs what ``other`` got."""
    home, other = FakeAPI(name="home"), FakeAPI(name="other")
    seen: list[FakeRequest] = []

    @other.route("GET", "/tickets")
    def stolen(req: FakeRequest) -> Any:
        seen.append(req)
        return {"items": []}  # an empty backlog: must never be believed

    @home.route("GET", "/tickets")
    def tickets(req: FakeRequest) -> Any:
        seen.append(req)
        return {"items": [{"id": 1, "subject": "Refund"}]}

    with home, other:
        yield home, other, seen


def _connector(home: FakeAPI, auth: dict[str, Any], path: str) -> HttpConnector:
    options = {
        "base_url": home.base_url,
        "auth": auth,
        "backlog": {"path": path, "records_path": "items"},
        "mapping": {"external_id": "id", "title": "subject"},
    }
    return HttpConnector(HttpConnector.Config.model_validate(options), source="backoffice")


@pytest.mark.parametrize("status", [302, 307])
@pytest.mark.parametrize("auth", list(AUTHS))
@pytest.mark.parametrize("target", ["other-port", "localhost"])
def test_a_redirect_to_another_origin_fails_the_fetch_and_sends_nothing_there(
    servers: Any, status: int, auth: str, target: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    home, other, seen = servers
    base = other.base_url if target == "other-port" else f"http://localhost:{home.port}"

    @home.route("GET", "/moved")
    def moved(req: FakeRequest) -> FakeResponse:
        return FakeResponse(status=status, headers={"Location": f"{base}/tickets"}, json={})

    connector = _connector(home, AUTHS[auth], "/moved")
    try:
        with pytest.raises(CrossOriginError) as info:
            list(connector.fetch_backlog())
    finally:
        connector.close()
    assert seen == []  # neither server saw the redirected request
    assert [r.path for r in other.requests] == []
    text = str(info.value)
    assert isinstance(info.value, ConfigurationError)
    assert "backoffice" in text and f"HTTP {status}" in text
    assert origin_of(base) in text and "not followed" in text
    for secret in SECRETS:
        assert secret not in text and secret not in caplog.text


@pytest.mark.parametrize("auth", list(AUTHS))
def test_a_redirect_within_the_origin_is_followed_with_the_credentials(
    servers: Any, auth: str
) -> None:
    home, _, seen = servers

    @home.route("GET", "/moved")
    def moved(req: FakeRequest) -> FakeResponse:
        return FakeResponse(status=307, headers={"Location": "/tickets"}, json={})

    connector = _connector(home, AUTHS[auth], "/moved")
    try:
        assert [r["id"] for r in connector.fetch_backlog()] == [1]
    finally:
        connector.close()
    assert len(seen) == 1 and _carries_secret(seen[0])


def test_a_secret_in_the_redirect_target_is_redacted(servers: Any) -> None:
    home, other, _ = servers

    @home.route("GET", "/moved")
    def moved(req: FakeRequest) -> FakeResponse:
        target = f"http://user:{PASSWORD}@localhost:{other.port}/tickets?token={TOKEN}"
        return FakeResponse(status=302, headers={"Location": target}, json={})

    client = guarded_client(home.base_url, auth=BearerAuth(TOKEN), where="source 's'")
    with client, pytest.raises(CrossOriginError) as info:
        client.get("/moved")
    text = str(info.value)
    assert PASSWORD not in text and TOKEN not in text
    assert f"localhost:{other.port}" in text and "source 's'" in text


@pytest.mark.parametrize(
    "auth",
    [
        BearerAuth(TOKEN),
        HeaderAuth("X-API-Key", API_KEY),
        BasicAuth("sync", PASSWORD),
        QueryAuth("api_key", API_KEY),
    ],
    ids=["bearer", "header", "basic", "query"],
)
def test_auth_styles_attach_only_on_their_origin(servers: Any, auth: Any) -> None:
    home, other, seen = servers
    auth.origin = None
    auth.bind(home.base_url)
    with httpx.Client(auth=auth) as client:  # a plain client: the auth alone decides
        client.get(home.url_for("/tickets"))
        client.get(other.url_for("/tickets"))
        client.get(f"http://localhost:{home.port}/tickets")
    assert [_carries_secret(r) for r in seen] == [True, False, False]


def test_a_request_to_another_origin_is_refused_before_it_is_sent(servers: Any) -> None:
    home, other, seen = servers
    client = guarded_client(home.base_url, headers={"X-Extra": API_KEY}, secrets=(API_KEY,))
    with client, pytest.raises(CrossOriginError, match="outside"):
        client.get(other.url_for("/tickets"))
    assert seen == [] and other.requests == []


# -- Transport: retries by error class, 429 schemes, vendor hooks ---------------------------
FAST = RetryPolicy(attempts=4, timeout=10, wait_initial=0.001, wait_max=0.01)


@pytest.mark.parametrize("scheme", ["retry-after", "retry-after-date", "ratelimit-reset"])
def test_transport_waits_out_429_and_retries_5xx_and_drops(servers: Any, scheme: str) -> None:
    home, _, seen = servers
    home.rate_limit_next(1, scheme=scheme, wait=0.2)
    home.fail_next(1, status=503)
    home.fail_next(1, kind="drop")
    with Transport(home.base_url, auth=BearerAuth(TOKEN), retry=FAST, name="source 'x'") as t:
        assert t.get_json("/tickets") == {"items": [{"id": 1, "subject": "Refund"}]}
        assert t.requests_made == 4
    assert len(seen) == 1 and _carries_secret(seen[0])


def test_transport_does_not_retry_refusals_and_never_shows_the_secret(servers: Any) -> None:
    home, _, _ = servers

    @home.route("GET", "/secret-echo")
    def echo(req: FakeRequest) -> FakeResponse:
        return FakeResponse(status=401, json={"error": f"bad token {TOKEN}"})

    with Transport(home.base_url, auth=BearerAuth(TOKEN), retry=FAST, name="source 'x'") as t:
        with pytest.raises(AuthenticationError) as info:
            t.request("GET", "/secret-echo")
        assert t.requests_made == 1
    assert TOKEN not in str(info.value) and "source 'x'" in str(info.value)


def test_transport_vendor_hooks_translate_errors_and_rate_limits(servers: Any) -> None:
    home, _, _ = servers
    home.fail_next(1, status=429, headers={"X-Vendor-Wait": "0.05"})
    home.fail_next(1, status=409)
    waits: list[float] = []

    def hook(response: httpx.Response) -> float | None:
        wait = float(response.headers["X-Vendor-Wait"])
        waits.append(wait)
        return wait

    def translate(response: httpx.Response) -> Any:
        if response.status_code == 409:
            return TransientError("vendor says: conflict, try again")
        return None

    with Transport(
        home.base_url, retry=FAST, rate_limit_hook=hook, translate_error=translate
    ) as t:
        assert t.get_json("/tickets")["items"][0]["id"] == 1
        assert t.requests_made == 3
    assert waits == [0.05]


def test_transport_request_options_accept_translate_and_unreachable(servers: Any) -> None:
    """Per request: ``accept`` returns a status, ``translate_error`` maps a refusal for this
    request only, ``translate_exception`` turns a connection error into another class."""
    home, _, _ = servers
    home.fail_next(1, status=404)
    home.fail_next(1, status=404)
    with Transport(home.base_url, retry=FAST) as t:
        assert t.request("GET", "/tickets", accept={404}).status_code == 404

        def refused(response: httpx.Response) -> Any:
            return ConfigurationError(f"check options.path (HTTP {response.status_code})")

        with pytest.raises(ConfigurationError, match="check options"):
            t.request("GET", "/tickets", translate_error=refused)
        assert t.requests_made == 2
    with socket.socket() as closed:  # bound, never listening: connections are refused
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
        with Transport(f"http://127.0.0.1:{port}", retry=FAST) as t:
            with pytest.raises(ConfigurationError, match="cannot reach"):
                t.request(
                    "GET",
                    "/tickets",
                    translate_exception=lambda exc: ConfigurationError(f"cannot reach: {exc}"),
                )
            assert t.requests_made == 1  # not retried: no longer a transient error


def test_transport_rate_budget_counts_a_place_from_the_answer(servers: Any) -> None:
    """With a RateBudget as pacer, a request's place starts when its answer arrives: the
    next request waits a whole period after a slow answer, not after the send."""
    home, _, _ = servers

    @home.route("GET", "/slow")
    def slow(req: FakeRequest) -> Any:
        time.sleep(0.3)
        return {"ok": True}

    with Transport(home.base_url, retry=FAST, pacer=RateBudget(1, period=0.3)) as t:
        t.request("GET", "/slow")
        answered = time.monotonic()
        t.request("GET", "/tickets")
        assert time.monotonic() - answered >= 0.28
        assert t.requests_made == 2


def test_transport_call_runs_an_sdk_call_under_the_retry_policy() -> None:
    calls: list[int] = []

    class SdkError(Exception):
        pass

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise SdkError("temporarily unavailable")
        return "ok"

    with Transport("https://api.vendor.test", retry=FAST) as t:
        assert t.call(flaky, translate_exception=lambda e: TransientError(str(e))) == "ok"
        with pytest.raises(SdkError):
            t.call(lambda: (_ for _ in ()).throw(SdkError("no")))
    assert len(calls) == 3


def test_transport_call_names_redacts_and_paces_sdk_errors() -> None:
    """An SDK failure read as an HTTP answer (``sdk_response``) is translated, given the
    transport's ``where`` and cleared of the credential; ``pacer=`` paces one call."""
    from fragment_core.retries import Pacer
    from fragment_core.transport import BearerAuth, json_object, sdk_response

    class SdkError(Exception):
        status, body = 403, b'{"message": "token tok-51ab-very-secret lacks scope x"}'

    def translate(exc: BaseException) -> Any:
        assert isinstance(exc, SdkError)
        return t.error_for(sdk_response(exc.status, {"X-Id": "1"}, exc.body), "read x")

    def fail() -> None:
        raise SdkError

    with Transport("https://api.vendor.test", auth=BearerAuth(TOKEN), name="source 's'") as t:
        with pytest.raises(AuthenticationError) as info:
            t.call(fail, translate_exception=translate)
        with pytest.raises(AuthenticationError) as raw:  # a vendor message quoting the token
            t.call(fail, translate_exception=lambda e: AuthenticationError(SdkError.body.decode()))
        slow = Pacer.per_second(10)  # one call every 100 ms
        started = time.monotonic()
        for _ in range(3):
            t.call(lambda: None, pacer=slow)
        assert time.monotonic() - started >= 0.2 - 0.02
    assert str(info.value).startswith("source 's': HTTP 403: read x")
    assert str(raw.value).startswith("source 's': ") and TOKEN not in str(raw.value)
    assert TOKEN not in str(info.value) and "lacks scope x" in str(info.value)
    assert json_object(b'{"a": 1}', "the answer") == {"a": 1} and json_object(b"", "x") == {}
    with pytest.raises(TransientError, match="the answer is not a JSON object"):
        json_object(b"[1]", "the answer")


def test_transport_call_retries_an_sdks_connection_failures() -> None:
    """urllib3's and requests' "could not reach" (and OSError's) are transient in
    ``call`` without a translation: retried, then a TransientError naming the call."""
    import requests
    import urllib3

    from fragment_core.transport import is_connection_failure

    failures = [
        urllib3.exceptions.ProtocolError("Connection aborted."),
        requests.exceptions.ConnectTimeout("timed out"),
        ConnectionRefusedError(111, "refused"),
    ]
    assert all(map(is_connection_failure, failures))
    assert not is_connection_failure(ValueError("a bug, not the network"))
    tried: list[int] = []

    def unreachable() -> None:
        tried.append(1)
        raise failures[len(tried) % 3]

    transport = Transport("https://api.vendor.test", retry=FAST, name="source 's'")
    with transport, pytest.raises(TransientError) as info:
        transport.call(unreachable, operation="list tickets")
    assert len(tried) == FAST.attempts
    assert str(info.value).startswith("source 's': list tickets: could not reach")


def test_transport_verifies_tls_with_a_given_ca_bundle(tmp_path: Any) -> None:
    import trustme

    ca = trustme.CA()
    server_pem, bundle = tmp_path / "server.pem", tmp_path / "ca.pem"
    ca.issue_cert("127.0.0.1").private_key_and_cert_chain_pem.write_to_path(str(server_pem))
    ca.cert_pem.write_to_path(str(bundle))
    api = FakeAPI(name="tls", tls_cert=server_pem, shutdown_timeout=0.3)
    api.add_route("GET", "/ping", lambda req: {"ok": True})
    with api:
        assert api.base_url.startswith("https://127.0.0.1:")
        with Transport(api.base_url, verify=str(bundle)) as trusted:
            assert trusted.get_json("/ping") == {"ok": True}
        untrusted = Transport(api.base_url, retry=RetryPolicy(attempts=1))
        with untrusted, pytest.raises(TransientError, match="CERTIFICATE_VERIFY_FAILED"):
            untrusted.get_json("/ping")


def test_transport_gives_every_answer_to_its_rate_budget() -> None:
    """An answer saying the vendor's budget is spent (``X-RateLimit-Remaining: 0``) holds
    the next request until ``X-RateLimit-Reset``, with no 429 and no hand-written gate."""
    from fragment_core.retries import Pacer

    api = FakeAPI(name="vendor")
    served: list[float] = []

    @api.route("GET", "/tickets")
    def tickets(req: FakeRequest) -> Any:
        served.append(time.monotonic())
        spent = {"X-RateLimit-Remaining": "0", "X-RateLimit-Reset": "0.4"}
        return FakeResponse(json={"items": []}, headers=spent if len(served) == 1 else {})

    with api, Transport(api.base_url, retry=FAST, pacer=Pacer(None)) as transport:
        transport.request("GET", "/tickets")
        transport.request("GET", "/tickets")
    assert served[1] - served[0] >= 0.38 and transport.pacer.waits == 1
