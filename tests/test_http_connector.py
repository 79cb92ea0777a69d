"""The built-in ``http`` connector against a fake back-office API (FakeAPI on loopback):
every pagination and auth style, incremental fetches, write-back, 429 storms and faults,
malformed records, check(), and the connector contract suite."""

from __future__ import annotations

import base64
import logging
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

import pytest

from fragment_core.connector import Capability
from fragment_core.connectors.http import HttpConnector
from fragment_core.errors import (
    AuthenticationError,
    BadRecordError,
    ConfigurationError,
    IncompleteFetchError,
    TransientError,
    WriteBackError,
)
from fragment_core.plugins import ConnectorRegistry, new_plugin_manager
from fragment_core.testing import ConnectorContract, FakeAPI, FakeRequest, FakeResponse
from fragment_core.testing.contract import completion_for

TOKEN = "tok-3f9a-very-secret"
PASSWORD = "pw-8c1e-very-secret"
API_KEY = "key-77d2-very-secret"
PAGE = 3


class Backoffice:
    """A fake internal API: tickets, listed in five pagination styles, closable by PATCH."""

    def __init__(self, api: FakeAPI, tickets: int = 8, auth: str = "bearer") -> None:
        self.api = api
        self.auth = auth
        self.tickets: dict[str, dict[str, Any]] = {
            str(i): {
                "id": i,
                "subject": f"Refund request {i}",
                "status": "closed" if i % 4 == 0 else "open",
                "customer": {"name": f"Customer {i}"},
                "due_date": f"2025-02-{i:02d}T12:00:00Z",
                "updated_at": f"2025-01-{i:02d}T00:00:00Z",
                "amount": i * 10,
            }
            for i in range(1, tickets + 1)
        }
        self.extra: list[Any] = []  # records served as they are (malformed ones)
        self._routes()

    # -- helpers --------------------------------------------------------------------------
    def authorized(self, req: FakeRequest) -> bool:
        header = req.headers.get("authorization", "")
        if self.auth == "bearer":
            return header == f"Bearer {TOKEN}"
        if self.auth == "basic":
            expected = base64.b64encode(f"sync:{PASSWORD}".encode()).decode()
            return header == f"Basic {expected}"
        if self.auth == "api_key_header":
            return req.headers.get("x-api-key") == API_KEY
        if self.auth == "api_key_query":
            return req.query.get("api_key") == API_KEY
        return True

    def listed(self, req: FakeRequest) -> list[Any]:
        since = req.query.get("updated_since")
        if since is None and isinstance(req.json(), dict):
            since = req.json().get("updated_since")
        status = req.query.get("status", "open")  # "all": open and closed
        rows = [
            t
            for _, t in sorted(self.tickets.items(), key=lambda kv: int(kv[0]))
            if status in ("all", t["status"]) and (since is None or t["updated_at"] > since)
        ]
        return [*rows, *self.extra]

    def guarded(self, handler: Callable[[FakeRequest], Any]) -> Callable[[FakeRequest], Any]:
        def wrapper(req: FakeRequest) -> Any:
            if not self.authorized(req):
                return FakeResponse(status=401, json={"error": "invalid credentials"})
            return handler(req)

        return wrapper

    @property
    def open_ids(self) -> set[str]:
        return {k for k, t in self.tickets.items() if t["status"] == "open"}

    # -- routes ---------------------------------------------------------------------------
    def _routes(self) -> None:  # noqa: C901
        api, route = self.api, self.api.route

        @route("GET", "/page/tickets")
        @self.guarded
        def by_page(req: FakeRequest) -> Any:
            rows = self.listed(req)
            size = int(req.query.get("per_page", PAGE))
            page = int(req.query["page"])
            pages = max(1, -(-len(rows) // size))
            return {"data": rows[(page - 1) * size : page * size], "meta": {"pages": pages}}

        @route("GET", "/offset/tickets")
        @self.guarded
        def by_offset(req: FakeRequest) -> Any:
            rows = self.listed(req)
            offset, limit = int(req.query["offset"]), int(req.query["limit"])
            return {"items": rows[offset : offset + limit], "total": len(rows)}

        @route("GET", "/cursor/tickets")
        @self.guarded
        def by_cursor(req: FakeRequest) -> Any:
            rows = self.listed(req)
            start = int(req.query.get("cursor", "0"))
            nxt = start + PAGE if start + PAGE < len(rows) else None
            return {"data": {"items": rows[start : start + PAGE]}, "meta": {"next": nxt}}

        @route("POST", "/search")
        @self.guarded
        def search(req: FakeRequest) -> Any:
            body = req.json()
            rows = self.listed(req)
            start = int(body.get("paging", {}).get("after", "0"))
            page: dict[str, Any] = {"results": rows[start : start + PAGE]}
            if start + PAGE < len(rows):
                page["paging"] = {"next": {"after": str(start + PAGE)}}
            return page

        @route("GET", "/link/tickets")
        @self.guarded
        def by_link(req: FakeRequest) -> Any:
            rows = self.listed(req)
            after = int(req.query.get("after", "0"))
            headers = {}
            if after + PAGE < len(rows):
                query = {k: v for k, v in req.query.items() if k != "api_key"}
                query["after"] = str(after + PAGE)
                link = api.url_for("/link/tickets", **query)
                headers["Link"] = f'<{link}>; rel="next", <{api.url_for("/")}>; rel="home"'
            return FakeResponse(json=rows[after : after + PAGE], headers=headers)

        @route("GET", "/next/tickets")
        @self.guarded
        def by_next_url(req: FakeRequest) -> Any:
            rows = self.listed(req)
            after = int(req.query.get("after", "0"))
            nxt = f"/next/tickets?after={after + PAGE}" if after + PAGE < len(rows) else None
            return {"results": rows[after : after + PAGE], "links": {"next": nxt}}

        @route("PATCH", "/tickets/{ticket_id}")
        @self.guarded
        def close(req: FakeRequest) -> Any:
            ticket = self.tickets.get(req.path_params["ticket_id"])
            if ticket is None:
                return FakeResponse(status=404, json={"error": "no such ticket"})
            status = (req.json() or {}).get("status")
            if status not in ("open", "closed"):
                return FakeResponse(status=422, json={"error": f"bad status {status!r}"})
            if ticket["status"] != status:
                ticket["status"] = status
                api.effect(f"close:{ticket['id']}")
            return ticket


def options(base_url: str, **overrides: Any) -> dict[str, Any]:
    """Options of a cursor-paged bearer-auth back-office, with overrides."""
    opts: dict[str, Any] = {
        "base_url": base_url,
        "auth": {"type": "bearer", "token": TOKEN},
        "backlog": {"path": "/cursor/tickets", "records_path": "data.items"},
        "pagination": {"type": "cursor", "cursor_path": "meta.next", "param": "cursor"},
        "mapping": {
            "external_id": "id",
            "title": "subject",
            "url": "https://backoffice.example.com/tickets/{id}",
            "due_at": "due_date",
            "updated_at": "updated_at",
            "custom": {"customer": "customer.name", "amount": "amount"},
            "defaults": {"team": "risk-ops"},
        },
        "write_back": {
            "method": "PATCH",
            "path": "/tickets/{external_id}",
            "body": {"status": "closed", "closed_at": "{done_at}"},
        },
    }
    opts.update(overrides)
    return opts


@pytest.fixture
def office(fake_api: Callable[[str], FakeAPI]) -> Backoffice:
    return Backoffice(fake_api("backoffice"))


@pytest.fixture
def make(office: Backoffice) -> Iterator[Callable[..., HttpConnector]]:
    made: list[HttpConnector] = []

    def build(**overrides: Any) -> HttpConnector:
        connector = HttpConnector(
            HttpConnector.Config.model_validate(options(office.api.base_url, **overrides)),
            source="backoffice",
        )
        made.append(connector)
        return connector

    yield build
    for connector in made:
        connector.close()


def ids(records: Any) -> list[str]:
    return [str(r["id"]) for r in records]


# -- pagination -----------------------------------------------------------------------------
PAGINATION_STYLES = {
    "page": (
        {"path": "/page/tickets", "records_path": "data"},
        {"type": "page", "param": "page", "size_param": "per_page", "size": PAGE},
    ),
    "page-total": (
        {"path": "/page/tickets", "records_path": "data"},
        {"type": "page", "total_pages_path": "meta.pages"},
    ),
    "offset": (
        {"path": "/offset/tickets", "records_path": "items"},
        {"type": "offset", "limit": PAGE, "total_path": "total"},
    ),
    "cursor-query": (
        {"path": "/cursor/tickets", "records_path": "data.items"},
        {"type": "cursor", "cursor_path": "meta.next", "param": "cursor"},
    ),
    "cursor-body": (
        {"method": "POST", "path": "/search", "body": {"limit": PAGE}, "records_path": "results"},
        {
            "type": "cursor",
            "cursor_path": "paging.next.after",
            "param": "paging.after",
            "location": "body",
        },
    ),
    "link_header": ({"path": "/link/tickets"}, {"type": "link_header"}),
    "next_url": (
        {"path": "/next/tickets", "records_path": "results"},
        {"type": "next_url", "next_url_path": "links.next"},
    ),
}


@pytest.mark.parametrize("style", list(PAGINATION_STYLES))
def test_every_pagination_style_fetches_the_whole_backlog_once(
    style: str, office: Backoffice, make: Callable[..., HttpConnector]
) -> None:
    backlog, pagination = PAGINATION_STYLES[style]
    connector = make(backlog=backlog, pagination=pagination)
    fetched = ids(connector.fetch_backlog())
    assert sorted(fetched) == sorted(office.open_ids)
    assert len(fetched) == len(set(fetched)) == 6
    # 6 open tickets, 3 a page: 2 pages; page numbers without a total need an empty 3rd
    pages = 3 if style == "page" else 2
    assert len(office.api.requests) == connector.requests_made == pages


def test_page_numbers_and_offsets_sent(office: Backoffice, make: Callable[..., HttpConnector]):
    backlog, pagination = PAGINATION_STYLES["page"]
    list(make(backlog=backlog, pagination=pagination).fetch_backlog())
    assert [r.query["page"] for r in office.api.requests] == ["1", "2", "3"]
    assert all(r.query["per_page"] == str(PAGE) for r in office.api.requests)
    office.api.reset()
    backlog, pagination = PAGINATION_STYLES["offset"]
    list(make(backlog=backlog, pagination=pagination).fetch_backlog())
    assert [r.query["offset"] for r in office.api.requests] == ["0", "3"]


def test_cursor_in_body_keeps_the_rest_of_the_body(
    office: Backoffice, make: Callable[..., HttpConnector]
) -> None:
    backlog, pagination = PAGINATION_STYLES["cursor-body"]
    list(make(backlog=backlog, pagination=pagination).fetch_backlog())
    bodies = [r.json() for r in office.api.requests_to("POST", "/search")]
    assert bodies == [{"limit": PAGE}, {"limit": PAGE, "paging": {"after": "3"}}]


def test_pagination_that_never_advances_is_an_error(
    office: Backoffice, make: Callable[..., HttpConnector]
) -> None:
    @office.api.route("GET", "/stuck")
    def stuck(req: FakeRequest) -> Any:
        return {"items": [{"id": 1, "subject": "x"}], "next": "same"}

    connector = make(
        backlog={"path": "/stuck", "records_path": "items"},
        pagination={"type": "cursor", "cursor_path": "next"},
    )
    with pytest.raises(ConfigurationError, match=r"options\.pagination: page 3 repeats"):
        list(connector.fetch_backlog())


def test_next_links_to_another_host_are_refused(
    office: Backoffice, make: Callable[..., HttpConnector]
) -> None:
    @office.api.route("GET", "/elsewhere")
    def elsewhere(req: FakeRequest) -> Any:
        return {"items": [{"id": 1, "subject": "x"}], "next": "http://127.0.0.2:9/steal"}

    connector = make(
        backlog={"path": "/elsewhere", "records_path": "items"},
        pagination={"type": "next_url", "next_url_path": "next"},
    )
    with pytest.raises(ConfigurationError, match=r"outside options\.base_url"):
        list(connector.fetch_backlog())
    assert len(office.api.requests) == 1


def test_wrong_records_path_names_the_option(
    office: Backoffice, make: Callable[..., HttpConnector]
) -> None:
    connector = make(backlog={"path": "/cursor/tickets", "records_path": "data.tickets"})
    with pytest.raises(ConfigurationError) as info:
        list(connector.fetch_backlog())
    assert "options.backlog.records_path" in str(info.value)
    assert "'data.tickets'" in str(info.value)


# -- auth -----------------------------------------------------------------------------------
AUTH_STYLES = {
    "bearer": ({"type": "bearer", "token": TOKEN}, {"type": "bearer", "token": "wrong"}),
    "basic": (
        {"type": "basic", "username": "sync", "password": PASSWORD},
        {"type": "basic", "username": "sync", "password": "wrong"},
    ),
    "api_key_header": (
        {"type": "api_key", "key": API_KEY},
        {"type": "api_key", "key": "wrong"},
    ),
    "api_key_query": (
        {"type": "api_key", "key": API_KEY, "location": "query", "name": "api_key"},
        {"type": "api_key", "key": "wrong", "location": "query", "name": "api_key"},
    ),
}


@pytest.mark.parametrize("style", list(AUTH_STYLES))
def test_every_auth_style(
    style: str,
    office: Backoffice,
    make: Callable[..., HttpConnector],
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG)
    office.auth = style
    good, bad = AUTH_STYLES[style]
    backlog, pagination = PAGINATION_STYLES["link_header"]
    connector = make(auth=good, backlog=backlog, pagination=pagination)
    assert sorted(ids(connector.fetch_backlog())) == sorted(office.open_ids)
    assert "HTTP 200" in connector.check()
    with pytest.raises(AuthenticationError) as info:
        make(auth=bad, backlog=backlog, pagination=pagination).check()
    text = str(info.value)
    assert "HTTP 401" in text and "options.auth" in text and "backoffice" in text
    for secret in (TOKEN, PASSWORD, API_KEY):
        assert secret not in text
        assert secret not in caplog.text  # httpx logs URLs, query keys included
        assert secret not in repr(connector)


def test_auth_error_during_fetch_is_not_retried(
    office: Backoffice, make: Callable[..., HttpConnector]
) -> None:
    connector = make(auth={"type": "bearer", "token": "expired"})
    with pytest.raises(AuthenticationError):
        list(connector.fetch_backlog())
    assert len(office.api.requests) == 1


# -- incremental ----------------------------------------------------------------------------
def test_incremental_sends_the_cursor_and_reports_open_and_cursor(
    office: Backoffice, make: Callable[..., HttpConnector]
) -> None:
    connector = make(
        backlog={"path": "/link/tickets", "params": {"status": "open"}},
        pagination={"type": "link_header"},
        incremental={
            "cursor_field": "updated_at",
            "param": "updated_since",
            "params": {"status": "all"},
            "open_field": "status",
            "open_values": ["open"],
        },
    )
    assert Capability.INCREMENTAL in connector.capabilities()
    everything = list(connector.fetch_changes(None))
    assert len(everything) == 8  # closed tickets too: incremental.params replace status=open
    assert "updated_since" not in office.api.requests[0].query
    assert [connector.is_open(r) for r in everything].count(False) == 2
    cursor = max(connector.cursor_value(r) or "" for r in everything)
    assert cursor == "2025-01-08T00:00:00Z"

    office.api.reset()
    office.tickets["3"].update(status="closed", updated_at="2025-03-01T00:00:00Z")
    office.tickets["5"].update(subject="Refund (escalated)", updated_at="2025-03-02T00:00:00Z")
    changed = list(connector.fetch_changes("2025-01-08T00:00:00Z"))
    assert ids(changed) == ["3", "5"]
    assert office.api.requests[0].query["updated_since"] == "2025-01-08T00:00:00Z"
    assert [connector.is_open(r) for r in changed] == [False, True]
    assert connector.to_task(changed[1]).fields.title == "Refund (escalated)"


def test_without_incremental_options_changes_are_the_whole_backlog(
    office: Backoffice, make: Callable[..., HttpConnector]
) -> None:
    connector = make()
    assert Capability.INCREMENTAL not in connector.capabilities()
    assert Capability.INCREMENTAL in HttpConnector.capabilities()
    assert sorted(ids(connector.fetch_changes("2025-01-01"))) == sorted(office.open_ids)


# -- mapping --------------------------------------------------------------------------------
def test_mapping_paths_templates_custom_fields_and_defaults(
    office: Backoffice, make: Callable[..., HttpConnector]
) -> None:
    connector = make(
        mapping={
            "external_id": "id",
            "title_template": "{subject} ({customer.name})",
            "url": "https://backoffice.example.com/tickets/{id}?from={customer.name}",
            "due_at": "due_date",
            "updated_at": "updated_at",
            "custom": {"customer": "customer.name", "amount": "amount", "vip": "flags.vip"},
            "defaults": {"team": "risk-ops", "vip": False},
        }
    )
    record = next(iter(connector.fetch_backlog()))
    task = connector.to_task(record)
    assert task.external_id == "1"
    assert task.fields.title == "Refund request 1 (Customer 1)"
    assert task.fields.url == "https://backoffice.example.com/tickets/1?from=Customer%201"
    assert task.due_at == datetime(2025, 2, 1, 12, tzinfo=UTC)
    assert task.external_updated_at == datetime(2025, 1, 1, tzinfo=UTC)
    assert task.fields.custom == {
        "customer": "Customer 1",
        "amount": 10,
        "team": "risk-ops",
        "vip": False,
    }


def test_malformed_records_are_refused_by_name_and_the_others_mapped(
    office: Backoffice, make: Callable[..., HttpConnector]
) -> None:
    office.extra = [
        {"subject": "no id"},
        {"id": 101},
        {"id": 102, "subject": "bad due date", "due_date": "next tuesday"},
        {"id": {"nested": 1}, "subject": "id is an object"},
        "not an object",
        {"id": 103, "subject": ""},
    ]
    connector = make()
    mapped, refused = [], []
    for record in connector.fetch_backlog():
        try:
            mapped.append(connector.to_task(record).external_id)
        except BadRecordError as exc:
            refused.append((exc.record_id, exc.field, str(exc)))
    assert sorted(mapped) == sorted(office.open_ids)
    assert [(r, f) for r, f, _ in refused] == [
        (None, "id"),
        ("101", "subject"),
        ("102", "due_date"),
        (None, "id"),
        (None, None),
        ("103", "subject"),
    ]
    assert all("source 'backoffice'" in text for *_, text in refused)
    assert "next tuesday" in refused[2][2] and "ISO 8601" in refused[2][2]
    assert "options.mapping.external_id" in refused[0][2]


# -- write-back -----------------------------------------------------------------------------
def test_write_back_closes_the_ticket_once(
    office: Backoffice, make: Callable[..., HttpConnector]
) -> None:
    connector = make()
    task = connector.to_task(office.tickets["2"])
    remote, completion = completion_for(connector, task)
    assert connector.on_complete(remote, completion) == "PATCH /tickets/2 -> HTTP 200"
    assert connector.on_complete(remote, completion) == "PATCH /tickets/2 -> HTTP 200"
    assert office.tickets["2"]["status"] == "closed"
    assert office.api.effects["close:2"] == 1
    sent = office.api.requests_to("PATCH", "/tickets/2")
    assert sent[0].json() == {"status": "closed", "closed_at": "2025-01-02T03:04:05.000Z"}
    assert sent[0].headers["idempotency-key"] == completion.idempotency_key
    assert "2" not in {str(r["id"]) for r in connector.fetch_backlog()}


def test_write_back_templates_keep_types_and_quote_path_values(
    office: Backoffice, make: Callable[..., HttpConnector]
) -> None:
    @office.api.route("POST", "/resolutions/{key}")
    def resolve(req: FakeRequest) -> Any:
        office.api.effect(f"resolve:{req.path_params['key']}")
        return {"ok": True, "got": req.json()}

    connector = make(
        write_back={
            "method": "POST",
            "path": "/resolutions/{fields.customer}",
            "body": {"ticket": "{fields.amount}", "note": "closed by {source}", "tags": ["x"]},
            "idempotency_header": "",
        }
    )
    task = connector.to_task(office.tickets["7"])
    remote, completion = completion_for(connector, task)
    connector.on_complete(remote, completion)
    (sent,) = office.api.requests
    assert sent.path == "/resolutions/Customer%207" or sent.path == "/resolutions/Customer 7"
    assert sent.json() == {"ticket": 70, "note": "closed by backoffice", "tags": ["x"]}
    assert "idempotency-key" not in sent.headers


def test_write_back_refused_is_a_write_back_error_unless_accepted(
    office: Backoffice, make: Callable[..., HttpConnector]
) -> None:
    connector = make(write_back={"path": "/tickets/{external_id}", "body": {"status": "gone"}})
    task = connector.to_task(office.tickets["1"])
    remote, completion = completion_for(connector, task)
    with pytest.raises(WriteBackError, match="HTTP 422"):
        connector.on_complete(remote, completion)
    accepting = make(
        write_back={
            "path": "/tickets/{external_id}",
            "body": {"status": "gone"},
            "accept_statuses": [422],
        }
    )
    assert accepting.on_complete(remote, completion) == "PATCH /tickets/1 -> HTTP 422"
    missing = make(write_back={"path": "/tickets/{outcome.ticket}"})
    with pytest.raises(WriteBackError, match=r"options\.write_back\.path: placeholder"):
        missing.on_complete(remote, completion)


# -- 429s, faults and the rate limit --------------------------------------------------------
def test_429_storm_in_every_header_scheme_is_waited_out(
    office: Backoffice, make: Callable[..., HttpConnector]
) -> None:
    connector = make()
    path = "/cursor/tickets"
    office.api.rate_limit_next(2, scheme="retry-after", wait=0.3, path=path)
    started = time.monotonic()
    records = list(connector.fetch_backlog())
    waited_retry_after = time.monotonic() - started
    assert sorted(ids(records)) == sorted(office.open_ids)
    assert waited_retry_after >= 0.6
    for scheme in ("retry-after-date", "ratelimit-reset", "x-ratelimit-reset"):
        office.api.reset()
        # HTTP dates have whole seconds: ask for 1.5 s to be sure of at least 0.5 s
        office.api.rate_limit_next(
            1, scheme=scheme, wait=1.5 if "date" in scheme else 0.5, path=path
        )
        started = time.monotonic()
        assert sorted(ids(connector.fetch_backlog())) == sorted(office.open_ids)
        assert time.monotonic() - started >= 0.4, scheme
        assert [r.path for r in office.api.requests].count(path) == 3  # 429, then 2 pages


def test_transient_faults_are_retried(office: Backoffice, make: Callable[..., HttpConnector]):
    connector = make(timeout=0.5)
    office.api.fail_next(1, status=503)
    office.api.fail_next(1, kind="drop")
    office.api.fail_next(1, kind="truncate")
    office.api.fail_next(1, kind="timeout", seconds=1.0)
    assert sorted(ids(connector.fetch_backlog())) == sorted(office.open_ids)
    assert connector.requests_made == 6


def test_rate_limit_spaces_requests(office: Backoffice, make: Callable[..., HttpConnector]):
    connector = make(rate_limit=600)  # one request every 0.1 s
    started = time.monotonic()
    for _ in range(3):
        list(connector.fetch_backlog())  # 2 requests each
    assert time.monotonic() - started >= 0.5


# -- check ----------------------------------------------------------------------------------
def test_check_names_the_wrong_option(office: Backoffice, make: Callable[..., HttpConnector]):
    summary = make().check()
    assert summary.startswith(f"GET {office.api.base_url}/cursor/tickets: HTTP 200")
    assert "3 records on the first page" in summary
    with pytest.raises(ConfigurationError) as info:
        make(backlog={"path": "/tickets-v2", "records_path": "data"}).check()
    assert "HTTP 404" in str(info.value) and "options.backlog.path" in str(info.value)
    assert "options.base_url" in str(info.value)
    with pytest.raises(ConfigurationError, match=r"options\.check_path"):
        make(check_path="/health").check()


def test_check_of_an_unreachable_base_url(make: Callable[..., HttpConnector]) -> None:
    stopped = FakeAPI(name="gone").start()
    url = stopped.base_url
    stopped.stop()
    connector = HttpConnector(
        HttpConnector.Config.model_validate(options(url)), source="backoffice"
    )
    with pytest.raises(ConfigurationError, match=r"options\.base_url: cannot reach"):
        connector.check()
    with pytest.raises(TransientError):
        connector.session.request("GET", "/x", key="k", retries=False)


def test_registered_as_a_built_in_connector() -> None:
    registry = ConnectorRegistry.from_plugin_manager(new_plugin_manager(entrypoints=False))
    assert registry.get("http") is HttpConnector


# -- the contract suite ---------------------------------------------------------------------
class TestHttpContract(ConnectorContract):
    connector_class = HttpConnector

    @pytest.fixture
    def connector(self, make: Callable[..., HttpConnector]) -> HttpConnector:
        return make()

    @pytest.fixture
    def bad_connector(self, make: Callable[..., HttpConnector]) -> HttpConnector:
        return make(auth={"type": "bearer", "token": "not-" + TOKEN[::-1]})

    @pytest.fixture
    def backlog_size(self, office: Backoffice) -> int:
        return len(office.open_ids)

    @pytest.fixture
    def malformed_records(self) -> list[Any]:
        return [{"subject": "no id"}, {"id": 9, "due_date": "soon", "subject": "x"}, {"id": 10}]

    @pytest.fixture
    def secrets(self) -> list[str]:
        return [TOKEN]

    @pytest.fixture
    def effect_count(self, office: Backoffice) -> Callable[[str], int]:
        return lambda external_id: office.api.effects[f"close:{external_id}"]


# -- end to end: fake back-office -> sync -> sandbox -> completion -> write-back ----------------
def test_end_to_end_sync_completion_and_write_back(
    office: Backoffice, make: Callable[..., HttpConnector], sandbox: Any
) -> None:
    from fragment_core.config import SourceSettings
    from fragment_core.state import StateStore
    from fragment_core.sync.engine import sync_source
    from fragment_core.task import SOURCE_FIELD, TaskStatus, task_uid

    connector = make()
    settings = SourceSettings(name="backoffice", connector="http")
    client, store = sandbox.client(), StateStore("sqlite://")
    try:

        def sync(**kwargs: Any) -> Any:
            return sync_source(settings, connector, client, store, **kwargs)

        def tasks() -> dict[str, Any]:
            listed = client.list_tasks(fields={SOURCE_FIELD: "backoffice"})
            return {t.external_id: t for t in listed}

        first = sync(full=True)
        assert (first.created, first.fetched) == (6, 6), first.messages
        assert tasks()["1"].fields["url"] == "https://backoffice.example.com/tickets/1"

        client.patch_task(task_uid("backoffice", "2"), {"status": "DONE"})
        second = sync(full=True)
        assert second.written_back == 1, second.messages
        assert office.api.effects["close:2"] == 1 and office.tickets["2"]["status"] == "closed"

        office.tickets["3"].update(status="closed", updated_at="2025-06-01T00:00:00Z")
        office.api.reset()
        third = sync(full=True)
        assert third.closed == 1 and tasks()["3"].status == TaskStatus.DONE
        assert office.api.requests_to("PATCH", "/tickets/3") == []  # closed by the source
        assert sum(office.api.effects.values()) == 0
    finally:
        client.close()
        store.close()


def test_max_pages_stops_a_runaway_fetch(office: Backoffice, make: Callable[..., HttpConnector]):
    connector = make(
        pagination={"type": "cursor", "cursor_path": "meta.next", "param": "cursor", "max_pages": 1}
    )
    with pytest.raises(ConfigurationError, match=r"options\.pagination\.max_pages"):
        list(connector.fetch_backlog())
    assert len(office.api.requests) == 1


def test_an_offset_listing_short_of_its_total_is_incomplete(
    office: Backoffice, make: Callable[..., HttpConnector]
) -> None:
    @office.api.route("GET", "/shrinking")
    def shrinking(req: FakeRequest) -> Any:
        offset = int(req.query["offset"])
        rows = [{"id": n, "subject": f"t{n}"} for n in range(5)]  # 6 announced, 5 served
        return {"items": rows[offset : offset + 3], "total": 6}

    connector = make(
        backlog={"path": "/shrinking", "records_path": "items"},
        pagination={"type": "offset", "limit": 3, "total_path": "total"},
    )
    with pytest.raises(IncompleteFetchError, match=r"GET /shrinking is incomplete") as caught:
        list(connector.fetch_backlog())
    assert (caught.value.fetched, caught.value.total) == (5, 6)
    assert caught.value.where == connector.session.where


def test_a_page_numbered_listing_short_before_its_last_page_is_incomplete(
    office: Backoffice, make: Callable[..., HttpConnector]
) -> None:
    @office.api.route("GET", "/gaps")
    def gaps(req: FakeRequest) -> Any:
        page = int(req.query["page"])
        data = [{"id": 1, "subject": "a"}, {"id": 2, "subject": "b"}] if page == 1 else []
        return {"data": data, "meta": {"pages": 3}}  # 3 pages announced, page 2 empty

    connector = make(
        backlog={"path": "/gaps", "records_path": "data"},
        pagination={"type": "page", "total_pages_path": "meta.pages"},
    )
    with pytest.raises(IncompleteFetchError, match=r"after 2 of the 5 items"):
        list(connector.fetch_backlog())
    assert [r.query["page"] for r in office.api.requests] == ["1", "2"]


def test_a_record_served_on_two_pages_is_fetched_once(
    office: Backoffice, make: Callable[..., HttpConnector]
) -> None:
    @office.api.route("GET", "/overlap")
    def overlap(req: FakeRequest) -> Any:
        offset = int(req.query["offset"])
        rows = [{"id": n, "subject": f"t{n}"} for n in (1, 2, 3, 3, 4)]  # 3 shifted onto page 2
        return {"items": rows[offset : offset + 3], "total": 4}

    connector = make(
        backlog={"path": "/overlap", "records_path": "items"},
        pagination={"type": "offset", "limit": 3, "total_path": "total"},
    )
    assert [record["id"] for record in connector.fetch_backlog()] == [1, 2, 3, 4]


# -- ids never change a path ------------------------------------------------------------------
HOSTILE_IDS = {
    "..": "%2E%2E",
    ".": "%2E",
    "../../admin": "%2E%2E%2F%2E%2E%2Fadmin",
    "a/b": "a%2Fb",
    "50%": "50%25",
    "a?b=c": "a%3Fb%3Dc",
    "x#y": "x%23y",
    "v1.2": "v1%2E2",
}


@pytest.mark.parametrize(
    "template",
    ["/tickets/{external_id}", "/tickets/{id}/close", "/t/{fields.customer}", "/u/{uid}.json"],
)
@pytest.mark.parametrize("hostile", list(HOSTILE_IDS))
def test_no_id_changes_a_write_back_path(
    office: Backoffice, make: Callable[..., HttpConnector], template: str, hostile: str
) -> None:
    @office.api.route("PATCH", "/{rest:path}")
    def anything(req: FakeRequest) -> Any:
        return {"ok": True}

    write_back = {"path": template, "body": {"status": "closed"}, "accept_statuses": [404]}
    connector = make(write_back=write_back)
    record = {**office.tickets["2"], "id": hostile, "customer": {"name": hostile}}
    task = connector.to_task(record)
    remote, completion = completion_for(connector, task)
    connector.on_complete(remote, completion)
    (sent,) = office.api.requests
    value = str(completion.uid) if "{uid}" in template else hostile
    encoded = HOSTILE_IDS[hostile] if value == hostile else value
    prefix, _, suffix = template.partition("{")
    suffix = suffix.partition("}")[2]
    assert sent.raw_path == prefix + encoded + suffix
    assert sent.path == prefix + value + suffix


@pytest.mark.parametrize("hostile", list(HOSTILE_IDS))
def test_no_id_changes_the_path_of_a_url_template(
    make: Callable[..., HttpConnector], office: Backoffice, hostile: str
) -> None:
    connector = make(mapping={**options("")["mapping"], "url": "https://crm.example/c/{id}/v"})
    task = connector.to_task({**office.tickets["2"], "id": hostile})
    assert task.fields.url == f"https://crm.example/c/{HOSTILE_IDS[hostile]}/v"


def test_unreadable_numbers_in_a_page_are_bad_records_not_an_unreadable_page(
    fake_api: Callable[[str], FakeAPI],
) -> None:
    api = fake_api("numbers")
    page = (
        '{"items": [{"id": 1, "subject": "one", "amount": 5},'
        ' {"id": 2, "subject": "two", "amount": ' + "9" * 5000 + "},"
        ' {"id": 3, "subject": "three", "amount": Infinity},'
        ' {"id": 4, "subject": "four", "amount": NaN},'
        ' {"id": 5, "subject": "five"}]}'
    )

    @api.route("GET", "/items")
    def items(req: FakeRequest) -> Any:
        return FakeResponse(text=page, content_type="application/json")

    connector = HttpConnector(
        HttpConnector.Config.model_validate(
            {
                "base_url": api.base_url,
                "backlog": {"path": "/items", "records_path": "items"},
                "mapping": {
                    "external_id": "id",
                    "title": "subject",
                    "custom": {"amount": "amount"},
                },
            }
        ),
        source="numbers",
    )
    mapped, refused = [], []
    for record in connector.fetch_backlog():
        task = connector.to_task(record)
        try:
            task.for_source("numbers").content_hash()
            mapped.append(task.external_id)
        except BadRecordError as exc:
            refused.append((exc.record_id, exc.field, exc.message))
    connector.close()
    assert mapped == ["1", "5"]
    assert [(r, f) for r, f, _ in refused] == [
        ("2", "fields.amount"),
        ("3", "fields.amount"),
        ("4", "fields.amount"),
    ]
    assert "5000 characters" in refused[0][2] and "Infinity" in refused[1][2]
