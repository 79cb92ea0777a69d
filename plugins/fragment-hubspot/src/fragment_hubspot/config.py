"""Options of a ``hubspot`` source (``[sources.options]`` in fragment.toml)."""

from __future__ import annotations

from typing import Annotated

from pydantic import Field, SecretStr, StringConstraints

from fragment_core.connector import (
    COMPLETION_PLACEHOLDERS,
    BaseUrl,
    ConnectorConfig,
    placeholders,
)

#: An option value compared in upper case (HubSpot's enumerations: CALL, HIGH...).
Upper = Annotated[str, StringConstraints(strip_whitespace=True, to_upper=True)]

#: HubSpot's API base. Tests point the SDK elsewhere through ``base_url``.
DEFAULT_BASE_URL = "https://api.hubapi.com"
#: Task record page in the HubSpot app (tasks are object type 0-27). Second-hand: see README.
DEFAULT_URL_TEMPLATE = "https://{app_host}/contacts/{portal_id}/record/0-27/{task_id}"


class HubSpotConfig(ConnectorConfig):
    """Settings of one HubSpot source."""

    access_token: SecretStr = Field(
        description="Private app or OAuth access token (needs crm.objects.contacts.read/write)."
    )
    portal_id: int | None = Field(
        default=None,
        description="HubSpot account (portal) id for task links; read from account-info if unset.",
    )
    app_host: str | None = Field(
        default=None,
        description="Host of the HubSpot app in links (app.hubspot.com, app-eu1.hubspot.com); "
        "from account-info's uiDomain if unset.",
    )
    url_template: Annotated[str, placeholders("app_host", "portal_id", "task_id")] = Field(
        default=DEFAULT_URL_TEMPLATE,
        description="Task link; placeholders {app_host}, {portal_id}, {task_id}.",
    )
    base_url: BaseUrl = Field(default=DEFAULT_BASE_URL, description="HubSpot API base URL.")
    owner_ids: list[str] = Field(
        default_factory=list, description="Only tasks of these owners (hubspot_owner_id)."
    )
    queue_ids: list[str] = Field(
        default_factory=list, description="Only tasks in one of these task queues."
    )
    task_types: list[Upper] = Field(
        default_factory=list, description="Only these hs_task_type values (EMAIL, CALL, TODO)."
    )
    priorities: list[Upper] = Field(
        default_factory=list, description="Only these hs_task_priority values (LOW, MEDIUM, HIGH)."
    )
    extra_properties: list[str] = Field(
        default_factory=list,
        description="More task properties to fetch; each becomes a custom field of its name.",
    )
    associations: list[str] = Field(
        default_factory=list,
        description="Object types whose associated record ids become custom fields "
        "(e.g. contacts, companies, deals): associated_contacts, ...",
    )
    body_max_chars: int = Field(
        default=500, ge=0, description="Plain-text task body is cut to this many characters."
    )
    page_size: int = Field(default=200, ge=1, le=200, description="Results per search request.")
    search_result_cap: int = Field(
        default=10_000,
        ge=1,
        description="Results one search query can page through (HubSpot: 10,000).",
    )
    search_requests_per_second: float = Field(
        default=4.0,
        ge=0,
        description="Search calls per second this source allows itself (HubSpot: ~4-5); 0 = off.",
    )
    cursor_overlap_seconds: float = Field(
        default=60.0,
        ge=0,
        description="Incremental fetches start this many seconds before the cursor, for "
        "changes HubSpot's search index showed late (unchanged tasks cost no writes).",
    )
    completion_note: Annotated[str, placeholders(*COMPLETION_PLACEHOLDERS)] | None = Field(
        default=None,
        description="Text appended to the task body on write-back; placeholders "
        "{done_at}, {uid}, {source}.",
    )
    timeout: float = Field(default=30.0, gt=0, description="Seconds per HTTP request.")
