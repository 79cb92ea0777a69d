"""The benchmark runs and its figures hold: page-size floor, no 429, an idle incremental."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

BENCH = Path(__file__).resolve().parents[1] / "bench" / "intercom_bench.py"


def test_bench_figures_on_a_small_backlog() -> None:
    proc = subprocess.run(
        [sys.executable, str(BENCH), "--conversations", "450", "--closed", "20", "--json"],
        capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout)
    assert result["fetched"] == 450
    assert result["full_fetch_requests"] <= result["page_size_floor"] * 1.05  # 3 pages + /me
    assert result["rate_limit_429s"] == 0
    assert result["incremental_nothing_changed_requests"] <= 2
