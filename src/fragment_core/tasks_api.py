"""Client of the Fragment Tasks API (the real one, or the local sandbox).

* httpx underneath; ``Authorization: Bearer <token>``, ``User-Agent: fragment-core/<version>``.
* Requests go through :class:`~fragment_core.transport.Transport`: transient failures
  (connection errors, timeouts, 5xx, 429) are retried by its one retry loop,
  waiting exactly what a ``Retry-After`` asks. Other 4xx raise :class:`TasksApiError`
  (401/403 raise :class:`~fragment_core.errors.AuthenticationError`) with the server's
  message, never the token.
* A rate budget (default 60 requests per minute) shared by every thread using the client.
* Writes are safe to retry: upserts are PUTs with the caller's uid, and a create that was
  applied before its connection dropped is recognised on retry (409 -> fetch).
"""

from __future__ import annotations

import contextlib
import functools
import json
import threading
import time
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import httpx
from pydantic import SecretStr

from fragment_core import __version__
from fragment_core.errors import ConfigurationError, FragmentError
from fragment_core.redaction import redact, register_secrets
from fragment_core.retries import RateBudget, RetryPolicy, error_for_status, transport_error
from fragment_core.task import RemoteTask, Task, TaskBody, TaskStatus, normalize_value
from fragment_core.transport import BearerAuth, RequestTally, Transport

USER_AGENT = f"fragment-core/{__version__}"
#: Seconds :meth:`TasksClient.account` keeps the answer of ``GET /accounts/me``.
ACCOUNT_MAX_AGE = 600.0


class TasksApiError(ConfigurationError):
    """The Tasks API refused a request (a 4xx other than 401/403/429).

    ``status`` is the HTTP status; ``detail`` the server's explanation (for a 422, which
    field and why).
    """

    def __init__(self, message: str, *, status: int, detail: str, where: str | None = None):
        self.status = status
        self.detail = detail
        self.attempts = 1
        super().__init__(message, where=where)


class TaskNotFoundError(TasksApiError):
    """No task has this uid (HTTP 404)."""


@dataclass
class ItemError:
    """One item of a batch the server refused."""

    uid: uuid.UUID | None
    status: int
    message: str
    index: int | None = None
    """Position of the item in the sequence given to the batch method."""


@dataclass
class BatchResult:
    """Items written, and items refused, by one or more batch requests.

    ``items`` are read into :class:`RemoteTask` models when first asked for (a sync
    writing a large backlog only looks at the errors).
    """

    errors: list[ItemError] = field(default_factory=list)
    raw_items: list[dict[str, Any]] = field(default_factory=list, repr=False)
    """The items as the API answered them (JSON)."""

    @functools.cached_property
    def items(self) -> list[RemoteTask]:
        """The items written, as the API answered them."""
        return [RemoteTask.model_validate(item) for item in self.raw_items]


class _JSONBytes(bytes):
    """A request body serialized already (sent as it is, as JSON)."""


_JSON_HEADERS = {"Content-Type": "application/json"}


def _items_json(items: Sequence[dict[str, Any] | bytes]) -> _JSONBytes:
    """``{"items": [...]}`` as JSON, items that are bytes (serialized bodies) spliced in."""
    parts = [
        item
        if isinstance(item, bytes)
        else json.dumps(item, ensure_ascii=False, separators=(",", ":"), allow_nan=False).encode()
        for item in items
    ]
    return _JSONBytes(b'{"items":[' + b",".join(parts) + b"]}")


def _server_message(response: httpx.Response) -> str:
    """The server's explanation: FastAPI-style ``detail`` (list or text), else the body."""
    try:
        body = response.json()
    except ValueError:
        return response.text[:500] or response.reason_phrase
    detail = body.get("detail") if isinstance(body, dict) else None
    if isinstance(detail, list):
        parts = []
        for item in detail:
            if isinstance(item, dict):
                loc = ".".join(str(part) for part in item.get("loc", []))
                parts.append(f"{loc}: {item.get('msg', '')}" if loc else str(item.get("msg")))
            else:
                parts.append(str(item))
        return "; ".join(parts)
    if detail is not None:
        return str(detail)
    return response.text[:500]


def _timestamp(value: datetime) -> str:
    if value.tzinfo is None:
        value = value.replace(tzinfo=UTC)
    return value.astimezone(UTC).replace(tzinfo=None).isoformat(timespec="microseconds") + "Z"


class TasksClient:
    """Synchronous client; thread-safe; one rate budget shared by all its users.

    ``rate_limit`` is requests per ``rate_period`` seconds (default per minute); ``None``
    or 0 turns the budget off. ``batch_size`` must not exceed the server's batch maximum
    (the sandbox's default is 500). ``retry_*`` tune stamina's backoff. ``budget``
    replaces the in-memory budget, e.g. by one shared through the state store
    (:meth:`~fragment_core.state.StateStore.rate_budget`; see :meth:`from_settings`).
    """

    def __init__(
        self,
        url: str,
        token: str | SecretStr,
        *,
        rate_limit: int | None = 60,
        batch_size: int = 100,
        timeout: float = 30.0,
        rate_period: float = 60.0,
        retry_attempts: int = 8,
        retry_timeout: float = 600.0,
        retry_wait_initial: float = 0.2,
        retry_wait_max: float = 30.0,
        budget: RateBudget | None = None,
    ) -> None:
        if batch_size < 1:
            raise ValueError(f"batch_size={batch_size}: expected at least 1")
        self.url = url.rstrip("/")
        self._token = token if isinstance(token, SecretStr) else SecretStr(token)
        if not self._token.get_secret_value():
            raise ConfigurationError("the Tasks API token is empty", where="tasks_api.token")
        register_secrets((self._token.get_secret_value(),))
        self.batch_size = batch_size
        self._account: tuple[float, dict[str, Any]] | None = None
        self._account_lock = threading.Lock()
        if budget is None and rate_limit:
            budget = RateBudget(rate_limit, rate_period)
        self.budget = budget
        self.transport = Transport(
            self.url,
            auth=BearerAuth(self._token.get_secret_value()),
            headers={"User-Agent": USER_AGENT, "Accept": "application/json"},
            timeout=timeout,
            retry=RetryPolicy(
                attempts=retry_attempts,
                timeout=retry_timeout,
                wait_initial=retry_wait_initial,
                wait_max=retry_wait_max,
            ),
            pacer=self.budget,
            name="Tasks API",
        )

    @classmethod
    def from_settings(cls, settings: Any, *, store: Any = None) -> TasksClient:
        """A client configured by a :class:`~fragment_core.config.TasksApiSettings`.

        With a ``store`` (a :class:`~fragment_core.state.StateStore`) its rate budget is
        the one shared by every process using that store (fleet workers, ``fragment run``
        and ``fragment sync`` together stay within ``rate_limit``)."""
        budget = None
        if store is not None and settings.rate_limit:
            budget = store.rate_budget(settings.url, settings.rate_limit)
        return cls(
            settings.url,
            settings.token,
            rate_limit=settings.rate_limit,
            batch_size=settings.batch_size,
            timeout=settings.timeout,
            budget=budget,
        )

    def __repr__(self) -> str:
        return f"TasksClient(url={self.url!r})"

    def __enter__(self) -> TasksClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self.transport.close()

    @property
    def requests_made(self) -> int:
        """Requests sent so far, retries included."""
        return self.transport.requests_made

    def tally(self) -> contextlib.AbstractContextManager[RequestTally]:
        """Count the requests sent within the block from this context (a run's own, when
        runs share the client): :meth:`Transport.tally`."""
        return self.transport.tally()

    # -- transport -----------------------------------------------------------------------

    def _redact(self, text: str) -> str:
        return redact(text, (self._token.get_secret_value(),))

    def _send_once(
        self, method: str, path: str, body: Any, params: Mapping[str, Any] | None
    ) -> httpx.Response:
        where = f"Tasks API {method} {path}"
        raw = isinstance(body, _JSONBytes)
        return self.transport.request(
            method,
            path,
            params=params,
            json=None if raw else body,
            content=body if raw else None,
            headers=_JSON_HEADERS if raw else None,
            retry=False,
            translate_error=lambda response: self._error_for(response, where),
            translate_exception=lambda exc: transport_error(exc, where=where),
        )

    def _error_for(self, response: httpx.Response, where: str) -> FragmentError:
        message = self._redact(_server_message(response))
        status = response.status_code
        error: FragmentError | None
        if status == 429 or status >= 500 or status in (401, 403, 408):
            error = error_for_status(status, response.headers, message, where=where)
        else:
            kind = TaskNotFoundError if status == 404 else TasksApiError
            error = kind(f"HTTP {status}: {message}", status=status, detail=message, where=where)
        assert error is not None
        return error

    def _retrying(
        self, method: str, path: str, body: Any, params: Any
    ) -> tuple[httpx.Response, int]:
        """Send with retries; return the answer and the attempts it took."""
        attempts = 0

        def once() -> httpx.Response:
            nonlocal attempts
            attempts += 1
            return self._send_once(method, path, body, params)

        try:
            return self.transport.retrying(once), attempts
        except TasksApiError as exc:
            exc.attempts = attempts
            raise

    def _request(
        self,
        method: str,
        path: str,
        *,
        body: Any = None,
        params: Mapping[str, Any] | None = None,
    ) -> Any:
        """Send with retries and return the decoded JSON body."""
        response, _ = self._retrying(method, path, body, params)
        try:
            return response.json()
        except ValueError as exc:
            raise TasksApiError(
                "the Tasks API answered with a body that is not JSON",
                status=response.status_code,
                detail=response.text[:200],
                where=f"Tasks API {method} {path}",
            ) from exc

    # -- single tasks --------------------------------------------------------------------

    def me(self) -> dict[str, Any]:
        """The account of the token (``GET /accounts/me``); checks the credentials."""
        return self._request("GET", "/accounts/me")

    def account(self, *, max_age: float = ACCOUNT_MAX_AGE) -> dict[str, Any]:
        """:meth:`me`, asked again only when the last answer is older than ``max_age``
        seconds (every sync checks which Tasks API it writes to: this keeps that check
        from costing a request per run)."""
        with self._account_lock:
            cached = self._account
            if cached is not None and time.monotonic() - cached[0] < max_age:
                return cached[1]
        answer = self.me()
        with self._account_lock:
            self._account = (time.monotonic(), answer)
        return answer

    def create_task(self, task: Task) -> RemoteTask:
        """``POST /tasks``. A uid is chosen here when the task has none, so a retry after
        a dropped connection finds the created task instead of making a second one."""
        uid = task.uid or uuid.uuid4()
        body = {**task.to_api(), "uid": str(uid)}
        try:
            return RemoteTask.model_validate(self._request("POST", "/tasks", body=body))
        except TasksApiError as exc:
            if exc.status == 409 and exc.attempts > 1:
                return self.get_task(uid)
            raise

    def upsert_task(self, task: Task) -> RemoteTask:
        """``PUT /tasks/{uid}``: create or replace (idempotent; ``task.uid`` required)."""
        uid = self._uid_of(task, "upsert_task")
        return RemoteTask.model_validate(self._request("PUT", _task_path(uid), body=task.to_api()))

    def patch_task(self, uid: uuid.UUID, changes: Mapping[str, Any]) -> RemoteTask:
        """``PATCH /tasks/{uid}``: set the given attributes; ``fields`` merge shallowly."""
        body = normalize_value(dict(changes))
        return RemoteTask.model_validate(self._request("PATCH", _task_path(uid), body=body))

    def get_task(self, uid: uuid.UUID) -> RemoteTask:
        """``GET /tasks/{uid}`` (:class:`TaskNotFoundError` if there is none)."""
        return RemoteTask.model_validate(self._request("GET", _task_path(uid)))

    def delete_task(self, uid: uuid.UUID) -> None:
        """``DELETE /tasks/{uid}`` (:class:`TaskNotFoundError` if there is none)."""
        self._request("DELETE", _task_path(uid))

    def list_tasks(
        self,
        *,
        status: TaskStatus | Sequence[TaskStatus] | None = None,
        updated_after: datetime | None = None,
        fields: Mapping[str, str] | None = None,
        page_size: int | None = None,
        order_by: str | None = None,
        archived: bool | None = None,
    ) -> Iterator[RemoteTask]:
        """Every task matching the filters, page after page (``GET /tasks``).

        ``fields`` filters on custom fields by equality; ordered by ``updated_at`` when
        ``updated_after`` is given, else by ``created_at``.
        """
        params: dict[str, Any] = {}
        if status is not None:
            statuses = [status] if isinstance(status, str) else list(status)
            params["status"] = ",".join(TaskStatus(s).value for s in statuses)
        if updated_after is not None:
            params["updated_after"] = _timestamp(updated_after)
        for key, value in (fields or {}).items():
            text = normalize_value(value)
            params[f"fields.{key}"] = str(text).lower() if isinstance(text, bool) else str(text)
        params["order_by"] = order_by or ("updated_at" if updated_after else "created_at")
        if page_size is not None:
            params["limit"] = page_size
        if archived is not None:
            params["archived"] = str(archived).lower()
        cursor: str | None = None
        while True:
            if cursor:
                params["cursor"] = cursor
            page = self._request("GET", "/tasks", params=params)
            for item in page.get("items", []):
                yield RemoteTask.model_validate(item)
            cursor = (page.get("meta") or {}).get("next_cursor")
            if not cursor:
                return

    # -- batches -------------------------------------------------------------------------

    def upsert_tasks(self, tasks: Sequence[Task | TaskBody]) -> BatchResult:
        """``PUT /tasks/batch`` in chunks of ``batch_size``; every task needs its uid.

        A :class:`~fragment_core.task.TaskBody` is sent as it is (already serialized)."""
        bodies: list[dict[str, Any] | bytes] = []
        uids: list[str] = []
        for index, task in enumerate(tasks):
            uids.append(str(self._uid_of(task, f"upsert_tasks item {index}")))
            bodies.append(task.wire if isinstance(task, TaskBody) else task.to_api())
        return self._batches("PUT", bodies, uids)

    def create_tasks(self, tasks: Sequence[Task]) -> BatchResult:
        """``POST /tasks/batch`` in chunks; uids are chosen here for tasks without one, so
        a retried chunk reports its already-created tasks as written, not as conflicts."""
        bodies = [{**task.to_api(), "uid": str(task.uid or uuid.uuid4())} for task in tasks]
        return self._batches("POST", bodies, [str(body["uid"]) for body in bodies])

    def patch_tasks(self, items: Sequence[Mapping[str, Any]]) -> BatchResult:
        """``PATCH /tasks/batch`` in chunks; each item is a change carrying its ``uid``."""
        bodies = []
        for index, item in enumerate(items):
            if not item.get("uid"):
                raise ValueError(f"patch_tasks item {index}: 'uid' is required")
            bodies.append(normalize_value(dict(item)))
        return self._batches("PATCH", bodies, [str(item["uid"]) for item in items])

    def _batches(
        self, method: str, bodies: Sequence[dict[str, Any] | bytes], uids: Sequence[str]
    ) -> BatchResult:
        result = BatchResult()
        for start in range(0, len(bodies), self.batch_size):
            chunk = bodies[start : start + self.batch_size]
            answer = self._request_batch(method, chunk)
            self._check_answer(method, answer, uids[start : start + self.batch_size], start, result)
        return result

    def _check_answer(
        self, method: str, answer: Any, sent: Sequence[str], start: int, result: BatchResult
    ) -> None:
        """Account for every item sent: written only if the answer lists it, refused if
        the answer says so, and an error (retried by a later run) if the answer omits it
        or is not the documented ``{"items": [...], "errors": [...]}`` shape."""
        where = f"{method} /tasks/batch"
        items = answer.get("items") if isinstance(answer, dict) else None
        errors = answer.get("errors", []) if isinstance(answer, dict) else None
        if not isinstance(items, list) or not isinstance(errors, list):
            shape = type(answer).__name__ if not isinstance(answer, dict) else sorted(answer)
            for index, uid in enumerate(sent):
                result.errors.append(
                    ItemError(
                        uid=uuid.UUID(uid),
                        status=502,
                        message=f"{where}: the answer is not the documented shape "
                        f"(got {shape}); the item is not known to be written",
                        index=start + index,
                    )
                )
            return
        pending = {uid: index for index, uid in enumerate(sent)}
        for error in errors:
            if not isinstance(error, dict):
                continue
            failed: Any = error.get("uid")
            position: Any = error.get("index")
            if failed is None and isinstance(position, int) and 0 <= position < len(sent):
                failed = sent[position]
            if failed is not None:
                pending.pop(str(failed), None)
            result.errors.append(
                ItemError(
                    uid=uuid.UUID(str(failed)) if failed else None,
                    status=int(error.get("status", 422)),
                    message=self._redact(str(error.get("detail", ""))),
                    index=start + (position if isinstance(position, int) else 0),
                )
            )
        for item in items:
            written = item.get("uid") if isinstance(item, dict) else None
            if written is not None and str(written) in pending:
                pending.pop(str(written))
                result.raw_items.append(item)
        for uid, index in pending.items():
            result.errors.append(
                ItemError(
                    uid=uuid.UUID(uid),
                    status=502,
                    message=f"{where}: HTTP 200 but the answer omits this item; "
                    "it is not known to be written and is sent again by a later run",
                    index=start + index,
                )
            )

    def _request_batch(self, method: str, chunk: Sequence[dict[str, Any] | bytes]) -> Any:
        response, attempts = self._retrying(method, "/tasks/batch", _items_json(chunk), None)
        try:
            answer = response.json()
        except ValueError:
            return None  # not JSON: every item of the chunk is an error (_check_answer)
        if not isinstance(answer, dict) or not isinstance(answer.get("items"), list):
            return answer
        if method == "POST" and attempts > 1:
            # A conflict on a retry is the earlier, dropped attempt having landed.
            conflicts = [e for e in answer.get("errors", []) if e.get("status") == 409]
            if conflicts:
                answer["errors"] = [e for e in answer["errors"] if e.get("status") != 409]
                answer["items"] = answer["items"] + [
                    self.get_task(uuid.UUID(e["uid"])).model_dump(mode="json") for e in conflicts
                ]
        return answer

    @staticmethod
    def _uid_of(task: Task | TaskBody, what: str) -> uuid.UUID:
        if task.uid is None:
            raise ValueError(
                f"{what}: the task (external_id {task.external_id!r}) has no uid;"
                " derive it with Task.for_source(source)"
            )
        return task.uid if isinstance(task.uid, uuid.UUID) else uuid.UUID(str(task.uid))


def _task_path(uid: uuid.UUID | str) -> str:
    """``/tasks/{uid}``; ``uid`` must be a UUID, so no value can change the path."""
    try:
        text = str(uid if isinstance(uid, uuid.UUID) else uuid.UUID(str(uid)))
    except ValueError:
        raise ValueError(f"{str(uid)[:80]!r} is not a task uid (a UUID)") from None
    return f"/tasks/{text}"
