"""Request and response bodies of the sandbox's Tasks API (they make up ``/openapi.json``)."""

from __future__ import annotations

import math
import uuid
from datetime import UTC, datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from fragment_core.task import TaskStatus


def to_utc(value: datetime) -> datetime:
    """A datetime in UTC (naive values are read as UTC); out-of-range values are refused."""
    if value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    try:
        return value.astimezone(UTC)
    except OverflowError as exc:
        raise ValueError("date is out of range once converted to UTC") from exc


def format_timestamp(value: datetime) -> str:
    """ISO-8601 UTC with microseconds and a ``Z`` (how the sandbox writes every timestamp)."""
    text = to_utc(value).replace(tzinfo=None).isoformat(timespec="microseconds")
    return text + "Z"  # isoformat, unlike strftime, pads years below 1000


def check_json_value(value: Any, where: str) -> None:
    """Refuse NaN and infinities anywhere in a JSON value (they are not JSON)."""
    if isinstance(value, float) and not math.isfinite(value):
        raise ValueError(f"{where}: {value!r} is not a valid JSON number")
    if isinstance(value, dict):
        for key, item in value.items():
            check_json_value(item, f"{where}.{key}")
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_json_value(item, f"{where}[{index}]")


class _TaskAttributes(BaseModel):
    """Top-level task attributes a client may write (all optional)."""

    model_config = ConfigDict(extra="forbid")

    status: TaskStatus = Field(default=None, description="TODO, STARTED or DONE.")  # type: ignore[assignment]
    archived: bool = Field(default=None)  # type: ignore[assignment]
    due_at: datetime = Field(default=None, description="Defaults to now on create.")  # type: ignore[assignment]
    queue_uid: uuid.UUID | None = None
    skills: list[uuid.UUID] | None = None
    assignee_uid: uuid.UUID | None = None
    assignee_email: str | None = Field(
        default=None, description="Write-only: assigns the user with this email."
    )
    form_data: dict[str, Any] | None = Field(
        default=None, description="What an operator filled in (the sandbox's outcome lands here)."
    )
    form_type: str | None = None
    case_uid: uuid.UUID | None = None
    parent_uid: uuid.UUID | None = None
    snooze_expires_at: datetime | None = None
    legacy_data: dict[str, Any] | None = None
    external_status: TaskStatus | None = None
    external_created_at: datetime | None = None
    external_updated_at: datetime | None = None
    external_status_updated_at: datetime | None = None
    external_assignee_uid: uuid.UUID | None = None

    @field_validator(
        "due_at",
        "snooze_expires_at",
        "external_created_at",
        "external_updated_at",
        "external_status_updated_at",
    )
    @classmethod
    def _utc(cls, value: datetime | None) -> datetime | None:
        return None if value is None else to_utc(value)

    @field_validator("form_data", "legacy_data")
    @classmethod
    def _finite(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        if value is not None:
            check_json_value(value, "value")
        return value


def _check_fields(fields: dict[str, Any], *, require_title: bool) -> dict[str, Any]:
    if "title" in fields or require_title:
        title = fields.get("title")
        if not isinstance(title, str) or not title.strip():
            raise ValueError("fields.title is required and must be a non-empty string")
    url = fields.get("url")
    if url is not None and not isinstance(url, str):
        raise ValueError("fields.url must be a string or null")
    check_json_value(fields, "fields")
    return fields


class TaskWrite(_TaskAttributes):
    """Body of ``POST /tasks`` and ``PUT /tasks/{uid}``: ``fields.title`` is required."""

    uid: uuid.UUID | None = Field(
        default=None, description="The caller's uid; POST picks a new one when absent."
    )
    fields: dict[str, Any] = Field(
        description="title (required), url (optional) and any custom keys.",
        json_schema_extra={
            "required": ["title"],
            "properties": {
                "title": {"type": "string", "minLength": 1, "pattern": r"\S"},
                "url": {"type": ["string", "null"]},
            },
        },
    )

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: dict[str, Any]) -> dict[str, Any]:
        return _check_fields(value, require_title=True)


class TaskPatch(_TaskAttributes):
    """Body of ``PATCH /tasks/{uid}``: only what changes; ``fields`` merges shallowly."""

    uid: uuid.UUID | None = None
    fields: dict[str, Any] | None = Field(
        default=None, description="Keys to set; other keys of the task's fields are kept."
    )

    @field_validator("fields")
    @classmethod
    def _fields(cls, value: dict[str, Any] | None) -> dict[str, Any] | None:
        return None if value is None else _check_fields(value, require_title=False)


class TaskPatchItem(TaskPatch):
    """One item of ``PATCH /tasks/batch``: a patch carrying the task's uid."""

    @model_validator(mode="after")
    def _uid(self) -> TaskPatchItem:
        if self.uid is None:
            raise ValueError("uid is required in a PATCH batch item")
        return self


class TaskPutItem(TaskWrite):
    """One item of ``PUT /tasks/batch``: a full task carrying its uid."""

    @model_validator(mode="after")
    def _uid(self) -> TaskPutItem:
        if self.uid is None:
            raise ValueError("uid is required in a PUT batch item")
        return self


class Assignee(BaseModel):
    """The embedded assignee of a task."""

    uid: uuid.UUID
    email: str | None = None


class Task(BaseModel):
    """A task as the sandbox returns it (the read model)."""

    uid: uuid.UUID
    status: TaskStatus
    archived: bool
    fields: dict[str, Any]
    due_at: datetime
    queue_uid: uuid.UUID | None
    skills: list[uuid.UUID]
    assignee_uid: uuid.UUID | None
    assignee: Assignee | None
    form_data: dict[str, Any] | None
    form_type: str | None
    case_uid: uuid.UUID | None
    parent_uid: uuid.UUID | None
    snooze_expires_at: datetime | None
    legacy_data: dict[str, Any] | None
    external_status: TaskStatus | None
    external_created_at: datetime | None
    external_updated_at: datetime | None
    external_status_updated_at: datetime | None
    external_assignee_uid: uuid.UUID | None
    created_at: datetime
    updated_at: datetime
    started_at: datetime | None
    done_at: datetime | None


class PageMeta(BaseModel):
    """Pagination block of ``GET /tasks``."""

    limit: int
    self_cursor: str | None
    prev_cursor: str | None = Field(description="Always null: pages go forward only.")
    next_cursor: str | None = Field(description="Pass as ?cursor= for the next page.")
    total_count: int = Field(description="Tasks matching the filters, across all pages.")


class TaskPage(BaseModel):
    """One page of ``GET /tasks``."""

    items: list[Task]
    meta: PageMeta


class BatchRequest(BaseModel):
    """Body of ``POST|PUT|PATCH /tasks/batch``.

    Each item is validated on its own (POST/PUT: a TaskWrite, PUT and PATCH items need
    their ``uid``); an invalid item is reported in ``errors`` and the others are applied.
    """

    model_config = ConfigDict(extra="forbid")

    items: list[dict[str, Any]]
    meta: dict[str, Any] | None = Field(default=None, description="Accepted and ignored.")


class ItemError(BaseModel):
    """One refused item of a batch."""

    index: int = Field(description="Position of the item in the request's items.")
    uid: uuid.UUID | None
    status: int = Field(description="What a single request would have answered (404/409/422).")
    detail: str


class BatchResponse(BaseModel):
    """Result of a batch: the tasks written, in request order, and the refused items."""

    items: list[Task]
    errors: list[ItemError]


class Account(BaseModel):
    """``GET /accounts/me``."""

    uid: uuid.UUID
    name: str
    email: str
    role: str


class ErrorMessage(BaseModel):
    """Error body of 401, 404, 409 and 429 responses."""

    detail: str
