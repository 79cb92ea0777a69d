"""``FakeAPI``: serve any vendor API on loopback for tests, with faults, a log and counters.

A fake is a handful of route handlers whose state lives in their closures::

    api = FakeAPI(name="tickets")
    tickets = {"1": {"id": "1", "status": "open"}}

    @api.route("GET", "/tickets/{ticket_id}")
    def get_ticket(req: FakeRequest):
        return tickets[req.path_params["ticket_id"]]

    with api:                                   # uvicorn on a free 127.0.0.1 port
        httpx.get(api.url_for("/tickets/1"))
        api.rate_limit_next(1, scheme="retry-after", wait=0.1)
        api.fail_next(1, kind="drop")

The server only routes, injects faults, logs requests (secrets redacted) and counts the
effects handlers report with :meth:`FakeAPI.effect`.
"""

from __future__ import annotations

import asyncio
import email.utils
import inspect
import json as jsonlib
import math
import re
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Literal
from urllib.parse import parse_qsl, urlencode

import uvicorn
from starlette.datastructures import Headers
from starlette.routing import compile_path
from starlette.types import Receive, Scope, Send

__all__ = [
    "REDACTED",
    "FakeAPI",
    "FakeRequest",
    "FakeResponse",
    "Handler",
    "RecordedRequest",
    "is_secret_name",
]

#: What a redacted header or query value is replaced with.
REDACTED = "<redacted>"

_SECRET_NAME = re.compile(
    r"(authorization|cookie|token|secret|password|passwd|api[-_]?key|apikey|"
    r"access[-_]?key|private[-_]?key|signature|session|credential|x-auth)",
    re.IGNORECASE,
)

RateLimitScheme = Literal[
    "retry-after", "retry-after-date", "x-ratelimit-reset", "ratelimit-reset", "none"
]
FaultKind = Literal["status", "drop", "timeout", "truncate"]


def is_secret_name(name: str) -> bool:
    """Whether a header or query-parameter name usually carries a secret."""
    return bool(_SECRET_NAME.search(name))


@dataclass(frozen=True)
class FakeRequest:
    """A request as a handler sees it."""

    method: str
    path: str
    path_params: dict[str, str]
    query: dict[str, str]
    query_list: list[tuple[str, str]]
    headers: Headers
    body: bytes

    def json(self) -> Any:
        """The body decoded as JSON (``None`` when empty)."""
        return jsonlib.loads(self.body) if self.body else None

    def form(self) -> dict[str, str]:
        """The body decoded as ``application/x-www-form-urlencoded`` (last value wins)."""
        return dict(parse_qsl(self.body.decode(), keep_blank_values=True))


@dataclass(frozen=True)
class FakeResponse:
    """A response with an explicit status, body or headers.

    Give ``json`` (any JSON-able value) or ``text``; ``content_type`` overrides the default
    (``application/json`` or ``text/plain``).
    """

    status: int = 200
    json: Any = None
    text: str | None = None
    headers: Mapping[str, str] | None = None
    content_type: str | None = None


@dataclass(frozen=True)
class RecordedRequest:
    """A request the fake received, as logged: secret headers and query values redacted."""

    method: str
    path: str
    query: dict[str, str]
    headers: dict[str, str]
    body: bytes
    #: The path as it arrived, still percent-encoded (``path`` is decoded).
    raw_path: str = ""

    def json(self) -> Any:
        """The body decoded as JSON (``None`` when empty)."""
        return jsonlib.loads(self.body) if self.body else None


Handler = Callable[[FakeRequest], Any]


@dataclass
class _Route:
    method: str
    template: str
    pattern: re.Pattern[str]
    convertors: dict[str, Any]
    handler: Handler


@dataclass
class _Fault:
    remaining: int
    kind: FaultKind
    status: int = 503
    path: str | None = None
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None
    seconds: float = 0.0
    rate_limit: tuple[RateLimitScheme, float] | None = None
    """``(scheme, wait)`` of a 429: its headers are made when it is served, so an HTTP
    date or a unix time says ``wait`` from the moment of the answer."""

    def matches(self, path: str) -> bool:
        return self.remaining > 0 and (self.path is None or self.path == path)

    def response_headers(self) -> dict[str, str]:
        """The headers to answer with, rate-limit hints computed now."""
        if self.rate_limit is None:
            return self.headers
        return {**self.headers, **_rate_limit_headers(*self.rate_limit)}


def _rate_limit_headers(scheme: RateLimitScheme, wait: float) -> dict[str, str]:
    seconds = math.ceil(wait) if scheme != "retry-after" else wait
    text = str(int(seconds)) if float(seconds).is_integer() else str(seconds)
    if scheme == "retry-after":
        return {"Retry-After": text}
    if scheme == "retry-after-date":
        return {"Retry-After": email.utils.formatdate(time.time() + wait, usegmt=True)}
    if scheme == "x-ratelimit-reset":
        return {"X-RateLimit-Reset": str(math.ceil(time.time() + wait))}
    if scheme == "ratelimit-reset":
        return {"RateLimit-Reset": text}
    if scheme == "none":
        return {}
    raise ValueError(
        f"unknown rate-limit scheme {scheme!r}; use retry-after, retry-after-date, "
        "x-ratelimit-reset, ratelimit-reset or none"
    )


def _encode(value: Any, content_type: str | None) -> tuple[bytes, str]:
    if isinstance(value, bytes):
        return value, content_type or "application/octet-stream"
    if isinstance(value, str):
        return value.encode(), content_type or "text/plain; charset=utf-8"
    return jsonlib.dumps(value).encode(), content_type or "application/json"


class FakeAPI:
    """A fake vendor API on ``127.0.0.1``: routes, faults, a request log and effect counters.

    Nothing listens until it is started (``with api:`` or :meth:`start`).
    """

    def __init__(
        self,
        name: str = "fake",
        *,
        shutdown_timeout: float = 2.0,
        tls_cert: str | Path | None = None,
    ) -> None:
        self.name = name
        #: A PEM file with the private key and certificate chain: serve HTTPS with it
        #: (for SDKs that only speak https; make one with ``trustme``).
        self.tls_cert = str(tls_cert) if tls_cert is not None else None
        self.requests: list[RecordedRequest] = []
        self.effects: Counter[str] = Counter()
        self._routes: list[_Route] = []
        self._faults: list[_Fault] = []
        self._lock = threading.Lock()
        self._server: uvicorn.Server | None = None
        self._thread: threading.Thread | None = None
        self._port: int | None = None
        self._shutdown_timeout = shutdown_timeout
        self._stopping = threading.Event()

    def __repr__(self) -> str:
        where = self.base_url if self._port else "not started"
        return f"<FakeAPI {self.name!r} {where} routes={len(self._routes)}>"

    # -- routes ---------------------------------------------------------------------------
    def route(self, method: str, path: str) -> Callable[[Handler], Handler]:
        """Decorator: serve ``method path`` (``{name}`` / ``{name:path}`` are path params)."""

        def register(handler: Handler) -> Handler:
            self.add_route(method, path, handler)
            return handler

        return register

    def add_route(self, method: str, path: str, handler: Handler) -> None:
        """Serve ``method path`` with ``handler`` (routes match in the order added)."""
        if not path.startswith("/"):
            raise ValueError(f"FakeAPI {self.name!r}: route path {path!r} must start with '/'")
        pattern, _, convertors = compile_path(path)
        self._routes.append(_Route(method.upper(), path, pattern, convertors, handler))

    # -- lifecycle ------------------------------------------------------------------------
    @property
    def base_url(self) -> str:
        """``http://127.0.0.1:PORT`` (``https://`` with ``tls_cert``; only once started)."""
        if self._port is None:
            raise RuntimeError(f"FakeAPI {self.name!r} is not started; use `with api:`")
        scheme = "https" if self.tls_cert else "http"
        return f"{scheme}://127.0.0.1:{self._port}"

    @property
    def port(self) -> int:
        """The port it listens on (only once started)."""
        if self._port is None:
            raise RuntimeError(f"FakeAPI {self.name!r} is not started; use `with api:`")
        return self._port

    def url_for(self, path: str, **query: Any) -> str:
        """An absolute URL on this server (for next links), with ``query`` encoded."""
        url = self.base_url + (path if path.startswith("/") else "/" + path)
        params = {k: str(v) for k, v in query.items() if v is not None}
        return f"{url}?{urlencode(params)}" if params else url

    def start(self) -> FakeAPI:
        """Start serving on a free loopback port in a background thread."""
        if self._server is not None:
            return self
        sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(("127.0.0.1", 0))
        self._port = sock.getsockname()[1]
        config = uvicorn.Config(
            self,
            log_level="warning",
            access_log=False,
            lifespan="off",
            http="h11",
            loop="asyncio",
            timeout_graceful_shutdown=self._shutdown_timeout,  # type: ignore[arg-type]  # a float works
            ssl_certfile=self.tls_cert,
            ssl_keyfile=self.tls_cert,
        )
        server = uvicorn.Server(config)
        self._server = server
        self._stopping.clear()
        self._thread = threading.Thread(
            target=server.run, kwargs={"sockets": [sock]}, name=f"FakeAPI-{self.name}", daemon=True
        )
        self._thread.start()
        deadline = time.monotonic() + 10
        while not server.started:
            if not self._thread.is_alive() or time.monotonic() > deadline:
                raise RuntimeError(f"FakeAPI {self.name!r} failed to start")
            time.sleep(0.005)
        return self

    def stop(self) -> None:
        """Stop serving (pending ``timeout`` faults are cut short)."""
        if self._server is None:
            return
        self._stopping.set()
        self._server.should_exit = True
        if self._thread is not None:
            self._thread.join(timeout=self._shutdown_timeout + 5)
        self._server = None
        self._thread = None

    def __enter__(self) -> FakeAPI:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- observation ----------------------------------------------------------------------
    def effect(self, key: str, n: int = 1) -> None:
        """Count one side effect (handlers call ``api.effect("close:42")``)."""
        with self._lock:
            self.effects[key] += n

    def requests_to(self, method: str, path: str) -> list[RecordedRequest]:
        """The logged requests with this method and exact path, in arrival order."""
        method = method.upper()
        with self._lock:
            return [r for r in self.requests if r.method == method and r.path == path]

    def reset(self) -> None:
        """Clear the request log, the effect counters and every pending fault."""
        with self._lock:
            self.requests.clear()
            self.effects.clear()
            self._faults.clear()

    # -- faults ---------------------------------------------------------------------------
    def rate_limit_next(
        self,
        n: int = 1,
        *,
        scheme: RateLimitScheme = "retry-after",
        wait: float = 1.0,
        body: Any = None,
        path: str | None = None,
        status: int = 429,
    ) -> None:
        """Answer the next ``n`` matching requests with a 429 signalled the ``scheme`` way.

        Schemes: ``retry-after`` (seconds), ``retry-after-date`` (an HTTP date),
        ``x-ratelimit-reset`` (a unix time), ``ratelimit-reset`` (seconds), ``none``.
        """
        _rate_limit_headers(scheme, wait)  # an unknown scheme fails here, not when served
        if body is None:
            body = {"error": "rate_limited", "message": "Too many requests"}
        self._add_fault(_Fault(n, "status", status, path, {}, body, rate_limit=(scheme, wait)))

    def fail_next(
        self,
        n: int = 1,
        *,
        status: int = 503,
        kind: FaultKind = "status",
        seconds: float = 5.0,
        body: Any = None,
        path: str | None = None,
        headers: Mapping[str, str] | None = None,
    ) -> None:
        """Make the next ``n`` matching requests fail.

        ``kind``: ``status`` (answer ``status``), ``drop`` (close the connection with no
        response), ``timeout`` (wait ``seconds`` then answer normally; set it past the
        client's timeout), ``truncate`` (a complete HTTP response carrying only the first
        half of the handler's body, so its JSON does not parse).
        """
        if kind not in ("status", "drop", "timeout", "truncate"):
            raise ValueError(f"unknown fault kind {kind!r}; use status, drop, timeout, truncate")
        if body is None and kind == "status":
            body = {"error": "fault_injected", "status": status}
        fault = _Fault(n, kind, status, path, dict(headers or {}), body, seconds)
        self._add_fault(fault)

    def _add_fault(self, fault: _Fault) -> None:
        if fault.remaining < 1:
            raise ValueError(f"FakeAPI {self.name!r}: a fault needs n >= 1")
        with self._lock:
            self._faults.append(fault)

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            for fault in self._faults:
                if fault.matches(path):
                    fault.remaining -= 1
                    if fault.remaining == 0:
                        self._faults.remove(fault)
                    return fault
        return None

    # -- the ASGI application -------------------------------------------------------------
    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        method = scope["method"].upper()
        path = scope["path"]
        query_list = parse_qsl(scope.get("query_string", b"").decode(), keep_blank_values=True)
        headers = Headers(scope=scope)
        with self._lock:
            recorded = _recorded(method, path, query_list, headers, body)
            raw = scope.get("raw_path") or path.encode()
            self.requests.append(replace(recorded, raw_path=raw.decode("latin-1")))

        fault = self._take_fault(path)
        if fault is not None and fault.kind == "drop":
            await self._drop(scope)
            return
        if fault is not None and fault.kind == "status":
            payload, ctype = _encode(fault.body, None)
            await _send(send, fault.status, payload, ctype, fault.response_headers())
            return
        if fault is not None and fault.kind == "timeout":
            await self._sleep(fault.seconds)

        status, payload, ctype, extra = await self._dispatch(
            method, path, query_list, headers, body
        )
        if fault is not None and fault.kind == "truncate":
            payload = payload[: len(payload) // 2]
        await _send(send, status, payload, ctype, extra)

    async def _dispatch(
        self,
        method: str,
        path: str,
        query_list: list[tuple[str, str]],
        headers: Headers,
        body: bytes,
    ) -> tuple[int, bytes, str, Mapping[str, str]]:
        allowed: list[str] = []
        for route in self._routes:
            match = route.pattern.match(path)
            if match is None:
                continue
            if route.method != method:
                allowed.append(route.method)
                continue
            params = {
                key: str(route.convertors[key].convert(value))
                for key, value in match.groupdict().items()
            }
            request = FakeRequest(method, path, params, dict(query_list), query_list, headers, body)
            try:
                result = route.handler(request)
                if inspect.isawaitable(result):
                    result = await result
            except Exception as exc:  # a bug in the fake: say so in the response
                text = f"FakeAPI {self.name!r} handler for {method} {route.template} raised "
                text += f"{type(exc).__name__}: {exc}"
                return 500, text.encode(), "text/plain; charset=utf-8", {}
            return _render(result)
        if allowed:
            message = {"error": "method_not_allowed", "allowed": sorted(set(allowed))}
            return 405, jsonlib.dumps(message).encode(), "application/json", {}
        message = {"error": "not_found", "fake": self.name, "method": method, "path": path}
        return 404, jsonlib.dumps(message).encode(), "application/json", {}

    async def _sleep(self, seconds: float) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline and not self._stopping.is_set():
            await asyncio.sleep(min(0.05, max(0.0, deadline - time.monotonic())))

    async def _drop(self, scope: Scope) -> None:
        """Close the client's connection without sending a byte of response."""
        server = self._server
        client = tuple(scope.get("client") or ())
        if server is not None:
            for connection in list(server.server_state.connections):
                if tuple(getattr(connection, "client", None) or ()) == client:
                    connection.transport.abort()
        await asyncio.sleep(0.01)  # let uvicorn see the connection is gone


def _recorded(
    method: str,
    path: str,
    query_list: Iterable[tuple[str, str]],
    headers: Headers,
    body: bytes,
) -> RecordedRequest:
    query = {k: (REDACTED if is_secret_name(k) else v) for k, v in query_list}
    logged = {k: (REDACTED if is_secret_name(k) else v) for k, v in headers.items()}
    return RecordedRequest(method, path, query, logged, body)


def _render(result: Any) -> tuple[int, bytes, str, Mapping[str, str]]:
    if result is None:
        return 204, b"", "", {}
    if isinstance(result, FakeResponse):
        if result.text is not None:
            payload, ctype = _encode(result.text, result.content_type)
        elif result.json is not None:
            payload, ctype = _encode(result.json, result.content_type)
        else:
            payload, ctype = b"", result.content_type or ""
        return result.status, payload, ctype, dict(result.headers or {})
    payload, ctype = _encode(result, None)
    return 200, payload, ctype, {}


async def _send(
    send: Send, status: int, payload: bytes, content_type: str, headers: Mapping[str, str]
) -> None:
    raw = [(k.lower().encode(), str(v).encode()) for k, v in headers.items()]
    names = {k for k, _ in raw}
    if content_type and b"content-type" not in names:
        raw.append((b"content-type", content_type.encode()))
    if status not in (204, 304):
        raw.append((b"content-length", str(len(payload)).encode()))
    else:
        payload = b""
    await send({"type": "http.response.start", "status": status, "headers": raw})
    await send({"type": "http.response.body", "body": payload})
