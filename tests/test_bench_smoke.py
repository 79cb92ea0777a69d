"""The sync benchmark runs end to end on a small backlog and writes sane results."""

from __future__ import annotations

import json
import math
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
RECORDS = 300


def test_bench_sync_quick_writes_every_step(tmp_path: Path) -> None:
    proc = subprocess.run(
        [
            sys.executable,
            str(ROOT / "bench" / "sync.py"),
            "--records",
            str(RECORDS),
            "--quick",
            "--results-dir",
            str(tmp_path),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    files = list(tmp_path.glob("*.json"))
    assert len(files) == 1, files
    results = json.loads(files[0].read_text())
    steps = results["steps"]
    assert results["records"] == RECORDS and results["quick"] is True
    assert results["machine"]["cpus"] >= 1 and results["machine"]["python"]
    batch = results["batch_size"]

    # 1. initial sync: every record created, in the fewest batch requests, one list page
    initial = steps["initial"]
    assert initial["outcome"] == "ok"
    assert initial["created"] == RECORDS and initial["failed_records"] == 0
    assert initial["write_requests"] == math.ceil(RECORDS / batch)
    assert initial["list_requests"] >= 1
    assert initial["wall_s"] > 0 and initial["tasks_per_s"] > 0
    assert 20 < initial["peak_rss_mb"] < 1000

    # 2. naive: one POST per task, all accepted, scaled to N when sampled
    naive = steps["naive"]
    assert naive["failures"] == 0 and naive["per_request_ms"] > 0
    assert naive["projected_wall_s"] >= naive["wall_s"]
    assert naive["scaled"] == (naive["sample"] < RECORDS)

    # 3. floor: the same tasks as pre-built batches, all accepted
    floor = steps["floor"]
    assert floor["failures"] == 0 and floor["requests"] == math.ceil(RECORDS / batch)

    # 4. no change: no write at all
    unchanged = steps["resync_unchanged"]
    assert unchanged["outcome"] == "ok"
    assert unchanged["write_requests"] == 0
    assert unchanged["created"] == unchanged["updated"] == unchanged["closed"] == 0
    assert unchanged["unchanged"] == unchanged["not_mapped"] == RECORDS  # none mapped again
    assert unchanged["cpu_us_per_record"] > 0

    # 5. 1% edited, 1% removed: exactly those writes
    changed = steps["resync_changed"]
    assert changed["expected_updated"] == changed["updated"] == RECORDS // 100
    assert changed["expected_closed"] == changed["closed"] == RECORDS // 100
    assert changed["created"] == 0 and changed["writes_match"] is True
    assert changed["write_requests"] == 2
    # only the edited records are mapped again (the options did not change)
    assert changed["not_mapped"] == RECORDS - 2 * (RECORDS // 100)

    # 6. with latency: ours still creates everything; naive is slower per request
    latency = steps["latency"]
    assert latency["initial"]["created"] == RECORDS
    assert latency["naive"]["per_request_ms"] >= latency["latency_ms"]

    # 7. under the budget: no 429, requests = batches + list pages
    budget = steps["budget"]
    assert budget["scaled_run"]["rate_limited_429"] == 0
    assert budget["scaled_run"]["created"] == RECORDS
    assert budget["ours_write_requests"] == budget["min_write_requests"]
    assert budget["naive_requests"] == RECORDS
    assert budget["naive_projected_wall_s"] > budget["ours_projected_wall_s"]

    ratios = results["ratios"]
    assert set(ratios) >= {"naive_over_ours", "ours_over_floor", "naive_over_ours_latency"}
    assert all(value > 0 for value in ratios.values())
    assert {t["target"] for t in results["targets"]} and all(
        isinstance(t["met"], bool) for t in results["targets"]
    )
    assert "targets" in proc.stdout and "initial sync" in proc.stdout
