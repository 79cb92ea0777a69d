"""A write is committed only when the Tasks API's answer proves it (issue 14.3).

A proxy (FakeAPI on loopback) forwards to a real sandbox and cuts the batch answers short
or breaks their shape: every item the answer does not list is an error for that item,
never a success, and a later run sends it again.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fragment_core.config import ClosePolicy, SourceSettings
from fragment_core.connector import Connector, ConnectorConfig, Record
from fragment_core.sandbox.runner import run_sandbox
from fragment_core.state import StateStore
from fragment_core.sync.engine import sync_source
from fragment_core.task import SOURCE_FIELD, Task, TaskStatus
from fragment_core.tasks_api import TasksClient
from fragment_core.testing.fakeapi import FakeAPI, FakeRequest, FakeResponse

SOURCE = "short-answers"


class ShortProxy:
    """Forwards every request to the sandbox; ``keep`` cuts batch answers to a share."""

    def __init__(self, upstream: str) -> None:
        self.upstream = upstream
        self.keep: float | None = None  # share of answered items kept (None: all)
        self.shape: Any = None  # replaces the whole answer of a batch when set
        self.api = FakeAPI(name="short-proxy")
        for method in ("GET", "POST", "PUT", "PATCH", "DELETE"):
            self.api.add_route(method, "/api/v1/{path:path}", self._forward)

    def _forward(self, req: FakeRequest) -> FakeResponse:
        response = httpx.request(
            req.method,
            f"{self.upstream}/{req.path_params['path']}",
            params=req.query_list,
            content=req.body,
            headers={k: v for k, v in req.headers.items() if k.lower() not in ("host",)},
            timeout=60,
        )
        body = response.json() if response.content else None
        if req.path.endswith("/tasks/batch") and response.status_code == 200:
            if self.shape is not None:
                return FakeResponse(json=self.shape)
            if self.keep is not None:
                items = body["items"]
                body["items"] = items[: int(len(items) * self.keep)]
        return FakeResponse(status=response.status_code, json=body)


class Backlog(Connector[ConnectorConfig]):
    name = "backlog"

    def __init__(self, n: int) -> None:
        super().__init__(ConnectorConfig(), source=SOURCE)
        self.ids = [f"R{i:04d}" for i in range(n)]

    def fetch_backlog(self) -> Iterator[Record]:
        for eid in self.ids:
            yield {"id": eid}

    def to_task(self, record: Record) -> Task:
        return Task.new(external_id=record["id"], title=f"Record {record['id']}")


@pytest.fixture
def proxied() -> Iterator[tuple[Any, ShortProxy]]:
    with run_sandbox() as sandbox:
        proxy = ShortProxy(sandbox.url)
        with proxy.api:
            yield sandbox, proxy


def _client(sandbox: Any, proxy: ShortProxy, **options: Any) -> TasksClient:
    return TasksClient(
        proxy.api.url_for("/api/v1"), sandbox.token, rate_limit=None, retry_attempts=1, **options
    )


def test_creates_answered_with_300_of_1000_items_are_700_item_errors(proxied) -> None:
    sandbox, proxy = proxied
    proxy.keep = 0.3
    tasks = [Task.new(external_id=str(n), title=f"T{n}").for_source(SOURCE) for n in range(1000)]
    with _client(sandbox, proxy, batch_size=500) as client:
        result = client.create_tasks(tasks)
    assert len(result.raw_items) == 300
    assert len(result.errors) == 700
    assert {e.uid for e in result.errors} | {t.uid for t in result.items} == {
        t.uid for t in tasks
    }
    assert all(e.status == 502 and "omits this item" in e.message for e in result.errors)
    assert sorted(e.index for e in result.errors) == sorted(
        [i for i in range(1000) if i % 500 >= 150]
    )


@pytest.mark.parametrize(
    "shape", [[], {"data": []}, {"items": "none"}, {"items": [], "errors": {}}, "ok"]
)
def test_an_answer_not_of_the_documented_shape_fails_every_item(proxied, shape) -> None:
    sandbox, proxy = proxied
    proxy.shape = shape
    tasks = [Task.new(external_id=str(n), title=f"T{n}").for_source(SOURCE) for n in range(5)]
    with _client(sandbox, proxy) as client:
        for result in (
            client.upsert_tasks(tasks),
            client.patch_tasks([{"uid": str(t.uid), "status": "DONE"} for t in tasks]),
        ):
            assert result.raw_items == []
            assert [e.uid for e in result.errors] == [t.uid for t in tasks]
            assert all("not the documented shape" in e.message for e in result.errors)


def test_short_answers_are_not_recorded_and_the_next_run_sends_them_again(
    proxied, tmp_path
) -> None:
    sandbox, proxy = proxied
    connector = Backlog(1000)
    source = SourceSettings(
        name=SOURCE, connector="backlog", close=ClosePolicy(max_share=1.0, min_open=0)
    )
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    with _client(sandbox, proxy, batch_size=100) as client:
        proxy.keep = 0.3
        first = sync_source(source, connector, client, store, batch_size=100)
        assert first.created == 300
        assert len(first.record_errors) == 700
        proxy.keep = None
        second = sync_source(source, connector, client, store, batch_size=100)
        assert second.created + second.updated == 700
        assert second.record_errors == []
        assert sandbox.stats()["tasks"] == 1000

        # 200 records resolved at the source: their closes answered with no item at all
        del connector.ids[:200]
        proxy.keep = 0.0
        third = sync_source(source, connector, client, store, batch_size=100)
        assert third.closed == 0 and len(third.record_errors) == 200
        proxy.keep = None
        fourth = sync_source(source, connector, client, store, batch_size=100)
        assert fourth.closed == 200 and fourth.record_errors == []
        done = [
            t
            for t in client.list_tasks(fields={SOURCE_FIELD: SOURCE}, page_size=1000)
            if t.status == TaskStatus.DONE
        ]
        assert len(done) == 200
    store.close()
