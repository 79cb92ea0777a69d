"""Options of an ``intercom`` source (``[sources.options]`` in fragment.toml)."""

from __future__ import annotations

from datetime import timedelta
from typing import Annotated, Any, Literal

from pydantic import Field, SecretStr, field_validator

from fragment_core.config import parse_duration
from fragment_core.connector import (
    COMPLETION_PLACEHOLDERS,
    BaseUrl,
    ConnectorConfig,
    placeholders,
)

#: Intercom's regional API hosts (the SDK's ``IntercomEnvironment``).
REGION_URLS = {
    "us": "https://api.intercom.io",
    "eu": "https://api.eu.intercom.io",
    "au": "https://api.au.intercom.io",
}
#: The API version every request pins (``Intercom-Version``); the SDK is generated from it.
DEFAULT_API_VERSION = "2.14"
#: The conversation in the Intercom inbox. Second-hand (public code, not an Intercom doc).
DEFAULT_URL_TEMPLATE = (
    "https://app.intercom.com/a/inbox/{app_id}/inbox/conversation/{conversation_id}"
)
#: Intercom's search page-size maximum.
MAX_PAGE_SIZE = 150


class IntercomConfig(ConnectorConfig):
    """Settings of one Intercom source."""

    access_token: SecretStr = Field(
        description="Access token of an Intercom app (Developer Hub > your app > "
        "Authentication); needs the Read conversations, Write conversations and Read admins "
        "permissions."
    )
    region: Literal["us", "eu", "au"] = Field(
        default="us",
        description="Where the workspace is hosted: us (api.intercom.io), eu or au. Picks the "
        "API host unless base_url is set, and is checked against the workspace's region.",
    )
    base_url: BaseUrl | None = Field(
        default=None,
        description="Intercom API base URL (a proxy, a test server); overrides region's host.",
    )
    api_version: str = Field(
        default=DEFAULT_API_VERSION,
        description="Intercom-Version header sent on every request (the SDK sends none).",
    )
    include_snoozed: bool = Field(
        default=False, description="Snoozed conversations are in the backlog too."
    )
    team_ids: list[str] = Field(
        default_factory=list, description="Only conversations assigned to one of these teams."
    )
    admin_ids: list[str] = Field(
        default_factory=list,
        description="Only conversations assigned to one of these admins (teammates).",
    )
    tag_ids: list[str] = Field(
        default_factory=list, description="Only conversations carrying one of these tags."
    )
    app_id: str | None = Field(
        default=None,
        description="Workspace code (app id_code) for inbox links; read once from /me if unset.",
    )
    url_template: Annotated[str, placeholders("app_id", "conversation_id")] = Field(
        default=DEFAULT_URL_TEMPLATE,
        description="Conversation link; placeholders {app_id}, {conversation_id}.",
    )
    admin_id: str | None = Field(
        default=None,
        description="Admin (teammate) id that closes conversations on write-back; the token's "
        "own admin (from /me) if unset.",
    )
    close_note: Annotated[str, placeholders(*COMPLETION_PLACEHOLDERS)] | None = Field(
        default=None,
        description="Note left on the conversation when it is closed; placeholders "
        "{done_at}, {uid}, {source}.",
    )
    title_max_chars: int = Field(
        default=120, ge=10, description="Titles (subject or first message) are cut to this."
    )
    sla_targets: dict[str, timedelta] = Field(
        default_factory=dict,
        description='Response target per Intercom SLA name ({"VIP" = "1h"}): a conversation '
        "with that SLA applied is due this long after the customer started waiting.",
    )
    default_sla: timedelta | None = Field(
        default=None,
        description='Due this long after the customer started waiting ("4h") when no '
        "sla_targets entry applies; no due date if unset.",
    )
    page_size: int = Field(
        default=MAX_PAGE_SIZE,
        ge=1,
        le=MAX_PAGE_SIZE,
        description="Conversations per search request (Intercom: at most 150).",
    )
    cursor_overlap_seconds: float = Field(
        default=60.0,
        ge=0,
        description="Incremental fetches start this many seconds before the cursor, for "
        "changes the search index showed late (unchanged conversations cost no writes).",
    )
    requests_per_minute: float = Field(
        default=0,
        ge=0,
        description="Requests per minute this source allows itself (0 = only Intercom's "
        "X-RateLimit headers pace it; Intercom allows 10,000 a minute per app).",
    )
    max_attempts: int | None = Field(
        default=None,
        ge=1,
        description="Tries per request on 5xx, timeouts and 429s; unset = the runner's "
        "default (8 within 10 minutes; fragment check tries twice).",
    )
    timeout: float = Field(default=30.0, gt=0, description="Seconds per HTTP request.")

    @field_validator("sla_targets", mode="before")
    @classmethod
    def _durations(cls, value: Any) -> Any:
        if isinstance(value, dict):
            return {str(name): parse_duration(target) for name, target in value.items()}
        return value

    @field_validator("default_sla", mode="before")
    @classmethod
    def _duration(cls, value: Any) -> Any:
        return None if value is None else parse_duration(value)

    @field_validator("team_ids", "admin_ids", "tag_ids", mode="before")
    @classmethod
    def _ids(cls, value: Any) -> Any:
        if isinstance(value, list):
            return [str(item).strip() for item in value]
        return value

    @property
    def api_base_url(self) -> str:
        """The base URL requests go to: ``base_url``, else the region's host."""
        return self.base_url or REGION_URLS[self.region]
