"""Fixtures: a fake Intercom on loopback (the real SDK talks to it over HTTP)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fragment_intercom.testing import FakeIntercom


@pytest.fixture
def intercom() -> Iterator[FakeIntercom]:
    """A started fake Intercom; every test also asserts it saw no request or answer that
    Intercom's OpenAPI description (2.14) refuses."""
    with FakeIntercom().checked() as fake:
        yield fake
