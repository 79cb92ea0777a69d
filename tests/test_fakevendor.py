"""FakeVendor: auth and scopes, OpenAPI checks, the clocked store, limits, effects, faults."""

from __future__ import annotations

import time
from datetime import timedelta
from typing import Any

import httpx
import pytest

from fragment_core.testing import Clock, FakeRequest, FakeResponse, FakeVendor, RateLimit

pytest_plugins = ["pytester"]

SPEC: dict[str, Any] = {
    "openapi": "3.0.3",
    "info": {"title": "Tickets", "version": "1"},
    "servers": [{"url": "https://api.tickets.example/v2"}],
    "paths": {
        "/tickets": {
            "get": {
                "parameters": [
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "maximum": 50}}
                ],
                "responses": {
                    "200": {
                        "description": "a page",
                        "content": {
                            "application/json": {
                                "schema": {
                                    "type": "object",
                                    "required": ["tickets"],
                                    "properties": {
                                        "tickets": {
                                            "type": "array",
                                            "items": {
                                                "type": "object",
                                                "required": ["id"],
                                                "properties": {"id": {"type": "string"}},
                                            },
                                        }
                                    },
                                }
                            }
                        },
                    }
                },
            }
        }
    },
}


def make_vendor(**kw: Any) -> FakeVendor:
    kw.setdefault("scopes", {"read"})
    vendor = FakeVendor("tickets", token="t-1", **kw)
    pages: dict[str, Any] = {"body": {"tickets": [{"id": "1"}, {"id": "2"}], "total": 2}}

    @vendor.route("GET", "/v2/tickets", scope="read", items="tickets")
    def tickets(req: FakeRequest) -> Any:
        return pages["body"]

    @vendor.route("POST", "/v2/tickets/{tid}/close", scope="write")
    def close(req: FakeRequest) -> Any:
        vendor.effect("close", req.path_params["tid"], req.headers.get("idempotency-key"))
        return {"ok": True}

    @vendor.route("GET", "/v2/health", auth=False)
    def health(req: FakeRequest) -> Any:
        return {"up": True}

    vendor.pages = pages  # type: ignore[attr-defined]
    return vendor


AUTH = {"Authorization": "Bearer t-1"}


def test_auth_per_route_401_and_403_naming_the_scope() -> None:
    vendor = make_vendor()
    with vendor.api:
        url = vendor.api.url_for
        assert httpx.get(url("/v2/tickets")).status_code == 401
        bad = httpx.get(url("/v2/tickets"), headers={"Authorization": "Bearer nope"})
        assert bad.status_code == 401
        assert httpx.get(url("/v2/tickets"), headers=AUTH).status_code == 200
        denied = httpx.post(url("/v2/tickets/1/close"), headers=AUTH)
        assert denied.status_code == 403
        assert denied.json()["scope"] == "write"
        vendor.scopes.add("write")
        assert httpx.post(url("/v2/tickets/1/close"), headers=AUTH).status_code == 200
        assert httpx.get(url("/v2/health")).status_code == 200  # a route without auth
        assert "t-1" not in repr(vendor.api.requests)  # the token is redacted in the log


def test_openapi_validates_requests_and_responses() -> None:
    vendor = make_vendor(openapi=SPEC)
    with vendor.api:
        url = vendor.api.url_for
        assert httpx.get(url("/v2/tickets", limit=10), headers=AUTH).status_code == 200
        assert vendor.invalid_requests == []
        httpx.get(url("/v2/tickets", limit=500), headers=AUTH)  # over the spec's maximum
        assert len(vendor.invalid_requests) == 1
        assert "request" in vendor.invalid_requests[0]
        assert "limit" in vendor.invalid_requests[0]
        vendor.pages["body"] = {"tickets": [{"id": 1}]}  # type: ignore[attr-defined]
        httpx.get(url("/v2/tickets"), headers=AUTH)
        assert len(vendor.invalid_requests) == 2
        assert "response 200" in vendor.invalid_requests[1]


def test_openapi_spec_from_a_file(tmp_path: Any) -> None:
    import json

    path = tmp_path / "tickets.json"
    path.write_text(json.dumps(SPEC))
    vendor = make_vendor(openapi=path)
    with vendor.api:
        httpx.get(vendor.api.url_for("/v2/tickets", limit="many"), headers=AUTH)
    assert len(vendor.invalid_requests) == 1


def test_a_route_outside_the_openapi_subset_is_served_unvalidated() -> None:
    vendor = make_vendor(openapi=SPEC)

    @vendor.route("POST", "/v2/refunds", auth=False, openapi=False)
    def refund(req: FakeRequest) -> Any:
        return {"id": 7}

    with vendor.api:
        assert httpx.post(vendor.api.url_for("/v2/refunds")).json() == {"id": 7}
        httpx.post(vendor.api.url_for("/v2/tickets/1/close"), headers=AUTH)  # not in the spec
    assert len(vendor.invalid_requests) == 0  # 403 before validation: the scope is missing
    vendor.scopes.add("write")
    with vendor.api:
        httpx.post(vendor.api.url_for("/v2/tickets/1/close"), headers=AUTH)
    assert len(vendor.invalid_requests) == 2  # a validated route missing from the spec
    assert all("Path not found" in problem for problem in vendor.invalid_requests)


def _nullable_spec() -> dict[str, Any]:
    import copy

    spec = copy.deepcopy(SPEC)
    get = spec["paths"]["/tickets"]["get"]
    get["parameters"] += [
        {"name": "expand", "in": "query", "style": "deepObject", "explode": True,
         "schema": {"type": "array", "items": {"type": "string", "maxLength": 5}}},
        {"name": "created", "in": "query", "style": "deepObject", "explode": True,
         "schema": {"anyOf": [{"type": "object", "properties": {"gte": {"type": "integer"}}},
                              {"type": "integer"}]}},
    ]  # fmt: skip
    item = get["responses"]["200"]["content"]["application/json"]["schema"]["properties"]
    item["tickets"]["items"]["properties"].update(
        {
            "state": {"type": "string", "enum": ["open"], "nullable": True},
            "owner": {"anyOf": [{"type": "object"}], "nullable": True},
        }
    )
    return spec


def test_openapi_nullable_admits_null_and_deep_objects_are_read() -> None:
    vendor = make_vendor(openapi=_nullable_spec())
    vendor.pages["body"] = {"tickets": [{"id": "1", "state": None, "owner": None}]}  # type: ignore[attr-defined]
    with vendor.api:
        url = vendor.api.url_for
        query = {"expand[0]": "a", "created[gte]": "5"}
        assert httpx.get(url("/v2/tickets", **query), headers=AUTH).status_code == 200
        assert vendor.invalid_requests == []
        httpx.get(url("/v2/tickets", **{"expand[0]": "too-long"}), headers=AUTH)
        httpx.get(url("/v2/tickets", **{"created[gte]": "soon"}), headers=AUTH)
        vendor.pages["body"] = {"tickets": [{"id": "1", "state": "shut"}]}  # type: ignore[attr-defined]
        httpx.get(url("/v2/tickets"), headers=AUTH)
    assert len(vendor.invalid_requests) == 3, vendor.invalid_requests
    assert "expand" in vendor.invalid_requests[0] and "created" in vendor.invalid_requests[1]


def test_fake_vendor_clean_fixture_fails_on_an_invalid_request(pytester: pytest.Pytester) -> None:
    pytester.makepyfile(
        """
        from fragment_core.testing import FakeVendor

        def test_clean(fake_vendor_clean):
            fake_vendor_clean.append(FakeVendor("ok"))

        def test_dirty(fake_vendor_clean):
            vendor = FakeVendor("dirty")
            vendor.invalid("limit must be 1..200")
            fake_vendor_clean.append(vendor)
        """
    )
    result = pytester.runpytest_inprocess("-p", "no:cacheprovider")
    result.assert_outcomes(passed=2, errors=1)
    result.stdout.fnmatch_lines(["*fake 'dirty' saw invalid requests*limit must be 1..200*"])


def test_checked_serves_the_block_then_fails_on_what_the_fake_refused() -> None:
    with FakeVendor("ok").checked() as clean:
        url = f"{clean.api.base_url}/nowhere"
        assert httpx.get(url).status_code == 404
    with pytest.raises(httpx.TransportError):  # stopped after the block
        httpx.get(url, timeout=2)

    class Provoking(FakeVendor):
        def refusals(self) -> list[str]:
            return [m for m in self.invalid_requests if "on purpose" not in m]

    with Provoking("provoked").checked() as provoked:
        provoked.invalid("refused on purpose")
    refused = pytest.raises(AssertionError, match=r"'dirty' refused requests.*limit must be 1")
    with refused, FakeVendor("dirty").checked() as dirty:
        dirty.invalid("limit must be 1..200")


def test_clock_and_versioned_store_updated_since_and_search_lag() -> None:
    clock = Clock(step=timedelta(seconds=1))
    vendor = FakeVendor("crm", clock=clock, search_lag=timedelta(seconds=30))
    store = vendor.store
    first = store.put("a", {"v": 1})
    store.put("b", {"v": 1})
    assert store.updated_at("b") == first + timedelta(seconds=1)
    assert store.version == 2
    assert list(store.searchable()) == []  # both newer than the lag
    clock.advance(seconds=60)
    assert dict(store.searchable()) == {"a": {"v": 1}, "b": {"v": 1}}
    mark = clock.now()
    store.put("a", {"v": 2})
    assert store.updated_since(mark) == ["a"]
    assert store.updated_since(first) == ["b", "a"]
    assert dict(store.searchable())["a"] == {"v": 1}  # the index still shows the old version
    clock.advance(seconds=31)
    assert dict(store.searchable())["a"] == {"v": 2}
    store.records["b"]["v"] = 3
    store.touch("b")
    assert [h.version for h in store.history["b"]] == [2, 4]


def test_sustained_rate_limit_in_the_vendors_own_429() -> None:
    now = [1000.0]  # the window's clock, moved by hand: no wall-clock race
    limit = RateLimit(
        3,
        window=0.5,
        headers=lambda wait: {"X-Vendor-Retry-Ms": str(int(wait * 1000))},
        body={"code": "slow_down"},
        clock=lambda: now[0],
    )
    vendor = make_vendor(rate_limit=limit)
    with vendor.api:
        url = vendor.api.url_for("/v2/tickets")
        statuses = [httpx.get(url, headers=AUTH).status_code for _ in range(5)]
        assert statuses == [200, 200, 200, 429, 429]
        limited = httpx.get(url, headers=AUTH)
        assert limited.json() == {"code": "slow_down"}
        assert int(limited.headers["x-vendor-retry-ms"]) == 500
        assert "retry-after" not in limited.headers
        assert limit.over == 3
        now[0] += 0.3  # still inside the window
        assert httpx.get(url, headers=AUTH).status_code == 429
        now[0] += 0.25  # sustained: the window slides, requests pass again
        assert httpx.get(url, headers=AUTH).status_code == 200
        limit.body = "Too Many Requests"  # a text body: the 429 is text/plain
        for _ in range(3):
            httpx.get(url, headers=AUTH)
        plain = httpx.get(url, headers=AUTH)
        assert plain.status_code == 429 and plain.text == "Too Many Requests"
        assert plain.headers["content-type"].startswith("text/plain")


def test_effects_keyed_by_item_and_idempotency_key() -> None:
    vendor = make_vendor(scopes={"read", "write"})
    with vendor.api:
        url = vendor.api.url_for
        for key in ("k1", "k1", "k2"):
            httpx.post(url("/v2/tickets/7/close"), headers={**AUTH, "Idempotency-Key": key})
        httpx.post(url("/v2/tickets/8/close"), headers=AUTH)
    assert vendor.effect_count("close", "7") == 3
    assert vendor.effect_count("close", "7", "k1") == 2
    assert vendor.effect_count("close", "7", "k2") == 1
    assert vendor.effect_count("close", "8", None) == 1
    assert vendor.effect_count("close", "9") == 0
    assert vendor.api.effects["close:7"] == 3  # FakeAPI's counters see them too


def test_faults_5xx_drop_truncate_and_short_pages() -> None:
    vendor = make_vendor()
    with vendor.api:
        url = vendor.api.url_for("/v2/tickets")
        vendor.fail_next(1, status=502)
        assert httpx.get(url, headers=AUTH).status_code == 502
        vendor.fail_next(1, kind="drop")
        with pytest.raises(httpx.TransportError):
            httpx.get(url, headers=AUTH)
        vendor.fail_next(1, kind="truncate")
        with pytest.raises(ValueError):
            httpx.get(url, headers=AUTH).json()
        vendor.short_page_next(1)
        short = httpx.get(url, headers=AUTH).json()
        assert short == {"tickets": [{"id": "1"}], "total": 2}  # total unchanged: a short page
        assert len(httpx.get(url, headers=AUTH).json()["tickets"]) == 2
    with pytest.raises(ValueError):
        vendor.short_page_next(0)


def test_compare_select_and_one_error_shape() -> None:
    """``compare`` is a search filter; ``store.select`` a cached search; ``error`` shapes
    every refusal (401, 403 naming the scope, 400, 404) once."""
    from fragment_core.testing.fakevendor import compare

    assert compare("in", ["a", "b"], {"b"}) and not compare("not_in", "b", {"b"})
    assert compare("between", 5, (1, 5)) and not compare("lt", None, 3)
    assert compare("contains", "Renewal CALL", "call") and compare("not_exists", "")
    with pytest.raises(ValueError, match="unknown operator"):
        compare("like", 1, 1)

    class Shaped(FakeVendor):
        def error_response(self, status: int, code: str, message: str, **extra: Any) -> Any:
            return FakeResponse(status=status, json={"kind": code, **extra})

    vendor = Shaped("tickets", token="t-1")
    for i in (3, 1, 2):
        vendor.store.put(str(i), {"id": i})
    odd = vendor.store.select(lambda r: r["id"] % 2 == 1, key=lambda r: r["id"], cache_key="odd")
    assert odd == [{"id": 1}, {"id": 3}]
    assert vendor.store.select(lambda r: False, cache_key="odd") is odd  # cached: no write since
    vendor.store.put("5", {"id": 5})
    assert [r["id"] for r in vendor.store.select(lambda r: r["id"] % 2, cache_key="odd")] == [
        3, 1, 5
    ]

    @vendor.route("GET", "/x", scope="admin")
    def x(req: FakeRequest) -> Any:
        return vendor.not_found()

    with vendor.api:
        url = vendor.api.url_for("/x")
        refused = httpx.get(url)
        assert refused.status_code == 401, refused.text
        assert refused.json() == {"kind": "unauthorized"}
        denied = httpx.get(url, headers={"Authorization": "Bearer t-1"})
        assert denied.json() == {"kind": "missing_scope", "scope": "admin"}
        vendor.scopes.add("admin")
        found = httpx.get(url, headers={"Authorization": "Bearer t-1"})
        assert found.status_code == 404 and found.json() == {"kind": "not_found"}


def test_a_short_page_also_cuts_a_page_answered_with_headers() -> None:
    vendor = FakeVendor("tickets", token="t-1")

    @vendor.route("GET", "/v2/tickets", items="tickets")
    def tickets(req: FakeRequest) -> Any:
        body = {"tickets": [{"id": "1"}, {"id": "2"}], "total": 2}
        return FakeResponse(200, json=body, headers={"X-Page": "1"})

    with vendor.api:
        url = vendor.api.url_for("/v2/tickets")
        vendor.short_page_next(1)
        short = httpx.get(url, headers=AUTH)
        assert short.json() == {"tickets": [{"id": "1"}], "total": 2}
        assert short.headers["x-page"] == "1"  # the headers are kept
        assert len(httpx.get(url, headers=AUTH).json()["tickets"]) == 2


def test_openapi_path_maps_suffixed_paths_and_undeclared_errors_are_not_flagged() -> None:
    vendor = FakeVendor(
        "tickets", token="t-1", scopes={"read"}, openapi=SPEC,
        openapi_path=lambda path: path.removesuffix(".json"),
    )  # fmt: skip
    answer: dict[str, Any] = {"body": {"tickets": [{"id": "1"}]}}

    @vendor.route("GET", "/v2/tickets.json", scope="read")
    def tickets(req: FakeRequest) -> Any:
        return answer["body"]

    with vendor.api:
        url = vendor.api.url_for("/v2/tickets.json")
        assert httpx.get(url, headers=AUTH).status_code == 200
        answer["body"] = FakeResponse(404, json={"error": "RecordNotFound"})
        assert httpx.get(url, headers=AUTH).status_code == 404  # the spec declares only 200
        assert vendor.invalid_requests == []
        answer["body"] = {"tickets": [{"id": 7}]}
        httpx.get(url, headers=AUTH)
        assert len(vendor.invalid_requests) == 1 and "response 200" in vendor.invalid_requests[0]


def test_rate_limits_per_route_group() -> None:
    health = RateLimit(1, window=5.0, paths=frozenset({"/v2/health"}))
    vendor = make_vendor(rate_limits=[health])
    with vendor.api:
        assert [httpx.get(vendor.api.url_for("/v2/health")).status_code for _ in range(2)] == [
            200,
            429,
        ]
        assert httpx.get(vendor.api.url_for("/v2/tickets"), headers=AUTH).status_code == 200
        assert health.over == 1


def test_authorized_can_be_overridden_for_issued_tokens() -> None:
    class Issuing(FakeVendor):
        issued = {"tok-a"}

        def authorized(self, req: FakeRequest) -> bool:
            return req.headers.get("authorization", "").removeprefix("Bearer ") in self.issued

    vendor = Issuing("issuing")

    @vendor.route("GET", "/me")
    def me(req: FakeRequest) -> Any:
        return {"ok": True}

    with vendor.api:
        url = vendor.api.url_for("/me")
        assert httpx.get(url, headers={"Authorization": "Bearer tok-a"}).status_code == 200
        assert httpx.get(url, headers={"Authorization": "Bearer fake-token"}).status_code == 401


def test_rate_limit_remaining_and_reset_for_ratelimit_headers() -> None:
    limit = RateLimit(2, window=0.5)
    assert limit.remaining() == 2 and limit.reset_in() == 0.0
    assert limit.check("/x") is None and limit.remaining() == 1
    assert 0 < limit.reset_in() <= 0.5
    assert limit.check("/x") is None and limit.remaining() == 0
    assert limit.check("/x") is not None  # refused: not counted
    time.sleep(0.55)
    assert limit.remaining() == 2 and limit.reset_in() == 0.0
