"""Fixtures: a fake HubSpot on loopback (the real SDK talks to it over HTTP)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fragment_hubspot.testing import FakeHubSpot

TOKEN = "pat-na1-11111111-2222-3333-4444-555555555555"


@pytest.fixture
def hubspot() -> Iterator[FakeHubSpot]:
    """A started fake HubSpot; every test also asserts it saw no malformed request."""
    with FakeHubSpot(token=TOKEN).checked() as fake:
        yield fake
