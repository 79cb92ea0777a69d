"""The small kit helpers vendor packages share: item_id/unseen, epoch_ms/record_time,
FakeVendor.body_of/stored (Answer), Transport.call_openapi and error_body."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, ConfigDict

from fragment_core.errors import AuthenticationError, BadRecordError, TransientError
from fragment_core.mapping import epoch_ms, record_time
from fragment_core.paging import item_id, unseen
from fragment_core.retries import RetryPolicy
from fragment_core.testing import FakeAPI, FakeRequest, FakeResponse, FakeVendor
from fragment_core.transport import BearerAuth, Transport, error_body

TOKEN = "tok-77ee-very-secret"
FAST = RetryPolicy(attempts=3, timeout=10, wait_initial=0.001, wait_max=0.01)


def test_item_id_and_unseen_deduplicate_across_listings() -> None:
    assert item_id({"id": 7}) == "7" and item_id({"x": 1}) is None and item_id([1]) is None
    seen: set[str] = set()
    first = list(unseen([{"id": 1}, {"id": 2}, {"x": 0}], seen))
    second = list(unseen([{"id": 2}, {"id": 3}, {"x": 0}], seen))
    assert first == [{"id": 1}, {"id": 2}, {"x": 0}]
    assert second == [{"id": 3}, {"x": 0}]  # id 2 was yielded before; no id: always kept
    assert seen == {"1", "2", "3"}


def test_epoch_ms_and_record_time_name_the_field() -> None:
    when = datetime(2025, 6, 1, 15, 0, tzinfo=UTC)
    assert epoch_ms(when) == 1_748_790_000_000
    assert record_time(str(epoch_ms(when)), "due", epoch="ms") == when
    assert record_time("2025-06-01T15:00:00Z", "due") == when
    assert record_time("", "due") is None
    with pytest.raises(BadRecordError, match="epoch milliseconds") as caught:
        record_time("soon", "due", epoch="ms")
    assert caught.value.field == "due"


class _Close(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)
    reason: str


def test_body_of_and_stored_answer_400_and_404_from_a_handler() -> None:
    vendor = FakeVendor("tickets", token="t-1")
    vendor.store.put("1", {"id": "1", "open": True})

    @vendor.route("POST", "/tickets/{tid}/close")
    def close(req: FakeRequest) -> Any:
        body = vendor.body_of(req, _Close)
        ticket = vendor.stored(req.path_params["tid"])
        ticket["open"] = False
        return {**ticket, "reason": body.reason}

    auth = {"Authorization": "Bearer t-1"}
    with vendor.api:
        url = vendor.api.url_for
        ok = httpx.post(url("/tickets/1/close"), json={"reason": "done"}, headers=auth)
        missing = httpx.post(url("/tickets/9/close"), json={"reason": "done"}, headers=auth)
        bad = httpx.post(url("/tickets/1/close"), json={"why": "done"}, headers=auth)
    assert ok.status_code == 200 and ok.json() == {"id": "1", "open": False, "reason": "done"}
    assert missing.status_code == 404
    assert bad.status_code == 400 and "reason" in bad.json()["message"]
    assert len(vendor.invalid_requests) == 1  # the 400 is logged, the 404 is not


class ApiException(Exception):
    """What an openapi-generator SDK raises on a failed answer (status 0: no answer)."""

    def __init__(self, status: int = 0, headers: Any = None, body: bytes | None = None) -> None:
        super().__init__(f"({status})")
        self.status, self.headers, self.body = status, headers, body


class ItemsApi:
    """An openapi-generator shaped API class: real HTTP through urllib3, as those SDKs do."""

    def __init__(self, base_url: str) -> None:
        import urllib3

        self.base_url, self.http = base_url, urllib3.PoolManager(retries=False)
        self.options: list[dict[str, Any]] = []

    def get_item(self, item_id: str, **options: Any) -> Any:
        self.options.append(options)
        headers = {"Authorization": f"Bearer {TOKEN}"}
        url = f"{self.base_url}/items/{item_id}"
        raw = self.http.request("GET", url, headers=headers, timeout=options["_request_timeout"])
        if raw.status >= 400:
            raise ApiException(raw.status, dict(raw.headers), raw.data)
        return raw


def test_call_openapi_decodes_retries_and_translates_an_sdks_answers() -> None:
    """``call_openapi`` asks for the raw answer with the timeout, decodes it to a dict,
    retries a 503, reads a 403 as an HTTP refusal (named, redacted) and a status-0
    exception or a body that is not JSON as transient."""
    api = FakeAPI(name="items")

    @api.route("GET", "/items/{item_id}")
    def item(req: FakeRequest) -> Any:
        if req.path_params["item_id"] == "broken":
            return FakeResponse(status=200, text="<html>gateway</html>")
        return {"id": req.path_params["item_id"], "state": "open"}

    def refused(response: httpx.Response) -> Any:
        if response.status_code != 403:
            return None  # the Transport's default mapping
        return AuthenticationError(f"the vendor said: {error_body(response).get('message')}")

    with api, Transport(api.base_url, auth=BearerAuth(TOKEN), retry=FAST, name="source 'i'") as t:
        sdk = ItemsApi(api.base_url)

        def call(item_id: str) -> dict[str, Any]:
            return t.call_openapi(
                sdk.get_item, item_id, operation=f"read item {item_id}", vendor="Items",
                exceptions=(ApiException,), timeout=7.5, translate_error=refused,
            )  # fmt: skip

        api.fail_next(1, status=503)
        assert call("1") == {"id": "1", "state": "open"}
        assert len(sdk.options) == 2  # the 503 was retried
        assert sdk.options[0] == {"_preload_content": False, "_request_timeout": 7.5}
        api.fail_next(1, status=403, body={"message": f"token {TOKEN} lacks items:read"})
        with pytest.raises(AuthenticationError) as refusal:
            call("2")
        with pytest.raises(TransientError, match="Items's answer to read item broken"):
            call("broken")

        def unreachable(*args: Any, **options: Any) -> Any:
            raise ApiException(0)

        with pytest.raises(TransientError, match="could not reach Items to read item 3"):
            t.call_openapi(unreachable, "3", operation="read item 3", vendor="Items",
                           exceptions=(ApiException,), timeout=1)  # fmt: skip
    message = str(refusal.value)
    assert message.startswith("source 'i': ") and "lacks items:read" in message
    assert TOKEN not in message


def test_error_body_reads_json_objects_and_falls_back_to_text() -> None:
    def answer(content: bytes) -> httpx.Response:
        return httpx.Response(500, content=content)

    assert error_body(answer(b'{"message": "no", "code": 7}')) == {"message": "no", "code": 7}
    assert error_body(answer(b"<html> Bad gateway </html>")) == {
        "message": "<html> Bad gateway </html>"
    }
    assert error_body(answer(b'["a list"]')) == {"message": '["a list"]'}
    assert error_body(answer(b"x" * 500), limit=10) == {"message": "x" * 10}
    assert error_body(answer(b"")) == {}
