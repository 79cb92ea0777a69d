"""``fragment run --metrics-port``: Prometheus metrics per source and ``/healthz``."""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
from prometheus_client.parser import text_string_to_metric_families

from fragment_core.connectors.file import write_sample
from fragment_core.sandbox.runner import run_sandbox


def _config(folder: Path, url: str, token: str) -> Path:
    write_sample(folder / "backlog.csv", 20)
    (folder / "token").write_text(token)
    config = folder / "fragment.toml"
    config.write_text(
        f'[tasks_api]\nurl = "{url}"\ntoken_file = "token"\nrate_limit = 0\n'
        f'[state]\nurl = "sqlite:///{(folder / "state.db").as_posix()}"\n'
        '[[sources]]\nname = "kyc"\nconnector = "file"\nevery = "1s"\n'
        '[sources.options]\npath = "backlog.csv"\n'
    )
    return config


def _samples(text: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    return {
        (s.name, tuple(sorted(s.labels.items()))): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def _value(samples, name: str, **labels: str) -> float:
    return samples.get((name, tuple(sorted(labels.items()))), 0.0)


def test_run_serves_metrics_per_source_and_a_health_check(tmp_path: Path) -> None:
    # a tight rate limit, and no budget of our own: the runs meet 429s and wait
    with run_sandbox(rate_limit="1/s") as sandbox:
        config = _config(tmp_path, sandbox.url, sandbox.token)
        proc = subprocess.Popen(
            [sys.executable, "-m", "fragment_core", "--config", str(config), "run",
             "--metrics-port", "0"],
            cwd=tmp_path, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env={**os.environ, "COLUMNS": "200"},
        )  # fmt: skip
        try:
            assert proc.stderr is not None
            line = ""
            deadline = time.monotonic() + 30
            while "metrics at" not in line and time.monotonic() < deadline:
                line = proc.stderr.readline()
            match = re.search(r"metrics at (http://\S+)/metrics", line)
            assert match, f"no metrics URL printed: {line!r}"
            base = match.group(1)
            samples: dict = {}
            while time.monotonic() < deadline:
                samples = _samples(httpx.get(f"{base}/metrics").text)
                runs = _value(samples, "fragment_runs_total", source="kyc", outcome="ok")
                if runs >= 2 and _value(samples, "fragment_rate_limit_waits_total", source="kyc"):
                    break
                time.sleep(0.3)
            assert _value(samples, "fragment_runs_total", source="kyc", outcome="ok") >= 2
            assert _value(samples, "fragment_records_fetched_total", source="kyc") >= 40
            assert _value(samples, "fragment_task_writes_total", source="kyc", kind="created") == 20
            assert _value(samples, "fragment_failures_total", source="kyc", kind="run") == 0
            assert _value(samples, "fragment_rate_limit_waits_total", source="kyc") >= 1
            assert _value(samples, "fragment_rate_limit_wait_seconds_total", source="kyc") > 0
            assert 0 <= _value(samples, "fragment_lag_seconds", source="kyc") < 30
            health = httpx.get(f"{base}/healthz")
            assert health.status_code == 200
            assert health.json() == {"status": "ok", "sources": {"kyc": "ok"}}
        finally:
            proc.send_signal(signal.SIGTERM)
            out, err = proc.communicate(timeout=60)
        assert proc.returncode == 0, err
        assert sandbox.token not in out + err


def test_a_failed_run_counts_and_an_unhealthy_runner_answers_503() -> None:
    from datetime import UTC, datetime

    from fragment_core.metrics import RunMetrics, serve_metrics
    from fragment_core.reports import RunOutcome, SyncReport

    metrics = RunMetrics()
    metrics.add_sources(["crm"])
    now = datetime.now(UTC)
    metrics.observe(
        SyncReport(source="crm", connector="x", outcome=RunOutcome.FAILED, started_at=now,
                   finished_at=now, fetched=3, write_back_failed=2)
    )  # fmt: skip
    healthy = {"ok": True}
    server = serve_metrics(
        metrics, lambda: (healthy["ok"], {"sources": {"crm": "failed"}}), port=0,
        host="127.0.0.1",
    )  # fmt: skip
    try:
        samples = _samples(httpx.get(f"{server.url}/metrics").text)
        assert _value(samples, "fragment_runs_total", source="crm", outcome="failed") == 1
        assert _value(samples, "fragment_failures_total", source="crm", kind="run") == 1
        assert _value(samples, "fragment_failures_total", source="crm", kind="write_back") == 2
        assert _value(samples, "fragment_write_backs_total", source="crm", result="failed") == 2
        lag = _value(samples, "fragment_lag_seconds", source="crm")
        assert lag != lag  # NaN: no complete fetch yet
        assert httpx.get(f"{server.url}/healthz").status_code == 200
        healthy["ok"] = False
        answer = httpx.get(f"{server.url}/healthz")
        assert answer.status_code == 503 and answer.json()["status"] == "unhealthy"
    finally:
        server.close()
