"""FakeAPI: routing, request log with redaction, effects, and every fault it injects."""

from __future__ import annotations

import json
from collections import Counter

import httpx
import pytest

from fragment_core.retries import retry_after_from_headers
from fragment_core.testing import FakeAPI, FakeRequest, FakeResponse


@pytest.fixture
def api() -> FakeAPI:
    api = FakeAPI(name="tickets")
    tickets = {str(i): {"id": str(i), "subject": f"Ticket {i}"} for i in range(1, 6)}

    @api.route("GET", "/tickets")
    def list_tickets(req: FakeRequest):
        after = int(req.query.get("after", "0"))
        ids = sorted(tickets, key=int)[after : after + 2]
        page = {"results": [tickets[i] for i in ids]}
        if after + 2 < len(tickets):
            page["next"] = api.url_for("/tickets", after=after + 2)
        return page

    @api.route("GET", "/tickets/{ticket_id}")
    def get_ticket(req: FakeRequest):
        ticket = tickets.get(req.path_params["ticket_id"])
        if ticket is None:
            return FakeResponse(status=404, json={"error": "no such ticket"})
        return ticket

    @api.route("POST", "/tickets/{ticket_id}/close")
    def close(req: FakeRequest):
        api.effect(f"close:{req.path_params['ticket_id']}")
        return None

    @api.route("POST", "/echo")
    def echo(req: FakeRequest):
        kind = req.headers.get("content-type", "")
        payload = req.form() if "form" in kind else req.json()
        return {"payload": payload, "query": req.query, "query_list": req.query_list}

    @api.route("GET", "/text")
    def text(req: FakeRequest):
        return FakeResponse(text="hello", headers={"X-Extra": "1"}, content_type="text/csv")

    @api.route("GET", "/boom")
    def boom(req: FakeRequest):
        raise KeyError("missing")

    with api:
        yield api


def test_not_listening_until_started() -> None:
    api = FakeAPI(name="idle")
    with pytest.raises(RuntimeError, match="not started"):
        _ = api.base_url
    with api:
        assert api.base_url.startswith("http://127.0.0.1:")
        assert httpx.get(api.url_for("/nothing")).status_code == 404
    with pytest.raises(httpx.ConnectError):
        httpx.get(f"http://127.0.0.1:{api.port}/nothing", timeout=1)


def test_routes_path_params_and_responses(api: FakeAPI) -> None:
    assert httpx.get(api.url_for("/tickets/3")).json() == {"id": "3", "subject": "Ticket 3"}
    missing = httpx.get(api.url_for("/tickets/99"))
    assert missing.status_code == 404 and missing.json() == {"error": "no such ticket"}
    closed = httpx.post(api.url_for("/tickets/3/close"))
    assert closed.status_code == 204 and closed.content == b""
    text = httpx.get(api.url_for("/text"))
    assert (text.text, text.headers["x-extra"]) == ("hello", "1")
    assert text.headers["content-type"].startswith("text/csv")
    assert httpx.delete(api.url_for("/tickets/3")).status_code == 405
    unknown = httpx.get(api.url_for("/nope"))
    assert unknown.status_code == 404 and unknown.json()["fake"] == "tickets"
    boom = httpx.get(api.url_for("/boom"))
    assert boom.status_code == 500 and "KeyError" in boom.text


def test_request_body_query_and_form(api: FakeAPI) -> None:
    sent = httpx.post(api.url_for("/echo") + "?a=1&a=2&b=x", json={"k": [1, 2]}).json()
    assert sent["payload"] == {"k": [1, 2]}
    assert sent["query"] == {"a": "2", "b": "x"}
    assert sent["query_list"] == [["a", "1"], ["a", "2"], ["b", "x"]]
    form = httpx.post(api.url_for("/echo"), data={"status": "solved", "n": "3"}).json()
    assert form["payload"] == {"status": "solved", "n": "3"}


def test_pagination_links_use_own_host_and_port(api: FakeAPI) -> None:
    url: str | None = api.url_for("/tickets")
    seen = []
    while url:
        assert url.startswith(api.base_url)
        page = httpx.get(url).json()
        seen += [t["id"] for t in page["results"]]
        url = page.get("next")
    assert seen == ["1", "2", "3", "4", "5"]
    assert len(api.requests_to("GET", "/tickets")) == 3


def test_request_log_redacts_secrets_and_keeps_order(api: FakeAPI) -> None:
    secret = "sk_live_very_secret"
    httpx.get(
        api.url_for("/tickets/1", api_key=secret, page="2"),
        headers={"Authorization": f"Bearer {secret}", "X-Api-Key": secret, "Cookie": secret},
    )
    httpx.post(api.url_for("/tickets/1/close"), json={"note": "done"})
    first, second = api.requests
    assert (first.method, first.path, second.method) == ("GET", "/tickets/1", "POST")
    assert first.query == {"api_key": "<redacted>", "page": "2"}
    assert first.headers["authorization"] == "<redacted>"
    assert secret not in repr(api.requests)
    assert second.json() == {"note": "done"}


def test_effects_count_and_reset(api: FakeAPI) -> None:
    for _ in range(2):
        httpx.post(api.url_for("/tickets/4/close"))
    api.fail_next(1, status=500)
    assert api.effects == {"close:4": 2}
    api.reset()
    assert api.effects == {} and api.requests == []
    assert httpx.get(api.url_for("/tickets/1")).status_code == 200  # the fault was cleared


@pytest.mark.parametrize(
    "scheme,header",
    [
        ("retry-after", "retry-after"),
        ("retry-after-date", "retry-after"),
        ("x-ratelimit-reset", "x-ratelimit-reset"),
        ("ratelimit-reset", "ratelimit-reset"),
    ],
)
def test_rate_limit_schemes_are_readable(api: FakeAPI, scheme: str, header: str) -> None:
    api.rate_limit_next(2, scheme=scheme, wait=3)
    for _ in range(2):
        response = httpx.get(api.url_for("/tickets/1"))
        assert response.status_code == 429
        assert header in response.headers
        wait = retry_after_from_headers(response.headers)
        assert wait is not None and 1.0 <= wait <= 4.0
    assert httpx.get(api.url_for("/tickets/1")).status_code == 200


def test_rate_limit_options(api: FakeAPI) -> None:
    api.rate_limit_next(1, scheme="none", path="/tickets/2", body={"msg": "slow"}, status=503)
    assert httpx.get(api.url_for("/tickets/1")).status_code == 200  # other path unaffected
    limited = httpx.get(api.url_for("/tickets/2"))
    assert limited.status_code == 503 and limited.json() == {"msg": "slow"}
    assert retry_after_from_headers(limited.headers) is None
    assert len(api.requests) == 2  # faulted requests are logged too
    with pytest.raises(ValueError, match="unknown rate-limit scheme"):
        api.rate_limit_next(1, scheme="sometimes")  # type: ignore[arg-type]


def test_fail_next_status(api: FakeAPI) -> None:
    api.fail_next(2, status=502)
    assert [httpx.get(api.url_for("/tickets/1")).status_code for _ in range(3)] == [502, 502, 200]


def test_fail_next_drop_is_a_transport_error(api: FakeAPI) -> None:
    api.fail_next(1, kind="drop")
    with httpx.Client() as client:
        with pytest.raises(httpx.RemoteProtocolError):
            client.post(api.url_for("/tickets/1/close"))
        assert client.post(api.url_for("/tickets/1/close")).status_code == 204
    assert api.effects["close:1"] == 1  # the dropped request had no effect


def test_fail_next_timeout(api: FakeAPI) -> None:
    api.fail_next(1, kind="timeout", seconds=2)
    with pytest.raises(httpx.ReadTimeout):  # the answer is held 2 s: the client gives up
        httpx.get(api.url_for("/tickets/1"), timeout=0.2)
    assert httpx.get(api.url_for("/tickets/1"), timeout=5).status_code == 200


def test_fail_next_truncate_sends_half_the_json(api: FakeAPI) -> None:
    full = httpx.get(api.url_for("/tickets/5")).content
    api.fail_next(1, kind="truncate")
    cut = httpx.get(api.url_for("/tickets/5"))
    assert cut.status_code == 200 and cut.content == full[: len(full) // 2]
    with pytest.raises(json.JSONDecodeError):
        cut.json()


def test_fake_api_fixture_starts_and_stops(fake_api) -> None:
    first = fake_api("vendor")
    second = fake_api()
    first.add_route("GET", "/ping", lambda req: {"pong": True})
    assert httpx.get(first.url_for("/ping")).json() == {"pong": True}
    assert first.port != second.port
    assert "vendor" in repr(first)


def test_kit_is_a_pytest11_plugin_loaded_by_installing_core(
    pytestconfig: pytest.Config,
) -> None:
    """Installing fragment-core is enough: the kit's fixtures come from its entry point."""
    from importlib.metadata import entry_points

    from fragment_core.testing import pytest_plugin

    plugins = {ep.name: ep.value for ep in entry_points(group="pytest11")}
    assert plugins.get("fragment") == "fragment_core.testing.pytest_plugin"
    assert pytestconfig.pluginmanager.is_registered(pytest_plugin)
    fixtures = pytestconfig.pluginmanager.get_plugin("fragment")
    assert fixtures is pytest_plugin
    for name in ("fake_api", "sandbox", "sandbox_factory", "fragment_runner"):
        assert callable(getattr(pytest_plugin, name)), f"fixture {name} missing from the plugin"


def test_rate_limit_dates_are_computed_when_the_429_is_served() -> None:
    import email.utils
    import time

    import httpx

    from fragment_core.testing import FakeAPI

    api = FakeAPI(name="dates")

    @api.route("GET", "/x")
    def x(req):  # type: ignore[no-untyped-def]
        return {"ok": True}

    with api:
        api.rate_limit_next(2, scheme="retry-after-date", wait=2.0)
        first = httpx.get(api.url_for("/x"))
        time.sleep(1.1)
        second = httpx.get(api.url_for("/x"))
    assert (first.status_code, second.status_code) == (429, 429)
    first_at = email.utils.parsedate_to_datetime(first.headers["retry-after"])
    second_at = email.utils.parsedate_to_datetime(second.headers["retry-after"])
    assert (second_at - first_at).total_seconds() >= 1  # "wait" from each answer, not the call


def test_fake_backoffice_pages_tickets_and_counts_effects_by_key() -> None:
    from fragment_core.testing.backoffice import FakeBackoffice

    office = FakeBackoffice(5, token="office-token")
    with office.api, httpx.Client(base_url=office.api.base_url) as http:
        auth = {"Authorization": "Bearer office-token"}
        assert http.get("/tickets?offset=0&limit=2").status_code == 401
        page = http.get("/tickets?offset=2&limit=2", headers=auth).json()
        assert page["total"] == 5 and [t["id"] for t in page["items"]] == ["T0002", "T0003"]
        for key in ("k1", "k1", "k2"):
            http.patch("/tickets/T0001", headers={**auth, "Idempotency-Key": key})
        assert office.effects == Counter({"T0001": 2}) and office.write_backs() == 3
        assert office.add(1) == ["T0005"] and "T0001" not in office.open_ids()
    assert 'token = "${OFFICE}"' in office.source_options("OFFICE")
