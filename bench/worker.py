"""One measured benchmark step, run in its own process by ``bench/sync.py``.

``python bench/worker.py MODE SPEC_JSON`` prints one JSON line: what was done, wall and
CPU time, and this process's peak RSS. The sandbox token comes from the environment.
Modes: ``sync`` (our engine), ``plan`` (the planner alone), ``map`` (the connector's
own cost), ``seed`` (write state rows without the Tasks API), ``naive`` (one POST per
task) and ``floor`` (pre-built batches).
"""

from __future__ import annotations

import json
import math
import os
import sys
from collections import Counter
from collections.abc import Callable
from typing import Any

import httpx
from _common import SOURCE, TOKEN_ENV, Stopwatch, peak_rss_mb
from connector import BenchConfig, BenchConnector, make_record, plugin_manager, records

from fragment_core.config import SourceSettings
from fragment_core.state import RecordState, StateStore
from fragment_core.sync.fingerprint import Fingerprinter, mapping_key
from fragment_core.sync.plan import map_task
from fragment_core.tasks_api import TasksClient


class CountingClient:
    """A :class:`TasksClient` that tells list requests from write requests (public API only).

    Reads (listing completions, asking the account the state's destination is checked
    against) run before the applier, one request at a time, so their requests are
    counted exactly (as ``list_requests``); every other request of a sync is a write.
    """

    def __init__(self, client: TasksClient) -> None:
        self.client = client
        self.list_requests = 0

    @property
    def requests_made(self) -> int:
        return self.client.requests_made

    @property
    def write_requests(self) -> int:
        return self.client.requests_made - self.list_requests

    def list_tasks(self, **filters: Any) -> Any:
        before = self.client.requests_made
        yield from self.client.list_tasks(**filters)
        self.list_requests += self.client.requests_made - before

    def account(self) -> Any:
        before = self.client.requests_made
        try:
            return self.client.account()
        finally:
            self.list_requests += self.client.requests_made - before

    def __getattr__(self, name: str) -> Any:
        return getattr(self.client, name)


def _source(spec: dict[str, Any]) -> tuple[SourceSettings, BenchConnector, Any]:
    """The bench source of ``spec``: its options name the backlog's size only; the edits
    and removals of ``spec`` are the source's own changes (``connector.changes``)."""
    pm = plugin_manager()
    from fragment_core.plugins import get_registry

    cls = get_registry(pm).get("bench")
    options = BenchConfig(count=spec["count"])
    source = SourceSettings(name=SOURCE, connector="bench", options=options)
    connector = cls(options, source=SOURCE)
    connector.changes = BenchConfig(
        count=spec["count"],
        edit_every=spec.get("edit_every", 0),
        remove_every=spec.get("remove_every", 0),
    )
    return source, connector, pm


def _profiled(spec: dict[str, Any], run: Callable[[], Any]) -> Any:
    path = spec.get("profile")
    if not path:
        return run()
    from pyinstrument import Profiler

    profiler = Profiler(interval=0.001)
    profiler.start()
    try:
        return run()
    finally:
        profiler.stop()
        with open(path, "w") as handle:
            handle.write(profiler.output_text(unicode=False, color=False, show_all=False))


def run_sync(spec: dict[str, Any]) -> dict[str, Any]:
    """One sync of the bench source through the engine, as the runner does it."""
    from fragment_core.sync.engine import sync_source

    source, connector, pm = _source(spec)
    client = CountingClient(
        TasksClient(
            spec["url"],
            os.environ[TOKEN_ENV],
            rate_limit=spec.get("rate_limit"),
            rate_period=spec.get("rate_period", 60.0),
            batch_size=spec["batch_size"],
        )
    )
    store = StateStore(spec["state_url"])
    with Stopwatch() as sw:
        report = _profiled(
            spec,
            lambda: sync_source(
                source, connector, client, store, pm=pm, batch_size=spec["batch_size"]
            ),
        )
    client.close()
    store.close()
    return {
        "outcome": str(report.outcome),
        "fetched": report.fetched,
        "created": report.created,
        "updated": report.updated,
        "closed": report.closed,
        "reopened": report.reopened,
        "unchanged": report.unchanged,
        "not_mapped": report.not_mapped,
        "failed_records": report.failed_records,
        "requests": report.requests,
        "write_requests": client.write_requests,
        "list_requests": client.list_requests,
        "messages": report.messages,
        "wall_s": sw.wall,
        "cpu_s": sw.cpu,
        "peak_rss_mb": peak_rss_mb(),
    }


def run_plan(spec: dict[str, Any]) -> dict[str, Any]:
    """The planner alone (fetch, map, diff against state): no Tasks API, no writes."""
    from fragment_core.sync.engine import plan_source

    source, connector, pm = _source(spec)
    store = StateStore(spec["state_url"])
    writes = Counter()

    def on_write(kind: str, write: Any) -> None:  # a writer that sends them at once
        writes[kind] += 1

    def on_fingerprint(external_id: str, record_hash: str) -> None:
        writes["fingerprints"] += 1

    with Stopwatch() as sw:
        plan, _ = _profiled(
            spec,
            lambda: plan_source(
                source, connector, store, pm=pm, on_write=on_write, on_fingerprint=on_fingerprint
            ),
        )
    result = {
        "fetched": plan.fetched,
        "create": writes["created"],
        "update": writes["updated"],
        "close": len(plan.close),
        "unchanged": plan.unchanged,
        "mapped": plan.fetched - plan.skipped,
        "wall_s": sw.wall,
        "cpu_s": sw.cpu,
        "peak_rss_mb": peak_rss_mb(),
    }
    store.close()
    return result


def run_map(spec: dict[str, Any]) -> dict[str, Any]:
    """What the connector itself costs: its fetch alone (making up the records, as a
    vendor SDK decodes them), fetch and ``to_task``; then with our uid, wire body and
    hash on top (what a changed record costs before the planner looks at it)."""
    source, connector, _ = _source(spec)
    with Stopwatch() as fetch_only:
        for _record in connector.fetch_backlog():
            pass
    with Stopwatch() as connector_only:
        for record in connector.fetch_backlog():
            connector.to_task(record)
    with Stopwatch() as with_hash:
        for record in connector.fetch_backlog():
            map_task(source.name, connector.to_task(record))
    count = max(connector.config.count, 1)
    return {
        "fetch_only_cpu_us_per_record": fetch_only.cpu / count * 1e6,
        "connector_cpu_us_per_record": connector_only.cpu / count * 1e6,
        "with_uid_and_hash_cpu_us_per_record": with_hash.cpu / count * 1e6,
        "peak_rss_mb": peak_rss_mb(),
    }


def run_seed(spec: dict[str, Any]) -> dict[str, Any]:
    """Write the state a completed initial sync would leave, without the Tasks API."""
    source, connector, pm = _source(spec)
    store = StateStore(spec["state_url"])
    fingerprint = Fingerprinter(connector, mapping_key(source, connector, pm))
    batch: list[RecordState] = []
    with Stopwatch() as sw:
        for record in records(connector.changes):
            mapped = map_task(source.name, connector.to_task(record))
            batch.append(
                RecordState(
                    str(mapped.external_id),
                    str(mapped.uid),
                    str(mapped.content_hash),
                    record_hash=fingerprint(record),
                )
            )
            if len(batch) == 5000:
                store.save_records(source.name, batch)
                batch = []
        store.save_records(source.name, batch)
    store.close()
    return {"seeded": connector.config.count, "wall_s": sw.wall, "peak_rss_mb": peak_rss_mb()}


def naive_body(record: dict[str, Any]) -> dict[str, Any]:
    """What the integration guide's code step sends for one row."""
    fields = {k: v for k, v in record.items() if k not in ("due",)}
    fields["external_id"] = fields.pop("id")
    return {"fields": fields, "due_at": record["due"]}


def run_naive(spec: dict[str, Any]) -> dict[str, Any]:
    """The naive loop: one ``POST /tasks`` per record, sequential, one keep-alive client."""
    headers = {"Authorization": f"Bearer {os.environ[TOKEN_ENV]}"}
    count = spec["sample"]
    failures = 0
    http = httpx.Client(base_url=spec["url"], headers=headers, timeout=30)
    with http, Stopwatch() as sw:
        for index in range(count):
            response = http.post("/tasks", json=naive_body(make_record(index)))
            failures += response.status_code != 200
    return {
        "requests": count,
        "failures": failures,
        "wall_s": sw.wall,
        "cpu_s": sw.cpu,
        "peak_rss_mb": peak_rss_mb(),
    }


def run_floor(spec: dict[str, Any]) -> dict[str, Any]:
    """The server alone: the same tasks as ``PUT /tasks/batch`` bodies built beforehand,
    sent back to back by a bare httpx client."""
    source, connector, _ = _source(spec)
    size = spec["batch_size"]
    bodies: list[bytes] = []
    chunk: list[dict[str, Any]] = []
    with Stopwatch() as build:
        for record in records(connector.changes):
            chunk.append(connector.to_task(record).for_source(source.name).to_api())
            if len(chunk) == size:
                bodies.append(json.dumps({"items": chunk}).encode())
                chunk = []
        if chunk:
            bodies.append(json.dumps({"items": chunk}).encode())
    headers = {
        "Authorization": f"Bearer {os.environ[TOKEN_ENV]}",
        "Content-Type": "application/json",
    }
    failures = 0
    http = httpx.Client(base_url=spec["url"], headers=headers, timeout=60)
    with http, Stopwatch() as sw:
        for body in bodies:
            response = http.put("/tasks/batch", content=body)
            failures += response.status_code != 200
    return {
        "requests": len(bodies),
        "expected_requests": math.ceil(connector.config.count / size),
        "failures": failures,
        "build_s": build.wall,
        "wall_s": sw.wall,
        "cpu_s": sw.cpu,
        "peak_rss_mb": peak_rss_mb(),
    }


MODES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "sync": run_sync,
    "plan": run_plan,
    "seed": run_seed,
    "map": run_map,
    "naive": run_naive,
    "floor": run_floor,
}


def main(argv: list[str]) -> None:
    mode, spec = argv[0], json.loads(argv[1])
    print(json.dumps(MODES[mode](spec)))


if __name__ == "__main__":
    main(sys.argv[1:])
