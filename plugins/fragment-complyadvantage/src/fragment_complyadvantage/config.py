"""Options of a ``complyadvantage`` or ``complyadvantage-mesh`` source."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, field_validator

from fragment_core.connector import BaseUrl, ConnectorConfig, placeholders

#: The legacy (screening searches) API. Regional hosts exist: set ``base_url``.
DEFAULT_SEARCHES_URL = "https://api.complyadvantage.com"
#: The Mesh API (also ``https://api.eu.mesh.complyadvantage.com``, ``...au.mesh...``).
DEFAULT_MESH_URL = "https://api.mesh.complyadvantage.com"
#: A case in the Mesh app ([2nd]; regional apps such as au.mesh.complyadvantage.com exist).
DEFAULT_CASE_URL = "https://mesh.complyadvantage.com/cases/{case_id}"

#: match_status values.
MATCH_STATUSES = (
    "no_match",
    "false_positive",
    "potential_match",
    "true_positive",
    "unknown",
    "true_positive_approve",
    "true_positive_reject",
)
#: match_status values that resolve a search.
RESOLVED_STATUSES = (
    "no_match",
    "false_positive",
    "true_positive",
    "true_positive_approve",
    "true_positive_reject",
)
RISK_LEVELS = ("low", "medium", "high", "unknown")
ALERT_END_STATES = ("POSITIVE_END_STATE", "NEGATIVE_END_STATE")


class SearchesConfig(ConnectorConfig):
    """Settings of one ``complyadvantage`` (screening searches) source."""

    api_key: SecretStr = Field(
        description="ComplyAdvantage API key (sent as 'Authorization: Token <key>'); the "
        "API user needs to view and update searches."
    )
    base_url: BaseUrl = Field(
        default=DEFAULT_SEARCHES_URL,
        description="API base URL: your account's region, a proxy, or a test server.",
    )
    review_statuses: list[str] = Field(
        default_factory=lambda: ["potential_match", "unknown"],
        description="match_status values that need review: searches with one of them are "
        "the backlog.",
    )
    assignee_id: int | None = Field(
        default=None, description="Only searches assigned to this user id."
    )
    per_page: int = Field(
        default=100,
        ge=1,
        le=1000,
        description="Searches per list request (the API's maximum is not documented: "
        "second-hand, 100 is safe).",
    )
    total_path: str | None = Field(
        default=None,
        description="Dotted path of the total number of matching searches in the list "
        "response, if your API returns one (then a cut-short listing is detected); "
        "not confirmed in ComplyAdvantage's docs, so off by default.",
    )
    outcome_field: str = Field(
        default="outcome",
        description="Key of the task's form data (what the operator entered on completing "
        "it) whose value gives the new match_status.",
    )
    outcome_map: dict[str, str] = Field(
        default_factory=dict,
        description="Form value -> match_status (e.g. cleared = false_positive); a value "
        "that is a match_status itself needs no entry.",
    )
    default_match_status: str = Field(
        default="false_positive",
        description="match_status set when the operator's completion names none.",
    )
    risk_level_field: str = Field(
        default="risk_level",
        description="Key of the completion form whose value sets risk_level.",
    )
    default_risk_level: str | None = Field(
        default=None,
        description="risk_level set when the form names none (unset: risk_level untouched).",
    )
    incremental: bool = Field(
        default=False,
        description="Between full fetches, list searches sorted by updated_at, newest "
        "first, and stop at the cursor (sort_by=updated_at is second-hand: check it works "
        "for your account before enabling).",
    )
    requests_per_minute: float = Field(
        default=0, ge=0, description="Pace requests to this rate (0: no pacing)."
    )
    timeout: float = Field(default=30.0, gt=0, description="Seconds per HTTP request.")

    @field_validator("review_statuses")
    @classmethod
    def _known_statuses(cls, values: list[str]) -> list[str]:
        bad = [v for v in values if v not in MATCH_STATUSES]
        if bad or not values:
            raise ValueError(
                f"unknown match_status {bad}; use some of {', '.join(MATCH_STATUSES)}"
                if bad
                else "name at least one match_status"
            )
        return values

    @field_validator("default_match_status")
    @classmethod
    def _resolving(cls, value: str) -> str:
        if value not in RESOLVED_STATUSES:
            raise ValueError(f"{value!r} does not resolve a search; use one of {RESOLVED_STATUSES}")
        return value

    @field_validator("outcome_map")
    @classmethod
    def _resolving_map(cls, values: dict[str, str]) -> dict[str, str]:
        bad = {k: v for k, v in values.items() if v not in RESOLVED_STATUSES}
        if bad:
            raise ValueError(f"{bad} do not resolve a search; use {RESOLVED_STATUSES}")
        return values

    @field_validator("default_risk_level")
    @classmethod
    def _risk(cls, value: str | None) -> str | None:
        if value is not None and value not in RISK_LEVELS:
            raise ValueError(f"unknown risk_level {value!r}; use one of {RISK_LEVELS}")
        return value


class MeshOutcome(ConnectorConfig):
    """Where one operator outcome sends a Mesh case."""

    decision_stage: str = Field(description="DECISION stage (name or identifier).")
    alert_end_state: str = Field(
        default="POSITIVE_END_STATE",
        description="End state of the case's open alerts (POSITIVE_END_STATE or "
        "NEGATIVE_END_STATE).",
    )

    @field_validator("alert_end_state")
    @classmethod
    def _end_state(cls, value: str) -> str:
        if value not in ALERT_END_STATES:
            raise ValueError(f"use one of {', '.join(ALERT_END_STATES)}")
        return value


class MeshConfig(ConnectorConfig):
    """Settings of one ``complyadvantage-mesh`` (cases) source."""

    username: str = Field(description="Mesh API user (a dedicated API user is recommended).")
    password: SecretStr = Field(description="Password of the Mesh API user.")
    realm: str = Field(description="Mesh realm of the account (sent to the token endpoint).")
    base_url: BaseUrl = Field(
        default=DEFAULT_MESH_URL,
        description="Mesh API base URL: api.mesh..., api.eu.mesh... or api.au.mesh... "
        "complyadvantage.com, a proxy, or a test server.",
    )
    case_url_template: Annotated[str, placeholders("case_id")] = Field(
        default=DEFAULT_CASE_URL,
        description="Link to a case in the Mesh app; placeholder {case_id} (second-hand: "
        "set your region's app host).",
    )
    case_types: list[str] = Field(
        default_factory=list,
        description="Only cases of these types (e.g. CUSTOMER_ONBOARDING); all when empty.",
    )
    page_size: int = Field(
        default=100,
        ge=1,
        le=1000,
        description="Cases per list request (page_size; the maximum is not documented).",
    )
    first_page: int = Field(
        default=1, ge=0, description="Number of the first page (page_number; second-hand: 1)."
    )
    token_refresh_margin: float = Field(
        default=300.0,
        ge=0,
        description="Fetch a new token this many seconds before the current one expires "
        "(tokens last expires_in seconds, 24 h).",
    )
    alert_end_state: str = Field(
        default="POSITIVE_END_STATE",
        description="State the case's open alerts are moved to on write-back "
        "(POSITIVE_END_STATE or NEGATIVE_END_STATE; second-hand).",
    )
    decision_stage: str | None = Field(
        default=None,
        description="Identifier or name of the DECISION stage a completed case moves to; "
        "unset: no write-back (fragment check lists the decision stages).",
    )
    outcome_field: str = Field(
        default="outcome",
        description="Key of the task's form data (what the operator entered) looked up "
        "in outcomes.",
    )
    outcomes: dict[str, MeshOutcome] = Field(
        default_factory=dict,
        description="Operator outcome -> {decision_stage, alert_end_state}, e.g. reject = "
        "{decision_stage = 'Rejected', alert_end_state = 'NEGATIVE_END_STATE'}; a "
        "completion without an outcome uses decision_stage and alert_end_state; one "
        "with an outcome not listed here fails (nothing sent) when outcomes is set.",
    )
    transition_note: Annotated[str, placeholders("uid", "done_at")] = Field(
        default="Resolved in Fragment.",
        description="Note sent with the case transition; placeholders {uid}, {done_at}.",
    )
    alert_transition_pause: float = Field(
        default=1.0,
        ge=0,
        description="Seconds between moving the alerts and moving the case (second-hand: "
        "mirrors the Mesh UI).",
    )
    incremental_sort: str | None = Field(
        default=None,
        description="Between full fetches, list cases with this sort (newest change "
        "first, e.g. -UPDATED_AT) and stop at the cursor; unset: full fetches only "
        "(the sort key is second-hand: check it before enabling).",
    )
    requests_per_minute: float = Field(
        default=0, ge=0, description="Pace requests to this rate (0: no pacing)."
    )
    timeout: float = Field(default=30.0, gt=0, description="Seconds per HTTP request.")

    @field_validator("alert_end_state")
    @classmethod
    def _end_state(cls, value: str) -> str:
        if value not in ALERT_END_STATES:
            raise ValueError(f"use one of {', '.join(ALERT_END_STATES)}")
        return value

    @field_validator("case_types")
    @classmethod
    def _upper(cls, values: list[str]) -> list[str]:
        return [v.strip().upper() for v in values]
