"""Benchmark: our sync against the naive one-POST-per-row loop and the server's floor.

    python bench/sync.py --records 100000

Runs every step against sandboxes started as subprocesses (their own process and GIL),
each measured step in a fresh child process (its own peak RSS and CPU time), prints a
table and writes ``bench/results/<timestamp>.json``. See docs/performance.md.
"""

from __future__ import annotations

import argparse
import contextlib
import math
import secrets
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.table import Table

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import (
    find_pid,
    load_average,
    machine,
    process_cpu_seconds,
    run_worker,
    write_results,
)
from connector import BenchConfig, expected_changes

from fragment_core.sandbox import run_sandbox

LATENCY_MS = 25
BUDGET_PER_MINUTE = 60
EDIT_EVERY = REMOVE_EVERY = 100  # 1% edited, 1% removed


@contextlib.contextmanager
def _sandbox(tmp: Path, name: str, token: str, **options: Any) -> Iterator[Any]:
    """A sandbox subprocess; ``handle.step(mode, spec)`` runs a worker against it and adds
    the sandbox's CPU time during the step (``server_cpu_s``)."""
    db = str(tmp / f"{name}.db")
    with run_sandbox(db=db, token=token, in_thread=False, **options) as handle:
        pid = find_pid(db)

        def step(mode: str, spec: dict[str, Any]) -> dict[str, Any]:
            before = process_cpu_seconds(pid)
            result = run_worker(mode, {**spec, "url": handle.url}, token)
            result["server_cpu_s"] = process_cpu_seconds(pid) - before
            return result

        handle.step = step
        yield handle


def _scaled_naive(result: dict[str, Any], records: int) -> dict[str, Any]:
    per_request = result["wall_s"] / max(result["requests"], 1)
    return {
        **result,
        "sample": result["requests"],
        "scaled": result["requests"] != records,
        "per_request_ms": per_request * 1000,
        "projected_wall_s": per_request * records,
    }


def run(args: argparse.Namespace, console: Console) -> dict[str, Any]:
    """Run every step; return the results (also what the JSON file holds)."""
    n, size = args.records, args.batch_size
    load_before = load_average()
    token = secrets.token_urlsafe(24)
    naive_sample = min(n, args.naive_sample)
    latency_sample = min(n, args.latency_sample)
    steps: dict[str, Any] = {}
    say = console.log
    with tempfile.TemporaryDirectory(prefix="fragment-bench-") as tmp_name:
        tmp = Path(tmp_name)
        base = {"count": n, "batch_size": size}

        with _sandbox(tmp, "ours", token) as sandbox:
            spec = {**base, "state_url": f"sqlite:///{tmp / 'state.db'}"}
            say(f"1. initial sync of {n:,} records")
            steps["initial"] = sandbox.step("sync", {**spec, "profile": args.profile_initial})
            say("4. re-sync, nothing changed")
            steps["resync_unchanged"] = sandbox.step(
                "sync", {**spec, "profile": args.profile_resync}
            )
            say("5. re-sync, 1% edited and 1% removed")
            changed = {**spec, "edit_every": EDIT_EVERY, "remove_every": REMOVE_EVERY}
            steps["resync_changed"] = sandbox.step("sync", changed)
        say("4. the connector's own cost per record (fetch, to_task), for reference")
        steps["resync_unchanged"]["mapping"] = run_worker("map", base)

        with _sandbox(tmp, "naive", token) as sandbox:
            say(f"2. naive loop: {naive_sample:,} POSTs")
            steps["naive"] = _scaled_naive(sandbox.step("naive", {"sample": naive_sample}), n)

        with _sandbox(tmp, "floor", token) as sandbox:
            say("3. floor: pre-built batches, bare client")
            steps["floor"] = sandbox.step("floor", base)

        latency = f"{LATENCY_MS}ms"
        with _sandbox(tmp, "latency", token, latency=latency) as sandbox:
            say(f"6. initial sync with {latency} latency")
            ours = sandbox.step("sync", {**base, "state_url": f"sqlite:///{tmp / 'lat.db'}"})
        with _sandbox(tmp, "latency-naive", token, latency=latency) as sandbox:
            say(f"6. naive loop with {latency} latency: {latency_sample:,} POSTs")
            naive = sandbox.step("naive", {"sample": latency_sample})
        steps["latency"] = {
            "latency_ms": LATENCY_MS,
            "initial": ours,
            "naive": _scaled_naive(naive, n),
        }

        # 60 requests/minute with time scaled 60x: 60 requests/second on both sides, so
        # the run is real (the sandbox answers 429 past the budget) and takes a minute
        # of ours per second.
        with _sandbox(tmp, "budget", token, rate_limit="60/s") as sandbox:
            say("7. initial sync under the budget (60/min, time scaled 60x)")
            spec = {
                **base,
                "state_url": f"sqlite:///{tmp / 'budget.db'}",
                "rate_limit": BUDGET_PER_MINUTE,
                "rate_period": 1.0,
            }
            scaled = sandbox.step("sync", spec)
            rate_limited = sandbox.stats()["rate_limited"]
        steps["budget"] = _budget(n, size, scaled, rate_limited)

    _derive(steps, n, size)
    return {
        "benchmark": "sync",
        "records": n,
        "batch_size": size,
        "naive_sample": naive_sample,
        "latency_sample": latency_sample,
        "machine": machine(),
        "load_average": {"before": load_before, "after": load_average()},
        "steps": steps,
        "ratios": _ratios(steps),
        "targets": _targets(steps, n),
    }


def _budget(n: int, size: int, scaled: dict[str, Any], rate_limited: int) -> dict[str, Any]:
    minimum = math.ceil(n / size)
    per_second = BUDGET_PER_MINUTE / 60
    return {
        "budget_per_minute": BUDGET_PER_MINUTE,
        "ours_requests": scaled["requests"],
        "ours_write_requests": scaled["write_requests"],
        "ours_list_requests": scaled["list_requests"],
        "min_write_requests": minimum,
        "ours_projected_wall_s": scaled["requests"] / per_second,
        "naive_requests": n,
        "naive_projected_wall_s": n / per_second,
        "scaled_run": {
            "time_scale": 60,
            "wall_s": scaled["wall_s"],
            "created": scaled["created"],
            "rate_limited_429": rate_limited,
        },
    }


def _derive(steps: dict[str, Any], n: int, size: int) -> None:
    initial = steps["initial"]
    initial["tasks_per_s"] = initial["created"] / initial["wall_s"]
    steps["latency"]["initial"]["tasks_per_s"] = (
        steps["latency"]["initial"]["created"] / steps["latency"]["initial"]["wall_s"]
    )
    steps["floor"]["tasks_per_s"] = n / steps["floor"]["wall_s"]
    steps["naive"]["tasks_per_s"] = n / steps["naive"]["projected_wall_s"]
    unchanged = steps["resync_unchanged"]
    unchanged["share_of_initial"] = unchanged["wall_s"] / initial["wall_s"]
    unchanged["cpu_us_per_record"] = unchanged["cpu_s"] / max(unchanged["fetched"], 1) * 1e6
    unchanged["cpu_us_per_record_beyond_source_fetch"] = (
        unchanged["cpu_us_per_record"] - unchanged["mapping"]["fetch_only_cpu_us_per_record"]
    )
    changed = steps["resync_changed"]
    edited, removed = expected_changes(
        BenchConfig(count=n, edit_every=EDIT_EVERY, remove_every=REMOVE_EVERY)
    )
    changed["expected_updated"] = edited
    changed["expected_closed"] = removed
    changed["expected_write_requests"] = math.ceil(edited / size) + math.ceil(removed / size)
    changed["writes_match"] = (
        changed["updated"] == edited
        and changed["closed"] == removed
        and changed["created"] == 0
        and changed["write_requests"] == changed["expected_write_requests"]
    )
    changed["share_of_initial"] = changed["wall_s"] / initial["wall_s"]


def _ratios(steps: dict[str, Any]) -> dict[str, float]:
    ours = steps["initial"]["wall_s"]
    latency = steps["latency"]
    budget = steps["budget"]
    return {
        "naive_over_ours": steps["naive"]["projected_wall_s"] / ours,
        "ours_over_floor": ours / steps["floor"]["wall_s"],
        "naive_over_ours_latency": latency["naive"]["projected_wall_s"]
        / latency["initial"]["wall_s"],
        "naive_over_ours_budget": budget["naive_projected_wall_s"]
        / budget["ours_projected_wall_s"],
    }


def _targets(steps: dict[str, Any], n: int) -> list[dict[str, Any]]:
    ratios = _ratios(steps)
    unchanged = steps["resync_unchanged"]
    budget = steps["budget"]
    rows: list[tuple[str, str, float, bool]] = [
        (
            "loopback: naive/ours",
            ">= 10",
            ratios["naive_over_ours"],
            ratios["naive_over_ours"] >= 10,
        ),
        ("loopback: ours/floor", "<= 2", ratios["ours_over_floor"], ratios["ours_over_floor"] <= 2),
        (
            f"{LATENCY_MS} ms latency: naive/ours",
            ">= 100",
            ratios["naive_over_ours_latency"],
            ratios["naive_over_ours_latency"] >= 100,
        ),
        (
            "60/min: requests",
            f"<= {budget['min_write_requests']} + list pages",
            budget["ours_requests"],
            budget["ours_write_requests"] <= budget["min_write_requests"]
            and budget["scaled_run"]["rate_limited_429"] == 0,
        ),
        (
            "no-change re-sync: writes",
            "== 0",
            unchanged["write_requests"],
            unchanged["write_requests"] == 0,
        ),
        (
            "no-change re-sync: share of initial time",
            "<= 0.20",
            unchanged["share_of_initial"],
            unchanged["share_of_initial"] <= 0.2,
        ),
        (
            "no-change re-sync: CPU us per record",
            "<= 10",
            unchanged["cpu_us_per_record"],
            unchanged["cpu_us_per_record"] <= 10,
        ),
        (
            "  the same, less the source's own fetch",
            "<= 10",
            unchanged["cpu_us_per_record_beyond_source_fetch"],
            unchanged["cpu_us_per_record_beyond_source_fetch"] <= 10,
        ),
        (
            "1%/1% re-sync: writes match the changes",
            "yes",
            steps["resync_changed"]["write_requests"],
            steps["resync_changed"]["writes_match"],
        ),
    ]
    rss = steps["initial"]["peak_rss_mb"]
    rows.append((f"runner peak RSS at {n:,} records (MB)", "<= 250 at 100,000", rss, rss <= 250))
    return [{"target": t, "wanted": w, "value": v, "met": m} for t, w, v, m in rows]


def _fmt_s(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.2f} s"


def _cpu(result: dict[str, Any], scale: float = 1.0) -> str:
    if "cpu_s" not in result:
        return ""
    ours = result["cpu_s"] * scale
    return f"{ours:.1f} s / {result.get('server_cpu_s', 0.0) * scale:.1f} s"


def print_tables(results: dict[str, Any], console: Console) -> None:
    """The results as tables."""
    s, n = results["steps"], results["records"]
    table = Table(
        title=f"fragment-core sync benchmark: {n:,} records, batch {results['batch_size']}"
    )
    for column in ("step", "wall", "requests", "tasks/s", "CPU ours/server", "peak RSS", "note"):
        table.add_column(column, justify="left" if column in ("step", "note") else "right")

    def row(step: str, r: dict[str, Any], wall: float, note: str = "", rate: str = "") -> None:
        rss = f"{r['peak_rss_mb']:.0f} MB" if "peak_rss_mb" in r else ""
        requests = f"{r.get('requests', '')}"
        table.add_row(step, _fmt_s(wall), requests, rate, _cpu(r), rss, note)

    i, nv, fl = s["initial"], s["naive"], s["floor"]
    row("1. initial sync", i, i["wall_s"], rate=f"{i['tasks_per_s']:,.0f}")
    note = f"{nv['sample']:,} timed, scaled" if nv["scaled"] else ""
    table.add_row(
        "2. naive loop",
        _fmt_s(nv["projected_wall_s"]),
        f"{n:,}",
        f"{nv['tasks_per_s']:,.0f}",
        _cpu(nv, scale=n / nv["sample"]),
        f"{nv['peak_rss_mb']:.0f} MB",
        f"{nv['per_request_ms']:.2f} ms/request; {note}",
    )
    row("3. floor (server alone)", fl, fl["wall_s"], rate=f"{fl['tasks_per_s']:,.0f}")
    u = s["resync_unchanged"]
    row(
        "4. re-sync, no change",
        u,
        u["wall_s"],
        f"{u['write_requests']} writes; {u['share_of_initial']:.0%} of initial; "
        f"{u['cpu_us_per_record']:.1f} us CPU/record",
    )
    c = s["resync_changed"]
    row(
        "5. re-sync, 1% edited 1% removed",
        c,
        c["wall_s"],
        f"{c['updated']} updated, {c['closed']} closed, {c['write_requests']} writes "
        f"(expected {c['expected_write_requests']})",
    )
    li, ln = s["latency"]["initial"], s["latency"]["naive"]
    row(
        f"6. initial sync, {LATENCY_MS} ms latency",
        li,
        li["wall_s"],
        rate=f"{li['tasks_per_s']:,.0f}",
    )
    table.add_row(
        f"6. naive loop, {LATENCY_MS} ms latency",
        _fmt_s(ln["projected_wall_s"]),
        f"{n:,}",
        f"{n / ln['projected_wall_s']:,.0f}",
        _cpu(ln, scale=n / ln["sample"]),
        f"{ln['peak_rss_mb']:.0f} MB",
        f"{ln['sample']:,} timed, scaled" if ln["scaled"] else "",
    )
    b = s["budget"]
    table.add_row(
        "7. ours at 60 requests/min",
        _fmt_s(b["ours_projected_wall_s"]),
        f"{b['ours_requests']:,}",
        "",
        "",
        "",
        f"projected; 60x-scaled run: {b['scaled_run']['rate_limited_429']} x 429",
    )
    table.add_row(
        "7. naive at 60 requests/min",
        _fmt_s(b["naive_projected_wall_s"]),
        f"{b['naive_requests']:,}",
        "",
        "",
        "",
        "projected",
    )
    console.print(table)

    ratios = Table(title="targets")
    for column in ("target", "wanted", "value", "met"):
        ratios.add_column(column)
    for t in results["targets"]:
        value = t["value"]
        shown = f"{value:,.2f}" if isinstance(value, float) else f"{value:,}"
        ratios.add_row(t["target"], t["wanted"], shown, "yes" if t["met"] else "NO")
    console.print(ratios)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=100_000, help="Backlog size N.")
    parser.add_argument("--batch-size", type=int, default=100, help="Tasks per batch request.")
    parser.add_argument(
        "--naive-sample", type=int, default=10_000, help="POSTs timed on loopback (then scaled)."
    )
    parser.add_argument(
        "--latency-sample", type=int, default=500, help="POSTs timed with latency (then scaled)."
    )
    parser.add_argument("--quick", action="store_true", help="Small samples (smoke test).")
    parser.add_argument("--results-dir", type=Path, default=None, help="Where the JSON goes.")
    parser.add_argument("--profile-initial", default=None, help="pyinstrument text output file.")
    parser.add_argument("--profile-resync", default=None, help="pyinstrument text output file.")
    args = parser.parse_args(argv)
    if args.records < 1 or args.batch_size < 1:
        parser.error("--records and --batch-size must be at least 1")
    if args.quick:
        args.naive_sample = min(args.naive_sample, 200)
        args.latency_sample = min(args.latency_sample, 20)
    console = Console(width=150)
    results = run(args, console)
    results["quick"] = args.quick
    print_tables(results, console)
    path = write_results(results, args.results_dir)
    console.print(f"results: {path}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
