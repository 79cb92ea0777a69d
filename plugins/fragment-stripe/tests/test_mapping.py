"""Mapping a review or early fraud warning to a task, and the fake's awkward parts."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from fragment_stripe import ReviewsConnector, WarningsConnector
from fragment_stripe.config import ReviewsConfig
from fragment_stripe.mapping import format_amount
from fragment_stripe.testing import FakeStripe

from fragment_core.errors import BadRecordError, ConfigurationError

CREATED = 1_746_172_800  # 2025-05-02T08:00:00Z


def _review(**over: Any) -> dict[str, Any]:
    charge = {
        "id": "ch_1",
        "object": "charge",
        "amount": 150000,
        "currency": "krw",
        "billing_details": {"email": None},
        "receipt_email": "kim@example.com",
        "outcome": {"risk_level": "highest", "risk_score": 91, "type": "manual_review"},
        "payment_intent": "pi_1",
    }
    return {"id": "prv_1", "object": "review", "created": CREATED, "livemode": False,
            "open": True, "opened_reason": "rule", "reason": "rule", "charge": charge,
            "payment_intent": "pi_1", **over}  # fmt: skip


def _connector(**options: Any) -> ReviewsConnector:
    config = ReviewsConfig.model_validate({"api_key": "sk_test_51Map", **options})
    return ReviewsConnector(config, source="radar")


def test_review_maps_title_link_due_at_and_custom_fields() -> None:
    task = _connector(sla_hours=6).to_task(_review())
    assert task.fields.title == "Radar review: 150000 KRW (rule) for kim@example.com"
    assert task.fields.url == "https://dashboard.stripe.com/test/payments/pi_1"
    assert task.due_at == datetime(2025, 5, 2, 14, 0, tzinfo=UTC)
    assert task.external_created_at == datetime.fromtimestamp(CREATED, UTC)
    custom = task.to_api()["fields"]
    expected = {"reason": "rule", "amount": "150000", "currency": "KRW",
                "risk_level": "highest", "risk_score": 91, "customer_email": "kim@example.com",
                "charge": "ch_1", "payment_intent": "pi_1", "livemode": False,
                "opened_reason": "rule", "review": "prv_1"}  # fmt: skip
    assert {k: custom[k] for k in expected} == expected


def test_live_key_no_sla_and_a_charge_without_payment_intent() -> None:
    record = _review(charge="ch_9", payment_intent=None)  # not expanded, no intent
    task = _connector(api_key="rk_live_51Map", sla_hours=0).to_task(record)
    assert task.fields.url == "https://dashboard.stripe.com/payments/ch_9"
    assert task.due_at is None
    assert task.fields.title == "Radar review: (rule)"
    custom = task.to_api()["fields"]
    assert "amount" not in custom and "risk_score" not in custom


def test_an_unrecognised_key_takes_the_mode_from_the_record() -> None:
    task = _connector(api_key="proxy-token").to_task(_review(livemode=True))
    assert task.fields.url == "https://dashboard.stripe.com/payments/pi_1"


@pytest.mark.parametrize(
    "amount,currency,shown",
    [
        (1234, "usd", "12.34 USD"),
        (500, "jpy", "500 JPY"),
        (12345, "kwd", "12.345 KWD"),
        (5, "eur", "0.05 EUR"),
    ],
)
def test_amounts_in_the_currency_s_minor_unit(amount: int, currency: str, shown: str) -> None:
    assert format_amount(amount, currency) == shown


def test_warning_maps_fraud_type() -> None:
    config = WarningsConnector.Config.model_validate({"api_key": "sk_test_51Map"})
    connector = WarningsConnector(config, source="efw")
    record = {"id": "issfr_1", "object": "radar.early_fraud_warning", "actionable": True,
              "charge": "ch_1", "created": CREATED, "fraud_type": "card_never_received",
              "livemode": False, "payment_intent": "pi_1"}  # fmt: skip
    task = connector.to_task(record)
    assert task.fields.title == "Early fraud warning: (card never received)"
    assert task.due_at == datetime.fromtimestamp(CREATED, UTC) + timedelta(hours=48)
    assert task.to_api()["fields"]["fraud_type"] == "card_never_received"
    assert not connector.is_open({**record, "actionable": False})


def test_bad_fields_are_named() -> None:
    with pytest.raises(BadRecordError) as info:
        _connector().to_task(_review(charge={"id": "ch_1", "amount": 12.5, "currency": "usd"}))
    assert info.value.record_id == "prv_1" and info.value.field == "charge.amount"


def test_the_fake_caps_limit_and_refuses_an_unknown_cursor(stripe_fake: FakeStripe) -> None:
    stripe_fake.add_reviews(2)
    client = ReviewsConnector(stripe_fake.reviews_config(), source="radar").client
    with pytest.raises(ConfigurationError, match="Limit must be between 1 and 100"):
        client.call("list", client.sdk.v1.reviews.list, params={"limit": 101})
    with pytest.raises(ConfigurationError, match="No such object"):
        client.call("list", client.sdk.v1.reviews.list, params={"starting_after": "prv_gone"})
