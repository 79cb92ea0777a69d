"""Benchmark: runner peak RSS as the backlog grows (10k, 100k, 1M records by default).

    python bench/memory.py [--sizes 10000 100000 1000000] [--full-sync-max 100000]

For each size, in fresh child processes: the planner alone (fetch, map and diff against
state on disk, no Tasks API; initial and no-change), and up to ``--full-sync-max``
records the whole sync through a sandbox (initial and no-change re-sync). Prints peak
RSS and its growth per extra record, and writes ``bench/results/memory-<timestamp>.json``.
"""

from __future__ import annotations

import argparse
import itertools
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
    """Peak RSS of ``size`` records: the planner alone (initial and no-change), and the
    whole sync through a sandbox (initial and no-change) when ``full_sync``."""
    token = secrets.token_urlsafe(24)
    row: dict[str, Any] = {"records": size}
    with tempfile.TemporaryDirectory(prefix="fragment-bench-mem-") as tmp_name:
        tmp = Path(tmp_name)
        state = {"state_url": f"sqlite:///{tmp / 'planner.db'}", "count": size}
        console.log(f"{size:,}: planner alone, initial (empty state)")
        row["planner_initial"] = run_worker("plan", state)
        console.log(f"{size:,}: seeding the state on disk")
        run_worker("seed", state)
        console.log(f"{size:,}: planner alone, no change")
        row["planner_unchanged"] = run_worker("plan", state)
        if full_sync:
            with run_sandbox(db=str(tmp / "sandbox.db"), token=token, in_thread=False) as sb:
                spec = {
                    "state_url": f"sqlite:///{tmp / 'sync.db'}",
                    "count": size,
                    "url": sb.url,
                    "batch_size": batch_size,
                }
                console.log(f"{size:,}: initial sync")
                row["sync_initial"] = run_worker("sync", spec, token)
                console.log(f"{size:,}: no-change re-sync")
                row["sync_unchanged"] = run_worker("sync", spec, token)
    return row


def _growth(rows: list[dict[str, Any]], key: str) -> list[str]:
    """Extra RSS per extra record between consecutive sizes, in bytes."""
    shown = [""]
    for before, after in itertools.pairwise(rows):
        if key not in before or key not in after:
            shown.append("")
            continue
        extra = after[key]["peak_rss_mb"] - before[key]["peak_rss_mb"]
        per_record = extra * 1024 * 1024 / (after["records"] - before["records"])
        shown.append(f"{per_record:,.0f} B")
    return shown


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
    table = Table(title="runner peak RSS (MB) and growth per extra record")
    columns = [
        ("sync_initial", "sync, initial"),
        ("sync_unchanged", "sync, no change"),
        ("planner_initial", "planner, initial"),
        ("planner_unchanged", "planner, no change"),
    ]
    table.add_column("records", justify="right")
    for _, title in columns:
        table.add_column(title, justify="right")
        table.add_column("growth", justify="right")
    growth = {key: _growth(rows, key) for key, _ in columns}
    for index, row in enumerate(rows):
        cells = [f"{row['records']:,}"]
        for key, _ in columns:
            cells.append(f"{row[key]['peak_rss_mb']:.0f}" if key in row else "-")
            cells.append(growth[key][index])
        table.add_row(*cells)
    console.print(table)
    results = {"benchmark": "memory", "machine": machine(), "sizes": rows}
    path = write_results(results, args.results_dir, prefix="memory-")
    console.print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
