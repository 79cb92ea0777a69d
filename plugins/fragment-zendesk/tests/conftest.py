"""Fixtures: a fake Zendesk on loopback (HTTPS; the real zenpy talks to it)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fragment_zendesk.testing import FakeZendesk


@pytest.fixture
def zendesk() -> Iterator[FakeZendesk]:
    """A started fake Zendesk; every test also asserts it saw no request off its spec."""
    with FakeZendesk().checked() as fake:
        yield fake
