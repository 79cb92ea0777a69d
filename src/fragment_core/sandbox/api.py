"""The ``/api/v1`` routes of the sandbox (every one requires the bearer token)."""

from __future__ import annotations

import json
import secrets
import uuid
from collections.abc import Callable
from datetime import datetime
from typing import Annotated, Any, Literal, TypeVar

from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import TypeAdapter, ValidationError

from fragment_core.sandbox import tasks
from fragment_core.sandbox.schemas import (
    Account,
    BatchRequest,
    BatchResponse,
    ErrorMessage,
    Task,
    TaskPage,
    TaskPatch,
    TaskPatchItem,
    TaskPutItem,
    TaskWrite,
    format_timestamp,
)
from fragment_core.sandbox.settings import DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE, SandboxSettings
from fragment_core.sandbox.store import (
    FIELD_KEY,
    CursorError,
    OrderBy,
    TaskFilter,
    TaskStore,
    decode_cursor,
)
from fragment_core.task import TaskStatus

ItemT = TypeVar("ItemT")

_bearer = HTTPBearer(auto_error=False, description="API token: Authorization: Bearer <token>")

_COMMON_RESPONSES: dict[int | str, dict[str, Any]] = {
    400: {"model": ErrorMessage, "description": "Body could not be read"},
    401: {"model": ErrorMessage, "description": "Missing or invalid bearer token"},
    429: {"model": ErrorMessage, "description": "Rate limit exceeded (see Retry-After)"},
}
_NOT_FOUND: dict[int | str, dict[str, Any]] = {
    404: {"model": ErrorMessage, "description": "No task with this uid"}
}


def validation_error(loc: list[str | int], msg: str, kind: str = "value_error") -> Exception:
    """A 422 in FastAPI's shape: ``{"detail": [{"loc", "msg", "type"}]}``."""
    return RequestValidationError([{"loc": tuple(loc), "msg": msg, "type": kind}])


def json_response(content: str | bytes) -> Response:
    """A 200 JSON response from text the sandbox already serialized."""
    return Response(content=content, media_type="application/json")


def _dump(task: dict[str, Any]) -> str:
    return json.dumps(task, separators=(",", ":"))


def _item_message(error: ValidationError) -> str:
    parts = []
    for item in error.errors():
        loc = ".".join(str(part) for part in item["loc"]) or "item"
        parts.append(f"{loc}: {item['msg']}")
    return "; ".join(parts)


def _raw_uid(item: Any) -> uuid.UUID | None:
    try:
        return uuid.UUID(str(item.get("uid"))) if isinstance(item, dict) else None
    except ValueError:
        return None


def build_router(settings: SandboxSettings, store: TaskStore) -> APIRouter:
    """The API routes bound to one store and one token."""
    router = APIRouter(
        prefix="/api/v1",
        dependencies=[Depends(_authenticator(settings))],
        responses=_COMMON_RESPONSES,
    )
    _add_account_route(router, store)
    # Batch routes come before /tasks/{uid} so "batch" is never read as a uid.
    _add_batch_routes(router, settings, store)
    _add_task_routes(router, settings, store)
    _add_list_route(router, store)
    return router


def _authenticator(settings: SandboxSettings) -> Callable[..., None]:
    """The dependency refusing a request without the sandbox's bearer token (401)."""
    expected = settings.token.get_secret_value().encode()

    def authenticate(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> None:
        given = credentials.credentials.encode() if credentials else b""
        if not secrets.compare_digest(given, expected):
            raise HTTPException(
                401, "missing or invalid bearer token", headers={"WWW-Authenticate": "Bearer"}
            )

    return authenticate


def _add_account_route(router: APIRouter, store: TaskStore) -> None:
    """``GET /accounts/me``."""
    account_uid = store.account_uid

    @router.get("/accounts/me", response_model=Account, tags=["accounts"])
    async def me() -> Account:
        """The account the token belongs to."""
        return Account(
            uid=account_uid,
            name=f"Sandbox account {str(account_uid)[:8]}",
            email="sandbox@example.com",
            role="super_admin",
        )


def _add_batch_routes(router: APIRouter, settings: SandboxSettings, store: TaskStore) -> None:
    """``POST``, ``PUT`` and ``PATCH /tasks/batch``."""
    write_adapter = TypeAdapter(TaskWrite)
    put_adapter = TypeAdapter(TaskPutItem)
    patch_adapter = TypeAdapter(TaskPatchItem)

    @router.post("/tasks/batch", response_model=BatchResponse, tags=["tasks"])
    async def create_batch(body: BatchRequest) -> Response:
        """Create many tasks; an item with a taken uid or invalid content is refused alone."""
        parsed, errors = _parse_batch(body, write_adapter, settings.max_batch)
        written = _create_many(store, parsed, errors, settings.post_conflict_status)
        return _batch_response(written, errors)

    @router.put("/tasks/batch", response_model=BatchResponse, tags=["tasks"])
    async def upsert_batch(body: BatchRequest) -> Response:
        """Create or replace many tasks by uid (idempotent); invalid items refused alone."""
        parsed, errors = _parse_batch(body, put_adapter, settings.max_batch)
        return _batch_response(_upsert_many(store, parsed), errors)

    @router.patch(
        "/tasks/batch", response_model=BatchResponse, tags=["tasks"], responses=_NOT_FOUND
    )
    async def patch_batch(body: BatchRequest) -> Response:
        """Update many tasks by uid; an unknown uid or invalid item is refused alone."""
        parsed, errors = _parse_batch(body, patch_adapter, settings.max_batch)
        return _batch_response(_patch_many(store, parsed, errors), errors)


def _add_task_routes(router: APIRouter, settings: SandboxSettings, store: TaskStore) -> None:
    """``POST /tasks`` and the ``PUT``, ``PATCH``, ``GET``, ``DELETE /tasks/{uid}`` routes."""

    @router.post(
        "/tasks",
        response_model=Task,
        tags=["tasks"],
        responses={409: {"model": ErrorMessage, "description": "A task has this uid"}},
    )
    async def create_task(body: TaskWrite) -> Response:
        """Create a task (200 with the task). Defaults: status TODO, due_at now."""
        uid = body.uid or uuid.uuid4()
        if store.get(str(uid)) is not None:
            raise HTTPException(settings.post_conflict_status, f"a task with uid {uid} exists")
        task = tasks.create(body, uid, tasks.now_text())
        store.save_many([task])
        return json_response(_dump(task))

    @router.put("/tasks/{uid}", response_model=Task, tags=["tasks"])
    async def upsert_task(uid: uuid.UUID, body: TaskWrite) -> Response:
        """Create or replace the task ``uid``. An identical repeat changes nothing."""
        _check_path_uid(uid, body.uid)
        old = store.get(str(uid))
        now = tasks.now_text()
        task = tasks.create(body, uid, now) if old is None else tasks.replace(old, body, now)
        return _saved_response(store, old, task)

    @router.patch("/tasks/{uid}", response_model=Task, tags=["tasks"], responses=_NOT_FOUND)
    async def patch_task(uid: uuid.UUID, body: TaskPatch) -> Response:
        """Change some attributes of the task ``uid``; ``fields`` merge shallowly."""
        _check_path_uid(uid, body.uid)
        old = _load(store, uid)
        return _saved_response(store, old, tasks.patch(old, body, tasks.now_text()))

    @router.get("/tasks/{uid}", response_model=Task, tags=["tasks"], responses=_NOT_FOUND)
    async def get_task(uid: uuid.UUID) -> Response:
        """The task ``uid``."""
        return json_response(_dump(_load(store, uid)))

    @router.delete("/tasks/{uid}", response_model=Task, tags=["tasks"], responses=_NOT_FOUND)
    async def delete_task(uid: uuid.UUID) -> Response:
        """Delete the task ``uid`` for good; answers with the task as it was."""
        task = _load(store, uid)
        store.delete(str(uid))
        return json_response(_dump(task))


def _add_list_route(router: APIRouter, store: TaskStore) -> None:
    """``GET /tasks``."""

    @router.get("/tasks", response_model=TaskPage, tags=["tasks"])
    async def list_tasks(
        request: Request,
        status: Annotated[
            list[str] | None,
            Query(description="TODO, STARTED or DONE; repeat or comma-separate for several."),
        ] = None,
        updated_after: Annotated[
            datetime | None, Query(description="Only tasks updated strictly after (ISO-8601).")
        ] = None,
        archived: Annotated[bool | None, Query()] = None,
        order_by: Annotated[Literal["created_at", "updated_at"], Query()] = "created_at",
        limit: Annotated[int, Query(ge=1, le=MAX_PAGE_SIZE)] = DEFAULT_PAGE_SIZE,
        cursor: Annotated[str | None, Query(description="meta.next_cursor of a page.")] = None,
    ) -> Response:
        """List tasks, oldest first, by keyset pages; ``fields.<key>=<value>`` filters on
        custom fields (equality on the value's text)."""
        task_filter = TaskFilter(
            _statuses(status or []),
            _updated_after_text(updated_after),
            archived,
            _field_filters(request),
        )
        after = _cursor_after(cursor, order_by)
        bodies, next_cursor = store.page(task_filter, order_by=order_by, after=after, limit=limit)
        meta = {
            "limit": limit,
            "self_cursor": cursor,
            "prev_cursor": None,
            "next_cursor": next_cursor,
            "total_count": store.count(task_filter),
        }
        return json_response('{"items":[' + ",".join(bodies) + '],"meta":' + json.dumps(meta) + "}")


def _parse_batch(
    body: BatchRequest, adapter: TypeAdapter[ItemT], max_batch: int
) -> tuple[list[tuple[int, ItemT]], list[dict[str, Any]]]:
    """The valid items with their positions, and a 422 error for each invalid one."""
    if len(body.items) > max_batch:
        raise validation_error(
            ["body", "items"],
            f"a batch holds at most {max_batch} items, got {len(body.items)}",
            "too_long",
        )
    parsed: list[tuple[int, ItemT]] = []
    errors: list[dict[str, Any]] = []
    for index, item in enumerate(body.items):
        try:
            parsed.append((index, adapter.validate_python(item)))
        except ValidationError as exc:
            errors.append(_error(index, _raw_uid(item), 422, _item_message(exc)))
    return parsed, errors


def _create_many(
    store: TaskStore,
    parsed: list[tuple[int, TaskWrite]],
    errors: list[dict[str, Any]],
    conflict_status: int,
) -> list[dict[str, Any]]:
    """Create and save the new tasks; a taken uid adds an error at its position."""
    now = tasks.now_text()
    written: list[dict[str, Any]] = []
    uids = {index: (w.uid or uuid.uuid4()) for index, w in parsed}
    existing = store.get_many(str(uid) for uid in uids.values())
    for index, write in parsed:
        uid = str(uids[index])
        if uid in existing:
            errors.append(_error(index, uid, conflict_status, "uid exists"))
            continue
        existing[uid] = task = tasks.create(write, uuid.UUID(uid), now)
        written.append(task)
    store.save_many(written)
    return written


def _upsert_many(store: TaskStore, parsed: list[tuple[int, TaskPutItem]]) -> list[dict[str, Any]]:
    """Create or replace the tasks, saving only those that changed; all results in order."""
    now = tasks.now_text()
    current = store.get_many(str(w.uid) for _, w in parsed)
    results: list[dict[str, Any]] = []
    changed: dict[str, dict[str, Any]] = {}
    for _, write in parsed:
        uid = str(write.uid)
        old = current.get(uid)
        if old is None:
            task = tasks.create(write, uuid.UUID(uid), now)
        else:
            task = tasks.replace(old, write, now)
        if task is not old:
            current[uid] = changed[uid] = task
        results.append(task)
    store.save_many(list(changed.values()))
    return results


def _patch_many(
    store: TaskStore, parsed: list[tuple[int, TaskPatchItem]], errors: list[dict[str, Any]]
) -> list[dict[str, Any]]:
    """Patch the tasks, saving only those that changed; an unknown uid adds a 404 error."""
    now = tasks.now_text()
    current = store.get_many(str(p.uid) for _, p in parsed)
    results: list[dict[str, Any]] = []
    changed: dict[str, dict[str, Any]] = {}
    for index, change in parsed:
        uid = str(change.uid)
        old = current.get(uid)
        if old is None:
            errors.append(_error(index, uid, 404, f"no task with uid {uid}"))
            continue
        task = tasks.patch(old, change, now)
        if task is not old:
            current[uid] = changed[uid] = task
        results.append(task)
    store.save_many(list(changed.values()))
    return results


def _load(store: TaskStore, uid: uuid.UUID) -> dict[str, Any]:
    task = store.get(str(uid))
    if task is None:
        raise HTTPException(404, f"no task with uid {uid}")
    return task


def _check_path_uid(uid: uuid.UUID, body_uid: uuid.UUID | None) -> None:
    if body_uid is not None and body_uid != uid:
        raise validation_error(["body", "uid"], f"uid {body_uid} differs from the path's")


def _saved_response(store: TaskStore, old: dict[str, Any] | None, task: dict[str, Any]) -> Response:
    """Save ``task`` unless it is ``old`` unchanged, and answer with it."""
    if task is not old:
        store.save_many([task])
    return json_response(_dump(task))


def _updated_after_text(updated_after: datetime | None) -> str | None:
    if updated_after is None:
        return None
    try:
        return format_timestamp(updated_after)
    except ValueError as exc:
        raise validation_error(["query", "updated_after"], str(exc)) from exc


def _field_filters(request: Request) -> dict[str, str]:
    """The ``fields.<key>=<value>`` query parameters as ``{key: value}``."""
    fields: dict[str, str] = {}
    for key, value in request.query_params.multi_items():
        if key.startswith("fields."):
            name = key.removeprefix("fields.")
            if not FIELD_KEY.match(name):
                raise validation_error(
                    ["query", key], "custom field names are letters, digits, _ and -"
                )
            fields[name] = value
    return fields


def _cursor_after(cursor: str | None, order_by: OrderBy) -> tuple[str, str] | None:
    if cursor is None:
        return None
    try:
        return decode_cursor(cursor, order_by)
    except CursorError as exc:
        raise validation_error(["query", "cursor"], str(exc)) from exc


def _statuses(values: list[str]) -> list[str]:
    statuses: list[str] = []
    allowed = {status.value for status in TaskStatus}
    for value in values:
        for part in value.split(","):
            part = part.strip().upper()
            if part not in allowed:
                raise validation_error(
                    ["query", "status"], f"{part!r} is not one of TODO, STARTED, DONE", "enum"
                )
            statuses.append(part)
    return statuses


def _error(index: int, uid: Any, status: int, detail: str) -> dict[str, Any]:
    return {
        "index": index,
        "uid": None if uid is None else str(uid),
        "status": status,
        "detail": detail,
    }


def _batch_response(items: list[dict[str, Any]], errors: list[dict[str, Any]]) -> Response:
    errors.sort(key=lambda error: error["index"])
    body = '{"items":[' + ",".join(map(_dump, items)) + '],"errors":' + json.dumps(errors) + "}"
    return json_response(body)
