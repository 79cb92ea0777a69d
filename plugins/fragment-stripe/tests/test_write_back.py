"""Write-back: approve a review, refund a payment, or nothing; idempotency keys from the uid."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest
from fragment_stripe import ReviewsConnector, WarningsConnector
from fragment_stripe.connector import idempotency_key
from fragment_stripe.testing import FakeStripe

from fragment_core.connector import Completion, Connector
from fragment_core.errors import WriteBackError
from fragment_core.task import RemoteTask
from fragment_core.testing.contract import completion_for


def _completion(
    connector: Connector[Any], record: dict[str, Any], **outcome: str
) -> tuple[RemoteTask, Completion]:
    remote, completion = completion_for(connector, connector.to_task(record))
    return remote, dataclasses.replace(completion, outcome=outcome)


def _posts(fake: FakeStripe, path: str) -> list[Any]:
    return fake.api.requests_to("POST", path)


def _review(fake: FakeStripe, connector: ReviewsConnector) -> dict[str, Any]:
    (record,) = [r for r in connector.fetch_backlog()]
    return record


def test_approve_carries_a_key_derived_from_the_uid_and_a_retry_is_replayed(
    stripe_fake: FakeStripe,
) -> None:
    review_id = stripe_fake.add_review()
    connector = ReviewsConnector(stripe_fake.reviews_config(), source="radar")
    remote, completion = _completion(connector, _review(stripe_fake, connector))

    assert connector.on_complete(remote, completion) == f"approved Stripe review {review_id}"
    assert connector.on_complete(remote, completion) == f"approved Stripe review {review_id}"

    first, second = _posts(stripe_fake, f"/v1/reviews/{review_id}/approve")
    key = idempotency_key("approve", completion.uid)
    assert key == f"fragment-approve-{remote.uid}"
    assert first.headers["idempotency-key"] == second.headers["idempotency-key"] == key
    assert stripe_fake.approvals(review_id) == 1
    assert stripe_fake.replayed == [key]  # the second was Stripe's replay
    assert stripe_fake.reviews[review_id]["closed_reason"] == "approved"


def test_approve_of_a_review_closed_meanwhile_says_so(stripe_fake: FakeStripe) -> None:
    review_id = stripe_fake.add_review()
    connector = ReviewsConnector(stripe_fake.reviews_config(), source="radar")
    remote, completion = _completion(connector, _review(stripe_fake, connector))
    stripe_fake.close_review(review_id, "refunded")
    done = connector.on_complete(remote, completion)
    assert done == f"Stripe review {review_id} was already closed (refunded); nothing sent"
    assert stripe_fake.approvals(review_id) == 0


def test_the_operator_outcome_chooses_between_configured_actions(stripe_fake: FakeStripe) -> None:
    keep, refund, refused = stripe_fake.add_reviews(3)
    config = stripe_fake.reviews_config(outcome_actions=["approve", "refund", "none"])
    connector = ReviewsConnector(config, source="radar")
    records = {r["id"]: r for r in connector.fetch_backlog()}

    remote, completion = _completion(connector, records[keep], outcome="none")
    assert "left open in Stripe (action none)" in (connector.on_complete(remote, completion) or "")
    assert stripe_fake.reviews[keep]["open"] is True

    remote, completion = _completion(connector, records[refund], outcome="Refund")
    assert "refunded the payment of review" in (connector.on_complete(remote, completion) or "")
    (post,) = _posts(stripe_fake, "/v1/refunds")
    assert post.headers["idempotency-key"] == f"fragment-refund-{remote.uid}"
    assert b"reason=fraudulent" in post.body
    assert stripe_fake.reviews[refund]["closed_reason"] == "refunded_as_fraud"

    narrow = ReviewsConnector(stripe_fake.reviews_config(), source="radar")
    remote, completion = _completion(narrow, records[refused], outcome="refund")
    with pytest.raises(WriteBackError, match=r"outcome = 'refund'.*not one of outcome_actions"):
        narrow.on_complete(remote, completion)
    assert stripe_fake.refunds_of(refused) == 0 and stripe_fake.approvals(refused) == 0


def test_warning_action_none_sends_nothing(stripe_fake: FakeStripe) -> None:
    stripe_fake.add_warning()
    connector = WarningsConnector(stripe_fake.warnings_config(), source="efw")
    (record,) = list(connector.fetch_backlog())
    stripe_fake.api.requests.clear()
    remote, completion = _completion(connector, record)
    assert "nothing sent (action none)" in (connector.on_complete(remote, completion) or "")
    assert stripe_fake.api.requests == []


def test_warning_refund_refunds_the_charge_once(stripe_fake: FakeStripe) -> None:
    warning_id = stripe_fake.add_warning(amount=1999, currency="eur")
    connector = WarningsConnector(stripe_fake.warnings_config(action="refund"), source="efw")
    (record,) = list(connector.fetch_backlog())
    remote, completion = _completion(connector, record)

    assert "refunded the payment of early fraud warning" in (
        connector.on_complete(remote, completion) or ""
    )
    assert "no longer actionable" in (connector.on_complete(remote, completion) or "")

    (post,) = _posts(stripe_fake, "/v1/refunds")
    charge = stripe_fake.warnings[warning_id]["charge"]
    assert f"charge={charge}".encode() in post.body
    assert stripe_fake.refunds_of(warning_id) == 1
    assert stripe_fake.warnings[warning_id]["actionable"] is False


def test_a_charge_refunded_elsewhere_counts_as_done(stripe_fake: FakeStripe) -> None:
    stripe_fake.add_warning()
    connector = WarningsConnector(stripe_fake.warnings_config(action="refund"), source="efw")
    (record,) = list(connector.fetch_backlog())
    remote, completion = _completion(connector, record)
    stripe_fake.charges[record["charge"]["id"]]["refunded"] = True  # refunded, EFW not updated
    assert "was already refunded" in (connector.on_complete(remote, completion) or "")


def test_the_fake_refuses_a_key_reused_with_other_parameters(stripe_fake: FakeStripe) -> None:
    first, second = stripe_fake.add_warnings(2)
    connector = WarningsConnector(stripe_fake.warnings_config(), source="efw")
    charges = [stripe_fake.warnings[w]["charge"] for w in (first, second)]
    connector.client.refund(charge=charges[0], payment_intent=None, idempotency_key="k-1",
                            metadata={})  # fmt: skip
    with pytest.raises(WriteBackError, match="idempotency key"):
        connector.client.refund(charge=charges[1], payment_intent=None, idempotency_key="k-1",
                                metadata={})  # fmt: skip
    assert stripe_fake.refunds_of(first) == 1 and stripe_fake.refunds_of(second) == 0


def test_an_id_that_is_not_stripe_s_is_never_sent(stripe_fake: FakeStripe) -> None:
    connector = ReviewsConnector(stripe_fake.reviews_config(), source="radar")
    record = {"id": "prv_1", "created": 1746000000, "charge": "ch_1"}
    remote, completion = _completion(connector, record)
    completion = dataclasses.replace(completion, external_id="../charges/ch_1")
    with pytest.raises(WriteBackError, match="is not a Stripe id"):
        connector.on_complete(remote, completion)
    assert stripe_fake.api.requests == []
