"""A fake HubSpot (CRM tasks, associations, account info) on loopback, built on FakeAPI.

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
import json
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from fragment_core.testing import FakeAPI, FakeRequest, FakeResponse
from fragment_core.testing.fakevendor import FakeVendor, RateLimit
from fragment_hubspot.config import HubSpotConfig

SEARCH_PATH = "/crm/v3/objects/tasks/search"
TASK_PATH = "/crm/v3/objects/tasks/{task_id}"
ACCOUNT_PATH = "/account-info/v3/details"
ASSOCIATIONS_PATH = "/crm/v4/associations/tasks/{to_type}/batch/read"

READ_SCOPE = "crm.objects.contacts.read"
WRITE_SCOPE = "crm.objects.contacts.write"
ALL_SCOPES = frozenset({READ_SCOPE, WRITE_SCOPE, "oauth"})

OPERATORS = {
    "EQ", "NEQ", "LT", "LTE", "GT", "GTE", "BETWEEN", "IN", "NOT_IN",
    "HAS_PROPERTY", "NOT_HAS_PROPERTY", "CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN",
}  # fmt: skip
SEARCH_KEYS = {"filterGroups", "sorts", "properties", "limit", "after", "query"}
TASK_STATUSES = {"NOT_STARTED", "IN_PROGRESS", "WAITING", "DEFERRED", "COMPLETED"}
DATE_PROPERTIES = {"hs_lastmodifieddate", "hs_createdate", "hs_timestamp"}
NUMBER_PROPERTIES = {"hs_object_id"}
#: Returned with every object whatever ``properties`` asks (as HubSpot does).
DEFAULT_PROPERTIES = ("hs_object_id", "hs_createdate", "hs_lastmodifieddate")


def iso(value: datetime) -> str:
    """HubSpot's datetime format: UTC, milliseconds, ``Z``."""
    value = value.astimezone(UTC)
    return value.strftime("%Y-%m-%dT%H:%M:%S.") + f"{value.microsecond // 1000:03d}Z"


def _ms(value: Any) -> int | None:
    if value in (None, ""):
        return None
    text = str(value)
    if text.lstrip("-").isdigit():
        return int(text)
    try:
        return int(datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp() * 1000)
    except ValueError:
        return None


def error_body(message: str, category: str, **extra: Any) -> dict[str, Any]:
    """HubSpot's error object (status, message, correlationId, category)."""
    return {
        "status": "error",
        "message": message,
        "correlationId": str(uuid.uuid4()),
        "category": category,
        **extra,
    }


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
        self._sorted_cache: dict[str, tuple[Any, list[dict[str, Any]]]] = {}
        self._routes()

    @property
    def searches_over_limit(self) -> int:
        """Searches refused by the per-second search limit."""
        return self.rate_limit.over if self.rate_limit else 0

    # -- vendor-shaped answers ------------------------------------------------------------
    def unauthorized(self, req: FakeRequest) -> FakeResponse:
        message = "Authentication credentials not found. This API supports OAuth 2.0 "
        message += "authentication."
        return FakeResponse(status=401, json=error_body(message, "INVALID_AUTHENTICATION"))

    def forbidden(self, req: FakeRequest, scope: str) -> FakeResponse:
        return FakeResponse(
            status=403,
            json=error_body(
                "This app hasn't been granted all required scopes to make this call.",
                "MISSING_SCOPES",
                errors=[
                    {
                        "message": "One or more of the following scopes are required.",
                        "context": {"requiredGranularScopes": [scope]},
                    }
                ],
                links={"scopes": "https://developers.hubspot.com/scopes"},
            ),
        )

    def invalid(self, message: str) -> FakeResponse:
        super().invalid(message)
        return FakeResponse(status=400, json=error_body(message, "VALIDATION_ERROR"))

    def not_found(self) -> FakeResponse:
        return FakeResponse(status=404, json=error_body("Object not found", "OBJECT_NOT_FOUND"))

    # -- data -----------------------------------------------------------------------------
    def config(self, **options: Any) -> HubSpotConfig:
        """A connector config pointed at this fake (``options`` override)."""
        values: dict[str, Any] = {
            "access_token": self.token,
            "base_url": self.api.base_url,
            "search_requests_per_second": 0,
        }
        values.update(options)
        return HubSpotConfig(**values)

    def add_task(
        self, *, modified: datetime | str | None = None, task_id: str | None = None, **props: Any
    ) -> str:
        """Add a task; ``props`` are HubSpot properties (strings). Returns its id."""
        with self._lock:
            task_id = task_id or str(next(self._ids))
            if isinstance(modified, datetime):
                modified = iso(modified)
            stamp = modified or iso(self.clock.tick())
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
            task = {
                "id": task_id,
                "archived": False,
                "createdAt": properties["hs_createdate"],
                "updatedAt": properties["hs_lastmodifieddate"],
                "properties": properties,
            }
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
            stamp = iso(self.clock.tick())
            task["properties"]["hs_lastmodifieddate"] = stamp
            task["updatedAt"] = stamp
            self.store.touch(task_id, at=self.clock.now())

    def open_ids(self) -> set[str]:
        """Ids of tasks not COMPLETED."""
        return {
            i for i, t in self.tasks.items() if t["properties"]["hs_task_status"] != "COMPLETED"
        }

    def completions(self, task_id: str) -> int:
        """How many times a write-back actually completed this task."""
        return self.effect_count("complete", task_id)

    def rate_limit_next(self, n: int = 1, *, policy: str = "SECONDLY", wait: float = 1.0) -> None:
        """The next ``n`` requests get HubSpot's 429 (``Retry-After`` and ``policyName``)."""
        body = error_body("You have reached your secondly limit.", "RATE_LIMITS", policyName=policy)
        body["errorType"] = "RATE_LIMIT"
        self.api.rate_limit_next(n, scheme="retry-after", wait=wait, body=body)

    # -- request checks -------------------------------------------------------------------
    def _check_search(self, body: Any) -> str | None:  # noqa: C901
        if not isinstance(body, dict):
            return "search body must be a JSON object"
        unknown = set(body) - SEARCH_KEYS
        if unknown:
            return f"unknown search keys {sorted(unknown)}"
        groups = body.get("filterGroups") or []
        if len(groups) > 5:
            return "at most 5 filterGroups"
        total = 0
        for group in groups:
            filters = group.get("filters") if isinstance(group, dict) else None
            if not isinstance(filters, list):
                return "each filterGroup needs a filters list"
            if len(filters) > 10:
                return "at most 10 filters per group"
            total += len(filters)
            for f in filters:
                if not isinstance(f, dict) or not f.get("propertyName"):
                    return f"filter without propertyName: {f!r}"
                op = f.get("operator")
                if op not in OPERATORS:
                    return f"unknown operator {op!r}"
                if op in {"IN", "NOT_IN"} and not isinstance(f.get("values"), list):
                    return f"{op} needs values"
                if op in {"EQ", "NEQ", "LT", "LTE", "GT", "GTE"} and "value" not in f:
                    return f"{op} needs value"
        if total > 25:
            return "at most 25 filters in total"
        sorts = body.get("sorts") or []
        if len(sorts) > 1:
            return "only one sort is supported"
        for sort in sorts:
            if isinstance(sort, dict) and sort.get("direction") not in {
                "ASCENDING",
                "DESCENDING",
            }:
                return f"bad sort {sort!r}"
        limit = body.get("limit", 10)
        if not isinstance(limit, int) or not 1 <= limit <= 200:
            return f"limit must be 1..200, got {limit!r}"
        after = body.get("after")
        if after is not None and not str(after).isdigit():
            return f"after must be a number, got {after!r}"
        properties = body.get("properties", [])
        if not isinstance(properties, list) or not all(isinstance(p, str) for p in properties):
            return "properties must be a list of names"
        return None

    # -- search semantics -----------------------------------------------------------------
    @staticmethod
    def _compare_value(prop: str, value: Any) -> Any:
        if prop in DATE_PROPERTIES:
            return _ms(value)
        if prop in NUMBER_PROPERTIES:
            return int(value) if value not in (None, "") and str(value).isdigit() else None
        return None if value is None else str(value)

    def _matches(self, task: dict[str, Any], f: Mapping[str, Any]) -> bool:
        prop, op = f["propertyName"], f["operator"]
        raw = task["properties"].get(prop)
        if op == "HAS_PROPERTY":
            return raw not in (None, "")
        if op == "NOT_HAS_PROPERTY":
            return raw in (None, "")
        if op in {"IN", "NOT_IN"}:
            have = set(str(raw or "").split(";")) - {""}
            hit = bool(have & {str(v) for v in f["values"]})
            return hit if op == "IN" else not hit
        if op in {"CONTAINS_TOKEN", "NOT_CONTAINS_TOKEN"}:
            hit = str(f.get("value", "")).lower() in str(raw or "").lower()
            return hit if op == "CONTAINS_TOKEN" else not hit
        have = self._compare_value(prop, raw)
        want = self._compare_value(prop, f.get("value"))
        if op == "EQ":
            return have == want
        if op == "NEQ":
            return have != want
        if have is None or want is None:
            return False
        if op == "BETWEEN":
            high = self._compare_value(prop, f.get("highValue"))
            return high is not None and want <= have <= high
        return {
            "LT": have < want,
            "LTE": have <= want,
            "GT": have > want,
            "GTE": have >= want,
        }[op]

    def _sorted_matches(self, body: Mapping[str, Any]) -> list[dict[str, Any]]:
        key = json.dumps([body.get("filterGroups"), body.get("sorts")], sort_keys=True)
        cached = self._sorted_cache.get(key)
        if cached and cached[0] == (self.store.version, self.clock.now()):
            return cached[1]
        groups = body.get("filterGroups") or []
        found = [
            t
            for _, t in self.store.searchable()
            if not groups or any(all(self._matches(t, f) for f in g["filters"]) for g in groups)
        ]
        sorts = body.get("sorts") or []
        if sorts:
            sort = sorts[0]
            prop = sort["propertyName"] if isinstance(sort, dict) else str(sort).lstrip("-")
            descending = (
                sort.get("direction") == "DESCENDING"
                if isinstance(sort, dict)
                else str(sort).startswith("-")
            )

            def order(task: dict[str, Any]) -> tuple[Any, int]:
                value = self._compare_value(prop, task["properties"].get(prop))
                return (value if value is not None else 0, int(task["id"]))

            found.sort(key=order, reverse=descending)
        else:
            found.sort(key=lambda t: int(t["id"]))
        self._sorted_cache = {key: ((self.store.version, self.clock.now()), found)}
        return found

    def _view(self, task: dict[str, Any], properties: list[str] | None) -> dict[str, Any]:
        wanted = set(properties or ()) | set(DEFAULT_PROPERTIES)
        props = task["properties"]
        return {**task, "properties": {p: props.get(p) for p in wanted if p in props}}

    # -- routes ---------------------------------------------------------------------------
    def _routes(self) -> None:  # noqa: C901

        @self.route("POST", SEARCH_PATH, scope=READ_SCOPE, items="results")
        def search(req: FakeRequest) -> Any:
            try:
                body = req.json()
            except ValueError:
                return self.invalid("search body is not JSON")
            problem = self._check_search(body)
            if problem:
                return self.invalid(problem)
            with self._lock:
                after = int(body.get("after") or 0)
                if after >= self.result_cap:
                    return FakeResponse(
                        status=400,
                        json=error_body(
                            f"Search results are limited to {self.result_cap} per query.",
                            "VALIDATION_ERROR",
                        ),
                    )
                limit = body.get("limit", 10)
                found = self._sorted_matches(body)
                page = found[after : min(after + limit, self.result_cap)]
                result: dict[str, Any] = {
                    "total": len(found),
                    "results": [self._view(t, body.get("properties")) for t in page],
                }
                if after + limit < len(found):
                    nxt = str(after + limit)
                    result["paging"] = {"next": {"after": nxt, "link": f"?after={nxt}"}}
                return result

        @self.route("GET", TASK_PATH, scope=READ_SCOPE)
        def get_task(req: FakeRequest) -> Any:
            task = self.tasks.get(req.path_params["task_id"])
            if task is None:
                return self.not_found()
            wanted = [
                name
                for key, value in req.query_list
                if key == "properties"
                for name in value.split(",")
                if name
            ]
            return self._view(task, wanted)

        @self.route("PATCH", TASK_PATH, scope=WRITE_SCOPE)
        def update_task(req: FakeRequest) -> Any:
            task_id = req.path_params["task_id"]
            body = req.json()
            if not isinstance(body, dict) or set(body) - {"properties", "objectWriteTraceId"}:
                return self.invalid(f"update body must be {{'properties': ...}}, got {body!r}")
            properties = body.get("properties")
            if not isinstance(properties, dict) or not all(
                isinstance(v, str) for v in properties.values()
            ):
                return self.invalid("properties must map names to strings")
            status = properties.get("hs_task_status")
            if status is not None and status not in TASK_STATUSES:
                return self.invalid(f"{status!r} is not a valid hs_task_status")
            with self._lock:
                task = self.tasks.get(task_id)
                if task is None:
                    return self.not_found()
                was = task["properties"]["hs_task_status"]
                self.update(task_id, **properties)
                if status == "COMPLETED" and was != "COMPLETED":
                    self.effect("complete", task_id, body.get("objectWriteTraceId"))
                return self._view(task, list(properties))

        @self.route("POST", ASSOCIATIONS_PATH, scope=READ_SCOPE)
        def associations(req: FakeRequest) -> Any:
            body = req.json()
            inputs = body.get("inputs") if isinstance(body, dict) else None
            if not isinstance(inputs, list) or not all(
                isinstance(i, dict) and "id" in i for i in inputs
            ):
                return self.invalid("associations batch read needs inputs: [{id}]")
            by_task = self.associations.get(req.path_params["to_type"], {})
            stamp = iso(datetime.now(UTC))
            return {
                "status": "COMPLETE",
                "results": [
                    {
                        "from": {"id": str(i["id"])},
                        "to": [
                            {
                                "toObjectId": int(other),
                                "associationTypes": [
                                    {"category": "HUBSPOT_DEFINED", "typeId": 204, "label": None}
                                ],
                            }
                            for other in by_task.get(str(i["id"]), [])
                        ],
                    }
                    for i in inputs
                ],
                "startedAt": stamp,
                "completedAt": stamp,
            }

        @self.route("GET", ACCOUNT_PATH, scope="oauth")
        def account(req: FakeRequest) -> Any:
            return {
                "portalId": self.portal_id,
                "accountType": "STANDARD",
                "timeZone": "US/Eastern",
                "companyCurrency": "USD",
                "additionalCurrencies": [],
                "utcOffset": "-05:00",
                "utcOffsetMilliseconds": -18_000_000,
                "uiDomain": self.ui_domain,
                "dataHostingLocation": "na1",
            }
