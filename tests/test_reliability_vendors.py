"""Vendor faults, for each connector in the repo: 429 storms in the vendor's own signalling,
5xx, timeouts, dropped connections, truncated JSON, a page with fewer records than it
claims. Each run either completes correctly or fails cleanly: outcome ``failed``, nothing
closed, the cursor not moved; and a later clean run converges, with every operator
completion written back exactly once (the fake vendor counts effects).

The setting of every case: 30 open records are synced; then 4 are resolved in the vendor
(a correct complete run closes exactly those) and an operator completes 1 task (a
write-back is due); then the fault is injected and the source synced.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import stamina
from fragment_hubspot.connector import HubSpotConnector
from fragment_hubspot.testing import SEARCH_PATH, FakeHubSpot
from fragment_stripe.connector import ReviewsConnector
from fragment_stripe.testing import RATE_LIMIT_BODY, FakeStripe
from fragment_zendesk.connector import ZendeskConnector
from fragment_zendesk.testing import FakeZendesk

from fragment_core.config import SourceSettings
from fragment_core.connector import Connector
from fragment_core.connectors.file import FileConfig, FileConnector, write_rows
from fragment_core.connectors.http import HttpConnector
from fragment_core.reports import RunOutcome, SyncReport
from fragment_core.sandbox.runner import run_sandbox
from fragment_core.state import StateStore
from fragment_core.sync.engine import sync_source
from fragment_core.task import SOURCE_FIELD, TaskStatus, task_uid
from fragment_core.testing import FakeAPI, FakeRequest, FakeResponse

RECORDS = 30
PAGE = 10
TOKEN = "vendor-token-5b1d-not-for-logs"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Any]:
    with run_sandbox() as handle:
        yield handle


@pytest.fixture
def persistent() -> Iterator[None]:
    """For faults that outlast the retries: no backoff waits, 3 attempts per call."""
    with stamina.set_testing(True, attempts=3):
        yield


# -- fake vendors -------------------------------------------------------------------------
class ShortPages(FakeAPI):
    """A FakeAPI that can drop one record from the next page(s) of a path, keeping the
    page's claims (``total``, next links) as they were."""

    def __init__(self, name: str, *, items_key: str) -> None:
        super().__init__(name)
        self.items_key = items_key
        self.short_path: str | None = None
        self.short_next = 0

    async def _dispatch(self, method: str, path: str, *args: Any) -> Any:
        status, payload, ctype, extra = await super()._dispatch(method, path, *args)
        if self.short_next and path == self.short_path and status == 200:
            page = json.loads(payload)
            if len(page.get(self.items_key) or []) > 1:
                page[self.items_key].pop()
                self.short_next -= 1
                payload = json.dumps(page).encode()
        return status, payload, ctype, extra


class Backoffice:
    """An internal API for the ``http`` connector: offset pages with a total, PATCH to
    close. Effects are counted per ticket and per idempotency key."""

    def __init__(self) -> None:
        self.api = ShortPages("backoffice", items_key="items")
        self.tickets = {str(i): "open" for i in range(1, RECORDS + 1)}
        self.effects: Counter[str] = Counter()
        self.keys: set[str] = set()

        @self.api.route("GET", "/tickets")
        def tickets(req: FakeRequest) -> Any:
            if req.headers.get("authorization") != f"Bearer {TOKEN}":
                return FakeResponse(status=401, json={"error": "bad token"})
            rows = [
                {"id": k, "subject": f"Ticket {k}"} for k, v in self.tickets.items() if v == "open"
            ]
            offset, limit = int(req.query["offset"]), int(req.query["limit"])
            return {"items": rows[offset : offset + limit], "total": len(rows)}

        @self.api.route("PATCH", "/tickets/{ticket_id}")
        def close(req: FakeRequest) -> Any:
            key = req.headers.get("idempotency-key", "")
            ticket = req.path_params["ticket_id"]
            if key not in self.keys:  # a replayed key is not a second effect
                self.keys.add(key)
                self.effects[ticket] += 1
            self.tickets[ticket] = "closed"
            return {"id": ticket, "status": "closed"}

    def connector(self, source: str, **options: Any) -> HttpConnector:
        config = {
            "base_url": self.api.base_url,
            "auth": {"type": "bearer", "token": TOKEN},
            "backlog": {"path": "/tickets", "records_path": "items"},
            "pagination": {"type": "offset", "limit": PAGE, "total_path": "total"},
            "mapping": {"external_id": "id", "title": "subject"},
            "write_back": {"method": "PATCH", "path": "/tickets/{external_id}"},
            "timeout": 0.5,
            **options,
        }
        return HttpConnector(config, source=source)


# -- the harness --------------------------------------------------------------------------
@dataclass
class Vendor:
    """What the harness needs of a fake vendor."""

    api: FakeAPI
    connector: Connector
    open_ids: Callable[[], set[str]]
    resolve: Callable[[str], None]
    effects: Callable[[], Counter[str]]

    def clear_faults(self) -> None:
        effects = Counter(self.api.effects)
        self.api.reset()
        self.api.effects.update(effects)
        if isinstance(self.api, ShortPages):
            self.api.short_next = 0


def exercise(
    sandbox: Any, vendor: Vendor, inject: Callable[[], None], expect: RunOutcome
) -> SyncReport:
    """Sync, resolve 4 records, complete 1 task, inject the fault, sync; check the run
    did the exact thing or nothing; then converge and check the final state."""
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
    ordered = sorted(everything, key=lambda x: (len(x), x))
    resolved = set(ordered[-4:])  # the last page: a cut-short fetch would miss them
    completed = ordered[len(ordered) // 2]
    for eid in resolved:
        vendor.resolve(eid)
    client.patch_task(task_uid(name, completed), {"status": "DONE"})
    before = statuses()
    cursor_before = store.source_state(name).cursor

    inject()
    report = sync()
    assert report.outcome == expect, report.messages
    after = statuses()
    done = {eid for eid, status in after.items() if status == TaskStatus.DONE}
    if expect == RunOutcome.FAILED:
        assert report.closed == 0 and after == before, "a failed fetch closed tasks"
        assert done == {completed}
        assert store.source_state(name).cursor == cursor_before
        text = " ".join(report.messages)
        assert "fetch failed" in text and f"source {name!r}" in text, text
        assert TOKEN not in text and "pat-na1" not in text
    else:
        assert report.closed == len(resolved) and done == resolved | {completed}

    vendor.clear_faults()
    for _ in range(3):
        final = sync()
        if final.outcome == RunOutcome.OK and not store.due_write_backs(name):
            break
    assert final.outcome == RunOutcome.OK, final.messages
    after = statuses()
    assert set(after) == everything  # every record ever listed, once
    assert {e for e, s in after.items() if s == TaskStatus.DONE} == resolved | {completed}
    assert vendor.effects() == Counter({completed: 1}), "write-back effect not exactly once"
    store.close()
    client.close()
    return report


# -- http ---------------------------------------------------------------------------------
@pytest.fixture
def backoffice(request: pytest.FixtureRequest) -> Iterator[Vendor]:
    office = Backoffice()
    with office.api:
        connector = office.connector(f"http-{_name(request)}")

        def resolve(eid: str) -> None:
            office.tickets[eid] = "resolved"

        yield Vendor(
            office.api,
            connector,
            lambda: {k for k, v in office.tickets.items() if v != "resolved"},
            resolve,
            lambda: +office.effects,
        )
        connector.close()


def _name(request: pytest.FixtureRequest) -> str:
    return request.node.name[-60:].replace("[", "-").replace("]", "")


@pytest.mark.parametrize(
    "scheme,wait",
    [
        ("retry-after", 0.3),
        ("retry-after-date", 2.0),
        ("x-ratelimit-reset", 2.0),
        ("ratelimit-reset", 2.0),
    ],
)
def test_http_429_storm_is_waited_out(
    sandbox: Any, backoffice: Vendor, scheme: str, wait: float
) -> None:
    api = backoffice.api
    hits: list[float] = []

    def inject() -> None:
        api.rate_limit_next(2, scheme=scheme, wait=wait, path="/tickets")
        hits.append(time.monotonic())

    exercise(sandbox, backoffice, inject, RunOutcome.OK)
    # the hinted waits were honoured, not hammered through (dates and unix times have
    # whole-second resolution: each hinted wait is a little over wait - 1 seconds)
    assert time.monotonic() - hits[0] >= 2 * (wait if wait < 1 else wait - 1.1)


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 503},
        {"status": 502},
        {"status": 500},
        {"kind": "timeout", "seconds": 2.0},
        {"kind": "drop"},
        {"kind": "truncate"},
    ],
    ids=["503", "502", "500", "timeout", "drop", "truncated-json"],
)
def test_http_transient_fault_is_retried(
    sandbox: Any, backoffice: Vendor, fault: dict[str, Any]
) -> None:
    def inject() -> None:  # the second page fails twice, then answers
        backoffice.api.fail_next(2, path="/tickets", **fault)

    exercise(sandbox, backoffice, inject, RunOutcome.OK)


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 503},
        {"kind": "timeout", "seconds": 2.0},
        {"kind": "drop"},
        {"kind": "truncate"},
        "429",
    ],
    ids=["503", "timeout", "drop", "truncated-json", "429-storm"],
)
def test_http_fault_outlasting_retries_fails_cleanly(
    sandbox: Any,
    backoffice: Vendor,
    persistent: None,
    fault: Any,
) -> None:
    api = backoffice.api

    def inject() -> None:
        skip_first_page(api)  # the first page answers; every later request fails
        if fault == "429":
            api.rate_limit_next(1000, scheme="retry-after", wait=0.01, path="/tickets")
        else:
            api.fail_next(1000, path="/tickets", **fault)

    exercise(sandbox, backoffice, inject, RunOutcome.FAILED)


def skip_first_page(api: FakeAPI) -> None:
    """Faults added next apply from the second request on: the first page is served."""
    api.fail_next(1, kind="timeout", seconds=0.0, path="/tickets")


@pytest.mark.parametrize("pages", [1, 1000], ids=["once", "always"])
def test_http_short_page_is_not_taken_for_the_end(
    sandbox: Any, backoffice: Vendor, pages: int
) -> None:
    """A page shorter than the limit while ``total`` claims more fails the fetch (the
    next run, with full pages, converges)."""
    api = backoffice.api
    assert isinstance(api, ShortPages)

    def inject() -> None:
        api.short_path, api.short_next = "/tickets", pages

    report = exercise(sandbox, backoffice, inject, RunOutcome.FAILED)
    assert any("is incomplete" in m and "of the 26 items" in m for m in report.messages)


# -- hubspot ------------------------------------------------------------------------------
@pytest.fixture
def hubspot(request: pytest.FixtureRequest) -> Iterator[Vendor]:
    fake = FakeHubSpot(
        token="pat-na1-44444444-aaaa-bbbb-cccc-dddddddddddd",
        api=ShortPages("hubspot", items_key="results"),
    )
    fake.add_tasks(RECORDS)
    with fake.api:
        connector = HubSpotConnector(
            fake.config(page_size=PAGE, timeout=0.5), source=f"hs-{_name(request)}"
        )

        def resolve(eid: str) -> None:
            fake.update(eid, hs_task_status="COMPLETED")

        yield Vendor(
            fake.api,
            connector,
            fake.open_ids,
            resolve,
            lambda: Counter({k.split(":", 1)[1]: v for k, v in fake.api.effects.items() if v}),
        )
        connector.close()
    assert not fake.invalid_requests, fake.invalid_requests


def test_hubspot_secondly_429_storm_is_waited_out(sandbox: Any, hubspot: Vendor) -> None:
    def inject() -> None:  # HubSpot's signal: 429, Retry-After and policyName SECONDLY
        body = {
            "status": "error",
            "message": "You have reached your secondly limit.",
            "errorType": "RATE_LIMIT",
            "category": "RATE_LIMITS",
            "policyName": "SECONDLY",
        }
        hubspot.api.rate_limit_next(3, scheme="retry-after", wait=0.2, body=body, path=SEARCH_PATH)

    exercise(sandbox, hubspot, inject, RunOutcome.OK)


def test_hubspot_daily_limit_fails_cleanly(sandbox: Any, hubspot: Vendor) -> None:
    def inject() -> None:  # no Retry-After: the daily quota is spent until the reset
        body = {
            "status": "error",
            "message": "You have reached your daily limit.",
            "errorType": "RATE_LIMIT",
            "category": "RATE_LIMITS",
            "policyName": "DAILY",
        }
        skip_first_page(hubspot.api)
        hubspot.api.fail_next(1000, status=429, body=body, path=SEARCH_PATH)

    report = exercise(sandbox, hubspot, inject, RunOutcome.FAILED)
    assert any("daily API limit" in m for m in report.messages)


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 502},
        {"status": 503},
        {"kind": "timeout", "seconds": 2.0},
        {"kind": "drop"},
        {"kind": "truncate"},
    ],
    ids=["502", "503", "timeout", "drop", "truncated-json"],
)
def test_hubspot_transient_fault_is_retried(
    sandbox: Any, hubspot: Vendor, fault: dict[str, Any]
) -> None:
    def inject() -> None:
        hubspot.api.fail_next(2, path=SEARCH_PATH, **fault)

    exercise(sandbox, hubspot, inject, RunOutcome.OK)


@pytest.mark.parametrize(
    "fault",
    [{"status": 503}, {"kind": "timeout", "seconds": 2.0}, {"kind": "truncate"}],
    ids=["503", "timeout", "truncated-json"],
)
def test_hubspot_fault_outlasting_retries_fails_cleanly(
    sandbox: Any,
    hubspot: Vendor,
    persistent: None,
    fault: dict[str, Any],
) -> None:
    def inject() -> None:
        skip_first_page(hubspot.api)
        hubspot.api.fail_next(1000, path=SEARCH_PATH, **fault)

    exercise(sandbox, hubspot, inject, RunOutcome.FAILED)


def test_hubspot_short_page_is_not_taken_for_the_end(sandbox: Any, hubspot: Vendor) -> None:
    api = hubspot.api
    assert isinstance(api, ShortPages)

    def inject() -> None:
        api.short_path, api.short_next = SEARCH_PATH, 1

    report = exercise(sandbox, hubspot, inject, RunOutcome.FAILED)
    assert any("HubSpot search" in m and "after 25 of the 26 items" in m for m in report.messages)


# -- stripe -------------------------------------------------------------------------------
REVIEWS = "/v1/reviews"


@pytest.fixture
def stripe_radar(request: pytest.FixtureRequest) -> Iterator[Vendor]:
    fake = FakeStripe(api_key="sk_test_51Reliability0000000000000000")
    ids = fake.add_reviews(RECORDS)
    with fake.api:
        config = fake.reviews_config(
            page_size=PAGE, timeout_seconds=0.5, rate_limit_wait_seconds=0.3
        )
        connector = ReviewsConnector(config, source=f"stripe-{_name(request)}")
        yield Vendor(
            fake.api,
            connector,
            lambda: {i for i in ids if fake.reviews[i]["open"]},
            lambda eid: fake.close_review(eid, "refunded"),
            lambda: Counter({k.split(":", 1)[1]: v for k, v in fake.api.effects.items() if v}),
        )
        connector.close()
    assert not fake.invalid_requests, fake.invalid_requests


def test_stripe_429_storm_is_waited_out(sandbox: Any, stripe_radar: Vendor) -> None:
    # Stripe's 429 carries no wait hint: rate_limit_wait_seconds (0.3 s here) is waited
    def inject() -> None:
        stripe_radar.api.rate_limit_next(3, scheme="none", body=RATE_LIMIT_BODY, path=REVIEWS)

    started = time.monotonic()
    exercise(sandbox, stripe_radar, inject, RunOutcome.OK)
    assert time.monotonic() - started >= 3 * 0.3


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 500, "body": {"error": {"type": "api_error", "message": "Internal"}}},
        {"status": 502, "body": "<html>Bad gateway</html>"},
        {"kind": "drop"},
        {"kind": "truncate"},
    ],
    ids=["500", "502-html", "drop", "truncated-json"],
)
def test_stripe_transient_fault_is_retried(
    sandbox: Any, stripe_radar: Vendor, fault: dict[str, Any]
) -> None:
    def inject() -> None:
        stripe_radar.api.fail_next(2, path=REVIEWS, **fault)

    exercise(sandbox, stripe_radar, inject, RunOutcome.OK)


@pytest.mark.parametrize(
    "fault",
    [{"status": 503}, {"kind": "drop"}, {"kind": "truncate"}, "429"],
    ids=["503", "drop", "truncated-json", "429-storm"],
)
def test_stripe_fault_outlasting_retries_fails_cleanly(
    sandbox: Any, stripe_radar: Vendor, persistent: None, fault: Any
) -> None:
    api = stripe_radar.api

    def inject() -> None:
        api.fail_next(1, kind="timeout", seconds=0.0, path=REVIEWS)  # the first page answers
        if fault == "429":
            api.rate_limit_next(1000, scheme="none", body=RATE_LIMIT_BODY, path=REVIEWS)
        else:
            api.fail_next(1000, path=REVIEWS, **fault)

    exercise(sandbox, stripe_radar, inject, RunOutcome.FAILED)


# -- zendesk ------------------------------------------------------------------------------
ZENDESK_EXPORT = "/api/v2/search/export.json"
ZENDESK_429 = {"error": "APIRateLimitExceeded", "description": "Rate limit exceeded"}


@dataclass
class ZendeskVendor(Vendor):
    """The harness's view, plus the fake itself (for its short pages)."""

    fake: FakeZendesk | None = None


@pytest.fixture
def zendesk(request: pytest.FixtureRequest) -> Iterator[ZendeskVendor]:
    fake = FakeZendesk(api_token="zd-reliability-token-not-for-logs")
    ids = [str(i) for i in fake.add_tickets(RECORDS)]
    with fake.api:
        config = fake.config(page_size=PAGE, timeout=0.5, retry_attempts=3)
        connector = ZendeskConnector(config, source=f"zd-{_name(request)}")
        yield ZendeskVendor(
            fake.api,
            connector,
            lambda: {i for i in ids if fake.tickets[i]["status"] in ("new", "open", "pending")},
            lambda eid: fake.change(int(eid), status="solved"),
            lambda: Counter({k.split(":", 1)[1]: v for k, v in fake.api.effects.items() if v}),
            fake,
        )
        connector.close()
    assert not fake.unexpected_invalid(), fake.unexpected_invalid()


def test_zendesk_429_storm_is_waited_out(sandbox: Any, zendesk: ZendeskVendor) -> None:
    def inject() -> None:  # Zendesk's signal: 429 with Retry-After in whole seconds
        zendesk.api.rate_limit_next(
            2, scheme="retry-after", wait=1, body=ZENDESK_429, path=ZENDESK_EXPORT
        )

    started = time.monotonic()
    exercise(sandbox, zendesk, inject, RunOutcome.OK)
    assert time.monotonic() - started >= 2 * 1


@pytest.mark.parametrize(
    "fault",
    [
        {"status": 502},
        {"status": 503},
        {"kind": "timeout", "seconds": 2.0},
        {"kind": "drop"},
        {"kind": "truncate"},
    ],
    ids=["502", "503", "timeout", "drop", "truncated-json"],
)
def test_zendesk_transient_fault_is_retried(
    sandbox: Any, zendesk: Vendor, fault: dict[str, Any]
) -> None:
    def inject() -> None:
        zendesk.api.fail_next(2, path=ZENDESK_EXPORT, **fault)

    exercise(sandbox, zendesk, inject, RunOutcome.OK)


@pytest.mark.parametrize(
    "fault",
    [{"status": 503}, {"kind": "drop"}, {"kind": "truncate"}, "429"],
    ids=["503", "drop", "truncated-json", "429-storm"],
)
def test_zendesk_fault_outlasting_retries_fails_cleanly(
    sandbox: Any, zendesk: Vendor, persistent: None, fault: Any
) -> None:
    api = zendesk.api

    def inject() -> None:
        api.fail_next(1, kind="timeout", seconds=0.0, path=ZENDESK_EXPORT)  # page 1 answers
        if fault == "429":
            api.rate_limit_next(1000, scheme="retry-after", wait=1, path=ZENDESK_EXPORT)
        else:
            api.fail_next(1000, path=ZENDESK_EXPORT, **fault)

    exercise(sandbox, zendesk, inject, RunOutcome.FAILED)


def test_zendesk_short_page_is_not_taken_for_the_end(
    sandbox: Any, zendesk: ZendeskVendor
) -> None:
    fake = zendesk.fake
    assert fake is not None

    def inject() -> None:  # one export page loses a ticket; the search count says 26
        fake.short_page_next(1, drop=1, path=ZENDESK_EXPORT)

    report = exercise(sandbox, zendesk, inject, RunOutcome.FAILED)
    assert any("is incomplete" in m and "of the 26 items" in m for m in report.messages)


# -- file ---------------------------------------------------------------------------------
# The file connector has no HTTP: its faults are the file's. It vanishes (a rotation), is
# cut short mid-write by another program, or holds bytes that are not its encoding.


class FileVendor:
    def __init__(self, folder: Path, fmt: str) -> None:
        self.path = folder / f"backlog.{fmt}"
        self.fmt = fmt
        self.rows = [{"id": f"F{i:03d}", "title": f"Row {i}"} for i in range(1, RECORDS + 1)]
        self.write()

    def write(self) -> None:
        write_rows(self.path, ["id", "title", "status", "completed_at"], self.rows, fmt=self.fmt)

    def open_ids(self) -> set[str]:
        return {r["id"] for r in self.rows if r.get("status") != "done"}


def _file_source(tmp_path: Path, fmt: str) -> tuple[FileVendor, FileConnector, StateStore]:
    vendor = FileVendor(tmp_path, fmt)
    connector = FileConnector(FileConfig(path=vendor.path), source=f"file-{fmt}")
    return vendor, connector, StateStore("sqlite://")


@pytest.mark.parametrize(
    "fmt,fault",
    [
        ("csv", "missing"),
        ("jsonl", "missing"),
        ("csv", "bad-encoding"),
        ("jsonl", "bad-encoding"),
        ("jsonl", "cut-mid-line"),
    ],
)
def test_file_fault_closes_nothing(sandbox: Any, tmp_path: Path, fmt: str, fault: str) -> None:
    vendor, connector, store = _file_source(tmp_path, fmt)
    name = f"file-{fmt}-{fault}"
    source = SourceSettings(name=name, connector="file")
    client = sandbox.client()

    def sync() -> SyncReport:
        return sync_source(source, connector, client, store)

    assert sync().created == RECORDS
    good = vendor.path.read_bytes()
    if fault == "missing":  # rotated away between two runs
        vendor.path.unlink()
    elif fault == "bad-encoding":
        vendor.path.write_bytes(good + "F999,Caf\xe9\n".encode("latin-1"))
    else:  # another program is rewriting it in place: the last line is cut mid-way
        vendor.path.write_bytes(good[: len(good) - 12])
    report = sync()
    assert report.closed == 0, report.messages
    expected = RunOutcome.PARTIAL if fault == "cut-mid-line" else RunOutcome.FAILED
    assert report.outcome == expected, report.messages
    if fault == "cut-mid-line":  # the cut line is a bad record of this source, by line
        assert [str(e) for e in report.record_errors] == [
            f"source {name!r}: line {RECORDS} is not JSON: Expecting ':' delimiter"
        ]
        assert any("without a readable id: closed none" in m for m in report.messages)
    else:  # the fetch failed, and says which file
        assert any(vendor.path.name in m for m in report.messages), report.messages
    tasks = list(client.list_tasks(fields={SOURCE_FIELD: name}))
    assert len(tasks) == RECORDS and all(t.status == TaskStatus.TODO for t in tasks)
    vendor.path.write_bytes(good)
    assert sync().outcome == RunOutcome.OK
    client.close()
    store.close()
