"""The small kit helpers vendor packages share: item_id/unseen, epoch_ms/record_time,
FakeVendor.body_of/stored (Answer)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import httpx
import pytest
from pydantic import BaseModel, ConfigDict

from fragment_core.errors import BadRecordError
from fragment_core.mapping import epoch_ms, record_time
from fragment_core.paging import item_id, unseen
from fragment_core.testing import FakeRequest, FakeVendor


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
