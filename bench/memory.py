"""Benchmark: runner peak RSS as the backlog grows (10k, 100k, 1M records by default).

    python bench/memory.py [--sizes 10000 100000 1000000] [--full-sync-max 100000]

For each size, in fresh child processes: the initial sync and a no-change re-sync
through a sandbox (up to ``--full-sync-max`` records), or above that the planner alone
(fetch, map and diff against state seeded on disk, no Tasks API). Prints a table and
writes ``bench/results/memory-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import secrets
import sys
import tempfile
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import machine, run_worker, write_results

from fragment_core.sandbox import run_sandbox


def measure(size: int, *, full_sync: bool, batch_size: int, console: Console) -> dict[str, Any]:
    """Peak RSS of an initial sync and of a no-change re-sync of ``size`` records."""
    token = secrets.token_urlsafe(24)
    with tempfile.TemporaryDirectory(prefix="fragment-bench-mem-") as tmp_name:
        tmp = Path(tmp_name)
        state = {"state_url": f"sqlite:///{tmp / 'state.db'}", "count": size}
        if full_sync:
            with run_sandbox(db=str(tmp / "sandbox.db"), token=token, in_thread=False) as sb:
                spec = {**state, "url": sb.url, "batch_size": batch_size}
                console.log(f"{size:,}: initial sync")
                initial = run_worker("sync", spec, token)
                console.log(f"{size:,}: no-change re-sync")
                resync = run_worker("sync", spec, token)
            what = "sync"
        else:
            console.log(f"{size:,}: planner alone, initial (empty state)")
            initial = run_worker("plan", state)
            console.log(f"{size:,}: seeding the state on disk")
            run_worker("seed", state)
            console.log(f"{size:,}: planner alone, no change")
            resync = run_worker("plan", state)
            what = "planner alone"
    return {"records": size, "measured": what, "initial": initial, "resync_unchanged": resync}


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 1_000_000])
    parser.add_argument(
        "--full-sync-max",
        type=int,
        default=100_000,
        help="Largest size run as a full sync through the sandbox; above: the planner alone.",
    )
    parser.add_argument("--batch-size", type=int, default=100)
    parser.add_argument("--results-dir", type=Path, default=None)
    args = parser.parse_args(argv)
    console = Console(width=150)
    rows = [
        measure(
            size,
            full_sync=size <= args.full_sync_max,
            batch_size=args.batch_size,
            console=console,
        )
        for size in sorted(args.sizes)
    ]
    table = Table(title="runner peak RSS")
    for column in ("records", "measured", "initial", "no-change re-sync", "initial wall"):
        table.add_column(column, justify="left" if column == "measured" else "right")
    for row in rows:
        table.add_row(
            f"{row['records']:,}",
            row["measured"],
            f"{row['initial']['peak_rss_mb']:.0f} MB",
            f"{row['resync_unchanged']['peak_rss_mb']:.0f} MB",
            f"{row['initial']['wall_s']:.1f} s",
        )
    console.print(table)
    results = {"benchmark": "memory", "machine": machine(), "sizes": rows}
    path = write_results(results, args.results_dir, prefix="memory-")
    console.print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
