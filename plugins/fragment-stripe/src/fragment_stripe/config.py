"""Options of a ``stripe`` (Radar reviews) or ``stripe-efw`` source (``[sources.options]``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, SecretStr, model_validator

from fragment_core.connector import BaseUrl, ConnectorConfig

#: Stripe's API base. Tests (and proxies) point the SDK elsewhere through ``base_url``.
DEFAULT_BASE_URL = "https://api.stripe.com"
#: Stripe Dashboard; payments are at ``{dashboard_url}[/test]/payments/{id}`` (second-hand).
DEFAULT_DASHBOARD_URL = "https://dashboard.stripe.com"

#: What a completed task does in Stripe.
Action = Literal["approve", "refund", "none"]
ReviewAction = Literal["approve", "refund", "none"]
WarningAction = Literal["refund", "none"]


class StripeConfig(ConnectorConfig):
    """Options every Stripe source has."""

    api_key: SecretStr = Field(
        description="Secret key (sk_...) or restricted key (rk_...); its mode (test or live) "
        "decides the Dashboard links. See the README for the permissions it needs."
    )
    mode: Literal["test", "live"] | None = Field(
        default=None,
        description="The mode the key must be in; a key of the other mode is refused "
        "(guards against syncing test data into a live queue). Unset: either.",
    )
    base_url: BaseUrl = Field(
        default=DEFAULT_BASE_URL,
        description="Stripe API base URL (for proxies and tests); given to StripeClient's "
        "base_addresses.",
    )
    dashboard_url: BaseUrl = Field(
        default=DEFAULT_DASHBOARD_URL,
        description="Stripe Dashboard base of task links; test-mode keys add /test.",
    )
    sla_hours: float = Field(
        default=24.0,
        ge=0,
        description="A task is due this many hours after Stripe created the item (0: no due_at).",
    )
    page_size: int = Field(default=100, ge=1, le=100, description="Items per list request.")
    expand_charge: bool = Field(
        default=True,
        description="Expand each item's charge in the list call (amount, currency, email, risk "
        "level and score); needs read access to charges for a restricted key.",
    )
    requests_per_second: float = Field(
        default=20.0,
        ge=0,
        description="Proactive pace of requests (Stripe allows 25/s in test mode and 100/s in "
        "live mode by default); 0 turns pacing off.",
    )
    rate_limit_wait_seconds: float = Field(
        default=1.0,
        ge=0,
        description="Seconds to wait after a 429 that carries no Retry-After (Stripe's do not).",
    )
    retry_attempts: int | None = Field(
        default=None,
        ge=1,
        description="Attempts per Stripe call for 429s, 5xx and connection errors (one retry "
        "loop, ours: the SDK's own is switched off). Unset: the runner's policy (8 attempts "
        "within 10 minutes for a sync, 2 for fragment check).",
    )
    timeout_seconds: float = Field(default=30.0, gt=0, description="Timeout of one request.")
    outcome_field: str = Field(
        default="outcome",
        description="Key of the completed task's form data whose value picks the action "
        "(one of outcome_actions); absent or empty: the configured action.",
    )


class ReviewsConfig(StripeConfig):
    """Options of a ``stripe`` source: open Radar reviews."""

    action: ReviewAction = Field(
        default="approve",
        description="What completing a task does: approve the review, refund its payment "
        "(Stripe closes the review as refunded), or none (only the task is closed).",
    )
    outcome_actions: list[ReviewAction] = Field(
        default_factory=lambda: list[ReviewAction](["approve", "none"]),
        description="Actions an operator may choose in the completion form (outcome_field).",
    )

    @model_validator(mode="after")
    def _action_allowed(self) -> ReviewsConfig:
        _check_actions(self)
        return self


class WarningsConfig(StripeConfig):
    """Options of a ``stripe-efw`` source: actionable early fraud warnings."""

    sla_hours: float = Field(
        default=48.0,
        ge=0,
        description="A task is due this many hours after the warning was created (0: none).",
    )
    action: WarningAction = Field(
        default="none",
        description="What completing a task does: refund the charge (full refund), or none "
        "(only the task is closed; early fraud warnings have no resolve call).",
    )
    outcome_actions: list[WarningAction] = Field(
        default_factory=lambda: list[WarningAction](["refund", "none"]),
        description="Actions an operator may choose in the completion form (outcome_field).",
    )
    lookback_days: int = Field(
        default=120,
        ge=1,
        description="Only warnings created in the last this many days are listed (the list "
        "holds every warning ever; older ones are past the dispute window).",
    )

    @model_validator(mode="after")
    def _action_allowed(self) -> WarningsConfig:
        _check_actions(self)
        return self


def _check_actions(config: ReviewsConfig | WarningsConfig) -> None:
    if not config.outcome_actions:
        raise ValueError("outcome_actions must list at least one action")


def key_mode(api_key: str) -> Literal["test", "live"] | None:
    """``test`` or ``live`` from a key's prefix (``sk_test_``, ``rk_live_``...), else ``None``."""
    for prefix in ("sk_", "rk_"):
        if api_key.startswith(prefix + "test_"):
            return "test"
        if api_key.startswith(prefix + "live_"):
            return "live"
    return None
