"""From a Stripe review or early fraud warning (decoded JSON) to the parts of a task."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from decimal import Decimal
from typing import Any

from fragment_core.errors import BadRecordError

#: Currencies Stripe counts in whole units (https://docs.stripe.com/currencies#zero-decimal).
ZERO_DECIMAL = frozenset(
    "bif clp djf gnf jpy kmf krw mga pyg rwf ugx vnd vuv xaf xof xpf".split()  # noqa: SIM905
)
#: Currencies Stripe counts in thousandths (same page).
THREE_DECIMAL = frozenset(["bhd", "jod", "kwd", "omr", "tnd"])


def format_amount(amount: int, currency: str) -> str:
    """``1234, "usd"`` -> ``"12.34 USD"`` (Stripe amounts are in the currency's minor unit)."""
    code = currency.lower()
    places = 0 if code in ZERO_DECIMAL else 3 if code in THREE_DECIMAL else 2
    value = Decimal(amount).scaleb(-places)
    return f"{value:.{places}f} {code.upper()}"


def _object_id(value: Any) -> str | None:
    """An expandable field: an id, an expanded object (its ``id``), or ``None``."""
    if isinstance(value, str):
        return value or None
    if isinstance(value, Mapping) and isinstance(value.get("id"), str):
        return str(value["id"])
    return None


@dataclass(frozen=True)
class Payment:
    """What the item says about its payment (from the expanded charge, when expanded)."""

    charge: str | None
    payment_intent: str | None
    amount: int | None
    currency: str | None
    email: str | None
    risk_level: str | None
    risk_score: int | None


class ItemReader:
    """Reads one item's fields, raising :class:`BadRecordError` naming the field."""

    def __init__(self, item: Any, kind: str, where: str) -> None:
        self.kind = kind
        self.where = where
        if not isinstance(item, Mapping):
            raise BadRecordError(
                f"expected a {kind} object, got {type(item).__name__}", where=where
            )
        self.item = item
        item_id = item.get("id")
        if not isinstance(item_id, str) or not item_id:
            raise BadRecordError(f"{kind} has no id", field="id", where=where)
        self.id = item_id

    def bad(self, field: str, message: str) -> BadRecordError:
        """The error for a bad ``field`` of this item."""
        return BadRecordError(message, record_id=self.id, field=field, where=self.where)

    def created(self) -> datetime:
        """``created`` (unix seconds) as an aware datetime."""
        value = self.item.get("created")
        if type(value) is not int:
            raise self.bad("created", f"{value!r} is not a unix time in seconds")
        try:
            return datetime.fromtimestamp(value, UTC)
        except (OverflowError, OSError, ValueError):
            raise self.bad("created", f"{value!r} is out of range") from None

    def text(self, field: str) -> str | None:
        """A string field (``None`` when absent or null)."""
        value = self.item.get(field)
        if value is None:
            return None
        if not isinstance(value, str):
            raise self.bad(field, f"expected text, got {type(value).__name__}")
        return value or None

    def flag(self, field: str) -> bool | None:
        """A boolean field (``None`` when absent)."""
        value = self.item.get(field)
        if value is not None and type(value) is not bool:
            raise self.bad(field, f"expected true or false, got {value!r}")
        return value

    def payment(self) -> Payment:
        """The payment behind the item: ids, and amount, email, risk from the charge."""
        for field in ("charge", "payment_intent"):
            value = self.item.get(field)
            if value is not None and _object_id(value) is None:
                raise self.bad(field, f"expected an id or an expanded object, got {value!r}")
        charge = self.item.get("charge")
        intent = self.item.get("payment_intent")
        source = charge if isinstance(charge, Mapping) else intent
        details: Mapping[str, Any] = source if isinstance(source, Mapping) else {}
        amount = details.get("amount")
        if amount is not None and type(amount) is not int:
            raise self.bad("charge.amount", f"{amount!r} is not an amount in minor units")
        currency = details.get("currency")
        if currency is not None and not isinstance(currency, str):
            raise self.bad("charge.currency", f"{currency!r} is not a currency code")
        billing = details.get("billing_details")
        email = billing.get("email") if isinstance(billing, Mapping) else None
        email = email or details.get("receipt_email")
        outcome = details.get("outcome")
        outcome = outcome if isinstance(outcome, Mapping) else {}
        score = outcome.get("risk_score")
        return Payment(
            charge=_object_id(charge),
            payment_intent=_object_id(intent) or _object_id(details.get("payment_intent")),
            amount=amount,
            currency=currency or None,
            email=email if isinstance(email, str) and email else None,
            risk_level=str(outcome["risk_level"]) if outcome.get("risk_level") else None,
            risk_score=score if type(score) is int else None,
        )


def dashboard_payment_url(dashboard_url: str, mode: str | None, payment_id: str) -> str:
    """The payment's page in the Stripe Dashboard (``/test`` for test mode)."""
    test = "/test" if mode == "test" else ""
    return f"{dashboard_url}{test}/payments/{payment_id}"
