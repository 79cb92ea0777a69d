"""Prometheus metrics and a health check for ``fragment run --metrics-port``.

:class:`RunMetrics` counts what each run of each source did (from its
:class:`~fragment_core.reports.SyncReport`), the retries and rate-limit waits of the
calls made for the source (a stamina retry hook; ``fragment run`` runs each source in
its own thread, named ``fragment:SOURCE``), and the lag since each source's last
complete fetch. :func:`serve_metrics` serves ``/metrics`` (the Prometheus text format)
and ``/healthz`` on one port, from a daemon thread.
"""

from __future__ import annotations

import functools
import json
import threading
import time
from collections.abc import Callable, Iterable
from datetime import datetime
from typing import Any
from wsgiref.simple_server import WSGIRequestHandler, make_server

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram, make_wsgi_app
from prometheus_client.exposition import ThreadingWSGIServer

from fragment_core.errors import RateLimitedError
from fragment_core.reports import RunOutcome, SyncReport

__all__ = ["RunMetrics", "serve_metrics", "source_of_thread"]

#: Prefix of the names of the runner's per-source threads.
THREAD_PREFIX = "fragment:"

Health = Callable[[], tuple[bool, dict[str, Any]]]


def source_of_thread() -> str:
    """The source the current thread syncs (``fragment:NAME`` threads), else ``""``."""
    name = threading.current_thread().name
    return name[len(THREAD_PREFIX) :] if name.startswith(THREAD_PREFIX) else ""


class RunMetrics:
    """The metrics of one ``fragment run`` process, in their own registry."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        self.registry = registry or CollectorRegistry()
        r = self.registry
        self.runs = Counter(
            "fragment_runs", "Runs finished, by source and outcome.", ["source", "outcome"],
            registry=r,
        )  # fmt: skip
        self.records = Counter(
            "fragment_records_fetched", "Records fetched from the source.", ["source"], registry=r
        )
        self.writes = Counter(
            "fragment_task_writes",
            "Tasks written to the Tasks API, by kind (created, updated, closed, reopened).",
            ["source", "kind"],
            registry=r,
        )
        self.write_backs = Counter(
            "fragment_write_backs",
            "Write-backs to the source, by result (done, failed).",
            ["source", "result"],
            registry=r,
        )
        self.failures = Counter(
            "fragment_failures",
            "Failures, by kind: run (a failed run), record (a record that failed to map or "
            "write), write_back.",
            ["source", "kind"],
            registry=r,
        )
        self.withheld = Counter(
            "fragment_closes_withheld", "Closes withheld by the blast-radius cap.", ["source"],
            registry=r,
        )  # fmt: skip
        self.requests = Counter(
            "fragment_requests", "Requests the runs made (Tasks API and source).", ["source"],
            registry=r,
        )  # fmt: skip
        self.duration = Histogram(
            "fragment_run_duration_seconds", "Duration of each run.", ["source"], registry=r,
            buckets=(0.1, 0.5, 1, 2.5, 5, 10, 30, 60, 120, 300, 600, 1800),
        )  # fmt: skip
        self.retries = Counter(
            "fragment_retries", "Retried calls, by error class.", ["source", "error"], registry=r
        )
        self.rate_limit_waits = Counter(
            "fragment_rate_limit_waits",
            "Waits for a rate limit (HTTP 429 and the vendors' own signals).",
            ["source"],
            registry=r,
        )
        self.rate_limit_wait_seconds = Counter(
            "fragment_rate_limit_wait_seconds",
            "Seconds spent waiting for a rate limit.",
            ["source"],
            registry=r,
        )
        self.last_run = Gauge(
            "fragment_last_run_timestamp_seconds", "When the last run finished (unix time).",
            ["source"], registry=r,
        )  # fmt: skip
        self.last_complete_fetch = Gauge(
            "fragment_last_complete_fetch_timestamp_seconds",
            "When the last complete fetch of the source ended (unix time).",
            ["source"],
            registry=r,
        )
        self.lag = Gauge(
            "fragment_lag_seconds",
            "Seconds since the last complete fetch (NaN before the first one).",
            ["source"],
            registry=r,
        )
        self._fetched_at: dict[str, float] = {}

    def add_sources(self, names: Iterable[str]) -> None:
        """Export every metric of ``names`` from the start (at 0), so absent means absent."""
        for name in names:
            self.runs.labels(name, RunOutcome.OK.value)
            self.records.labels(name)
            for kind in ("created", "updated", "closed", "reopened"):
                self.writes.labels(name, kind)
            for result in ("done", "failed"):
                self.write_backs.labels(name, result)
            for kind in ("run", "record", "write_back"):
                self.failures.labels(name, kind)
            self.rate_limit_waits.labels(name)
            self.rate_limit_wait_seconds.labels(name)
            self.lag.labels(name).set_function(functools.partial(self._lag, name))

    def _lag(self, source: str) -> float:
        fetched = self._fetched_at.get(source)
        return float("nan") if fetched is None else max(0.0, time.time() - fetched)

    def complete_fetch(self, source: str, when: datetime | None) -> None:
        """Record the end of the last complete fetch of ``source`` (from the state)."""
        if when is None:
            return
        self._fetched_at[source] = when.timestamp()
        self.last_complete_fetch.labels(source).set(when.timestamp())

    def observe(self, report: SyncReport) -> None:
        """Count one finished run."""
        source = report.source
        self.runs.labels(source, report.outcome.value).inc()
        if report.dry_run:
            return
        self.records.labels(source).inc(report.fetched)
        for kind in ("created", "updated", "closed", "reopened"):
            self.writes.labels(source, kind).inc(getattr(report, kind))
        self.write_backs.labels(source, "done").inc(report.written_back)
        self.write_backs.labels(source, "failed").inc(report.write_back_failed)
        self.failures.labels(source, "record").inc(report.failed_records)
        self.failures.labels(source, "write_back").inc(report.write_back_failed)
        if report.outcome is RunOutcome.FAILED:
            self.failures.labels(source, "run").inc()
        self.withheld.labels(source).inc(report.withheld_closes)
        self.requests.labels(source).inc(report.requests)
        if report.duration is not None:
            self.duration.labels(source).observe(report.duration)
        finished = report.finished_at.timestamp() if report.finished_at else time.time()
        self.last_run.labels(source).set(finished)

    def on_retry(self, details: Any) -> None:
        """A stamina retry hook: count the retry, and the wait when it is a rate limit."""
        source = source_of_thread()
        error = details.caused_by
        self.retries.labels(source, type(error).__name__).inc()
        if isinstance(error, RateLimitedError):
            self.rate_limit_waits.labels(source).inc()
            self.rate_limit_wait_seconds.labels(source).inc(max(0.0, details.wait_for))

    def install_retry_hook(self) -> Callable[[], None]:
        """Add :meth:`on_retry` to stamina's retry hooks; returns a function removing it."""
        from stamina.instrumentation import get_on_retry_hooks, set_on_retry_hooks

        before = tuple(get_on_retry_hooks())
        set_on_retry_hooks([*before, self.on_retry])

        def remove() -> None:
            set_on_retry_hooks([h for h in get_on_retry_hooks() if h != self.on_retry])

        return remove


class _QuietHandler(WSGIRequestHandler):
    def log_message(self, format: str, *args: Any) -> None:  # scrapes are not news
        return None


class MetricsServer:
    """The running ``/metrics`` and ``/healthz`` server (see :func:`serve_metrics`)."""

    def __init__(self, server: Any, thread: threading.Thread) -> None:
        self._server = server
        self._thread = thread
        self.host, self.port = server.server_address[:2]

    @property
    def url(self) -> str:
        """Base URL of the server."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    def close(self) -> None:
        """Stop serving and release the port."""
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=5)


def serve_metrics(metrics: RunMetrics, health: Health, *, port: int, host: str) -> MetricsServer:
    """Serve ``/metrics`` and ``/healthz`` on ``host:port`` (0: a free port) in a thread.

    ``/healthz`` answers 200 and ``{"status": "ok", ...}`` while ``health()`` says healthy,
    else 503 with ``"status": "unhealthy"``; the rest of the body is ``health()``'s detail.
    """
    metrics_app = make_wsgi_app(metrics.registry)

    def app(environ: dict[str, Any], start_response: Callable[..., Any]) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == "/healthz":
            ok, detail = health()
            body = json.dumps({"status": "ok" if ok else "unhealthy", **detail}).encode()
            status = "200 OK" if ok else "503 Service Unavailable"
            start_response(status, [("Content-Type", "application/json")])
            return [body]
        result: Iterable[bytes] = metrics_app(environ, start_response)
        return result

    family = {"address_family": _family(host)}
    server_class = type("MetricsWSGIServer", (ThreadingWSGIServer,), family)
    server: Any = make_server(host, port, app, server_class, handler_class=_QuietHandler)
    thread = threading.Thread(
        target=server.serve_forever, name="fragment-metrics", daemon=True
    )
    thread.start()
    return MetricsServer(server, thread)


def _family(host: str) -> Any:
    import socket

    return socket.AF_INET6 if ":" in host else socket.AF_INET
