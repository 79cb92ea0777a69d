"""Fixtures: a fake Stripe on loopback (the real SDK talks to it over HTTP)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fragment_stripe.testing import FakeStripe

KEY = "sk_test_51FakeKeyForTests0000000000000000000000"


@pytest.fixture
def stripe_fake() -> Iterator[FakeStripe]:
    """A started fake Stripe; every test also asserts it saw no request or gave no answer
    that Stripe's OpenAPI description rejects."""
    with FakeStripe(api_key=KEY).checked() as fake:
        yield fake

