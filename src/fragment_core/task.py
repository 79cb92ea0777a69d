"""The Task write model (what we send to the Tasks API), its read model, and uid derivation.

A task's ``uid`` is derived, never stored: UUIDv5 of :data:`UID_NAMESPACE` and
``"{source}:{external_id}"``. Writes use the idempotent PUT, so a retry or a crash can
never create a duplicate.
"""

from __future__ import annotations

import functools
import hashlib
import json
import math
import re
import uuid
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, field_validator

from fragment_core.errors import BadRecordError

#: Fixed namespace of every task uid. Changing it would orphan every task ever synced.
UID_NAMESPACE = uuid.UUID("6f1c6a52-3f0e-5b8e-9a57-2b6f3c2f7d10")

#: Custom field in which the runner records the source name of each task it writes.
SOURCE_FIELD = "sync_source"


class TaskStatus(StrEnum):
    """Status of a task in the Tasks API."""

    TODO = "TODO"
    STARTED = "STARTED"
    DONE = "DONE"


def task_uid(source: str, external_id: str) -> uuid.UUID:
    """Derive the uid of the task for ``external_id`` in ``source``.

    >>> str(task_uid("support", "42"))[:8]
    'b4443d80'
    """
    return uuid.uuid5(UID_NAMESPACE, f"{source}:{external_id}")


_UID_PREFIX = UID_NAMESPACE.bytes


def task_uid_text(source: str, external_id: str) -> str:
    """``str(task_uid(source, external_id))``, without building a :class:`uuid.UUID`
    (the sync's hot path derives one per record)."""
    digest = bytearray(hashlib.sha1(_UID_PREFIX + f"{source}:{external_id}".encode()).digest())
    digest[6] = (digest[6] & 0x0F) | 0x50  # version 5
    digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
    h = digest[:16].hex()
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


def format_datetime(value: datetime) -> str:
    """ISO-8601 in UTC with a ``Z`` suffix and millisecond precision (the API's format)."""
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    elif value.tzinfo is not UTC:
        value = value.astimezone(UTC)
    return (
        f"{value.year:04d}-{value.month:02d}-{value.day:02d}T"
        f"{value.hour:02d}:{value.minute:02d}:{value.second:02d}."
        f"{value.microsecond // 1000:03d}Z"
    )


class UnreadableNumber:
    """A number a vendor sent that no JSON reader takes back (``Infinity``, ``NaN``, an
    integer of thousands of digits): kept in its record so mapping it fails by name."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text

    def __repr__(self) -> str:
        text = self.text
        shown = text if len(text) <= 20 else f"{text[:12]}... ({len(text)} characters)"
        return f"UnreadableNumber({shown})"

    __str__ = __repr__


def normalize_value(value: Any) -> Any:
    """Normalize a JSON-able value so equal content always serializes the same way.

    Datetimes become UTC ISO strings; integral floats become ints; NaN/inf are refused;
    tuples become lists; mapping keys become strings.
    """
    kind = type(value)
    if kind is str or kind is int or kind is bool or value is None:  # the common case, first
        return value
    if isinstance(value, datetime):
        return format_datetime(value)
    if isinstance(value, date):
        return value.isoformat()
    if isinstance(value, bool) or value is None or isinstance(value, (int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError(f"non-finite number {value!r} cannot be sent to the Tasks API")
        return int(value) if value.is_integer() else value
    if isinstance(value, dict):
        return {str(k): normalize_value(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [normalize_value(v) for v in value]
    if isinstance(value, uuid.UUID):
        return str(value)
    if isinstance(value, StrEnum):
        return value.value
    if isinstance(value, UnreadableNumber):
        raise ValueError(f"{value} is not a number the Tasks API accepts")
    raise ValueError(f"value of type {type(value).__name__} is not JSON-serializable")


class TaskFields(BaseModel):
    """The ``fields`` of a task: ``title``, ``url``, ``external_id`` and any custom keys."""

    model_config = ConfigDict(extra="allow")

    title: str = Field(min_length=1, description="Human-readable title shown to operators.")
    url: str | None = Field(
        default=None, description="Link the Fragment player opens when the task is played."
    )
    external_id: str = Field(
        min_length=1, description="The record's id in its source; part of the task's uid."
    )

    @field_validator("external_id", mode="before")
    @classmethod
    def _id_as_text(cls, value: Any) -> Any:
        value = str(value) if isinstance(value, int) and not isinstance(value, bool) else value
        if isinstance(value, str) and "\x00" in value:
            raise ValueError("the id contains a NUL character, which no state store can keep")
        return value

    @property
    def custom(self) -> dict[str, Any]:
        """The custom fields (everything but title, url and external_id)."""
        return dict(self.__pydantic_extra__ or {})


def _api_fields(fields: TaskFields) -> dict[str, Any]:
    """The normalized ``fields`` of a body, ``None`` values left out.

    A value that cannot be sent (a non-finite number, ...) is a :class:`BadRecordError`
    naming the record and the field.
    """
    plain = {**fields.__dict__, **(fields.__pydantic_extra__ or {})}
    try:
        return {k: normalize_value(v) for k, v in plain.items() if v is not None}
    except ValueError:
        # a custom field holding a model or dataclass: let pydantic turn it into data first
        dumped = fields.model_dump()
        normalized = {}
        for key, value in dumped.items():
            if value is None:
                continue
            try:
                normalized[key] = normalize_value(value)
            except ValueError as exc:
                raise BadRecordError(
                    str(exc), record_id=fields.external_id, field=f"fields.{key}"
                ) from None
        return normalized


def _unsendable(content: dict[str, Any], exc: BaseException) -> BadRecordError:
    """The :class:`BadRecordError` of a body ``json.dumps`` refused, naming the field."""
    given = content.get("fields")
    fields: dict[str, Any] = given if isinstance(given, dict) else {}
    record_id = fields.get("external_id")
    reason = "nested too deeply" if isinstance(exc, RecursionError) else str(exc)
    for name, group in (("fields.", fields), ("", content)):
        for key, value in group.items():
            try:
                json.dumps(value)
            except (ValueError, RecursionError):
                return BadRecordError(
                    f"cannot be sent as JSON: {reason}",
                    record_id=record_id if isinstance(record_id, str) else None,
                    field=f"{name}{key}",
                )
    return BadRecordError(f"cannot be sent as JSON: {reason}")


def _in_range(value: datetime | None) -> datetime | None:
    """``value`` if it has a UTC form (``0001-01-01T00:00:00+01:00`` has none)."""
    if value is not None and value.tzinfo is not None:
        try:
            value.astimezone(UTC)
        except OverflowError:
            raise ValueError(
                f"{value.isoformat()} is out of range (no such instant in UTC)"
            ) from None
    return value


class Task(BaseModel):
    """A task as we write it to the Tasks API (its write model).

    Connectors build one per record, usually through :meth:`Task.new`.
    """

    model_config = ConfigDict(extra="forbid")

    uid: uuid.UUID | None = None
    fields: TaskFields
    status: TaskStatus | None = None
    due_at: AwareDatetime | None = None
    queue_uid: uuid.UUID | None = None
    skills: list[uuid.UUID] | None = None
    assignee_email: str | None = None
    external_status: TaskStatus | None = None
    external_created_at: AwareDatetime | None = None
    external_updated_at: AwareDatetime | None = None

    @field_validator("due_at", "external_created_at", "external_updated_at")
    @classmethod
    def _has_utc_form(cls, value: datetime | None) -> datetime | None:
        return _in_range(value)

    @classmethod
    def new(
        cls,
        *,
        external_id: str | int,
        title: str,
        url: str | None = None,
        due_at: datetime | None = None,
        custom: dict[str, Any] | None = None,
        **attributes: Any,
    ) -> Task:
        """Build a task from the usual parts; ``attributes`` are the other Task fields."""
        fields = {"title": title, "url": url, "external_id": external_id, **(custom or {})}
        if due_at is not None and due_at.tzinfo is None:
            due_at = due_at.replace(tzinfo=UTC)
        return cls(fields=TaskFields(**fields), due_at=due_at, **attributes)

    @property
    def external_id(self) -> str:
        """The record's id in its source."""
        return self.fields.external_id

    def for_source(self, source: str) -> Task:
        """Return a copy with the derived uid and the source recorded in the fields."""
        # The fields are valid already: copy them with the source added (an extra key)
        # rather than validating them again.
        fields = self.fields.model_copy(update={SOURCE_FIELD: source})
        return self.model_copy(update={"uid": task_uid(source, self.external_id), "fields": fields})

    def api_body(self, source: str) -> dict[str, Any]:
        """``self.for_source(source).to_api()``, without building the copy (hot path)."""
        body = self.to_api()
        body["uid"] = task_uid_text(source, self.external_id)
        body["fields"][SOURCE_FIELD] = source
        return body

    def to_api(self) -> dict[str, Any]:
        """The JSON body for PUT/POST: normalized, ``None`` values left out."""
        body: dict[str, Any] = {}
        values = self.__dict__
        for name in _field_names(type(self)):
            value = values[name]
            if value is None:
                continue
            if name == "fields":
                body[name] = _api_fields(value)
            else:
                body[name] = normalize_value(value)
        return body

    def content_hash(self) -> str:
        """A stable hash of the normalized content (uid and status excluded).

        Key order, float formatting (``1.0`` vs ``1``) and time zones of equal instants
        never change it.
        """
        return body_hash(self.to_api())


_PLAIN_UID = re.compile(r"[0-9a-fA-F-]{1,64}")


@functools.cache
def _field_names(model: type[BaseModel]) -> tuple[str, ...]:
    return tuple(model.model_fields)


def body_hash(body: dict[str, Any]) -> str:
    """:meth:`Task.content_hash` of the task whose :meth:`Task.to_api` body is ``body``
    (for callers that need the body too: it is built once)."""
    return hashed_body(body)[0]


def hashed_body(body: dict[str, Any]) -> tuple[str, bytes]:
    """``(body_hash(body), wire)``: the content hash and the body as compact JSON, from
    one serialization (the hot path of a sync hashes every body and sends the changed
    ones). ``wire`` holds the same keys as ``body``, sorted except ``uid`` and ``status``,
    which come first."""
    content = {k: v for k, v in body.items() if k != "uid" and k != "status"}
    try:
        text = json.dumps(content, sort_keys=True, separators=(",", ":"), ensure_ascii=False)
    except (ValueError, RecursionError) as exc:  # an integer of too many digits, ...
        raise _unsendable(content, exc) from None
    encoded = text.encode()
    digest = hashlib.blake2b(encoded, digest_size=16).hexdigest()
    head = {k: body[k] for k in ("uid", "status") if k in body}
    if not head:
        return digest, encoded
    uid = head.get("uid")
    if len(head) == 1 and type(uid) is str and _PLAIN_UID.fullmatch(uid):
        prefix = b'{"uid":"' + uid.encode() + b'"}'  # the common case, without a dumps
    else:
        prefix = json.dumps(head, separators=(",", ":"), ensure_ascii=False).encode()
    if encoded == b"{}":
        return digest, prefix
    return digest, prefix[:-1] + b"," + encoded[1:]


class TaskBody:
    """A task in its wire form: the body of :meth:`Task.to_api`, kept as compact JSON.

    A fifth of the memory of a :class:`Task` (a plan may hold a whole backlog's writes),
    and it goes to the Tasks API without being serialized again: writers that take a
    :class:`Task` take a ``TaskBody`` too (``to_api``, ``uid`` and ``external_id``).
    """

    __slots__ = ("_json", "external_id", "uid")

    def __init__(
        self,
        body: dict[str, Any] | None,
        *,
        external_id: str,
        uid: uuid.UUID | str | None,
        wire: bytes | None = None,
    ) -> None:
        """``wire``: ``body`` already serialized (see :func:`hashed_body`); then ``body``
        may be ``None``."""
        if wire is None:
            wire = json.dumps(body, separators=(",", ":"), ensure_ascii=False).encode()
        self._json = wire
        self.external_id = external_id
        self.uid = uid

    @classmethod
    def of(cls, task: Task) -> TaskBody:
        """The wire form of ``task``."""
        return cls(task.to_api(), external_id=task.external_id, uid=task.uid)

    def to_api(self) -> dict[str, Any]:
        """The JSON body, as :meth:`Task.to_api` returned it."""
        return json.loads(self._json)

    @property
    def wire(self) -> bytes:
        """The JSON body, serialized (UTF-8)."""
        return self._json

    def task(self) -> Task:
        """The task again (equal content, equal :meth:`Task.content_hash`)."""
        return Task.model_validate_json(self._json)

    def with_status(self, status: TaskStatus) -> TaskBody:
        """A copy whose body sets ``status``."""
        return TaskBody(
            {**self.to_api(), "status": status.value}, external_id=self.external_id, uid=self.uid
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, TaskBody):
            return NotImplemented
        return self._json == other._json

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"TaskBody(external_id={self.external_id!r}, uid={self.uid!r})"


class RemoteTask(BaseModel):
    """A task as the Tasks API returns it (its read model; unknown keys are kept)."""

    model_config = ConfigDict(extra="allow")

    uid: uuid.UUID
    status: TaskStatus = TaskStatus.TODO
    archived: bool = False
    fields: dict[str, Any] = Field(default_factory=dict)
    due_at: datetime | None = None
    queue_uid: uuid.UUID | None = None
    skills: list[uuid.UUID] | None = None
    assignee_uid: uuid.UUID | None = None
    form_data: dict[str, Any] | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None
    started_at: datetime | None = None
    done_at: datetime | None = None
    external_status: TaskStatus | None = None
    external_created_at: datetime | None = None
    external_updated_at: datetime | None = None

    @property
    def title(self) -> str | None:
        """``fields.title``."""
        return self.fields.get("title")

    @property
    def external_id(self) -> str | None:
        """``fields.external_id``, when the task was written by fragment-core."""
        value = self.fields.get("external_id")
        return None if value is None else str(value)

    @property
    def source(self) -> str | None:
        """The source that wrote this task, from ``fields.sync_source``."""
        return self.fields.get(SOURCE_FIELD)
