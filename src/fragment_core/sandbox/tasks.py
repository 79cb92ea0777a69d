"""How the sandbox creates and changes a task: defaults, merge rules, status timestamps.

A stored task is a plain JSON-able dict in the read-model shape (see ``schemas.Task``).
Every function returns a new dict; an update that changes nothing returns the old dict
itself, so callers can tell "unchanged" by identity and keep ``updated_at``.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

from fragment_core.sandbox.schemas import TaskPatch, TaskWrite, format_timestamp
from fragment_core.task import TaskStatus

#: Namespace of the assignee uid derived from an ``assignee_email``.
ASSIGNEE_NAMESPACE = uuid.UUID("3a0d6c0e-7e53-5d55-a1b1-5b0d5cf3e6a1")

_DATETIME_ATTRIBUTES = (
    "due_at",
    "snooze_expires_at",
    "external_created_at",
    "external_updated_at",
    "external_status_updated_at",
)


def now_text() -> str:
    """The current time as the sandbox writes timestamps."""
    return format_timestamp(datetime.now(UTC))


def empty_task(uid: uuid.UUID, now: str) -> dict[str, Any]:
    """A task with every read-model key at its create-time default."""
    return {
        "uid": str(uid),
        "status": TaskStatus.TODO.value,
        "archived": False,
        "fields": {},
        "due_at": now,
        "queue_uid": None,
        "skills": [],
        "assignee_uid": None,
        "assignee": None,
        "form_data": None,
        "form_type": None,
        "case_uid": None,
        "parent_uid": None,
        "snooze_expires_at": None,
        "legacy_data": None,
        "external_status": None,
        "external_created_at": None,
        "external_updated_at": None,
        "external_status_updated_at": None,
        "external_assignee_uid": None,
        "created_at": now,
        "updated_at": now,
        "started_at": None,
        "done_at": None,
    }


def _changes(body: TaskWrite | TaskPatch) -> dict[str, Any]:
    """The attributes the body sets, as JSON values (``uid`` and ``fields`` excluded)."""
    changes: dict[str, Any] = {}
    for name in body.model_fields_set - {"uid", "fields"}:
        value = getattr(body, name)
        if name in _DATETIME_ATTRIBUTES:
            value = None if value is None else format_timestamp(value)
        elif isinstance(value, uuid.UUID):
            value = str(value)
        elif isinstance(value, TaskStatus):
            value = value.value
        elif name == "skills":
            value = [str(skill) for skill in value or []]
        changes[name] = value
    if "due_at" in changes and changes["due_at"] is None:
        del changes["due_at"]
    email = changes.pop("assignee_email", None)
    if email:
        changes["assignee_uid"] = str(uuid.uuid5(ASSIGNEE_NAMESPACE, email.strip().lower()))
        changes["assignee"] = {"uid": changes["assignee_uid"], "email": email}
    elif "assignee_uid" in changes:
        uid = changes["assignee_uid"]
        changes["assignee"] = None if uid is None else {"uid": uid, "email": None}
    return changes


def _apply(
    old: dict[str, Any], changes: dict[str, Any], fields: dict[str, Any], now: str
) -> dict[str, Any]:
    task = dict(old)
    task.update(changes)
    task["fields"] = fields
    if task["status"] != old["status"]:
        if task["status"] == TaskStatus.STARTED.value:
            task["started_at"] = now
            task["done_at"] = None
        elif task["status"] == TaskStatus.DONE.value:
            task["done_at"] = now
            task["started_at"] = task["started_at"] or now
        else:
            task["done_at"] = None
    if task == old:
        return old
    task["updated_at"] = now
    return task


def create(body: TaskWrite, uid: uuid.UUID, now: str) -> dict[str, Any]:
    """A new task from a POST/PUT body; defaults: status TODO, due_at now."""
    base = empty_task(uid, now)
    task = _apply(base, _changes(body), dict(body.fields), now)
    task["updated_at"] = now
    return task


def replace(old: dict[str, Any], body: TaskWrite, now: str) -> dict[str, Any]:
    """PUT on an existing task: ``fields`` replaced wholesale, other given attributes set,
    attributes absent from the body kept (status, form_data, assignee...)."""
    return _apply(old, _changes(body), dict(body.fields), now)


def patch(old: dict[str, Any], body: TaskPatch, now: str) -> dict[str, Any]:
    """PATCH: given attributes set; ``fields`` merged shallowly into the task's fields."""
    fields = dict(old["fields"])
    if body.fields is not None:
        fields.update(body.fields)
    return _apply(old, _changes(body), fields, now)
