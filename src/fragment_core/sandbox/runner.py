"""Start a sandbox on a loopback port: in a thread, or as a ``python -m fragment_core``
subprocess (its own GIL, and a process a test can kill)."""

from __future__ import annotations

import contextlib
import os
import secrets
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import httpx
import uvicorn
from fastapi import FastAPI
from pydantic import SecretStr

from fragment_core.sandbox.app import create_app
from fragment_core.sandbox.faults import quiet_dropped_connections
from fragment_core.sandbox.operator import LOGIN_PATH, SESSION_COOKIE
from fragment_core.sandbox.settings import (
    DEFAULT_MAX_BATCH,
    RateLimit,
    SandboxSettings,
    parse_duration,
    parse_rate,
)

#: Environment variable the CLI reads the token from (keeps it out of process lists).
TOKEN_ENV = "FRAGMENT_SANDBOX_TOKEN"
#: Environment variable the CLI reads the operator page's login token from.
OPERATOR_TOKEN_ENV = "FRAGMENT_SANDBOX_OPERATOR_TOKEN"
#: First line the CLI prints, followed by the API's base URL.
READY_PREFIX = "fragment sandbox listening on "


@dataclass
class SandboxHandle:
    """A running sandbox: ``url`` is the API base (``.../api/v1``); ``operator_url`` signs
    a browser in to the operator page."""

    base_url: str
    token: str = field(repr=False)
    _stop: Any = field(repr=False, default=None)
    app: Any = field(repr=False, default=None)
    operator_token: str = field(repr=False, default="")

    @property
    def url(self) -> str:
        return f"{self.base_url}/api/v1"

    @property
    def operator_url(self) -> str:
        """``.../operator/login?token=...``: opens the operator page with a session."""
        return f"{self.base_url}{LOGIN_PATH}?token={self.operator_token}"

    def operator_client(self) -> httpx.Client:
        """An httpx client signed in to the operator page (session cookie set); its
        requests carry the sandbox's origin, like the browser's forms."""
        signed_in = httpx.get(
            f"{self.base_url}{LOGIN_PATH}", params={"token": self.operator_token}, timeout=10
        )
        session = signed_in.cookies.get(SESSION_COOKIE)
        if signed_in.status_code != 303 or not session:  # the message leaves the token out
            raise RuntimeError(f"operator sign-in failed: HTTP {signed_in.status_code}")
        return httpx.Client(
            base_url=self.base_url,
            timeout=10,
            headers={"Origin": self.base_url},
            cookies={SESSION_COOKIE: session},
        )

    def stop(self) -> None:
        """Stop the server (idempotent)."""
        if self._stop is not None:
            stop, self._stop = self._stop, None
            stop()

    def revoke_token(self, after_writes: int = 0) -> None:
        """Revoke the API token now, or once ``after_writes`` more write requests passed:
        every later request gets a real 401 (a token rotated mid-run)."""
        answer = httpx.post(
            f"{self.base_url}/_sandbox/revoke-token",
            params={"after_writes": after_writes},
            headers={"Authorization": f"Bearer {self.token}"},
            timeout=10,
        )
        answer.raise_for_status()

    def stats(self) -> dict[str, Any]:
        """Requests, statuses, faults and task count so far (``GET /_sandbox/stats``)."""
        return httpx.get(f"{self.base_url}/_sandbox/stats", timeout=10).json()

    def client(self, **options: Any) -> Any:
        """A :class:`~fragment_core.tasks_api.TasksClient` of this sandbox (rate limit off)."""
        from fragment_core.tasks_api import TasksClient

        options.setdefault("rate_limit", None)
        return TasksClient(self.url, self.token, **options)


def _bind(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # proto=IPPROTO_TCP so asyncio sets TCP_NODELAY on accepted connections (without it,
    # Nagle + delayed ACK add ~40 ms to every response).
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    sock.bind((host, port))
    sock.listen(512)
    sock.set_inheritable(True)
    return sock


def serve(settings: SandboxSettings, sock: socket.socket) -> uvicorn.Server:
    """A uvicorn server of the sandbox app, not yet started, for the bound ``sock``."""
    quiet_dropped_connections()
    config = uvicorn.Config(
        create_app(settings),
        lifespan="off",
        log_level="warning",
        access_log=False,
        timeout_graceful_shutdown=2,
    )
    return uvicorn.Server(config)


def _start_in_thread(settings: SandboxSettings, host: str, port: int) -> SandboxHandle:
    sock = _bind(host, port)
    server = serve(settings, sock)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="fragment-sandbox", daemon=True
    )
    thread.start()
    deadline = time.monotonic() + 10
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            sock.close()
            raise RuntimeError("the sandbox did not start")
        time.sleep(0.005)
    bound_host, bound_port = sock.getsockname()[:2]

    def stop() -> None:
        server.should_exit = True
        thread.join(timeout=10)
        sock.close()
        app = server.config.app
        assert isinstance(app, FastAPI)
        app.state.store.close()

    handle = SandboxHandle(
        f"http://{_url_host(bound_host)}:{bound_port}",
        settings.token.get_secret_value(),
        stop,
        server.config.app,
        operator_token=settings.operator_token.get_secret_value(),
    )
    return handle


def _url_host(host: str) -> str:
    return f"[{host}]" if ":" in host else host


def _start_subprocess(
    settings: SandboxSettings, host: str, port: int, timeout: float = 30.0
) -> SandboxHandle:
    process = subprocess.Popen(
        _subprocess_args(settings, host, port),
        env=_subprocess_env(settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
        text=True,
    )
    stop = _stopper(process)
    deadline = time.monotonic() + timeout
    base_url = _announced_base_url(process)
    if base_url is None:
        stop()
        raise RuntimeError(f"the sandbox subprocess did not start (exit code {process.poll()})")
    handle = SandboxHandle(
        base_url,
        settings.token.get_secret_value(),
        stop,
        operator_token=settings.operator_token.get_secret_value(),
    )
    if _answers_before(base_url, deadline):
        return handle
    stop()
    raise RuntimeError("the sandbox subprocess did not answer in time")


def _subprocess_args(settings: SandboxSettings, host: str, port: int) -> list[str]:
    """The ``python -m fragment_core sandbox`` command line of ``settings`` (no tokens)."""
    args = [sys.executable, "-m", "fragment_core", "sandbox", "--host", host]
    args += ["--port", str(port), "--db", settings.db, "--max-batch", str(settings.max_batch)]
    if settings.rate_limit:
        limit = settings.rate_limit
        args += ["--rate-limit", f"{limit.requests}/{'s' if limit.period == 1 else 'min'}"]
        if limit.period not in (1.0, 60.0):
            raise ValueError("a subprocess sandbox takes rate limits per second or per minute")
    if settings.hold_writes:
        raise ValueError("hold_writes is a test aid of in-thread sandboxes")
    if settings.faults:
        args += ["--faults", str(settings.faults)]
    if settings.seed is not None:
        args += ["--seed", str(settings.seed)]
    if settings.latency:
        args += ["--latency", f"{settings.latency}s"]
    args += ["--fault-retry-after", f"{settings.fault_retry_after:g}"]
    for name in settings.allowed_hosts:
        args += ["--allowed-host", name]
    return args


def _subprocess_env(settings: SandboxSettings) -> dict[str, str]:
    """This process's environment plus the tokens (kept out of the process list)."""
    return {
        **os.environ,
        TOKEN_ENV: settings.token.get_secret_value(),
        OPERATOR_TOKEN_ENV: settings.operator_token.get_secret_value(),
    }


def _stopper(process: subprocess.Popen[str]) -> Callable[[], None]:
    """A function ending ``process`` (terminate, then kill after 10 s) and closing its pipe."""

    def stop() -> None:
        if process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        if process.stdout:
            process.stdout.close()

    return stop


def _announced_base_url(process: subprocess.Popen[str]) -> str | None:
    """The base URL of the ready line the subprocess prints first, or None."""
    assert process.stdout is not None
    line = process.stdout.readline()
    if line.startswith(READY_PREFIX):
        return line.removeprefix(READY_PREFIX).strip().removesuffix("/api/v1")
    return None


def _answers_before(base_url: str, deadline: float) -> bool:
    """Poll ``/openapi.json`` until it answers (True) or ``deadline`` passes (False)."""
    while time.monotonic() < deadline:
        try:
            httpx.get(f"{base_url}/openapi.json", timeout=2).raise_for_status()
            return True
        except httpx.HTTPError:
            time.sleep(0.05)
    return False


@contextlib.contextmanager
def run_sandbox(
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    token: str | SecretStr | None = None,
    db: str = ":memory:",
    rate_limit: int | str | RateLimit | None = None,
    faults: float = 0.0,
    seed: int | None = None,
    latency: float | str = 0.0,
    max_batch: int = DEFAULT_MAX_BATCH,
    fault_retry_after: float = 1.0,
    in_thread: bool = True,
    operator_token: str | SecretStr | None = None,
    allowed_hosts: tuple[str, ...] = (),
    operator_session_ttl: float = 8 * 3600.0,
    hold_writes: int = 0,
) -> Iterator[SandboxHandle]:
    """Run a sandbox for the duration of the ``with`` block.

    ``port=0`` picks a free port; ``token=None`` makes a random one (``handle.token``);
    ``rate_limit`` is requests per minute or a ``"N/s"``-style text; ``latency`` is seconds
    or ``"25ms"``. ``in_thread=False`` runs ``python -m fragment_core sandbox``.
    ``operator_token=None`` makes a random login token of the operator page
    (``handle.operator_url`` signs in; ``handle.operator_client()`` is signed in).
    ``hold_writes=N`` holds the first write requests until N are in flight at once (at
    most 10 s; ``stats()["writes_in_flight_peak"]`` tells how many were): a test proves
    that a client overlaps its writes without timing it. In-thread sandboxes only.
    """
    if token is None:
        token = secrets.token_urlsafe(24)
    settings = SandboxSettings(
        token=token if isinstance(token, SecretStr) else SecretStr(token),
        db=str(db),
        rate_limit=parse_rate(rate_limit),
        faults=faults,
        seed=seed,
        latency=parse_duration(latency),
        max_batch=max_batch,
        fault_retry_after=fault_retry_after,
        operator_token=SecretStr(str(operator_token or secrets.token_urlsafe(18)))
        if not isinstance(operator_token, SecretStr)
        else operator_token,
        allowed_hosts=tuple(allowed_hosts),
        operator_session_ttl=operator_session_ttl,
        hold_writes=hold_writes,
    )
    if in_thread:
        handle = _start_in_thread(settings, host, port)
    else:
        handle = _start_subprocess(settings, host, port)
    try:
        yield handle
    finally:
        handle.stop()
