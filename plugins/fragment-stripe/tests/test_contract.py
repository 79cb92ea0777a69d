"""The connector contract suite, run against the fake Stripe for both connectors."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from fragment_stripe import ReviewsConnector, WarningsConnector
from fragment_stripe.testing import FakeStripe

from fragment_core.testing import ConnectorContract

BACKLOG = 230  # three pages of 100

MALFORMED: list[Any] = [
    {"object": "review", "created": 1, "charge": "ch_1"},  # no id
    {"id": "prv_1", "created": "yesterday", "charge": "ch_1"},
    {"id": "prv_2", "created": 1746000000, "charge": 42},
    {"id": "prv_3", "created": 1746000000, "charge": {"id": "ch_3", "amount": "12.00"}},
    {"id": "prv_4", "created": 1746000000, "charge": None, "payment_intent": None},
    {"id": "prv_5", "created": 1746000000, "charge": "ch_5", "livemode": "no"},
]


class TestReviewsContract(ConnectorContract):
    connector_class = ReviewsConnector

    @pytest.fixture
    def fake(self, stripe_fake: FakeStripe) -> FakeStripe:
        stripe_fake.add_reviews(BACKLOG, email="buyer@example.com")
        closed = stripe_fake.add_review()
        stripe_fake.close_review(closed)  # not listed: Stripe lists open reviews only
        return stripe_fake

    @pytest.fixture
    def connector(self, fake: FakeStripe) -> ReviewsConnector:
        return ReviewsConnector(fake.reviews_config(), source="radar")

    @pytest.fixture
    def bad_connector(self, fake: FakeStripe) -> ReviewsConnector:
        config = fake.reviews_config(api_key="sk_test_51RevokedKey999999999999999")
        return ReviewsConnector(config, source="radar")

    @pytest.fixture
    def backlog_size(self) -> int:
        return BACKLOG

    @pytest.fixture
    def malformed_records(self) -> list[Any]:
        return MALFORMED

    @pytest.fixture
    def secrets(self, fake: FakeStripe) -> list[str]:
        return [fake.token, "sk_test_51RevokedKey999999999999999"]

    @pytest.fixture
    def effect_count(self, fake: FakeStripe) -> Callable[[str], int]:
        return fake.write_backs


class TestWarningsContract(ConnectorContract):
    connector_class = WarningsConnector

    @pytest.fixture
    def fake(self, stripe_fake: FakeStripe) -> FakeStripe:
        stripe_fake.add_warnings(BACKLOG)
        stripe_fake.add_warnings(3, actionable=False)  # listed by Stripe, not a backlog item
        return stripe_fake

    @pytest.fixture
    def connector(self, fake: FakeStripe) -> WarningsConnector:
        return WarningsConnector(fake.warnings_config(action="refund"), source="efw")

    @pytest.fixture
    def bad_connector(self, fake: FakeStripe) -> WarningsConnector:
        config = fake.warnings_config(api_key="sk_test_51RevokedKey999999999999999")
        return WarningsConnector(config, source="efw")

    @pytest.fixture
    def backlog_size(self) -> int:
        return BACKLOG

    @pytest.fixture
    def malformed_records(self) -> list[Any]:
        return [
            *MALFORMED,
            {"id": "issfr_1", "created": 1746000000, "charge": "ch_1", "actionable": "yes"},
            {"id": "issfr_2", "created": 1746000000, "charge": "ch_1", "fraud_type": 7},
        ]

    @pytest.fixture
    def secrets(self, fake: FakeStripe) -> list[str]:
        return [fake.token, "sk_test_51RevokedKey999999999999999"]

    @pytest.fixture
    def effect_count(self, fake: FakeStripe) -> Callable[[str], int]:
        return fake.write_backs
