"""Fakes of ComplyAdvantage's legacy API and of Mesh on loopback, built on FakeVendor.

ComplyAdvantage publishes no OpenAPI file, so each fake checks the requests it receives
against pydantic models of the documented shapes (query parameters and bodies, unknown
keys refused): a problem is logged in ``invalid_requests`` and answered 400.

::

    ca = FakeComplyAdvantage()
    ca.add_searches(250)
    with ca.api:
        connector = SearchesConnector(ca.config())

    mesh = FakeMesh()
    mesh.add_cases(120)
    with mesh.api:
        connector = MeshConnector(mesh.config())
"""

from __future__ import annotations

import itertools
import math
import time
import uuid
from collections.abc import Callable
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from fragment_complyadvantage.config import (
    ALERT_END_STATES,
    MATCH_STATUSES,
    MeshConfig,
    SearchesConfig,
)
from fragment_core.testing import FakeAPI, FakeRequest, FakeResponse
from fragment_core.testing.fakevendor import FakeVendor, RateLimit

RISK = Literal["low", "medium", "high", "unknown"]
MATCH = Literal[
    "no_match", "false_positive", "potential_match", "true_positive", "unknown",
    "true_positive_approve", "true_positive_reject",
]  # fmt: skip


SEARCH_SCOPES = frozenset({"view searches", "update searches"})
VIEW_CASES = "View cases"
REVIEW_CASES = "Review cases"
MESH_SCOPES = frozenset({VIEW_CASES, REVIEW_CASES})


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class SearchListQuery(_Strict):
    """``GET /searches`` query parameters (the documented filters, sorting, paging)."""

    match_status: str | None = None
    risk_level: str | None = None
    assignee_id: int | None = None
    searcher_id: int | None = None
    client_ref: str | None = None
    monitored: bool | None = None
    created_at_from: str | None = None
    created_at_to: str | None = None
    sort_by: Literal["created_at", "updated_at", "id", "total_hits"] | None = None
    sort_dir: Literal["asc", "desc"] | None = None
    page: int = Field(default=1, ge=1)
    per_page: int = Field(default=100, ge=1, le=1000)

    @field_validator("match_status")
    @classmethod
    def _statuses(cls, value: str | None) -> str | None:
        bad = [v for v in (value or "").split(",") if v and v not in MATCH_STATUSES]
        if bad:
            raise ValueError(f"unknown match_status {bad}")
        return value


class SearchUpdate(_Strict):
    """``PATCH /searches/{id}`` body."""

    match_status: MATCH | None = None
    risk_level: RISK | None = None
    assignee_id: int | None = None


class TokenRequest(_Strict):
    """``POST /v2/token`` body."""

    username: str
    password: str
    realm: str


class CaseListQuery(_Strict):
    """``GET /v2/cases`` query (``state`` is deprecated: refused here)."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    page_number: int = Field(default=1, ge=1)
    page_size: int = Field(default=20, ge=1, le=1000)
    stage_identifier: str | None = Field(default=None, alias="stage.identifier")
    type: str | None = None
    assignee_identifier: str | None = None
    search: str | None = None
    sort: Literal["CREATED_AT", "-CREATED_AT", "UPDATED_AT", "-UPDATED_AT"] | None = None


class PageQuery(_Strict):
    """``page_number`` / ``page_size`` of the other lists."""

    page_number: int = Field(default=1, ge=1)
    page_size: int = Field(default=20, ge=1, le=1000)


class AlertTransition(_Strict):
    """``POST /v2/alerts/{id}/transition`` body."""

    state: Literal["POSITIVE_END_STATE", "NEGATIVE_END_STATE"]


class CaseTransition(_Strict):
    """``POST /v2/cases/{id}/transition`` body."""

    stage_identifier: str
    note: str | None = None


def _validated(vendor: FakeVendor, model: type[BaseModel], data: Any, what: str) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return vendor.invalid(f"{what}: {problems}")


def ratelimit_headers(limit: RateLimit) -> Callable[[float], dict[str, str]]:
    """The 429's Ratelimit-* headers (reset in whole seconds, as Mesh documents)."""
    return lambda wait: {
        "Ratelimit-Limit": str(limit.requests),
        "Ratelimit-Remaining": "0",
        "Ratelimit-Reset": str(max(1, math.ceil(wait))),
    }


class _RatelimitedFake(FakeVendor):
    """A FakeVendor whose every answer carries Ratelimit-Limit/Remaining/Reset."""

    def __init__(self, name: str, *, rate_limit_per_second: int | None, **kw: Any) -> None:
        limit = None
        if rate_limit_per_second:
            body = {"message": "API rate limit exceeded"}
            limit = RateLimit(rate_limit_per_second, 1.0, body=body)
            limit.headers = ratelimit_headers(limit)
        super().__init__(name, rate_limit=limit, **kw)

    @property
    def over_limit(self) -> int:
        """Requests refused with a 429 by the sustained limit."""
        return self.rate_limit.over if self.rate_limit else 0

    def answer(self, payload: Any, status: int = 200) -> FakeResponse:
        """``payload`` with the Ratelimit-* headers of the current window."""
        headers: dict[str, str] = {}
        if self.rate_limit is not None:
            with self._lock:
                remaining = self.rate_limit.remaining()
                reset = self.rate_limit.reset_in()
            headers = {
                "Ratelimit-Limit": str(self.rate_limit.requests),
                "Ratelimit-Remaining": str(remaining),
                "Ratelimit-Reset": str(max(1, math.ceil(reset))) if remaining == 0 else "1",
            }
        return FakeResponse(status, json=payload, headers=headers)

    def rate_limit_next(self, n: int = 1, *, wait: float = 1.0) -> None:
        """The next ``n`` requests get a 429 with ``Ratelimit-Reset: wait``."""
        self.api.rate_limit_next(
            n, scheme="ratelimit-reset", wait=wait, body={"message": "API rate limit exceeded"}
        )


# -- the legacy API ----------------------------------------------------------------------
class FakeComplyAdvantage(_RatelimitedFake):
    """The legacy API's searches (``self.searches``: id -> search) behind token auth."""

    def __init__(
        self,
        *,
        api_key: str = "ca-fake-api-key-0001",
        serve_total: bool = False,
        scopes: frozenset[str] = SEARCH_SCOPES,
        rate_limit_per_second: int | None = None,
        api: FakeAPI | None = None,
    ) -> None:
        super().__init__(
            "complyadvantage",
            token=api_key,
            auth_prefix="Token ",
            scopes=scopes,
            rate_limit_per_second=rate_limit_per_second,
            api=api,
        )
        self.serve_total = serve_total
        self.searches = self.store.records
        self._ids = itertools.count(164_263_813)
        self._short_next = 0
        self._routes()

    def unauthorized(self, req: FakeRequest) -> FakeResponse:
        return FakeResponse(
            401, json={"code": 401, "status": "failure", "message": "Invalid API key"}
        )

    def invalid(self, message: str) -> FakeResponse:
        super().invalid(message)
        return FakeResponse(400, json={"code": 400, "status": "failure", "message": message})

    def not_found(self) -> FakeResponse:
        return FakeResponse(404, json={"code": 404, "status": "failure", "message": "Not found"})

    def forbidden(self, req: FakeRequest, scope: str) -> FakeResponse:
        message = f"User does not have permission to {scope}"
        return FakeResponse(403, json={"code": 403, "status": "failure", "message": message})

    def config(self, **options: Any) -> SearchesConfig:
        """A connector config pointed at this fake (``options`` override)."""
        values: dict[str, Any] = {"api_key": self.token, "base_url": self.api.base_url}
        values.update(options)
        return SearchesConfig(**values)

    def add_search(self, **fields: Any) -> str:
        """Add a search (the documented shape; ``fields`` override). Returns its id."""
        with self._lock:
            number = next(self._ids)
            ref = f"1593617052-{uuid.UUID(int=number).hex[:8]}"
            stamp = self.clock.tick().strftime("%Y-%m-%d %H:%M:%S")
            search = {
                "id": number, "ref": ref, "searcher_id": 4321, "assignee_id": 4321,
                "filters": {"types": ["sanction", "warning", "pep", "adverse-media"],
                            "birth_year": 1970, "exact_match": False, "fuzziness": 0.6,
                            "remove_deceased": 0, "country_codes": []},
                "match_status": "potential_match", "risk_level": "unknown",
                "search_term": f"Jane Roe {number}", "submitted_term": f"Jane Roe {number}",
                "client_ref": f"cust-{number}", "total_hits": 3,
                "created_at": stamp, "updated_at": stamp, "tags": [], "limit": 100,
                "offset": 0,
                "share_url": f"https://app.complyadvantage.com/public/search/{ref}/abc123",
                **fields,
            }  # fmt: skip
            self.store.put(str(number), search)
            return str(number)

    def add_searches(self, n: int, **fields: Any) -> list[str]:
        """Add ``n`` searches."""
        return [self.add_search(**fields) for _ in range(n)]

    def resolve(self, search_id: str, status: str = "no_match") -> None:
        """An analyst resolves a search in ComplyAdvantage."""
        search = self.searches[search_id]
        search["match_status"] = status
        search["updated_at"] = self.clock.tick().strftime("%Y-%m-%d %H:%M:%S")
        self.store.touch(search_id)

    def updates(self, search_id: str) -> int:
        """PATCHes that reached this search."""
        return self.effect_count("update", search_id)

    def short_page_next(self, n: int = 1, *, drop: int = 1, path: str | None = None) -> None:
        """The next list page loses its last item (its total, when served, unchanged)."""
        self._short_next += n

    def _envelope(self, data: Any, **extra: Any) -> FakeResponse:
        return self.answer({"code": 200, "status": "success", "content": {"data": data, **extra}})

    def _routes(self) -> None:
        @self.route("GET", "/searches", scope="view searches")
        def list_searches(req: FakeRequest) -> Any:
            query = _validated(self, SearchListQuery, req.query, "GET /searches query")
            if isinstance(query, FakeResponse):
                return query
            statuses = set((query.match_status or "").split(",")) - {""}
            found = [
                s
                for _, s in self.store.searchable()
                if (not statuses or s["match_status"] in statuses)
                and (query.assignee_id is None or s.get("assignee_id") == query.assignee_id)
            ]
            key = query.sort_by or "id"  # ties (one second) in id order, as listed
            found.sort(key=lambda s: (s.get(key) or 0, s["id"]), reverse=query.sort_dir == "desc")
            start = (query.page - 1) * query.per_page
            page = found[start : start + query.per_page]
            if self._short_next and page:
                self._short_next -= 1
                page = page[:-1]
            extra = {"total": len(found)} if self.serve_total else {}
            return self._envelope(page, **extra)

        @self.route("GET", "/searches/{search_id}", scope="view searches")
        def get_search(req: FakeRequest) -> Any:
            search = self.searches.get(req.path_params["search_id"])
            return self._envelope(search) if search else self.not_found()

        @self.route("PATCH", "/searches/{search_id}", scope="update searches")
        def update_search(req: FakeRequest) -> Any:
            search_id = req.path_params["search_id"]
            search = self.searches.get(search_id)
            if search is None:
                return self.not_found()
            body = _validated(self, SearchUpdate, req.json(), f"PATCH /searches/{search_id}")
            if isinstance(body, FakeResponse):
                return body
            search.update(body.model_dump(exclude_none=True))
            search["updated_at"] = self.clock.tick().strftime("%Y-%m-%d %H:%M:%S")
            self.store.touch(search_id)
            self.effect("update", search_id)
            return self._envelope(search)


# -- Mesh --------------------------------------------------------------------------------
CASE_TYPES = ("CUSTOMER_ONBOARDING", "CUSTOMER_MONITORING")


def _workflow(case_type: str, prefix: str) -> dict[str, Any]:
    stages = [
        ("Not started", "INITIAL", None),
        ("In review", "REVIEW", None),
        ("Escalated", "REVIEW", None),
        ("Approved", "DECISION", "POSITIVE"),
        ("Rejected", "DECISION", "NEGATIVE"),
    ]
    return {
        "identifier": str(uuid.uuid5(uuid.NAMESPACE_URL, f"wf-{case_type}")),
        "case_type": case_type,
        "stages": [
            {
                "identifier": str(uuid.uuid5(uuid.NAMESPACE_URL, f"{prefix}-{case_type}-{name}")),
                "name": name,
                "stage_type": kind,
                **({"decision_type": decision} if decision else {}),
            }
            for name, kind, decision in stages
        ],
    }


class FakeMesh(_RatelimitedFake):
    """Mesh's token endpoint, workflows, cases and alerts.

    Tokens are issued by ``POST /v2/token`` for ``username``/``password``/``realm`` and
    expire after ``token_lifetime`` real seconds (``expires_in``); :meth:`revoke_tokens`
    makes every issued token invalid (the next request gets a 401). A case cannot enter
    a DECISION stage while it has open alerts (so the alerts must go first).
    """

    def __init__(
        self,
        *,
        username: str = "api-user@example.com",
        password: str = "mesh-fake-password-01",
        realm: str = "acme",
        token_lifetime: float = 86_400,
        rate_limit_per_second: int | None = None,
        scopes: frozenset[str] = MESH_SCOPES,
        region: str = "us",
        api: FakeAPI | None = None,
    ) -> None:
        super().__init__(
            "mesh", token="", scopes=scopes, rate_limit_per_second=rate_limit_per_second, api=api
        )
        self.username, self.password, self.realm = username, password, realm
        self.token_lifetime = token_lifetime
        self.tokens: dict[str, float] = {}  # token -> expiry (time.monotonic)
        self.tokens_issued = 0
        self.cases = self.store.records
        self.alerts: dict[str, dict[str, Any]] = {}
        self.workflows = [_workflow(t, region) for t in CASE_TYPES]
        self._numbers = itertools.count(1)
        self._routes()

    # -- auth -----------------------------------------------------------------------------
    def authorized(self, req: FakeRequest) -> bool:
        token = req.headers.get("authorization", "").removeprefix("Bearer ")
        expiry = self.tokens.get(token)
        return expiry is not None and time.monotonic() < expiry

    def unauthorized(self, req: FakeRequest) -> FakeResponse:
        return FakeResponse(401, json={"message": "Unauthorized"})

    def forbidden(self, req: FakeRequest, scope: str) -> FakeResponse:
        return FakeResponse(403, json={"message": f"Forbidden: missing permission {scope}"})

    def invalid(self, message: str) -> FakeResponse:
        super().invalid(message)
        return FakeResponse(400, json={"message": message})

    def not_found(self) -> FakeResponse:
        return FakeResponse(404, json={"message": "Not Found"})

    def revoke_tokens(self) -> None:
        """Every issued token stops working (as after a password change)."""
        self.tokens.clear()

    # -- data -----------------------------------------------------------------------------
    def config(self, **options: Any) -> MeshConfig:
        """A connector config pointed at this fake (``options`` override)."""
        values: dict[str, Any] = {
            "username": self.username,
            "password": self.password,
            "realm": self.realm,
            "base_url": self.api.base_url,
            "decision_stage": "Approved",
            "alert_transition_pause": 0,
        }
        values.update(options)
        return MeshConfig(**values)

    def stage(self, name: str, case_type: str = "CUSTOMER_ONBOARDING") -> dict[str, Any]:
        """The stage called ``name`` of ``case_type``'s workflow."""
        workflow = next(w for w in self.workflows if w["case_type"] == case_type)
        return next(s for s in workflow["stages"] if s["name"] == name)

    def add_case(
        self, *, stage: str = "Not started", alerts: int = 2, **fields: Any
    ) -> str:
        """Add a case (the documented shape, ``fields`` override) with open alerts."""
        with self._lock:
            number = next(self._numbers)
            case_id = str(uuid.UUID(int=(0x01977BE0 << 96) + number))
            case_type = fields.get("type", "CUSTOMER_ONBOARDING")
            found = self.stage(stage, case_type)
            stamp = self.clock.tick().strftime("%Y-%m-%dT%H:%M:%SZ")
            case = {
                "identifier": case_id,
                "type": case_type,
                "stage": {k: found[k] for k in ("identifier", "name", "stage_type")},
                "assignee": None,
                "review_items_count": alerts,
                "customer": {
                    "identifier": str(uuid.UUID(int=(0x019177BE << 96) + number)),
                    "external_identifier": f"cust-{number}",
                    "name": f"Jane Roe {number}",
                    "risk_level": "MEDIUM",
                },
                "created_at": stamp,
                "updated_at": stamp,
                **fields,
            }
            self.store.put(case_id, case)
            for _ in range(alerts):
                alert_id = str(uuid.UUID(int=(0x0197AAAA << 96) + next(self._numbers)))
                self.alerts[alert_id] = {
                    "identifier": alert_id,
                    "state": "OPEN",
                    "case_identifier": case_id,
                }
            return case_id

    def add_cases(self, n: int, **fields: Any) -> list[str]:
        """Add ``n`` cases."""
        return [self.add_case(**fields) for _ in range(n)]

    def move(self, case_id: str, stage: str) -> None:
        """A Mesh user moves a case to another stage (of its workflow)."""
        case = self.cases[case_id]
        found = self.stage(stage, case["type"])
        case["stage"] = {k: found[k] for k in ("identifier", "name", "stage_type")}
        case["updated_at"] = self.clock.tick().strftime("%Y-%m-%dT%H:%M:%SZ")
        self.store.touch(case_id)

    def alerts_of(self, case_id: str) -> list[dict[str, Any]]:
        """The alerts of a case."""
        return [a for a in self.alerts.values() if a["case_identifier"] == case_id]

    def decisions(self, case_id: str) -> int:
        """Case transitions that reached this case."""
        return self.effect_count("decide", case_id)

    def _stage_by_id(self, stage_id: str) -> tuple[str, dict[str, Any]] | None:
        for workflow in self.workflows:
            for stage in workflow["stages"]:
                if stage["identifier"] == stage_id:
                    return workflow["case_type"], stage
        return None

    # -- routes ---------------------------------------------------------------------------
    def _routes(self) -> None:
        self.route("POST", "/v2/token", auth=False)(self._token)
        self.route("GET", "/v2/cases/workflows", scope=VIEW_CASES)(self._workflows)
        self.route("GET", "/v2/cases", scope=VIEW_CASES)(self._list_cases)
        self.route("GET", "/v2/cases/{case_id}", scope=VIEW_CASES)(self._get_case)
        self.route("GET", "/v2/cases/{case_id}/alerts", scope=VIEW_CASES)(self._case_alerts)
        alert, case = "/v2/alerts/{alert_id}/transition", "/v2/cases/{case_id}/transition"
        self.route("POST", alert, scope=REVIEW_CASES)(self._alert_transition)
        self.route("POST", case, scope=REVIEW_CASES)(self._case_transition)

    def _token(self, req: FakeRequest) -> Any:
        body = _validated(self, TokenRequest, req.json(), "POST /v2/token")
        if isinstance(body, FakeResponse):
            return body
        if (body.username, body.password, body.realm) != (
            self.username,
            self.password,
            self.realm,
        ):
            return FakeResponse(401, json={"message": "Invalid username or password"})
        issued = f"mesh-at-{uuid.uuid4().hex}"
        self.tokens[issued] = time.monotonic() + self.token_lifetime
        self.tokens_issued += 1
        lifetime = self.token_lifetime
        expires = int(lifetime) if float(lifetime).is_integer() else lifetime
        return self.answer(
            {"access_token": issued, "token_type": "Bearer", "expires_in": expires}
        )

    def _workflows(self, req: FakeRequest) -> Any:
        return self.answer({"workflows": self.workflows})

    def _list_cases(self, req: FakeRequest) -> Any:
        query = _validated(self, CaseListQuery, req.query, "GET /v2/cases query")
        if isinstance(query, FakeResponse):
            return query
        stages = set((query.stage_identifier or "").split(",")) - {""}
        unknown = [s for s in stages if self._stage_by_id(s) is None]
        if unknown:
            return self.invalid(f"GET /v2/cases: unknown stage.identifier {unknown}")
        types = set((query.type or "").split(",")) - {""}
        found = [
            c
            for _, c in self.store.searchable()
            if (not stages or c["stage"]["identifier"] in stages)
            and (not types or c["type"] in types)
        ]
        key = (query.sort or "CREATED_AT").lstrip("-").lower()
        found.sort(
            key=lambda c: (c[key], c["identifier"]), reverse=(query.sort or "")[:1] == "-"
        )
        start = (query.page_number - 1) * query.page_size
        payload = {
            "cases": found[start : start + query.page_size],
            "total_count": len(found),
        }
        return self.answer(self._maybe_short(req.path, "cases", payload))

    def _get_case(self, req: FakeRequest) -> Any:
        case = self.cases.get(req.path_params["case_id"])
        return self.answer(case) if case else self.not_found()

    def _case_alerts(self, req: FakeRequest) -> Any:
        query = _validated(self, PageQuery, req.query, "GET alerts query")
        if isinstance(query, FakeResponse):
            return query
        case_id = req.path_params["case_id"]
        if case_id not in self.cases:
            return self.not_found()
        found = self.alerts_of(case_id)
        start = (query.page_number - 1) * query.page_size
        return self.answer(
            {"alerts": found[start : start + query.page_size], "total_count": len(found)}
        )

    def _alert_transition(self, req: FakeRequest) -> Any:
        alert = self.alerts.get(req.path_params["alert_id"])
        if alert is None:
            return self.not_found()
        body = _validated(self, AlertTransition, req.json(), "POST alert transition")
        if isinstance(body, FakeResponse):
            return body
        alert["state"] = body.state
        self.effect("alert", alert["identifier"])
        return self.answer(alert)

    def _case_transition(self, req: FakeRequest) -> Any:
        case_id = req.path_params["case_id"]
        case = self.cases.get(case_id)
        if case is None:
            return self.not_found()
        body = _validated(self, CaseTransition, req.json(), "POST case transition")
        if isinstance(body, FakeResponse):
            return body
        found = self._stage_by_id(body.stage_identifier)
        if found is None or found[0] != case["type"]:
            return self.invalid(
                f"stage {body.stage_identifier} is not in the {case['type']} workflow"
            )
        _, stage = found
        still_open = [a for a in self.alerts_of(case_id) if a["state"] not in ALERT_END_STATES]
        if stage["stage_type"] == "DECISION" and still_open:
            return FakeResponse(
                409, json={"message": f"case has {len(still_open)} open alerts"}
            )
        case["stage"] = {k: stage[k] for k in ("identifier", "name", "stage_type")}
        case["updated_at"] = self.clock.tick().strftime("%Y-%m-%dT%H:%M:%SZ")
        self.store.touch(case_id)
        self.effect("decide", case_id)
        return self.answer(case)
