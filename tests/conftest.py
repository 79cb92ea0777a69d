"""Shared fixtures of the fragment-core test suite (the kit's fixtures come from the
auto-loaded pytest plugin ``fragment_core.testing``)."""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest


def _find_pg_bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway PostgreSQL server on loopback, as a SQLAlchemy URL.

    ``FRAGMENT_TEST_POSTGRES_URL`` points at an existing server instead. CI installs the
    server binaries (see .ci/run); without them the tests that need Postgres fail with
    an explanation rather than being skipped silently.
    """
    existing = os.environ.get("FRAGMENT_TEST_POSTGRES_URL")
    if existing:
        yield existing
        return
    initdb, pg_ctl = _find_pg_bin("initdb"), _find_pg_bin("pg_ctl")
    if not initdb or not pg_ctl:
        pytest.fail(
            "PostgreSQL server binaries (initdb, pg_ctl) not found: install the 'postgresql' "
            "package or set FRAGMENT_TEST_POSTGRES_URL"
        )
    run_as: list[str] = []
    if os.geteuid() == 0:  # postgres refuses to run as root
        run_as = ["runuser", "-u", "postgres", "--"]
        # Not under pytest's basetemp: every pytest session start resets the per-user
        # temp root to 0700, which would lock the postgres user out mid-session when
        # another pytest runs concurrently on this machine.
        base = Path(tempfile.mkdtemp(prefix="fragment-pg-"))
        os.chmod(base, 0o777)
    else:
        base = tmp_path_factory.mktemp("pg")
    data = base / "data"
    port = _free_port()
    subprocess.run(
        [*run_as, initdb, "-D", str(data), "-U", "fragment", "--auth=trust", "-E", "UTF8"],
        check=True,
        capture_output=True,
    )
    log = base / "pg.log"
    subprocess.run(
        [
            *run_as,
            pg_ctl,
            "-D",
            str(data),
            "-l",
            str(log),
            "-o",
            f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off",
            "-w",
            "start",
        ],
        check=True,
        capture_output=True,
    )
    try:
        url = f"postgresql+psycopg://fragment@127.0.0.1:{port}/postgres"
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            with socket.socket() as sock:
                if sock.connect_ex(("127.0.0.1", port)) == 0:
                    break
            time.sleep(0.1)
        yield url
    finally:
        subprocess.run(
            [*run_as, pg_ctl, "-D", str(data), "-m", "immediate", "stop"],
            capture_output=True,
        )
        if run_as:
            shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def api(sandbox: Any) -> Iterator[httpx.Client]:
    """An httpx client of the sandbox's Tasks API, signed with its token."""
    with httpx.Client(
        base_url=sandbox.url, headers={"Authorization": f"Bearer {sandbox.token}"}, timeout=10
    ) as client:
        yield client
