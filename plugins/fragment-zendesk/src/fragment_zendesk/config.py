"""Options of a ``zendesk`` source (``[sources.options]`` in fragment.toml)."""

from __future__ import annotations

from typing import Annotated
from urllib.parse import urlsplit

from pydantic import Field, SecretStr, field_validator, model_validator

from fragment_core.connector import COMPLETION_PLACEHOLDERS, ConnectorConfig, placeholders

#: Ticket statuses Zendesk orders new < open < pending < hold < solved < closed.
UNSOLVED = ("new", "open", "pending")
#: The agent-facing ticket page (the ticket's own ``url`` is its API address).
DEFAULT_AGENT_URL = "https://{subdomain}.zendesk.com/agent/tickets/{id}"


class ZendeskConfig(ConnectorConfig):
    """Settings of one Zendesk Support source."""

    subdomain: str = Field(
        description="The account's subdomain: acme for acme.zendesk.com (agent links use it)."
    )
    email: str | None = Field(
        default=None,
        description="Email of the agent whose API token is given (API-token auth).",
    )
    token: SecretStr | None = Field(
        default=None, description="Zendesk API token of that agent (with email)."
    )
    oauth_token: SecretStr | None = Field(
        default=None, description="An OAuth access token instead of email + token."
    )
    base_url: str | None = Field(
        default=None,
        description="API base URL (https only: zenpy speaks nothing else); default "
        "https://{subdomain}.zendesk.com. For a proxy, a host-mapped domain or tests.",
    )
    ca_bundle: str | None = Field(
        default=None,
        description="PEM file of the CA that signed base_url's certificate (a private CA).",
    )
    agent_url: Annotated[str, placeholders("subdomain", "id")] = Field(
        default=DEFAULT_AGENT_URL,
        description="Task link; placeholders {subdomain} and {id}.",
    )
    include_on_hold: bool = Field(
        default=False, description="Also sync tickets on hold (status hold)."
    )
    query: str | None = Field(
        default=None,
        description="Extra Zendesk search terms narrowing the backlog (e.g. 'group:Billing "
        "tags:vip'). With a query the source has no incremental fetch.",
    )
    view_id: int | None = Field(
        default=None,
        description="Take the backlog from this Zendesk view (its unsolved tickets) instead "
        "of a search. With a view the source has no incremental fetch.",
    )
    page_size: int = Field(
        default=100,
        ge=1,
        le=1000,
        description="Tickets per search-export page (Zendesk recommends 100; max 1000, "
        "second-hand).",
    )
    incremental_page_size: int = Field(
        default=1000, ge=1, le=1000, description="Tickets per incremental-export page (max 1000)."
    )
    sla_hours: float = Field(
        default=24.0,
        ge=0,
        description="due_at for a ticket without a due date: created_at plus this many "
        "hours (0: no due date).",
    )
    custom_fields: list[str] = Field(
        default_factory=list,
        description="Custom ticket fields (by title) to copy into the task; empty: every "
        "custom field that has a value.",
    )
    resolve_names: bool = Field(
        default=True,
        description="Look up group names, assignee names and requester emails (a few "
        "requests per run) instead of leaving ids.",
    )
    solve_status: str = Field(
        default="solved",
        description="Status the ticket gets when its task is completed in Fragment.",
    )
    completion_note: Annotated[str, placeholders(*COMPLETION_PLACEHOLDERS)] | None = Field(
        default=None,
        description="Internal note added on write-back; placeholders {done_at}, {uid}, {source}.",
    )
    requests_per_minute: int = Field(
        default=200,
        ge=1,
        description="The account's API limit this source allows itself (plans: 200-700+).",
    )
    export_requests_per_minute: int = Field(
        default=100, ge=1, description="Search-export requests per minute (Zendesk: 100)."
    )
    incremental_requests_per_minute: int = Field(
        default=10, ge=1, description="Incremental-export requests per minute (Zendesk: 10)."
    )
    update_requests_per_minute: int = Field(
        default=100, ge=1, description="Ticket updates per minute (Zendesk: 100)."
    )
    rate_limit_wait_seconds: float = Field(
        default=300.0,
        gt=0,
        description="Longest total time one request may spend waiting out 429s before "
        "the run fails (zenpy's own endless wait is off).",
    )
    retry_attempts: int = Field(
        default=8,
        ge=1,
        description="Tries per request on 429, 5xx, timeouts and dropped connections.",
    )
    cursor_overlap_seconds: float = Field(
        default=300.0,
        ge=0,
        description="Incremental fetches start this long before the cursor (the search "
        "index lags; unchanged tickets cost no writes).",
    )
    timeout: float = Field(default=30.0, gt=0, description="Seconds per HTTP request.")

    @field_validator("base_url")
    @classmethod
    def _https_host(cls, value: str | None) -> str | None:
        if value is None:
            return None
        parts = urlsplit(value)
        if parts.scheme != "https":
            raise ValueError(
                "base_url must start with https:// (zenpy builds only https URLs)"
            )
        if not parts.hostname or "." not in parts.hostname:
            raise ValueError(
                "base_url's host must contain a dot (zenpy addresses {subdomain}.{domain})"
            )
        if parts.path.strip("/") or parts.query:
            raise ValueError("base_url is scheme://host[:port] only (no path)")
        return value.rstrip("/")

    @field_validator("solve_status")
    @classmethod
    def _known_status(cls, value: str) -> str:
        value = value.strip().lower()
        if value not in ("open", "pending", "hold", "solved"):
            raise ValueError("solve_status must be one of open, pending, hold, solved")
        return value

    @model_validator(mode="after")
    def _credentials(self) -> ZendeskConfig:
        if self.oauth_token is None and (self.token is None or not self.email):
            raise ValueError("give email and token (an API token), or oauth_token")
        if self.view_id is not None and self.query:
            raise ValueError("give view_id or query, not both")
        if self.oauth_token is not None and self.token is not None:
            raise ValueError("give either email + token or oauth_token, not both")
        return self

    @property
    def api_url(self) -> str:
        """The API base URL in force."""
        return self.base_url or f"https://{self.subdomain}.zendesk.com"

    @property
    def statuses(self) -> tuple[str, ...]:
        """The ticket statuses that make up the backlog."""
        return (*UNSOLVED, "hold") if self.include_on_hold else UNSOLVED
