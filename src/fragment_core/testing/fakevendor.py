"""``FakeVendor``: the one base for vendor fakes, built on :class:`FakeAPI`.

A vendor fake declares its routes with the scope each needs; the base answers what every
vendor does the same way::

    vendor = FakeVendor("tickets", token="t-1", scopes={"read"}, openapi=spec_dict)

    @vendor.route("GET", "/tickets/{ticket_id}", scope="read")
    def get_ticket(req):
        return vendor.store.get(req.path_params["ticket_id"]) or vendor.not_found()

    with vendor.api:
        ...
    assert not vendor.invalid_requests

- auth per route: a missing or wrong token gets :meth:`FakeVendor.unauthorized` (401),
  a missing scope :meth:`FakeVendor.forbidden` (403, naming the scope);
- with ``openapi=`` every request and response is validated with openapi-core; problems
  are logged in ``invalid_requests`` (the ``fake_vendor_clean`` fixture asserts it is empty);
- ``store``: a clocked, versioned store (``updated_since``, ``searchable`` with a lag);
- ``rate_limit``: a sustained limit (requests per window) answered with the vendor's 429
  (``rate_limits``: more of them, e.g. one per endpoint group);
- an error answer (4xx/5xx) of an operation whose spec declares only its success is not
  reported as undeclared;
- ``effect(kind, item, idempotency_key)``: counters keyed by item and idempotency key;
- faults: FakeAPI's ``fail_next`` (5xx, drop, timeout, truncate) plus :meth:`short_page_next`.
"""

from __future__ import annotations

import contextlib
import copy
import json as jsonlib
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Hashable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Self, TypeVar

from pydantic import BaseModel, ValidationError

from fragment_core.testing.fakeapi import FakeAPI, FakeRequest, FakeResponse, _render

ModelT = TypeVar("ModelT", bound=BaseModel)

#: ``effect_count``'s default: count effects whatever their idempotency key.
ANY_KEY: Any = object()

__all__ = [
    "ANY_KEY",
    "Answer",
    "Clock",
    "FakeVendor",
    "RateLimit",
    "StoredRecord",
    "VersionedStore",
    "compare",
]

#: The operators of :func:`compare`.
OPERATORS = frozenset(
    {"eq", "neq", "lt", "lte", "gt", "gte", "between", "in", "not_in", "contains",
     "not_contains", "exists", "not_exists"}
)  # fmt: skip


def compare(operator: str, have: Any, want: Any = None) -> bool:
    """One filter of a vendor's search API, on a record's value ``have``.

    ``eq`` ``neq`` ``lt`` ``lte`` ``gt`` ``gte``; ``between`` (``want`` is ``(low, high)``);
    ``in`` / ``not_in`` (``want`` a collection; a list ``have``, a multi-valued field,
    matches when any of its values is in it); ``contains`` / ``not_contains``
    (case-insensitive text); ``exists`` / ``not_exists`` (not ``None``, empty or ``[]``).
    An ordering with a ``None`` side is false, as a search finds no such record.
    """
    if operator not in OPERATORS:
        raise ValueError(f"unknown operator {operator!r}; one of {sorted(OPERATORS)}")
    if operator in {"exists", "not_exists"}:
        return (have not in (None, "", [])) == (operator == "exists")
    if operator in {"in", "not_in"}:
        values = have if isinstance(have, list | set | tuple) else [have]
        return any(v in want for v in values) == (operator == "in")
    if operator in {"contains", "not_contains"}:
        hit = str(want or "").lower() in str(have or "").lower()
        return hit == (operator == "contains")
    if operator in {"eq", "neq"}:
        return (have == want) == (operator == "eq")
    if operator == "between":
        low, high = want
        return None not in (have, low, high) and low <= have <= high
    if have is None or want is None:
        return False
    return {"lt": have < want, "lte": have <= want, "gt": have > want, "gte": have >= want}[
        operator
    ]


class Clock:
    """A controllable clock: it moves only when told (``advance``) or ticked by a write."""

    def __init__(self, start: datetime | None = None, *, step: timedelta | None = None) -> None:
        self._now = start or datetime(2025, 5, 1, tzinfo=UTC)
        self.step = step if step is not None else timedelta(milliseconds=1)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        """The current fake time."""
        return self._now

    def advance(self, delta: timedelta | None = None, **kw: float) -> datetime:
        """Move forward by ``delta`` (or ``timedelta(**kw)``); returns the new time."""
        with self._lock:
            self._now += delta if delta is not None else timedelta(**kw)
            return self._now

    def tick(self) -> datetime:
        """Move forward one ``step`` (what each write does) and return the new time."""
        return self.advance(self.step)


@dataclass
class StoredRecord:
    """One version of a record: its data, version number and when it was written."""

    data: dict[str, Any]
    version: int
    updated_at: datetime


class VersionedStore:
    """Records by id, each write stamped by the clock and versioned, history kept.

    ``records`` is the live view (id -> data) a fake's handlers read and change;
    ``version`` grows on every write (a cache key for sorted search results).
    """

    def __init__(self, clock: Clock | None = None, *, search_lag: timedelta = timedelta(0)):
        self.clock = clock or Clock()
        self.search_lag = search_lag
        self.records: dict[str, dict[str, Any]] = {}
        self.history: dict[str, list[StoredRecord]] = {}
        self.version = 0
        self._lock = threading.RLock()
        self._selected: tuple[Hashable, list[dict[str, Any]]] | None = None

    def put(self, item_id: str, data: dict[str, Any], *, at: datetime | None = None) -> datetime:
        """Write ``data`` as the new version of ``item_id``; returns its ``updated_at``."""
        with self._lock:
            stamp = at or self.clock.tick()
            self.version += 1
            self.records[item_id] = data
            self.history.setdefault(item_id, []).append(
                StoredRecord(copy.deepcopy(data), self.version, stamp)
            )
            return stamp

    def touch(self, item_id: str, *, at: datetime | None = None) -> datetime:
        """Record that the live ``records[item_id]`` changed in place (a new version)."""
        return self.put(item_id, self.records[item_id], at=at)

    def get(self, item_id: str) -> dict[str, Any] | None:
        """The live record, or ``None``."""
        return self.records.get(item_id)

    def updated_at(self, item_id: str) -> datetime:
        """When ``item_id`` was last written."""
        return self.history[item_id][-1].updated_at

    def updated_since(self, since: datetime) -> list[str]:
        """Ids written at or after ``since``, oldest write first."""
        with self._lock:
            hits = [(h[-1].updated_at, i) for i, h in self.history.items() if i in self.records]
        return [i for at, i in sorted(hits) if at >= since]

    def select(
        self,
        predicate: Callable[[dict[str, Any]], bool],
        *,
        key: Callable[[dict[str, Any]], Any] | None = None,
        reverse: bool = False,
        cache_key: Hashable = None,
    ) -> list[dict[str, Any]]:
        """What a search finds now: the :meth:`searchable` records matching ``predicate``,
        sorted by ``key``. Given a ``cache_key`` (the query), the result is kept until the
        next write or clock move, so paging through a large result stays cheap."""
        stamp = (cache_key, self.version, self.clock.now())
        if cache_key is not None and self._selected and self._selected[0] == stamp:
            return self._selected[1]
        found = [record for _, record in self.searchable() if predicate(record)]
        if key is not None:
            found.sort(key=key, reverse=reverse)
        if cache_key is not None:
            self._selected = (stamp, found)
        return found

    def searchable(self) -> Iterator[tuple[str, dict[str, Any]]]:
        """What a lagging search index sees now: each record as of ``now - search_lag``.

        A record written within the lag shows its previous version (absent when new).
        """
        horizon = self.clock.now() - self.search_lag
        with self._lock:
            for item_id, versions in self.history.items():
                if item_id not in self.records:
                    continue
                if not self.search_lag:
                    yield item_id, self.records[item_id]
                    continue
                seen = [v for v in versions if v.updated_at <= horizon]
                if seen:
                    yield item_id, seen[-1].data


@dataclass
class RateLimit:
    """A sustained limit: at most ``requests`` per ``window`` seconds (per route group).

    ``headers`` (a callable of the seconds to wait) and ``body`` shape the vendor's own 429
    (a text ``body`` is sent as ``text/plain``, as some vendors' 429s are); ``paths``
    limits it to some route templates (all routes when empty).
    """

    requests: int
    window: float = 1.0
    status: int = 429
    headers: Callable[[float], Mapping[str, str]] = lambda wait: {"Retry-After": f"{wait:g}"}
    body: Any = field(default_factory=lambda: {"error": "rate_limited"})
    paths: frozenset[str] = frozenset()
    clock: Callable[[], float] = time.monotonic
    """Seconds of the window's clock (a test may pass its own, to move time by hand)."""
    _seen: deque[float] = field(default_factory=deque, repr=False)
    over: int = 0

    def remaining(self) -> int:
        """Requests still allowed in the current window (for ``*-Remaining`` headers)."""
        now = self.clock()
        return max(0, self.requests - sum(1 for t in self._seen if now - t < self.window))

    def reset_in(self) -> float:
        """Seconds until the oldest request counted leaves the window (0 when none)."""
        now = self.clock()
        live = [t for t in self._seen if now - t < self.window]
        return max(0.0, self.window - (now - live[0])) if live else 0.0

    def check(self, template: str) -> float | None:
        """``None`` when allowed (and counted), else the seconds until a slot frees."""
        if self.paths and template not in self.paths:
            return None
        now = self.clock()
        while self._seen and now - self._seen[0] >= self.window:
            self._seen.popleft()
        if len(self._seen) >= self.requests:
            self.over += 1
            return max(0.0, self.window - (now - self._seen[0]))
        self._seen.append(now)
        return None


@dataclass
class _ShortPage:
    remaining: int
    drop: int
    path: str | None


class _OpenAPIRequest:
    """A FakeRequest in the shape openapi-core reads (``openapi_core.protocols.Request``)."""

    def __init__(self, req: FakeRequest, host_url: str) -> None:
        from openapi_core.datatypes import RequestParameters
        from werkzeug.datastructures import Headers as WHeaders
        from werkzeug.datastructures import ImmutableMultiDict

        self.host_url = host_url
        self.path = req.path
        self.method = req.method.lower()
        self.body = req.body or None
        self.content_type = req.headers.get("content-type", "").lower()
        self.parameters = RequestParameters(
            query=ImmutableMultiDict(req.query_list),
            header=WHeaders(list(req.headers.items())),
            cookie=ImmutableMultiDict(),
        )


class _OpenAPIResponse:
    def __init__(self, status: int, payload: bytes, ctype: str, headers: Mapping[str, str]):
        from werkzeug.datastructures import Headers as WHeaders

        self.status_code = status
        self.data = payload or None
        self.content_type = ctype.lower()
        self.headers = WHeaders(list(headers.items()))


class Answer(Exception):
    """Raised in a handler served by :meth:`FakeVendor.route` to answer ``response`` at
    once (the vendor's 400 or 404), as :meth:`FakeVendor.body_of` and
    :meth:`FakeVendor.stored` do."""

    def __init__(self, response: FakeResponse) -> None:
        super().__init__(response.status)
        self.response = response


class FakeVendor:
    """A vendor fake: per-route auth and scopes, OpenAPI checks, store, limits, effects.

    ``token``: the one valid credential (``auth_header`` carrying ``auth_prefix + token``);
    ``scopes``: what it was granted (``self.scopes`` is a mutable set); ``openapi``: a spec
    dict or a path to a JSON/YAML file to validate every request and response against;
    ``openapi_path`` maps a request path to the spec's (a vendor whose SDK adds ``.json``).
    Override :meth:`unauthorized`, :meth:`forbidden` and :meth:`invalid` for the vendor's
    own error bodies.
    """

    def __init__(
        self,
        name: str = "vendor",
        *,
        token: str = "fake-token",
        scopes: Iterable[str] = (),
        openapi: Mapping[str, Any] | str | Path | None = None,
        clock: Clock | None = None,
        search_lag: timedelta = timedelta(0),
        rate_limit: RateLimit | None = None,
        rate_limits: Iterable[RateLimit] = (),
        auth_header: str = "authorization",
        auth_prefix: str = "Bearer ",
        api: FakeAPI | None = None,
        openapi_path: Callable[[str], str] | None = None,
    ) -> None:
        self.api = api or FakeAPI(name=name)
        self.token = token
        self.scopes = set(scopes)
        self.auth_header = auth_header
        self.auth_prefix = auth_prefix
        self.store = VersionedStore(clock, search_lag=search_lag)
        self.rate_limit = rate_limit
        #: More limits checked after ``rate_limit`` (a vendor with per-endpoint limits).
        self.rate_limits: list[RateLimit] = list(rate_limits)
        self.invalid_requests: list[str] = []
        self.effects: Counter[tuple[str, str, str | None]] = Counter()
        self._short_pages: list[_ShortPage] = []
        self._lock = threading.RLock()
        self._openapi = _load_openapi(openapi) if openapi is not None else None
        self._openapi_path = openapi_path

    @property
    def clock(self) -> Clock:
        """The store's clock."""
        return self.store.clock

    @contextlib.contextmanager
    def checked(self) -> Iterator[Self]:
        """Serve for the block (the API started, then stopped), then fail if the fake
        logged what :meth:`refusals` returns. A package's fixture in two lines::

            @pytest.fixture
            def tickets() -> Iterator[FakeTickets]:
                with FakeTickets().checked() as fake:
                    yield fake
        """
        with self.api:
            yield self
        refused = self.refusals()
        assert not refused, f"the fake {self.api.name!r} refused requests: {refused}"

    def refusals(self) -> list[str]:
        """What :meth:`checked` fails on: ``invalid_requests`` (requests or answers off the
        vendor's spec). Override to leave out what a test provoked on purpose."""
        return list(self.invalid_requests)

    # -- vendor-shaped answers (override) -------------------------------------------------
    def error_response(self, status: int, code: str, message: str, **extra: Any) -> FakeResponse:
        """The vendor's error answer; every answer below is built with it, so overriding it
        once gives them all the vendor's error shape. ``code`` is ``unauthorized``,
        ``missing_scope`` (``extra`` has the ``scope``), ``invalid_request`` or ``not_found``."""
        return FakeResponse(status=status, json={"error": code, "message": message, **extra})

    def authorized(self, req: FakeRequest) -> bool:
        """Whether ``req`` carries a valid credential: ``auth_header`` is ``auth_prefix +
        token``. Override for credentials the fake issues (tokens from a token endpoint)."""
        return req.headers.get(self.auth_header) == self.auth_prefix + self.token

    def unauthorized(self, req: FakeRequest) -> FakeResponse:
        """The 401 for a missing or wrong credential."""
        return self.error_response(401, "unauthorized", "missing or wrong credentials")

    def forbidden(self, req: FakeRequest, scope: str) -> FakeResponse:
        """The 403 for a credential lacking ``scope`` (the body names it)."""
        message = f"the credential lacks {scope}"
        return self.error_response(403, "missing_scope", message, scope=scope)

    def invalid(self, message: str) -> FakeResponse:
        """Log ``message`` in ``invalid_requests`` and answer 400."""
        with self._lock:
            self.invalid_requests.append(message)
        return self.error_response(400, "invalid_request", message)

    def parse_body(self, req: FakeRequest, model: type[ModelT]) -> ModelT | FakeResponse:
        """``req``'s JSON body validated by the pydantic ``model``; else the vendor's 400
        (:meth:`invalid`, so logged in ``invalid_requests``) naming the first problem.

        A strict model with ``extra="forbid"`` checks a body as a vendor does::

            body = vendor.parse_body(req, CloseTicket)
            if isinstance(body, FakeResponse):
                return body
        """
        try:
            return model.model_validate_json(req.body or b"")
        except ValidationError as exc:
            first = exc.errors()[0]
            where = ".".join(map(str, first["loc"])) or "(body)"
            return self.invalid(f"{req.method} {req.path}: body {where}: {first['msg']}")

    def not_found(self) -> FakeResponse:
        """A plain 404."""
        return self.error_response(404, "not_found", "not found")

    def body_of(self, req: FakeRequest, model: type[ModelT]) -> ModelT:
        """:meth:`parse_body` in a handler served by :meth:`route`: the validated body, or
        :class:`Answer` raised with the vendor's 400 (logged in ``invalid_requests``)."""
        body = self.parse_body(req, model)
        if isinstance(body, FakeResponse):
            raise Answer(body)
        return body

    def stored(self, item_id: str) -> dict[str, Any]:
        """The live record ``item_id`` of the store in a handler served by :meth:`route`, or
        :class:`Answer` raised with the vendor's 404."""
        record = self.store.get(item_id)
        if record is None:
            raise Answer(self.not_found())
        return record

    # -- routes ---------------------------------------------------------------------------
    def route(
        self, method: str, path: str, *, scope: str | None = None, auth: bool = True,
        items: str | None = None, openapi: bool = True,
    ) -> Callable[[Callable[[FakeRequest], Any]], Callable[[FakeRequest], Any]]:  # fmt: skip
        """Decorator: serve ``method path`` behind auth (and ``scope`` when given).

        ``items`` names the JSON list a page response carries (for :meth:`short_page_next`).
        ``openapi=False``: the operation is not in the vendor's OpenAPI file (a subset), so
        its requests and responses are not validated against it.
        """

        def register(handler: Callable[[FakeRequest], Any]) -> Callable[[FakeRequest], Any]:
            def serve(req: FakeRequest) -> Any:
                return self._serve(req, path, scope, auth, items, handler, validate=openapi)

            self.api.add_route(method, path, serve)
            return handler

        return register

    def _serve(
        self,
        req: FakeRequest,
        template: str,
        scope: str | None,
        auth: bool,
        items: str | None,
        handler: Callable[[FakeRequest], Any],
        *,
        validate: bool = True,
    ) -> Any:
        if auth and not self.authorized(req):
            return self.unauthorized(req)
        if scope is not None and scope not in self.scopes:
            return self.forbidden(req, scope)
        for limit in (self.rate_limit, *self.rate_limits):
            if limit is None:
                continue
            with self._lock:
                wait = limit.check(template)
            if wait is not None:
                body, headers = limit.body, limit.headers(wait)
                if isinstance(body, str):
                    return FakeResponse(limit.status, text=body, headers=headers)
                return FakeResponse(limit.status, json=body, headers=headers)
        validate = validate and self._openapi is not None
        if validate:
            self._check_request(req)
        try:
            result = handler(req)
        except Answer as answer:
            result = answer.response
        if items is not None:
            result = self._maybe_short(req.path, items, result)
        if validate:
            self._check_response(req, result)
        return result

    # -- effects --------------------------------------------------------------------------
    def effect(self, kind: str, item: str, idempotency_key: str | None = None) -> None:
        """Count one side effect on ``item`` (e.g. ``effect("close", "42", key)``)."""
        with self._lock:
            self.effects[(kind, item, idempotency_key)] += 1
        self.api.effect(f"{kind}:{item}")

    def effect_count(self, kind: str, item: str, idempotency_key: object = ANY_KEY) -> int:
        """Effects of ``kind`` on ``item`` (with this idempotency key, or any when omitted)."""
        with self._lock:
            any_key = idempotency_key is ANY_KEY
            return sum(
                n
                for (k, i, key), n in self.effects.items()
                if k == kind and i == item and (any_key or key == idempotency_key)
            )

    # -- faults ---------------------------------------------------------------------------
    def fail_next(self, n: int = 1, **kw: Any) -> None:
        """FakeAPI's faults: 5xx (``status``), ``drop``, ``timeout``, ``truncate``."""
        self.api.fail_next(n, **kw)

    def short_page_next(self, n: int = 1, *, drop: int = 1, path: str | None = None) -> None:
        """The next ``n`` page responses (routes with ``items=``) lose their last ``drop`` items,
        everything else (totals, cursors) unchanged: a short page."""
        if n < 1 or drop < 1:
            raise ValueError("short_page_next needs n >= 1 and drop >= 1")
        with self._lock:
            self._short_pages.append(_ShortPage(n, drop, path))

    def _maybe_short(self, path: str, items: str, result: Any) -> Any:
        # a page is a dict, or a FakeResponse carrying one (a page with headers)
        page = result.json if isinstance(result, FakeResponse) else result
        with self._lock:
            fault = next(
                (f for f in self._short_pages if f.path in (None, path) and f.remaining), None
            )
            if fault is None or not isinstance(page, dict) or items not in page:
                return result
            fault.remaining -= 1
            if not fault.remaining:
                self._short_pages.remove(fault)
        short = {**page, items: list(page[items])[: -fault.drop]}
        return replace(result, json=short) if isinstance(result, FakeResponse) else short

    def reset(self) -> None:
        """Clear FakeAPI's log and faults, the effect counters and the invalid-request log."""
        self.api.reset()
        with self._lock:
            self.effects.clear()
            self.invalid_requests.clear()
            self._short_pages.clear()

    # -- OpenAPI --------------------------------------------------------------------------
    def _spec_request(self, req: FakeRequest, host: str) -> _OpenAPIRequest:
        request = _OpenAPIRequest(req, host)
        if self._openapi_path is not None:
            request.path = self._openapi_path(req.path)
        return request

    def _check_request(self, req: FakeRequest) -> None:
        assert self._openapi is not None
        spec, host = self._openapi
        errors = list(spec.iter_request_errors(self._spec_request(req, host)))
        for error in errors:
            self._log_invalid(f"{req.method} {req.path}: request: {_describe(error)}")

    def _check_response(self, req: FakeRequest, result: Any) -> None:
        assert self._openapi is not None
        spec, host = self._openapi
        from openapi_core.templating.responses.exceptions import ResponseNotFound

        status, payload, ctype, headers = _render(result)
        response = _OpenAPIResponse(status, payload, ctype, headers)
        for error in spec.iter_response_errors(self._spec_request(req, host), response):
            if status >= 400 and isinstance(error, ResponseNotFound):
                continue  # the spec declares only the success answers of this operation
            self._log_invalid(f"{req.method} {req.path}: response {status}: {_describe(error)}")

    def _log_invalid(self, message: str) -> None:
        with self._lock:
            self.invalid_requests.append(message)


def _describe(error: Exception) -> str:
    causes = [str(c) for c in getattr(error, "schema_errors", ()) or ()]
    cause = error.__cause__
    if not causes and cause is not None:
        causes = [str(e) for e in getattr(cause, "schema_errors", ()) or ()] or [str(cause)]
    details = "; ".join(c.splitlines()[0] for c in causes if c != str(error))
    return f"{error}" + (f" ({details})" if details else "")


def allow_null_where_nullable(node: Any) -> Any:
    """Make OpenAPI 3.0's ``nullable: true`` admit ``null`` where validators do not: next
    to an ``enum`` lacking ``null`` (``null`` is added to it), and on a schema without
    ``type`` (``anyOf``/``oneOf``/``allOf``: an ``{"enum": [null]}`` alternative is added).
    Vendor files (Stripe's) are full of both. Changes ``node`` in place; returns it."""
    if isinstance(node, dict):
        for value in node.values():
            allow_null_where_nullable(value)
        if node.get("nullable") is True:
            enum = node.get("enum")
            if isinstance(enum, list) and None not in enum:
                enum.append(None)
            if "type" not in node:
                for combiner in ("anyOf", "oneOf"):
                    if isinstance(node.get(combiner), list):
                        node[combiner].append({"enum": [None]})
                        break
                else:
                    if isinstance(node.get("allOf"), list):
                        node["anyOf"] = [{"allOf": node.pop("allOf")}, {"enum": [None]}]
    elif isinstance(node, list):
        for value in node:
            allow_null_where_nullable(value)
    return node


def deep_objects_as_objects(spec: dict[str, Any]) -> dict[str, Any]:
    """openapi-core reads ``style: deepObject`` parameters only when their schema is an
    object, and fails every request otherwise (even one without the parameter). Stripe
    declares arrays (``expand[0]=...``) and ``anyOf`` (``created`` or ``created[gte]``)
    that way: give openapi-core what it can read, in place: an array becomes an object of
    its items (``{"0": ...}``), an ``anyOf`` its object alternatives. Returns ``spec``."""
    for item in (spec.get("paths") or {}).values():
        operations = (
            [op for op in item.values() if isinstance(op, dict)] if isinstance(item, dict) else []
        )
        for operation in operations:
            for param in operation.get("parameters") or ():
                if not isinstance(param, dict) or param.get("style") != "deepObject":
                    continue
                schema = param.get("schema")
                if not isinstance(schema, dict) or schema.get("type") == "object":
                    continue
                if schema.get("type") == "array":
                    items = schema.get("items", {})
                    param["schema"] = {"type": "object", "additionalProperties": items}
                elif isinstance(schema.get("anyOf"), list):
                    objects = [
                        s
                        for s in schema["anyOf"]
                        if isinstance(s, dict) and s.get("type") == "object"
                    ]
                    if objects:
                        param["schema"] = objects[0]
    return spec


#: Specs loaded from files, by (path, modification time): vendor files are large and
#: every fake of a test session would parse them again.
_FILE_SPECS: dict[tuple[str, float], tuple[Any, str]] = {}


def _load_openapi(source: Mapping[str, Any] | str | Path) -> tuple[Any, str]:
    """An openapi-core ``OpenAPI`` whose servers are the fake's (same path prefix); a file
    is read once per process (cached by path and modification time)."""
    if isinstance(source, Mapping):
        return _openapi_of(copy.deepcopy(dict(source)))
    path = Path(source)
    key = (str(path.resolve()), path.stat().st_mtime)
    if key not in _FILE_SPECS:
        text = path.read_text()
        if str(source).endswith((".yaml", ".yml")):
            import yaml  # type: ignore[import-untyped]

            spec = yaml.safe_load(text)
        else:
            spec = jsonlib.loads(text)
        _FILE_SPECS[key] = _openapi_of(spec)
    return _FILE_SPECS[key]


def _openapi_of(spec: dict[str, Any]) -> tuple[Any, str]:
    from urllib.parse import urlparse

    from openapi_core import OpenAPI

    allow_null_where_nullable(spec)
    deep_objects_as_objects(spec)
    servers = spec.get("servers") or [{"url": "/"}]
    prefix = urlparse(servers[0].get("url", "/")).path.rstrip("/")
    host = "http://fake.invalid"
    spec["servers"] = [{"url": host + prefix}]
    return OpenAPI.from_dict(spec), host
