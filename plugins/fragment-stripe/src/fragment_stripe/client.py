"""The Stripe calls the connectors make: the official SDK's ``StripeClient``, run under
our :class:`~fragment_core.transport.Transport`.

One retry loop: ``StripeClient(max_network_retries=0)`` (its default, set explicitly) and
every call goes through :meth:`Transport.call`, which paces it and retries it by our error
classes (429 waited out, 5xx and connection errors backed off). The API base goes through
the SDK's own ``base_addresses``. Results are the decoded JSON of the answer (plain dicts),
so one malformed item fails alone in mapping, not a whole page in the SDK's model layer.
"""

from __future__ import annotations

import os
import re
from collections.abc import Callable, Iterator, Mapping
from typing import Any, TypeVar

import stripe

from fragment_core.errors import (
    AuthenticationError,
    ConfigurationError,
    FragmentError,
    RateLimitedError,
    TransientError,
    WriteBackError,
)
from fragment_core.paging import Page, paginate
from fragment_core.redaction import redact, register_secrets
from fragment_core.retries import Pacer, RetryPolicy, retry_after_from_headers
from fragment_core.transport import Transport
from fragment_stripe.config import StripeConfig

T = TypeVar("T")

#: Anything shaped like a Stripe key (Stripe's own messages quote masked keys).
_KEY_LIKE = re.compile(r"\b[srp]k_(?:test|live)_[A-Za-z0-9*]+")
#: The permission a restricted key lacks, as Stripe's 403 message names it.
_PERMISSION = re.compile(r"'(rak_[a-z0-9_]+)'")

#: Refund reason sent with every refund: it also tells Radar the payment was fraud.
REFUND_REASON = "fraudulent"


class NotFoundError(ConfigurationError):
    """Stripe answered 404 (``resource_missing``): the object does not exist."""


class StripeRequestError(ConfigurationError):
    """Stripe refused a request (HTTP 400): ``code`` is Stripe's error code, if any."""

    def __init__(self, message: str, *, code: str | None, where: str | None) -> None:
        super().__init__(message, where=where)
        self.code = code


def _raised_in_sdk(exc: BaseException) -> bool:
    """Whether ``exc`` was raised inside the stripe package (its last frame is there)."""
    tb = exc.__traceback__
    while tb is not None and tb.tb_next is not None:
        tb = tb.tb_next
    return tb is not None and f"{os.sep}stripe{os.sep}" in tb.tb_frame.f_code.co_filename


def _clean(text: str, secrets: tuple[str, ...]) -> str:
    return _KEY_LIKE.sub("<key>", redact(" ".join(str(text or "").split()), secrets))[:300]


class StripeAPI:
    """The calls of both connectors; every error is one of our classes, without secrets."""

    def __init__(self, config: StripeConfig, *, where: str) -> None:
        self.config = config
        self.where = where
        key = config.api_key.get_secret_value()
        self._secrets = (key,)
        register_secrets(self._secrets)
        self.http_client = stripe.RequestsClient(timeout=config.timeout_seconds)
        self.sdk = stripe.StripeClient(
            key,
            base_addresses={"api": config.base_url},
            max_network_retries=0,  # the retry loop is Transport.call's
            http_client=self.http_client,
        )
        retry = RetryPolicy(attempts=config.retry_attempts) if config.retry_attempts else None
        self.transport = Transport(
            config.base_url,
            retry=retry,
            pacer=Pacer.per_second(config.requests_per_second),
            name=where,
        )

    def close(self) -> None:
        """Close the SDK's HTTP session and the transport."""
        self.http_client.close()
        self.transport.close()

    # -- plumbing -------------------------------------------------------------------------
    def call(self, action: str, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        """One SDK call, paced and retried; returns the answer's decoded JSON."""
        result = self.transport.call(
            fn,
            *args,
            operation=action,
            translate_exception=lambda exc: self.translate(exc, action),
            **kwargs,
        )
        response = getattr(result, "last_response", None)
        data = getattr(response, "data", None)
        if isinstance(data, dict):
            return data
        return result.to_dict() if hasattr(result, "to_dict") else result

    def translate(self, exc: BaseException, action: str) -> FragmentError | None:
        """The error class the runner acts on for an SDK exception (``None``: not Stripe's)."""
        if isinstance(exc, AttributeError) and _raised_in_sdk(exc):
            # the SDK reads any JSON error body as Stripe's {"error": {...}} and trips over
            # another shape ({"error": "..."} from a proxy or gateway)
            return TransientError(
                f"Stripe (or a proxy in front of it) answered an error in a shape that is not "
                f"Stripe's while trying to {action}; check base_url",
                where=self.where,
            )
        if not isinstance(exc, stripe.StripeError):
            return None
        status = exc.http_status
        said = _clean(exc.user_message or str(exc) or "", self._secrets)
        if said.startswith("Invalid response body from API"):
            said = "the answer is not valid JSON (cut short?)"
        detail = f"{said} (HTTP {status})" if status else said
        where = self.where
        if isinstance(exc, stripe.RateLimitError):
            wait = retry_after_from_headers(dict(exc.headers or {}))
            return RateLimitedError(
                f"Stripe rate limit while trying to {action}",
                retry_after=self.config.rate_limit_wait_seconds if wait is None else wait,
                where=where,
            )
        if isinstance(exc, stripe.AuthenticationError):
            return AuthenticationError(
                f"Stripe rejected the API key while trying to {action} (HTTP 401). Check "
                "api_key: it may be mistyped, rolled or deleted; use a secret key (sk_...) "
                "or a restricted key (rk_...) from Dashboard > Developers > API keys.",
                where=where,
            )
        if isinstance(exc, stripe.PermissionError):
            found = _PERMISSION.search(str(exc.user_message or ""))
            named = f"the permission {found.group(1)}" if found else "a permission"
            return AuthenticationError(
                f"the restricted API key lacks {named} needed to {action} (HTTP 403). "
                "Edit the key in Dashboard > Developers > API keys and grant it (see the "
                "fragment-stripe README for the list), or use a secret key.",
                where=where,
            )
        if isinstance(exc, stripe.APIConnectionError):
            return TransientError(
                f"could not reach Stripe at {self.config.base_url} to {action}: {said}; "
                "check base_url and the network",
                where=where,
            )
        if isinstance(exc, stripe.IdempotencyError):
            if status == 409:  # another request with this key is still in flight
                return TransientError(f"{action}: {detail}", where=where)
            return WriteBackError(
                f"Stripe refused the idempotency key while trying to {action}: {detail}",
                where=where,
            )
        if status is not None and status == 404:
            return NotFoundError(f"Stripe found nothing to {action}: {detail}", where=where)
        if status is None or status >= 500 or status in (408, 409) or status < 400:
            # 5xx, a conflict, or an answer that did not parse (a truncated body)
            return TransientError(f"Stripe failed to {action}: {detail}", where=where)
        return StripeRequestError(
            f"Stripe refused to {action}: {detail}",
            code=getattr(exc, "code", None),
            where=where,
        )

    # -- listing --------------------------------------------------------------------------
    def list_all(
        self,
        what: str,
        list_fn: Callable[..., Any],
        params: Mapping[str, Any],
    ) -> Iterator[dict[str, Any]]:
        """Every item of a Stripe list (``has_more`` / ``starting_after``), each once."""

        def fetch(token: object | None) -> Page[Any]:
            query = {**params, "limit": self.config.page_size}
            if token is not None:
                query["starting_after"] = token
            body = self.call(f"list {what}", list_fn, params=query)
            if not isinstance(body, Mapping) or not isinstance(body.get("data"), list):
                raise TransientError(
                    f"list {what}: Stripe's answer has no data list", where=self.where
                )
            items = body["data"]
            ids = [i.get("id") for i in items if isinstance(i, Mapping) and i.get("id")]
            more = body.get("has_more") is True
            if more and not ids:
                raise TransientError(
                    f"list {what}: a page says has_more but names no item to go on from",
                    where=self.where,
                )
            return Page(items, str(ids[-1]) if more else None)

        def id_of(item: Any) -> str | None:
            value = item.get("id") if isinstance(item, Mapping) else None
            return str(value) if value else None

        yield from paginate(fetch, id_of=id_of, what=what)

    def reviews(self, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """Open Radar reviews (Stripe lists only open ones), newest first."""
        return self.list_all("Radar reviews", self.sdk.v1.reviews.list, params)

    def warnings(self, params: Mapping[str, Any]) -> Iterator[dict[str, Any]]:
        """Early fraud warnings (actionable or not), newest first."""
        return self.list_all(
            "early fraud warnings", self.sdk.v1.radar.early_fraud_warnings.list, params
        )

    def first_page(self, kind: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """One item of a list (for ``check``): the raw list envelope."""
        fn = (
            self.sdk.v1.reviews.list
            if kind == "reviews"
            else self.sdk.v1.radar.early_fraud_warnings.list
        )
        what = "list Radar reviews" if kind == "reviews" else "list early fraud warnings"
        result: dict[str, Any] = self.call(what, fn, params={**params, "limit": 1})
        return result

    # -- single objects and write-back ----------------------------------------------------
    def review(self, review_id: str) -> dict[str, Any]:
        """One review (open or closed)."""
        result: dict[str, Any] = self.call(
            f"retrieve review {review_id}", self.sdk.v1.reviews.retrieve, review_id
        )
        return result

    def warning(self, warning_id: str) -> dict[str, Any]:
        """One early fraud warning."""
        result: dict[str, Any] = self.call(
            f"retrieve early fraud warning {warning_id}",
            self.sdk.v1.radar.early_fraud_warnings.retrieve,
            warning_id,
        )
        return result

    def approve(self, review_id: str, idempotency_key: str) -> dict[str, Any]:
        """Approve a review; a retry with the same key is replayed by Stripe, not redone."""
        result: dict[str, Any] = self.call(
            f"approve review {review_id}",
            self.sdk.v1.reviews.approve,
            review_id,
            options={"idempotency_key": idempotency_key},
        )
        return result

    def refund(
        self, *, charge: str | None, payment_intent: str | None, idempotency_key: str,
        metadata: Mapping[str, str],
    ) -> dict[str, Any]:  # fmt: skip
        """Refund a charge (or payment intent) in full, under ``idempotency_key``."""
        params: dict[str, Any] = {"reason": REFUND_REASON, "metadata": dict(metadata)}
        if charge:
            params["charge"] = charge
        elif payment_intent:
            params["payment_intent"] = payment_intent
        else:
            raise WriteBackError("nothing to refund: no charge or payment intent", where=self.where)
        target = charge or payment_intent
        result: dict[str, Any] = self.call(
            f"refund {target}",
            self.sdk.v1.refunds.create,
            params=params,
            options={"idempotency_key": idempotency_key},
        )
        return result
