"""Fixtures: fakes of the legacy API and of Mesh on loopback (our client talks HTTP to them)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fragment_complyadvantage.testing import FakeComplyAdvantage, FakeMesh

API_KEY = "ca-live-0a1b2c3d4e5f60718293a4b5c6d7e8f9"
PASSWORD = "mesh-pw-Zq8!long-and-secret"


@pytest.fixture
def ca() -> Iterator[FakeComplyAdvantage]:
    """A started fake legacy API; every test also asserts it saw no malformed request."""
    with FakeComplyAdvantage(api_key=API_KEY).checked() as fake:
        yield fake


@pytest.fixture
def mesh() -> Iterator[FakeMesh]:
    """A started fake Mesh; every test also asserts it saw no malformed request."""
    with FakeMesh(password=PASSWORD).checked() as fake:
        yield fake
