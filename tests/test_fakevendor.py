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
    limit = RateLimit(
        3,
        window=0.5,
        headers=lambda wait: {"X-Vendor-Retry-Ms": str(int(wait * 1000))},
        body={"code": "slow_down"},
    )
    vendor = make_vendor(rate_limit=limit)
    with vendor.api:
        url = vendor.api.url_for("/v2/tickets")
        statuses = [httpx.get(url, headers=AUTH).status_code for _ in range(5)]
        assert statuses == [200, 200, 200, 429, 429]
        limited = httpx.get(url, headers=AUTH)
        assert limited.json() == {"code": "slow_down"}
        assert 0 < int(limited.headers["x-vendor-retry-ms"]) <= 500
        assert "retry-after" not in limited.headers
        assert limit.over == 3
        time.sleep(0.55)  # sustained: the window slides, requests pass again
        assert httpx.get(url, headers=AUTH).status_code == 200


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
