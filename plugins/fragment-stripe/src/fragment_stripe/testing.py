"""``FakeStripe``: Stripe's Radar reviews, early fraud warnings, charges and refunds on
loopback, for tests (the real ``stripe`` SDK is pointed at it by ``base_addresses``).

Built on :class:`~fragment_core.testing.FakeVendor`: requests and responses of the
operations in Stripe's OpenAPI file are validated against it (``openapi=`` a path to
Stripe's ``spec3`` JSON or YAML, or a dict); refunds are not in that subset and are served
unvalidated. What it reproduces of Stripe:

- ``Authorization: Bearer <key>``; 401 and 403 bodies shaped as Stripe's (a restricted
  key's 403 names the missing ``rak_...`` permission), ``{"error": {"type", ...}}``;
- lists: ``limit`` 1-100 (default 10), newest first, ``has_more`` / ``starting_after``,
  ``created[gte]`` filters, ``expand[]=data.charge``; reviews list only open ones, early
  fraud warnings list every warning (actionable or not);
- idempotency keys: a POST repeated with the same key replays the first answer
  (``Idempotent-Replayed: true``) with no second effect; the same key with other
  parameters is a 400 ``idempotency_error``;
- 429 as Stripe sends it (no wait hint, ``code: rate_limit``) with ``limit_rate``;
  FakeAPI's faults (5xx, drop, truncate) through ``fail_next``.
"""

from __future__ import annotations

import copy
import itertools
import operator
import threading
import time
from collections.abc import Callable, Iterable, Mapping
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

from fragment_core.testing.cli import fragment_toml
from fragment_core.testing.fakeapi import FakeRequest, FakeResponse
from fragment_core.testing.fakevendor import FakeVendor, RateLimit
from fragment_stripe.config import ReviewsConfig, WarningsConfig

#: The permissions of a restricted key the fake checks (a secret key has them all).
#: The names follow the ``rak_<resource>_<read|write>`` form of Stripe's 403 messages.
PERMISSIONS = frozenset(
    {
        "rak_review_read",
        "rak_review_write",
        "rak_radar_early_fraud_warning_read",
        "rak_charge_read",
        "rak_refund_write",
    }
)

RATE_LIMIT_BODY = {
    "error": {
        "type": "invalid_request_error",
        "code": "rate_limit",
        "message": "Too many requests hit the API too quickly. We recommend an exponential "
        "backoff of your requests.",
    }
}

_CREATED_OPS: dict[str, Callable[[int, int], bool]] = {
    "eq": operator.eq,
    "gt": operator.gt,
    "gte": operator.ge,
    "lt": operator.lt,
    "lte": operator.le,
}


#: Stripe's OpenAPI file (the subset of the operations used), shipped with the package.
SPEC = Path(__file__).with_name("openapi") / "stripe.json"


def _mask(key: str) -> str:
    return key[:8] + "*" * max(len(key) - 12, 4) + key[-4:]


class FakeStripe(FakeVendor):
    """A fake Stripe account: reviews, early fraud warnings, charges, refunds."""

    def __init__(
        self,
        *,
        api_key: str = "sk_test_fake_0000000000000000",
        permissions: Iterable[str] = PERMISSIONS,
        openapi: Mapping[str, Any] | str | Path | None = SPEC,
        start: int | None = None,
    ) -> None:
        super().__init__("stripe", token=api_key, scopes=permissions, openapi=openapi)
        self.livemode = api_key.startswith(("sk_live_", "rk_live_"))
        self.now = int(time.time()) - 7 * 86400 if start is None else start
        self.charges: dict[str, dict[str, Any]] = {}
        self.reviews: dict[str, dict[str, Any]] = {}
        self.warnings: dict[str, dict[str, Any]] = {}
        self.refunds: dict[str, dict[str, Any]] = {}
        self.idempotent: dict[str, tuple[str, FakeResponse]] = {}
        #: Idempotency keys whose first answer was replayed, in order.
        self.replayed: list[str] = []
        #: Called after a write's effect is applied, before it is answered (crash tests).
        self.after_effect: Callable[[], None] | None = None
        self._ids = itertools.count(1)
        self._write_lock = threading.RLock()
        self._routes()

    # -- Stripe's error shapes ------------------------------------------------------------
    @staticmethod
    def error(status: int, message: str, *, type_: str = "invalid_request_error",
              code: str | None = None, param: str | None = None) -> FakeResponse:  # fmt: skip
        """A Stripe error answer: ``{"error": {"type", "message", "code", "param"}}``."""
        body: dict[str, Any] = {"type": type_, "message": message}
        if code:
            body["code"] = code
        if param:
            body["param"] = param
        return FakeResponse(status=status, json={"error": body})

    def unauthorized(self, req: FakeRequest) -> FakeResponse:
        presented = req.headers.get("authorization", "").removeprefix("Bearer ")
        if not presented:
            return self.error(401, "You did not provide an API key.")
        return self.error(401, f"Invalid API Key provided: {_mask(presented)}")

    def forbidden(self, req: FakeRequest, scope: str) -> FakeResponse:
        return self.error(
            403,
            f"The provided key '{_mask(self.token)}' does not have the required permissions "
            "for this endpoint on account 'acct_1FakeAccount'. Having the "
            f"'{scope}' permission would allow this request to continue.",
        )

    def invalid(self, message: str) -> FakeResponse:
        with self._lock:
            self.invalid_requests.append(message)
        return self.error(400, message)

    def options(self, **options: Any) -> dict[str, Any]:
        """``[sources.options]`` of a source pointed at this fake (no pacing), plus ``options``."""
        base = {"api_key": self.token, "base_url": self.api.base_url, "requests_per_second": 0}
        return {**base, **options}

    def reviews_config(self, **options: Any) -> ReviewsConfig:
        """A ``stripe`` source's options pointed at this fake."""
        return ReviewsConfig.model_validate(self.options(**options))

    def warnings_config(self, **options: Any) -> WarningsConfig:
        """A ``stripe-efw`` source's options pointed at this fake."""
        return WarningsConfig.model_validate(self.options(**options))

    def fragment_toml(self, tasks_url: str, state_path: str | Path, *,
                      env_var: str = "STRIPE_API_KEY", **sources: str) -> str:  # fmt: skip
        """A ``fragment.toml`` with one source per keyword (``name="stripe"`` or
        ``name="stripe-efw"``) pointed at this fake; the key read from ``env_var``."""
        blocks: list[str] = []
        for name, connector in sources.items():
            blocks += [
                "[[sources]]",
                f'name = "{name}"',
                f'connector = "{connector}"',
                "",
                "[sources.options]",
                f'api_key = "${{{env_var}}}"',
                f'base_url = "{self.api.base_url}"',
                "requests_per_second = 0",
                "",
            ]
        return fragment_toml(tasks_url, state_path, "\n".join(blocks))

    def limit_rate(self, per_second: int = 25) -> RateLimit:
        """Answer Stripe's 429 past ``per_second`` requests in any second (test-mode default)."""
        self.rate_limit = RateLimit(
            per_second, 1.0, headers=lambda wait: {}, body=RATE_LIMIT_BODY
        )
        return self.rate_limit

    # -- data -----------------------------------------------------------------------------
    def _new_id(self, prefix: str) -> str:
        return f"{prefix}_{next(self._ids):06d}Fake"

    def _tick(self, created: int | None) -> int:
        if created is not None:
            return created
        self.now += 1
        return self.now

    def add_charge(
        self, *, amount: int = 4200, currency: str = "usd", email: str | None = None,
        risk_level: str = "elevated", risk_score: int | None = 65, created: int | None = None,
        payment_intent: bool = True,
    ) -> dict[str, Any]:  # fmt: skip
        """A succeeded charge (and its payment intent id); returns it."""
        charge_id = self._new_id("ch")
        charge = {
            "id": charge_id,
            "object": "charge",
            "amount": amount,
            "amount_captured": amount,
            "amount_refunded": 0,
            "billing_details": {"address": None, "email": email, "name": None, "phone": None},
            "captured": True,
            "created": self._tick(created),
            "currency": currency,
            "disputed": False,
            "livemode": self.livemode,
            "metadata": {},
            "outcome": {
                "network_status": "approved_by_network",
                "reason": None,
                "risk_level": risk_level,
                "risk_score": risk_score,
                "seller_message": "Payment complete.",
                "type": "authorized",
            },
            "paid": True,
            "payment_intent": self._new_id("pi") if payment_intent else None,
            "receipt_email": None,
            "refunded": False,
            "status": "succeeded",
        }
        self.charges[charge_id] = charge
        return charge

    def add_review(self, *, opened_reason: str = "rule", created: int | None = None,
                   **charge: Any) -> str:  # fmt: skip
        """An open review of a new charge (``charge`` options as :meth:`add_charge`)."""
        made = self.add_charge(**charge)
        review_id = self._new_id("prv")
        self.reviews[review_id] = {
            "id": review_id,
            "object": "review",
            "billing_zip": "94107",
            "charge": made["id"],
            "closed_reason": None,
            "created": self._tick(created),
            "ip_address": "203.0.113.7",
            "ip_address_location": None,
            "livemode": self.livemode,
            "open": True,
            "opened_reason": opened_reason,
            "payment_intent": made["payment_intent"],
            "reason": opened_reason,
            "session": None,
        }
        return review_id

    def add_reviews(self, n: int, **options: Any) -> list[str]:
        """``n`` open reviews."""
        return [self.add_review(**options) for _ in range(n)]

    def add_warning(self, *, fraud_type: str = "made_with_stolen_card",
                    actionable: bool = True, created: int | None = None,
                    **charge: Any) -> str:  # fmt: skip
        """An early fraud warning on a new charge."""
        made = self.add_charge(**charge)
        warning_id = self._new_id("issfr")
        self.warnings[warning_id] = {
            "id": warning_id,
            "object": "radar.early_fraud_warning",
            "actionable": actionable,
            "charge": made["id"],
            "created": self._tick(created),
            "fraud_type": fraud_type,
            "livemode": self.livemode,
            "payment_intent": made["payment_intent"],
        }
        return warning_id

    def add_warnings(self, n: int, **options: Any) -> list[str]:
        """``n`` early fraud warnings."""
        return [self.add_warning(**options) for _ in range(n)]

    def add_raw(self, kind: str, item: dict[str, Any], key: str | None = None) -> str:
        """Serve ``item`` as it is among the ``reviews`` or ``warnings`` (a malformed one)."""
        store = self.reviews if kind == "reviews" else self.warnings
        key = key or str(item.get("id") or self._new_id("raw"))
        store[key] = item
        return key

    def close_review(self, review_id: str, reason: str = "refunded") -> None:
        """The review is closed in Stripe (e.g. refunded in the Dashboard)."""
        review = self.reviews[review_id]
        review.update(open=False, reason=reason, closed_reason=reason)

    # -- effects --------------------------------------------------------------------------
    def approvals(self, review_id: str) -> int:
        """How many times the review was approved (replays do not count)."""
        return self.effect_count("approve", review_id)

    def refunds_of(self, item_id: str) -> int:
        """Refunds of the charge behind a review or warning (replays do not count)."""
        item = self.reviews.get(item_id) or self.warnings.get(item_id) or {}
        return self.effect_count("refund", str(item.get("charge")))

    def write_backs(self, item_id: str) -> int:
        """Approvals plus refunds for one review or warning."""
        return self.approvals(item_id) + self.refunds_of(item_id)

    def _applied(self) -> None:
        if self.after_effect is not None:
            self.after_effect()

    # -- routes ---------------------------------------------------------------------------
    def _routes(self) -> None:
        route = self.route
        route("GET", "/v1/reviews", scope="rak_review_read", items="data")(self._list_reviews)
        route("GET", "/v1/reviews/{review}", scope="rak_review_read")(self._get_review)
        route("POST", "/v1/reviews/{review}/approve", scope="rak_review_write")(
            self._idempotent(self._approve)
        )
        route(
            "GET",
            "/v1/radar/early_fraud_warnings",
            scope="rak_radar_early_fraud_warning_read",
            items="data",
        )(self._list_warnings)
        route(
            "GET",
            "/v1/radar/early_fraud_warnings/{early_fraud_warning}",
            scope="rak_radar_early_fraud_warning_read",
        )(self._get_warning)
        route("POST", "/v1/refunds", scope="rak_refund_write", openapi=False)(
            self._idempotent(self._refund)
        )

    def _expanded(self, req: FakeRequest, item: dict[str, Any], prefix: str) -> Any:
        wanted = [v for k, v in req.query_list if k == "expand" or k.startswith("expand[")]
        wanted += [v for k, v in parse_qsl(req.body.decode()) if k.startswith("expand")]
        out = copy.deepcopy(item)
        if f"{prefix}charge" in wanted:
            if "rak_charge_read" not in self.scopes:
                return self.forbidden(req, "rak_charge_read")
            charge = out.get("charge")
            if isinstance(charge, str):
                out["charge"] = copy.deepcopy(self.charges.get(charge, charge))
        return out

    def _page(self, req: FakeRequest, items: dict[str, dict[str, Any]], url: str,
              visible: Callable[[dict[str, Any]], bool]) -> Any:  # fmt: skip
        query = req.query
        try:
            limit = int(query.get("limit", "10"))
        except ValueError:
            return self.error(400, "Invalid integer: limit", param="limit")
        if not 1 <= limit <= 100:
            return self.error(400, "Limit must be between 1 and 100.", param="limit")
        ordered = sorted(items.values(), key=self._order, reverse=True)
        after = query.get("starting_after")
        if after is not None:
            position = next((n for n, i in enumerate(ordered) if i["id"] == after), None)
            if position is None:
                return self.error(
                    404, f"No such object: '{after}'", code="resource_missing",
                    param="starting_after",
                )
            ordered = ordered[position + 1 :]
        filters = []
        for key, value in req.query_list:
            if key == "created":
                filters.append((_CREATED_OPS["eq"], int(value)))
            elif key.startswith("created[") and key[8:-1] in _CREATED_OPS:
                filters.append((_CREATED_OPS[key[8:-1]], int(value)))
        shown = [
            i for i in ordered
            if visible(i) and all(op(self._order(i)[0], v) for op, v in filters)
        ]  # fmt: skip
        data = []
        for item in shown[:limit]:
            expanded = self._expanded(req, item, "data.") if "id" in item else item
            if isinstance(expanded, FakeResponse):
                return expanded
            data.append(expanded)
        return {"object": "list", "url": url, "has_more": len(shown) > limit, "data": data}

    def _order(self, item: dict[str, Any]) -> tuple[int, str]:
        created = item.get("created")
        return (created if type(created) is int else self.now, str(item.get("id") or ""))

    def _list_reviews(self, req: FakeRequest) -> Any:
        return self._page(
            req, self.reviews, "/v1/reviews", lambda r: r.get("open", True) is not False
        )

    def _list_warnings(self, req: FakeRequest) -> Any:
        return self._page(
            req, self.warnings, "/v1/radar/early_fraud_warnings", lambda w: True
        )

    def _get_review(self, req: FakeRequest) -> Any:
        review_id = req.path_params["review"]
        review = self.reviews.get(review_id)
        if review is None:
            return self.error(404, f"No such review: '{review_id}'", code="resource_missing",
                              param="id")  # fmt: skip
        return self._expanded(req, review, "")

    def _get_warning(self, req: FakeRequest) -> Any:
        warning_id = req.path_params["early_fraud_warning"]
        warning = self.warnings.get(warning_id)
        if warning is None:
            return self.error(
                404, f"No such early fraud warning: '{warning_id}'", code="resource_missing",
                param="early_fraud_warning",
            )  # fmt: skip
        return self._expanded(req, warning, "")

    def _idempotent(
        self, handler: Callable[[FakeRequest, str | None], Any]
    ) -> Callable[[FakeRequest], Any]:
        """Stripe's idempotency: same key and request -> the first answer, replayed."""

        def serve(req: FakeRequest) -> Any:
            key = req.headers.get("idempotency-key")
            fingerprint = f"{req.method} {req.path} {req.body.decode()}"
            with self._write_lock:
                if key is not None and key in self.idempotent:
                    first, answer = self.idempotent[key]
                    if first != fingerprint:
                        return self.error(
                            400,
                            "Keys for idempotent requests can only be used with the same "
                            "parameters they were first used with.",
                            type_="idempotency_error",
                        )
                    self.replayed.append(key)
                    headers = {**(answer.headers or {}), "Idempotent-Replayed": "true"}
                    return FakeResponse(answer.status, json=answer.json, headers=headers)
                result = handler(req, key)
                answer = result if isinstance(result, FakeResponse) else FakeResponse(json=result)
                if key is not None and answer.status < 500:
                    self.idempotent[key] = (fingerprint, answer)
            if answer.status < 400:
                self._applied()
            return answer

        return serve

    def _approve(self, req: FakeRequest, key: str | None) -> Any:
        review_id = req.path_params["review"]
        review = self.reviews.get(review_id)
        if review is None:
            return self.error(404, f"No such review: '{review_id}'", code="resource_missing",
                              param="review")  # fmt: skip
        if not review["open"]:
            return self.error(400, "This review is already closed.")
        review.update(open=False, reason="approved", closed_reason="approved")
        self.effect("approve", review_id, key)
        return copy.deepcopy(review)

    def _refund(self, req: FakeRequest, key: str | None) -> Any:
        form = dict(parse_qsl(req.body.decode(), keep_blank_values=True))
        charge = self.charges.get(form.get("charge", ""))
        if charge is None and form.get("payment_intent"):
            charge = next(
                (c for c in self.charges.values() if c["payment_intent"] == form["payment_intent"]),
                None,
            )
        if charge is None:
            return self.error(404, "No such charge", code="resource_missing", param="charge")
        if charge["refunded"]:
            return self.error(
                400, f"Charge {charge['id']} has already been refunded.",
                code="charge_already_refunded",
            )  # fmt: skip
        charge.update(refunded=True, amount_refunded=charge["amount"])
        fraud = form.get("reason") == "fraudulent"
        for review in self.reviews.values():
            if review["charge"] == charge["id"] and review["open"]:
                reason = "refunded_as_fraud" if fraud else "refunded"
                review.update(open=False, reason=reason, closed_reason=reason)
        for warning in self.warnings.values():
            if warning["charge"] == charge["id"]:
                warning["actionable"] = False
        refund_id = self._new_id("re")
        self.refunds[refund_id] = refund = {
            "id": refund_id,
            "object": "refund",
            "amount": charge["amount"],
            "charge": charge["id"],
            "currency": charge["currency"],
            "payment_intent": charge["payment_intent"],
            "reason": form.get("reason"),
            "status": "succeeded",
            "metadata": {k[9:-1]: v for k, v in form.items() if k.startswith("metadata[")},
        }
        self.effect("refund", charge["id"], key)
        return copy.deepcopy(refund)
