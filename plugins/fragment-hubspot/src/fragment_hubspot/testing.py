"""A fake HubSpot (CRM tasks, associations, account info) on loopback, a FakeVendor.

It serves the documented JSON shapes, checks the requests it receives the way HubSpot
does (auth, scopes, search body shape and filter limits, the 10,000-result cap, an
optional per-second search limit) and counts write-back effects (``complete:<id>``)::

    hubspot = FakeHubSpot(token="pat-test")
    hubspot.add_tasks(300)
    with hubspot.api:
        connector = HubSpotConnector(hubspot.config())
        ...
    assert not hubspot.invalid_requests
"""

from __future__ import annotations

import itertools
import uuid
from datetime import UTC, datetime
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, model_validator

from fragment_core.mapping import epoch_ms, parse_datetime
from fragment_core.task import format_datetime as iso
from fragment_core.testing import FakeAPI, FakeRequest, FakeResponse
from fragment_core.testing.fakevendor import FakeVendor, RateLimit, compare
from fragment_hubspot.config import HubSpotConfig

SEARCH_PATH = "/crm/v3/objects/tasks/search"
TASK_PATH = "/crm/v3/objects/tasks/{task_id}"
ACCOUNT_PATH = "/account-info/v3/details"
ASSOCIATIONS_PATH = "/crm/v4/associations/tasks/{to_type}/batch/read"

READ_SCOPE = "crm.objects.contacts.read"
WRITE_SCOPE = "crm.objects.contacts.write"
ALL_SCOPES = frozenset({READ_SCOPE, WRITE_SCOPE, "oauth"})

#: HubSpot's search operators -> :func:`~fragment_core.testing.fakevendor.compare`'s.
OPERATORS = {op: op.lower() for op in ("EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN")} | {
    "IN": "in", "NOT_IN": "not_in", "HAS_PROPERTY": "exists", "NOT_HAS_PROPERTY": "not_exists",
    "CONTAINS_TOKEN": "contains", "NOT_CONTAINS_TOKEN": "not_contains",
}  # fmt: skip
COMPLETED = "COMPLETED"
TASK_STATUSES = {"NOT_STARTED", "IN_PROGRESS", "WAITING", "DEFERRED", COMPLETED}
DATE_PROPERTIES = {"hs_lastmodifieddate", "hs_createdate", "hs_timestamp"}
#: Returned with every object whatever ``properties`` asks (as HubSpot does).
DEFAULT_PROPERTIES = ("hs_object_id", "hs_createdate", "hs_lastmodifieddate")
#: FakeVendor's error codes -> HubSpot's category and message.
ERRORS = {
    "unauthorized": ("INVALID_AUTHENTICATION", "Authentication credentials not found. "
                     "This API supports OAuth 2.0 authentication."),
    "missing_scope": ("MISSING_SCOPES",
                      "This app hasn't been granted all required scopes to make this call."),
    "not_found": ("OBJECT_NOT_FOUND", "Object not found"),
}  # fmt: skip


def error_body(message: str, category: str, **extra: Any) -> dict[str, Any]:
    """HubSpot's error object (status, message, correlationId, category)."""
    return {"status": "error", "message": message, "correlationId": str(uuid.uuid4()),
            "category": category, **extra}  # fmt: skip


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class _Filter(_Strict):
    propertyName: str = Field(min_length=1)
    operator: Literal[tuple(OPERATORS)]  # type: ignore[valid-type]
    value: Any = None
    values: list[Any] | None = None
    highValue: Any = None

    @model_validator(mode="after")
    def _operands(self) -> _Filter:
        if self.operator in {"IN", "NOT_IN"} and self.values is None:
            raise ValueError(f"{self.operator} needs values")
        if self.operator in {"EQ", "NEQ", "LT", "LTE", "GT", "GTE"} and self.value is None:
            raise ValueError(f"{self.operator} needs value")
        return self


class _Group(_Strict):
    filters: list[_Filter] = Field(max_length=10)


class _Sort(_Strict):
    propertyName: str
    direction: Literal["ASCENDING", "DESCENDING"]


class SearchBody(_Strict):
    """A search body as HubSpot accepts it (at most 5 groups, 10 filters a group, 25 in all)."""

    filterGroups: list[_Group] = Field(default_factory=list, max_length=5)
    sorts: list[_Sort] = Field(default_factory=list, max_length=1)
    properties: list[str] = Field(default_factory=list)
    limit: int = Field(default=10, ge=1, le=200)
    after: str | None = Field(default=None, pattern=r"^\d+$")
    query: str | None = None

    @model_validator(mode="after")
    def _at_most_25_filters(self) -> SearchBody:
        if sum(len(group.filters) for group in self.filterGroups) > 25:
            raise ValueError("at most 25 filters in total")
        return self


class _Update(_Strict):
    properties: dict[str, str]
    objectWriteTraceId: str | None = None

    @model_validator(mode="after")
    def _known_status(self) -> _Update:
        status = self.properties.get("hs_task_status")
        if status is not None and status not in TASK_STATUSES:
            raise ValueError(f"{status!r} is not a valid hs_task_status")
        return self


class _Id(_Strict):
    id: str


class _BatchRead(_Strict):
    inputs: list[_Id]


def _typed(prop: str, value: Any) -> Any:
    """A property value as search compares it: dates as epoch ms, ids as numbers."""
    if value in (None, ""):
        return None
    if prop in DATE_PROPERTIES:
        try:
            parsed = parse_datetime(value, epoch="ms")
        except ValueError:
            return None
        return None if parsed is None else epoch_ms(parsed)
    if prop == "hs_object_id":
        return int(value) if str(value).isdigit() else None
    return str(value)


def _matches(task: dict[str, Any], f: _Filter) -> bool:
    raw, op = task["properties"].get(f.propertyName), OPERATORS[f.operator]
    if op in {"in", "not_in"}:
        return compare(op, str(raw or "").split(";"), {str(v) for v in f.values or ()})
    if op in {"exists", "not_exists", "contains", "not_contains"}:
        return compare(op, raw, f.value)
    have, want = _typed(f.propertyName, raw), _typed(f.propertyName, f.value)
    if op == "between":
        want = (want, _typed(f.propertyName, f.highValue))
    return compare(op, have, want)


class FakeHubSpot(FakeVendor):
    """HubSpot's task APIs over a versioned store of tasks (``self.tasks``: id -> object)."""

    def __init__(
        self,
        *,
        token: str = "pat-na1-fake-token",
        portal_id: int = 4242,
        ui_domain: str = "app.hubspot.com",
        scopes: frozenset[str] = ALL_SCOPES,
        result_cap: int = 10_000,
        search_limit_per_second: int | None = None,
        api: FakeAPI | None = None,
    ) -> None:
        limit = None
        if search_limit_per_second:
            body = error_body(
                "You have reached your secondly limit.", "RATE_LIMITS", policyName="SECONDLY"
            )
            limit = RateLimit(
                search_limit_per_second, headers=lambda wait: {}, body=body,
                paths=frozenset({SEARCH_PATH}),
            )  # fmt: skip
        super().__init__("hubspot", token=token, scopes=scopes, rate_limit=limit, api=api)
        self.portal_id = portal_id
        self.ui_domain = ui_domain
        self.result_cap = result_cap
        self.tasks = self.store.records
        self.associations: dict[str, dict[str, list[str]]] = {}  # to_type -> id -> ids
        self._ids = itertools.count(80_000_001)
        self._routes()

    @property
    def searches_over_limit(self) -> int:
        """Searches refused by the per-second search limit."""
        return self.rate_limit.over if self.rate_limit else 0

    def error_response(self, status: int, code: str, message: str, **extra: Any) -> FakeResponse:
        """HubSpot's error object for every FakeVendor answer (401, 403, 400, 404)."""
        category, message = ERRORS.get(code, ("VALIDATION_ERROR", message))
        if "scope" in extra:
            context = {"requiredGranularScopes": [extra.pop("scope")]}
            message_403 = "One or more of the following scopes are required."
            extra["errors"] = [{"message": message_403, "context": context}]
        return FakeResponse(status=status, json=error_body(message, category, **extra))

    # -- data -----------------------------------------------------------------------------
    def config(self, **options: Any) -> HubSpotConfig:
        """A connector config pointed at this fake (``options`` override)."""
        values = {"access_token": self.token, "base_url": self.api.base_url}
        return HubSpotConfig(**{**values, "search_requests_per_second": 0, **options})

    def add_task(
        self, *, modified: datetime | str | None = None, task_id: str | None = None, **props: Any
    ) -> str:
        """Add a task; ``props`` are HubSpot properties (strings). Returns its id."""
        with self._lock:
            task_id = task_id or str(next(self._ids))
            stamp = iso(modified) if isinstance(modified, datetime) else modified
            stamp = stamp or iso(self.clock.tick())
            properties = {
                "hs_object_id": task_id,
                "hs_createdate": stamp,
                "hs_lastmodifieddate": stamp,
                "hs_task_subject": f"Follow up {task_id}",
                "hs_task_body": f"<p>Notes for <b>{task_id}</b></p>",
                "hs_timestamp": "2025-06-01T15:00:00.000Z",
                "hs_task_status": "NOT_STARTED",
                "hs_task_priority": "MEDIUM",
                "hs_task_type": "TODO",
                "hubspot_owner_id": "61230045",
                **{k: (None if v is None else str(v)) for k, v in props.items()},
            }
            task = {"id": task_id, "archived": False, "properties": properties}
            task["createdAt"] = properties["hs_createdate"]
            task["updatedAt"] = properties["hs_lastmodifieddate"]
            self.store.put(task_id, task, at=self.clock.now())
            return task_id

    def add_tasks(self, n: int, *, same_instant: bool = False, **props: Any) -> list[str]:
        """Add ``n`` tasks (modified 1 ms apart, or all at one instant)."""
        with self._lock:
            stamp = iso(self.clock.tick()) if same_instant else None
            return [self.add_task(modified=stamp, **props) for _ in range(n)]

    def update(self, task_id: str, **props: Any) -> None:
        """Change a task as a HubSpot user would (bumps hs_lastmodifieddate)."""
        with self._lock:
            task = self.tasks[task_id]
            task["properties"].update({k: str(v) for k, v in props.items()})
            task["properties"]["hs_lastmodifieddate"] = task["updatedAt"] = iso(self.clock.tick())
            self.store.touch(task_id, at=self.clock.now())

    def open_ids(self) -> set[str]:
        """Ids of tasks not COMPLETED."""
        return {i for i, t in self.tasks.items() if t["properties"]["hs_task_status"] != COMPLETED}

    def completions(self, task_id: str) -> int:
        """How many times a write-back actually completed this task."""
        return self.effect_count("complete", task_id)

    def rate_limit_next(self, n: int = 1, *, policy: str = "SECONDLY", wait: float = 1.0) -> None:
        """The next ``n`` requests get HubSpot's 429 (``Retry-After`` and ``policyName``)."""
        body = error_body("You have reached your secondly limit.", "RATE_LIMITS", policyName=policy)
        body["errorType"] = "RATE_LIMIT"
        self.api.rate_limit_next(n, scheme="retry-after", wait=wait, body=body)

    # -- search ---------------------------------------------------------------------------
    def _found(self, body: SearchBody) -> list[dict[str, Any]]:
        groups = body.filterGroups
        prop = body.sorts[0].propertyName if body.sorts else "hs_object_id"

        def order(task: dict[str, Any]) -> tuple[Any, int]:
            value = _typed(prop, task["properties"].get(prop))
            return (value if value is not None else 0, int(task["id"]))

        return self.store.select(
            lambda t: not groups or any(all(_matches(t, f) for f in g.filters) for g in groups),
            key=order,
            reverse=bool(body.sorts) and body.sorts[0].direction == "DESCENDING",
            cache_key=body.model_dump_json(include={"filterGroups", "sorts"}),
        )

    def _view(self, task: dict[str, Any], properties: list[str] | None) -> dict[str, Any]:
        wanted = set(properties or ()) | set(DEFAULT_PROPERTIES)
        props = task["properties"]
        return {**task, "properties": {p: props.get(p) for p in wanted if p in props}}

    # -- routes ---------------------------------------------------------------------------
    def _routes(self) -> None:
        self.route("POST", SEARCH_PATH, scope=READ_SCOPE, items="results")(self._search)
        self.route("GET", TASK_PATH, scope=READ_SCOPE)(self._get_task)
        self.route("PATCH", TASK_PATH, scope=WRITE_SCOPE)(self._update_task)
        self.route("POST", ASSOCIATIONS_PATH, scope=READ_SCOPE)(self._associations)
        self.route("GET", ACCOUNT_PATH, scope="oauth")(self._account)

    def _search(self, req: FakeRequest) -> Any:
        body = self.body_of(req, SearchBody)
        after, limit = int(body.after or 0), body.limit
        if after >= self.result_cap:
            message = f"Search results are limited to {self.result_cap} per query."
            return FakeResponse(status=400, json=error_body(message, "VALIDATION_ERROR"))
        with self._lock:
            found = self._found(body)
            page = found[after : min(after + limit, self.result_cap)]
            result: dict[str, Any] = {
                "total": len(found),
                "results": [self._view(t, body.properties) for t in page],
            }
        if after + limit < len(found):
            nxt = str(after + limit)
            result["paging"] = {"next": {"after": nxt, "link": f"?after={nxt}"}}
        return result

    def _get_task(self, req: FakeRequest) -> Any:
        task = self.stored(req.path_params["task_id"])
        wanted = [n for k, v in req.query_list if k == "properties" for n in v.split(",")]
        return self._view(task, [name for name in wanted if name])

    def _update_task(self, req: FakeRequest) -> Any:
        body = self.body_of(req, _Update)
        with self._lock:
            task = self.stored(req.path_params["task_id"])
            was = task["properties"]["hs_task_status"]
            self.update(task["id"], **body.properties)
            if body.properties.get("hs_task_status") == COMPLETED != was:
                self.effect("complete", task["id"], body.objectWriteTraceId)
            return self._view(task, list(body.properties))

    def _associations(self, req: FakeRequest) -> Any:
        body = self.body_of(req, _BatchRead)
        by_task = self.associations.get(req.path_params["to_type"], {})
        kind = [{"category": "HUBSPOT_DEFINED", "typeId": 204, "label": None}]
        stamp = iso(datetime.now(UTC))
        results = [
            {"from": {"id": i.id},
             "to": [{"toObjectId": int(other), "associationTypes": kind}
                    for other in by_task.get(i.id, [])]}
            for i in body.inputs
        ]  # fmt: skip
        return {"status": "COMPLETE", "results": results, "startedAt": stamp,
                "completedAt": stamp}  # fmt: skip

    def _account(self, req: FakeRequest) -> Any:
        return {
            "portalId": self.portal_id, "accountType": "STANDARD", "timeZone": "US/Eastern",
            "companyCurrency": "USD", "additionalCurrencies": [], "utcOffset": "-05:00",
            "utcOffsetMilliseconds": -18_000_000, "uiDomain": self.ui_domain,
            "dataHostingLocation": "na1",
        }  # fmt: skip
