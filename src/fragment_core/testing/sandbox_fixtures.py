"""pytest fixtures: a sandbox Tasks API on a free loopback port, in this process.

``sandbox`` is a fresh in-memory sandbox per test; ``sandbox_factory(**options)`` starts
one with the options of :func:`fragment_core.sandbox.run_sandbox` (``faults``, ``seed``,
``rate_limit``, ``latency``, ``max_batch``...). Both yield a
:class:`~fragment_core.sandbox.SandboxHandle`: ``.url`` (``.../api/v1``), ``.token``,
``.client()`` (a TasksClient with its rate limit off), and for the operator page
``.operator_url`` (its sign-in link) and ``.operator_client()`` (an httpx client signed in).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fragment_core.sandbox.runner import SandboxHandle, run_sandbox

#: Token of the fixture sandboxes (a test value, not a secret).
TEST_TOKEN = "sandbox-test-token"


@pytest.fixture
def sandbox_factory() -> Iterator[Callable[..., SandboxHandle]]:
    """Start sandboxes with options; all are stopped at the end of the test."""
    with contextlib.ExitStack() as stack:

        def start(**options: Any) -> SandboxHandle:
            options.setdefault("token", TEST_TOKEN)
            return stack.enter_context(run_sandbox(**options))

        yield start


@pytest.fixture
def sandbox(sandbox_factory: Callable[..., SandboxHandle]) -> SandboxHandle:
    """A running in-memory sandbox with the test token."""
    return sandbox_factory()
