"""Render benchmark results as the Markdown tables of docs/performance.md.

python bench/report.py bench/results/<sync>.json [bench/results/memory-<...>.json]
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any


def _s(seconds: float) -> str:
    if seconds >= 3600:
        return f"{seconds / 3600:.1f} h"
    if seconds >= 120:
        return f"{seconds / 60:.1f} min"
    return f"{seconds:.1f} s"


def sync_tables(r: dict[str, Any]) -> str:
    """The steps table, the ratios and the targets of one ``bench/sync.py`` run."""
    s, n = r["steps"], r["records"]
    i, nv, fl = s["initial"], s["naive"], s["floor"]
    u, c, lat, b = s["resync_unchanged"], s["resync_changed"], s["latency"], s["budget"]
    li, ln = lat["initial"], lat["naive"]
    lines = [
        "| step | wall | requests | tasks/s | CPU ours / server | runner peak RSS |",
        "|---|---:|---:|---:|---:|---:|",
    ]

    def row(name: str, x: dict[str, Any], wall: float, requests: Any, rate: str) -> None:
        cpu = f"{x['cpu_s']:.1f} s / {x.get('server_cpu_s', 0):.1f} s" if "cpu_s" in x else ""
        rss = f"{x['peak_rss_mb']:.0f} MB" if "peak_rss_mb" in x else ""
        lines.append(f"| {name} | {_s(wall)} | {requests:,} | {rate} | {cpu} | {rss} |")

    row("1. initial sync", i, i["wall_s"], i["requests"], f"{i['tasks_per_s']:,.0f}")
    naive_note = f" ({nv['sample']:,} timed, scaled)" if nv["scaled"] else ""
    lines.append(
        f"| 2. naive loop, one POST per task{naive_note} | {_s(nv['projected_wall_s'])} | "
        f"{n:,} | {nv['tasks_per_s']:,.0f} | | {nv['peak_rss_mb']:.0f} MB |"
    )
    row(
        "3. floor: pre-built batches", fl, fl["wall_s"], fl["requests"], f"{fl['tasks_per_s']:,.0f}"
    )
    row("4. re-sync, no change", u, u["wall_s"], u["requests"], "")
    row("5. re-sync, 1% edited + 1% removed", c, c["wall_s"], c["requests"], "")
    row(
        f"6. initial sync, {lat['latency_ms']} ms latency",
        li,
        li["wall_s"],
        li["requests"],
        f"{li['tasks_per_s']:,.0f}",
    )
    latency_note = f" ({ln['sample']:,} timed, scaled)" if ln["scaled"] else ""
    lines.append(
        f"| 6. naive loop, {lat['latency_ms']} ms latency{latency_note} | "
        f"{_s(ln['projected_wall_s'])} | {n:,} | {n / ln['projected_wall_s']:,.0f} | | |"
    )
    lines.append(
        f"| 7. ours at {b['budget_per_minute']} requests/min (projected) | "
        f"{_s(b['ours_projected_wall_s'])} | {b['ours_requests']:,} | | | |"
    )
    lines.append(
        f"| 7. naive at {b['budget_per_minute']} requests/min (projected) | "
        f"{_s(b['naive_projected_wall_s'])} | {b['naive_requests']:,} | | | |"
    )
    lines += ["", "| target | wanted | measured | met |", "|---|---|---:|---|"]
    for t in r["targets"]:
        value = t["value"]
        shown = f"{value:,.2f}" if isinstance(value, float) else f"{value:,}"
        lines.append(
            f"| {t['target']} | {t['wanted']} | {shown} | {'yes' if t['met'] else '**no**'} |"
        )
    return "\n".join(lines)


def memory_table(r: dict[str, Any]) -> str:
    """Peak RSS per size, from one ``bench/memory.py`` run."""
    keys = [
        ("sync_initial", "sync, initial"),
        ("sync_unchanged", "sync, no change"),
        ("planner_initial", "planner alone, initial"),
        ("planner_unchanged", "planner alone, no change"),
    ]
    lines = [
        "| records | " + " | ".join(title for _, title in keys) + " |",
        "|---:|" + "---:|" * len(keys),
    ]
    for row in r["sizes"]:
        cells = [f"{row[k]['peak_rss_mb']:.0f} MB" if k in row else "-" for k, _ in keys]
        lines.append(f"| {row['records']:,} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def main(argv: list[str]) -> int:
    for name in argv:
        data = json.loads(Path(name).read_text())
        print(sync_tables(data) if data.get("benchmark") == "sync" else memory_table(data))
        print()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv[1:]))
