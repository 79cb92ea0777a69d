"""Vendor faults for both connectors, through the real engine and a sandbox Tasks API.

The setting of every case: 30 open records are synced; 4 are resolved in ComplyAdvantage
(a correct complete run closes exactly those) and an operator completes 1 task; then the
fault is injected and the source synced. The run either completes correctly or fails
cleanly (outcome ``failed``, nothing closed, a message naming the source), and a later
clean run converges with the completion written back exactly once.
"""

from __future__ import annotations

import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

import pytest
import stamina
from fragment_complyadvantage import MeshConnector, SearchesConnector
from fragment_complyadvantage.testing import FakeComplyAdvantage, FakeMesh

from fragment_core.config import SourceSettings
from fragment_core.connector import Connector
from fragment_core.reports import RunOutcome, SyncReport
from fragment_core.state import StateStore
from fragment_core.sync.engine import sync_source
from fragment_core.task import SOURCE_FIELD, TaskStatus, task_uid
from fragment_core.testing.fakevendor import FakeVendor

RECORDS = 30
PAGE = 10


@dataclass
class Vendor:
    """What the harness needs of a fake."""

    fake: FakeVendor
    connector: Connector[Any]
    path: str  # the listing's path
    secret: str
    open_ids: Callable[[], set[str]]
    resolve: Callable[[str], None]
    kind: str  # the write-back effect

    def effects(self) -> Counter[str]:
        return Counter(
            {item: n for (kind, item, _), n in self.fake.effects.items() if kind == self.kind}
        )

    def clear_faults(self) -> None:
        effects = Counter(self.fake.effects)
        self.fake.reset()
        self.fake.effects.update(effects)
        if isinstance(self.fake, FakeComplyAdvantage):
            self.fake._short_next = 0


@pytest.fixture
def searches() -> Iterator[Vendor]:
    fake = FakeComplyAdvantage(api_key="ca-key-reliability-7f3e", serve_total=True)
    fake.add_searches(RECORDS)
    with fake.api:
        connector = SearchesConnector(
            fake.config(per_page=PAGE, total_path="content.total", timeout=0.5),
            source="screening",
        )
        yield Vendor(
            fake,
            connector,
            "/searches",
            fake.token,
            lambda: {i for i, s in fake.searches.items() if s["match_status"] == "potential_match"},
            fake.resolve,
            "update",
        )
        connector.close()
    assert not fake.invalid_requests, fake.invalid_requests


@pytest.fixture
def mesh() -> Iterator[Vendor]:
    fake = FakeMesh(password="mesh-pw-reliability-91c2")
    fake.add_cases(RECORDS)
    with fake.api:
        connector = MeshConnector(fake.config(page_size=PAGE, timeout=0.5), source="cases")
        yield Vendor(
            fake,
            connector,
            "/v2/cases",
            fake.password,
            lambda: {
                i for i, c in fake.cases.items() if c["stage"]["stage_type"] != "DECISION"
            },
            lambda case_id: fake.move(case_id, "Rejected"),
            "decide",
        )
        connector.close()
    assert not fake.invalid_requests, fake.invalid_requests


@pytest.fixture(params=["searches", "mesh"])
def vendor(request: pytest.FixtureRequest) -> Vendor:
    return request.getfixturevalue(request.param)


def exercise(
    sandbox: Any, vendor: Vendor, inject: Callable[[], None], expect: RunOutcome
) -> SyncReport:
    """Sync, resolve 4, complete 1, inject the fault, sync; check; converge; check."""
    name = vendor.connector.source
    store = StateStore("sqlite://")
    client = sandbox.client()
    source = SourceSettings(name=name, connector=vendor.connector.name)

    def sync() -> SyncReport:
        return sync_source(source, vendor.connector, client, store, full=True)

    def statuses() -> dict[str, TaskStatus]:
        tasks = list(client.list_tasks(fields={SOURCE_FIELD: name}))
        assert len(tasks) == len({t.external_id for t in tasks}), "duplicate task"
        return {str(t.external_id): t.status for t in tasks}

    first = sync()
    everything = vendor.open_ids()
    assert first.outcome == RunOutcome.OK and first.created == len(everything) == RECORDS
    ordered = sorted(everything, key=lambda i: (vendor.fake.store.updated_at(i), i))
    resolved = set(ordered[-4:])  # on the last page: a cut-short fetch would miss them
    completed = ordered[len(ordered) // 2]
    for eid in resolved:
        vendor.resolve(eid)
    client.patch_task(task_uid(name, completed), {"status": "DONE"})
    before = statuses()

    inject()
    report = sync()
    assert report.outcome == expect, report.messages
    after = statuses()
    done = {eid for eid, status in after.items() if status == TaskStatus.DONE}
    if expect == RunOutcome.FAILED:
        assert report.closed == 0 and after == before, "a failed fetch closed tasks"
        text = " ".join(report.messages)
        assert "fetch failed" in text and f"source {name!r}" in text, text
        assert vendor.secret not in text
    else:
        assert report.closed == len(resolved) and done == resolved | {completed}

    vendor.clear_faults()
    for _ in range(3):
        final = sync()
        if final.outcome == RunOutcome.OK and not store.due_write_backs(name):
            break
    assert final.outcome == RunOutcome.OK, final.messages
    after = statuses()
    assert set(after) == everything
    assert {e for e, s in after.items() if s == TaskStatus.DONE} == resolved | {completed}
    assert vendor.effects() == Counter({completed: 1}), "write-back effect not exactly once"
    store.close()
    client.close()
    return report


def _after_first_page(vendor: Vendor) -> None:
    """Faults added next apply from the second listing request on."""
    vendor.fake.fail_next(1, kind="timeout", seconds=0.0, path=vendor.path)


def test_a_429_with_ratelimit_reset_is_waited_out(sandbox: Any, vendor: Vendor) -> None:
    hits: list[float] = []

    def inject() -> None:
        vendor.fake.api.rate_limit_next(
            2, scheme="ratelimit-reset", wait=1, path=vendor.path,
            body={"message": "API rate limit exceeded"},
        )  # fmt: skip
        hits.append(time.monotonic())

    exercise(sandbox, vendor, inject, RunOutcome.OK)
    assert time.monotonic() - hits[0] >= 2 * 1.0 - 0.05  # both hinted waits honoured


@pytest.mark.parametrize(
    "fault", [{"status": 503}, {"kind": "drop"}, {"kind": "truncate"}],
    ids=["503", "drop", "truncated-json"],
)  # fmt: skip
def test_a_transient_fault_is_retried(sandbox: Any, vendor: Vendor, fault: dict[str, Any]) -> None:
    def inject() -> None:
        vendor.fake.fail_next(2, path=vendor.path, **fault)

    with stamina.set_testing(True, attempts=4):  # retried without the backoff waits
        exercise(sandbox, vendor, inject, RunOutcome.OK)


@pytest.mark.parametrize(
    "fault", [{"status": 503}, {"kind": "truncate"}], ids=["5xx-storm", "truncated-storm"]
)
def test_a_fault_outlasting_the_retries_fails_cleanly(
    sandbox: Any, vendor: Vendor, fault: dict[str, Any]
) -> None:
    def inject() -> None:
        _after_first_page(vendor)
        vendor.fake.fail_next(1000, path=vendor.path, **fault)

    with stamina.set_testing(True, attempts=3):
        exercise(sandbox, vendor, inject, RunOutcome.FAILED)


def test_a_short_page_is_not_taken_for_the_end(sandbox: Any, vendor: Vendor) -> None:
    def inject() -> None:
        vendor.fake.short_page_next(1000, path=vendor.path)

    report = exercise(sandbox, vendor, inject, RunOutcome.FAILED)
    assert any("is incomplete" in m for m in report.messages), report.messages
