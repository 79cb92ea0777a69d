"""The ``stripe`` (open Radar reviews) and ``stripe-efw`` (actionable early fraud
warnings) connectors, with write-back: approve or refund, under idempotency keys."""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, TypeVar

from fragment_core.connector import Completion, Connector, Record
from fragment_core.errors import BadRecordError, ConfigurationError, WriteBackError
from fragment_core.task import RemoteTask, Task, TaskStatus
from fragment_stripe.client import NotFoundError, StripeAPI, StripeRequestError
from fragment_stripe.config import ReviewsConfig, StripeConfig, WarningsConfig, key_mode
from fragment_stripe.mapping import ItemReader, Payment, dashboard_payment_url, format_amount

ConfigT = TypeVar("ConfigT", bound=StripeConfig)

#: Stripe object ids are letters, digits and underscores (``prv_...``, ``issfr_...``).
_STRIPE_ID = re.compile(r"[A-Za-z0-9_]{1,255}")


def idempotency_key(action: str, uid: object) -> str:
    """The key of a write-back: one per task and action, the same in every retry."""
    return f"fragment-{action}-{uid}"


class StripeConnector(Connector[ConfigT]):
    """What both Stripe connectors share: the client, key mode, links, actions, check."""

    id_field = "id"
    cursor_field = "created"
    kind: ClassVar[str] = ""  # "review" or "early fraud warning"

    # -- plumbing -------------------------------------------------------------------------
    def build_client(self) -> StripeAPI:
        """The Stripe client (``self.client``); refuses a key of the wrong mode first."""
        self._check_mode()
        return StripeAPI(self.config, where=self.where)

    @property
    def mode(self) -> str | None:
        """``test`` or ``live``, as the key says (``None``: the key does not say)."""
        return key_mode(self.config.api_key.get_secret_value())

    def _check_mode(self) -> None:
        key = self.config.api_key.get_secret_value()
        if key.startswith("pk_"):
            raise ConfigurationError(
                "api_key is a publishable key (pk_...), which cannot read Radar data; use a "
                "secret key (sk_...) or a restricted key (rk_...)",
                where=self.where,
            )
        mode, wanted = key_mode(key), self.config.mode
        if wanted is not None and mode is not None and mode != wanted:
            raise ConfigurationError(
                f"api_key is a {mode}-mode key but the source says mode = {wanted!r}; use a "
                f"{wanted}-mode key (sk_{wanted}_... or rk_{wanted}_...) or change mode",
                where=self.where,
            )
        if wanted is not None and mode is None:
            raise ConfigurationError(
                "api_key does not look like a Stripe secret or restricted key (sk_test_, "
                f"sk_live_, rk_test_, rk_live_), so its mode cannot be checked against "
                f"mode = {wanted!r}",
                where=self.where,
            )

    def _params(self) -> dict[str, Any]:
        return {"expand": ["data.charge"]} if self.config.expand_charge else {}

    def _since(self, cursor: str | None) -> int | None:
        return None if cursor is None else self.unix_cursor(cursor)

    # -- mapping --------------------------------------------------------------------------
    def _task(
        self, reader: ItemReader, payment: Payment, *, label: str, reason: str | None,
        custom: dict[str, Any],
    ) -> Task:  # fmt: skip
        created = reader.created()
        livemode = reader.flag("livemode")
        mode = self.mode or ("live" if livemode else "test")
        payment_id = payment.payment_intent or payment.charge
        if payment_id is None:
            raise reader.bad("charge", f"the {self.kind} names no charge or payment intent")
        amount = None
        if payment.amount is not None and payment.currency:
            amount = format_amount(payment.amount, payment.currency)
        parts = [p for p in (amount, f"({reason})" if reason else None) if p]
        title = f"{label}: {' '.join(parts)}" if parts else f"{label} {reader.id}"
        if payment.email:
            title += f" for {payment.email}"
        fields = {
            "reason": reason,
            "amount": amount.split(" ")[0] if amount else None,
            "currency": payment.currency.upper() if payment.currency else None,
            "risk_level": payment.risk_level,
            "risk_score": payment.risk_score,
            "customer_email": payment.email,
            "charge": payment.charge,
            "payment_intent": payment.payment_intent,
            "livemode": livemode,
            **custom,
        }
        sla = self.config.sla_hours
        return Task.new(
            external_id=reader.id,
            title=title,
            url=dashboard_payment_url(self.config.dashboard_url, mode, payment_id),
            due_at=created + timedelta(hours=sla) if sla else None,
            custom={k: v for k, v in fields.items() if v is not None},
            external_status=TaskStatus.TODO,
            external_created_at=created,
        )

    # -- write-back -----------------------------------------------------------------------
    def _action(self, completion: Completion, default: str, allowed: list[str]) -> str:
        chosen = (completion.outcome or {}).get(self.config.outcome_field)
        if chosen is None or (isinstance(chosen, str) and not chosen.strip()):
            return default
        action = str(chosen).strip().lower()
        if action not in allowed:
            raise WriteBackError(
                f"the operator chose {self.config.outcome_field} = {action!r}, which is not "
                f"one of outcome_actions ({', '.join(allowed)}); nothing was done in Stripe",
                where=self.where,
            )
        return action

    def _item_id(self, completion: Completion) -> str:
        item_id = completion.external_id
        if not _STRIPE_ID.fullmatch(item_id):
            raise WriteBackError(
                f"{item_id[:80]!r} is not a Stripe id; nothing sent", where=self.where
            )
        return item_id

    def _refund(self, item: Mapping[str, Any], completion: Completion, what: str) -> str:
        try:
            payment = ItemReader(item, self.kind, self.where).payment()
        except BadRecordError as exc:
            raise WriteBackError(f"cannot refund {what}: {exc.message}", where=self.where) from None
        try:
            refund = self.client.refund(
                charge=payment.charge,
                payment_intent=payment.payment_intent,
                idempotency_key=idempotency_key("refund", completion.uid),
                metadata={"fragment_task": str(completion.uid)},
            )
        except StripeRequestError as exc:
            if exc.code == "charge_already_refunded":
                return f"the payment of {what} was already refunded"
            raise WriteBackError(exc.message, where=self.where) from None
        return f"refunded the payment of {what} ({refund.get('id', 'refund')})"

    def check(self) -> str:
        """Key format and mode, then one list request (the read permissions it needs)."""
        self._check_mode()
        page = self._first_page()
        found = "at least one" if page.get("data") else "none"
        mode = self.mode or "unknown"
        return f"Stripe ({mode} mode): {self.kind}s readable; {found} listed now"

    def _first_page(self) -> dict[str, Any]:
        raise NotImplementedError


class ReviewsConnector(StripeConnector[ReviewsConfig]):
    """Open Stripe Radar reviews; completing a task approves the review (or refunds).

    Backlog: every open review (Stripe lists only open ones). Incremental: reviews created
    since the cursor; reviews closed in Stripe leave on the next full fetch.
    """

    name = "stripe"
    kind = "review"
    example_options: ClassVar[dict[str, Any]] = {
        "api_key": "${STRIPE_API_KEY}",
        "mode": "live",
        "sla_hours": 24,
        "action": "approve",
        "outcome_actions": ["approve", "refund", "none"],
    }

    def fetch_backlog(self) -> Iterator[Record]:
        """Every open review, newest first, its charge expanded."""
        yield from self.client.reviews(self._params())

    def fetch_changes(self, cursor: str | None) -> Iterator[Record]:
        """Open reviews created at or after ``cursor`` (unix seconds); all without one."""
        since = self._since(cursor)
        params = self._params()
        if since is not None:
            params["created"] = {"gte": since}
        yield from self.client.reviews(params)

    def is_open(self, record: Record) -> bool:
        """Reviews are listed only while open; ``open: false`` is closed."""
        return not (isinstance(record, Mapping) and record.get("open") is False)

    def to_task(self, record: Record) -> Task:
        """A review as a task: amount, reason, customer email; link to its payment."""
        reader = ItemReader(record, "review", self.where)
        payment = reader.payment()
        reason = reader.text("reason")
        opened = reader.text("opened_reason")
        custom = {"opened_reason": opened, "review": reader.id}
        return self._task(reader, payment, label="Radar review", reason=reason, custom=custom)

    def on_complete(self, task: RemoteTask, completion: Completion) -> str | None:
        """Approve the review (or refund, or nothing), as configured or as the operator chose."""
        review_id = self._item_id(completion)
        config = self.config
        action = self._action(completion, config.action, list(config.outcome_actions))
        if action == "none":
            return f"review {review_id} left open in Stripe (action none)"
        try:
            if action == "refund":
                review = self.client.review(review_id)
                if review.get("open") is False:
                    return self._closed(review_id, review)
                return self._refund(review, completion, f"review {review_id}")
            try:
                self.client.approve(review_id, idempotency_key("approve", completion.uid))
            except StripeRequestError as exc:  # e.g. closed meanwhile: say so if it is
                review = self.client.review(review_id)
                if review.get("open") is False:
                    return self._closed(review_id, review)
                raise WriteBackError(exc.message, where=self.where) from None
        except NotFoundError:
            raise WriteBackError(
                f"Stripe review {review_id} no longer exists; nothing to {action}",
                where=self.where,
            ) from None
        return f"approved Stripe review {review_id}"

    @staticmethod
    def _closed(review_id: str, review: Mapping[str, Any]) -> str:
        why = review.get("closed_reason") or review.get("reason") or "closed"
        return f"Stripe review {review_id} was already closed ({why}); nothing sent"

    def _first_page(self) -> dict[str, Any]:
        return self.client.first_page("reviews", self._params())


class WarningsConnector(StripeConnector[WarningsConfig]):
    """Actionable Stripe early fraud warnings; completing a task may refund the charge.

    Backlog: warnings created within lookback_days that are still actionable (not yet
    refunded or disputed). Incremental: warnings created since the cursor.
    """

    name = "stripe-efw"
    kind = "early fraud warning"
    example_options: ClassVar[dict[str, Any]] = {
        "api_key": "${STRIPE_API_KEY}",
        "mode": "live",
        "sla_hours": 48,
        "action": "none",
        "outcome_actions": ["refund", "none"],
    }

    def _list_params(self, since: int | None) -> dict[str, Any]:
        horizon = datetime.now(UTC) - timedelta(days=self.config.lookback_days)
        gte = max(since or 0, int(horizon.timestamp()))
        return {**self._params(), "created": {"gte": gte}}

    def fetch_backlog(self) -> Iterator[Record]:
        """Actionable warnings of the last lookback_days, newest first."""
        for item in self.client.warnings(self._list_params(None)):
            if self.is_open(item):
                yield item

    def fetch_changes(self, cursor: str | None) -> Iterator[Record]:
        """Warnings created at or after ``cursor`` (actionable or not: see is_open)."""
        yield from self.client.warnings(self._list_params(self._since(cursor)))

    def is_open(self, record: Record) -> bool:
        """Open while ``actionable`` (Stripe clears it once refunded or disputed)."""
        return not (isinstance(record, Mapping) and record.get("actionable") is False)

    def to_task(self, record: Record) -> Task:
        """A warning as a task: amount, fraud type, customer email; link to its payment."""
        reader = ItemReader(record, "early fraud warning", self.where)
        payment = reader.payment()
        fraud_type = reader.text("fraud_type")
        actionable = reader.flag("actionable")
        custom = {"fraud_type": fraud_type, "actionable": actionable, "warning": reader.id}
        reason = fraud_type.replace("_", " ") if fraud_type else None
        return self._task(
            reader, payment, label="Early fraud warning", reason=reason, custom=custom
        )

    def on_complete(self, task: RemoteTask, completion: Completion) -> str | None:
        """Refund the charge when so configured or chosen; otherwise only the task closes."""
        warning_id = self._item_id(completion)
        config = self.config
        action = self._action(completion, config.action, list(config.outcome_actions))
        if action == "none":
            return f"early fraud warning {warning_id}: task closed, nothing sent (action none)"
        try:
            warning = self.client.warning(warning_id)
        except NotFoundError:
            raise WriteBackError(
                f"Stripe early fraud warning {warning_id} no longer exists; nothing refunded",
                where=self.where,
            ) from None
        if warning.get("actionable") is False:
            return (
                f"early fraud warning {warning_id} is no longer actionable (its charge was "
                "refunded or disputed); nothing sent"
            )
        return self._refund(warning, completion, f"early fraud warning {warning_id}")

    def _first_page(self) -> dict[str, Any]:
        return self.client.first_page("warnings", self._list_params(None))
