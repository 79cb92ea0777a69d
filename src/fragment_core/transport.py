"""Credentials that stay on their origin: auth styles and a guarded httpx client.

Every auth style is an :class:`httpx.Auth` that attaches its credential **only** when the
request's origin (scheme, host, port) is the configured one. :func:`guarded_client`
builds an :class:`httpx.Client` for one ``base_url`` that:

* follows redirects within the origin of ``base_url`` (the credential re-attached);
* refuses a redirect to another origin with a :class:`CrossOriginError` (a
  :class:`~fragment_core.errors.ConfigurationError`: the fetch fails, it is never taken
  as an empty answer), before anything is sent there;
* refuses any request to another origin (a next-page URL on another host), so neither
  the auth nor the configured headers (an API key in ``X-API-Key``) ever leave the origin;
* registers the credentials with :mod:`fragment_core.redaction` so httpx's logs mask them.

``127.0.0.1`` and ``localhost`` are different origins, as are two ports of one host.
"""

from __future__ import annotations

import base64
import contextlib
import json as jsonlib
import math
import ssl
import threading
import time
from collections.abc import Callable, Collection, Generator, Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx

from fragment_core.errors import (
    AuthenticationError,
    ConfigurationError,
    FragmentError,
    RateLimitedError,
    TransientError,
)
from fragment_core.redaction import redact, redact_url, register_secrets
from fragment_core.retries import (
    Pacer,
    RateBudget,
    RetryPolicy,
    call_with_retries,
    error_for_status,
    retry_policy,
    transport_error,
)
from fragment_core.retries import (
    operation as retry_operation,
)

T = TypeVar("T")

__all__ = [
    "BasicAuth",
    "BearerAuth",
    "CrossOriginError",
    "HeaderAuth",
    "OriginAuth",
    "QueryAuth",
    "RefreshingBearerAuth",
    "RequestTally",
    "Transport",
    "error_body",
    "guarded_client",
    "is_connection_failure",
    "json_object",
    "origin_of",
    "sdk_response",
]

_DEFAULT_PORTS = {"http": 80, "https": 443}


def origin_of(url: str | httpx.URL) -> str:
    """``scheme://host:port`` of ``url`` (the default port made explicit)."""
    parts = urlsplit(str(url))
    scheme = parts.scheme.lower()
    port = parts.port or _DEFAULT_PORTS.get(scheme)
    return f"{scheme}://{(parts.hostname or '').lower()}:{port}"


class CrossOriginError(ConfigurationError):
    """A request or redirect would have left the configured origin."""


class OriginAuth(httpx.Auth):
    """Base of the auth styles: attaches only on :attr:`origin` (set by
    :func:`guarded_client`, or given as ``origin=``)."""

    def __init__(self, *, origin: str | None = None) -> None:
        self.origin = origin_of(origin) if origin else None

    @property
    def secrets(self) -> tuple[str, ...]:
        """The secret values this auth sends (for redaction)."""
        return ()

    def bind(self, base_url: str) -> OriginAuth:
        """Fix the origin to that of ``base_url`` (unless already set); returns self."""
        if self.origin is None:
            self.origin = origin_of(base_url)
        return self

    def attach(self, request: httpx.Request) -> None:
        """Add the credential to ``request`` (only called on the configured origin)."""
        raise NotImplementedError

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self.origin is not None and origin_of(request.url) == self.origin:
            self.attach(request)
        yield request

    def __repr__(self) -> str:
        return f"{type(self).__name__}(origin={self.origin!r})"


class BearerAuth(OriginAuth):
    """``Authorization: Bearer <token>``."""

    def __init__(self, token: str, *, origin: str | None = None) -> None:
        super().__init__(origin=origin)
        self._token = token

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self._token,)

    def attach(self, request: httpx.Request) -> None:
        request.headers["Authorization"] = f"Bearer {self._token}"


class RefreshingBearerAuth(OriginAuth):
    """``Authorization: Bearer <token>`` for a token that expires (OAuth-style APIs).

    ``fetch()`` gets a new token and returns ``(token, lifetime in seconds or None)``; it
    must not send through a client using this auth (use a separate one for the token
    endpoint). The token is cached and fetched again ``margin`` seconds before it
    expires; when the server answers 401 anyway (revoked, clock skew), the token is
    fetched again **once** and the request sent again **once**: a second 401 is the answer.
    Thread-safe; ``refreshes`` counts the fetches. New tokens are masked in httpx's logs.
    """

    def __init__(
        self,
        fetch: Callable[[], tuple[str, float | None]],
        *,
        margin: float = 60.0,
        origin: str | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        super().__init__(origin=origin)
        self._fetch = fetch
        self.margin = margin
        self._clock = clock
        self._token: str | None = None
        self._expires = math.inf
        self._lock = threading.Lock()
        self.refreshes = 0

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self._token,) if self._token else ()

    def token(self) -> str:
        """The current token, fetched first when there is none or it is about to expire."""
        with self._lock:
            if self._token is None or self._clock() >= self._expires - self.margin:
                token, lifetime = self._fetch()
                if not token:
                    raise AuthenticationError("the token endpoint answered without a token")
                register_secrets((token,))
                self._token = token
                self._expires = math.inf if lifetime is None else self._clock() + lifetime
                self.refreshes += 1
            return self._token

    def invalidate(self, token: str) -> None:
        """Forget ``token`` (the server refused it), unless a newer one replaced it already."""
        with self._lock:
            if self._token == token:
                self._token = None

    def attach(self, request: httpx.Request) -> None:
        request.headers["Authorization"] = f"Bearer {self.token()}"

    def auth_flow(self, request: httpx.Request) -> Generator[httpx.Request, httpx.Response, None]:
        if self.origin is None or origin_of(request.url) != self.origin:
            yield request
            return
        token = self.token()
        request.headers["Authorization"] = f"Bearer {token}"
        response = yield request
        if response.status_code == 401:
            self.invalidate(token)
            self.attach(request)
            yield request


class HeaderAuth(OriginAuth):
    """A secret in a named header (``X-API-Key: <key>``)."""

    def __init__(self, name: str, value: str, *, origin: str | None = None) -> None:
        super().__init__(origin=origin)
        self.name = name
        self._value = value

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self._value,)

    def attach(self, request: httpx.Request) -> None:
        request.headers[self.name] = self._value


class BasicAuth(OriginAuth):
    """``Authorization: Basic base64(username:password)``."""

    def __init__(self, username: str, password: str, *, origin: str | None = None) -> None:
        super().__init__(origin=origin)
        self.username = username
        self._password = password

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self._password,)

    def attach(self, request: httpx.Request) -> None:
        pair = f"{self.username}:{self._password}".encode()
        request.headers["Authorization"] = f"Basic {base64.b64encode(pair).decode()}"


class QueryAuth(OriginAuth):
    """A secret in a query parameter (``?api_key=<key>``)."""

    def __init__(self, param: str, value: str, *, origin: str | None = None) -> None:
        super().__init__(origin=origin)
        self.param = param
        self._value = value

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self._value,)

    def attach(self, request: httpx.Request) -> None:
        request.url = request.url.copy_merge_params({self.param: self._value})


def guarded_client(
    base_url: str,
    *,
    auth: OriginAuth | None = None,
    headers: Mapping[str, str] | None = None,
    timeout: float = 30.0,
    where: str | None = None,
    secrets: tuple[str, ...] = (),
    **options: Any,
) -> httpx.Client:
    """An :class:`httpx.Client` for ``base_url`` whose credentials never leave its origin.

    ``where`` names the caller in errors (``source 'tickets'``); ``secrets`` are more
    values to mask (secret ``headers``); ``options`` go to :class:`httpx.Client`.
    """
    origin = origin_of(base_url)
    if auth is not None:
        auth.bind(base_url)
        if auth.origin != origin:
            raise ValueError(f"the auth is bound to {auth.origin}, not to {origin}")
    masked = tuple(s for s in (*(auth.secrets if auth else ()), *secrets) if s)
    register_secrets(masked)

    def refuse_foreign(request: httpx.Request) -> None:
        if origin_of(request.url) != origin:
            raise CrossOriginError(
                f"refusing to send {request.method} to {redact_url(str(request.url))}: "
                f"it is outside {redact_url(base_url)} ({origin}), and credentials are "
                "only sent there",
                where=where,
            )
        if auth is not None:  # every hop on the origin, same-origin redirects included
            auth.attach(request)

    def refuse_foreign_redirect(response: httpx.Response) -> None:
        if not response.has_redirect_location:
            return
        target = response.request.url.join(response.headers["Location"])
        if origin_of(target) == origin:
            return
        response.close()
        asked = f"{response.request.method} {response.request.url.path}"
        raise CrossOriginError(
            redact(
                f"{asked} at {origin} answered HTTP {response.status_code} redirecting to "
                f"another origin, {origin_of(target)} ({redact_url(str(target))}); the "
                "redirect is not followed, so credentials stay on the configured origin: "
                "point base_url at the host that serves the API",
                masked,
            ),
            where=where,
        )

    return httpx.Client(
        base_url=base_url,
        auth=auth,
        headers=dict(headers or {}),
        timeout=timeout,
        follow_redirects=True,
        event_hooks={"request": [refuse_foreign], "response": [refuse_foreign_redirect]},
        **options,
    )


@dataclass
class RequestTally:
    """The requests one :class:`Transport` sent within :meth:`Transport.tally`."""

    count: int = 0


#: The open tallies of this context, by transport: a run counts only its own requests
#: when runs share one transport (fleet workers run several at once). Threads that are
#: given this context (the sync's apply pool) count into the same tallies.
_TALLIES: ContextVar[dict[int, RequestTally] | None] = ContextVar("fragment_tallies", default=None)


class Transport:
    """One vendor's HTTP: the guarded client, a pacer, retries by error class, and
    status-to-error mapping.

    ``rate_limit_hook(response)`` may return the seconds a 429 asks to wait (a vendor's own
    signalling); otherwise the standard headers are read (Retry-After seconds or date,
    retry-after-ms, X-RateLimit-Reset, RateLimit-Reset). ``translate_error(response)`` may
    return the error for a failed response; otherwise the default mapping applies
    (429 rate limited, 5xx/408 transient, 401/403 authentication, other 4xx configuration).
    Transient and rate-limited errors are retried under ``retry`` (or the policy in force).
    ``verify``: TLS verification as httpx takes it, or the path of a CA bundle (PEM).
    """

    def __init__(
        self,
        base_url: str,
        *,
        auth: OriginAuth | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float = 30.0,
        retry: RetryPolicy | None = None,
        pacer: RateBudget | None = None,
        rate_limit_hook: Callable[[httpx.Response], float | None] | None = None,
        translate_error: Callable[[httpx.Response], FragmentError | None] | None = None,
        name: str = "",
        verify: ssl.SSLContext | str | bool = True,
    ) -> None:
        self.base_url = base_url
        self.name = name
        self.where = name or origin_of(base_url)
        self.retry = retry
        self.pacer: RateBudget = pacer or Pacer(None)
        self.requests_made = 0
        self._count_lock = threading.Lock()
        self._rate_limit_hook = rate_limit_hook
        self._translate_error = translate_error
        self._secrets = auth.secrets if auth is not None else ()
        if isinstance(verify, str):  # a CA bundle (PEM) for a private CA or a test server
            verify = ssl.create_default_context(cafile=verify)
        self.httpx_client = guarded_client(
            base_url, auth=auth, headers=headers, timeout=timeout, where=self.where, verify=verify
        )
        # the pacer reads every answer's X-RateLimit-Remaining / -Reset (RateBudget.observe)
        self.httpx_client.event_hooks["response"].append(self.pacer.observe)

    def __repr__(self) -> str:
        return f"Transport({redact_url(self.base_url)!r}, name={self.name!r})"

    @contextlib.contextmanager
    def tally(self) -> Iterator[RequestTally]:
        """Count the requests (retries included) this transport sends within the block
        from this context: the current thread and the threads given its context. Unlike
        :attr:`requests_made`, another thread's requests meanwhile do not count."""
        tally = RequestTally()
        token = _TALLIES.set({**(_TALLIES.get() or {}), id(self): tally})
        try:
            yield tally
        finally:
            _TALLIES.reset(token)

    def __enter__(self) -> Transport:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """Close the connection pool."""
        self.httpx_client.close()

    def retrying(self, fn: Callable[[], T], operation: str = "") -> T:
        """Call ``fn`` under this transport's retry policy (transient errors retried);
        ``operation`` names it in the retry log lines."""
        with retry_operation(operation or self.where), contextlib.ExitStack() as stack:
            if self.retry is not None:
                stack.enter_context(retry_policy(self.retry))
            return call_with_retries(fn)

    def error_for(
        self,
        response: httpx.Response,
        operation: str = "",
        translate_error: Callable[[httpx.Response], FragmentError | None] | None = None,
    ) -> FragmentError | None:
        """The error a failed response stands for (``None`` when it succeeded);
        ``translate_error`` is tried before the transport's own and the default mapping."""
        if response.status_code < 400:
            return None
        for translate in (translate_error, self._translate_error):
            if translate is not None and (error := translate(response)) is not None:
                return error
        what = operation or f"{response.request.method} {response.request.url.path}"
        said = redact(response.text[:300].strip(), self._secrets) if response.content else ""
        message = f"{what}; the server said: {said}" if said else what
        error = error_for_status(response.status_code, response.headers, message, where=self.where)
        if (
            isinstance(error, RateLimitedError)
            and self._rate_limit_hook is not None
            and (wait := self._rate_limit_hook(response)) is not None
        ):
            error = RateLimitedError(error.message, retry_after=wait, where=self.where)
        return error

    def request(
        self,
        method: str,
        url_or_path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        content: bytes | None = None,
        headers: Mapping[str, str] | None = None,
        operation: str = "",
        retry: bool = True,
        accept: Collection[int] = (),
        translate_error: Callable[[httpx.Response], FragmentError | None] | None = None,
        translate_exception: Callable[[httpx.TransportError], FragmentError | None] | None = None,
        pacer: RateBudget | None = None,
    ) -> httpx.Response:
        """Send one request (paced; retried when ``retry``); raise the mapped error.

        Statuses in ``accept`` are returned, not raised. ``translate_error`` maps a failed
        response for this request only (before the transport's own mapping);
        ``translate_exception`` may turn a connection error into another error class;
        ``pacer`` paces this request too (as in :meth:`call`).
        """

        def send() -> httpx.Response:
            tally = (_TALLIES.get() or {}).get(id(self))
            with self._count_lock:
                self.requests_made += 1
                if tally is not None:
                    tally.count += 1
            try:
                with self.pacer.place(), pacer.place() if pacer else contextlib.nullcontext():
                    response = self.httpx_client.request(
                        method,
                        url_or_path,
                        params=params,
                        json=json,
                        content=content,
                        headers=headers,
                    )
            except httpx.TransportError as exc:
                translated = translate_exception(exc) if translate_exception else None
                if translated is not None:
                    raise self._named(translated) from None
                error = transport_error(exc, where=self.where)
                error.message = redact(error.message, self._secrets)
                raise type(error)(
                    f"{operation or method + ' ' + url_or_path}: {error.message}",
                    where=self.where,
                ) from None
            if response.status_code in accept:
                return response
            failure = self.error_for(response, operation, translate_error)
            if failure is not None:
                raise self._named(failure)
            return response

        what = operation or f"{method} {url_or_path}"
        return self.retrying(send, what) if retry else send()

    def get_json(self, url_or_path: str, **kwargs: Any) -> Any:
        """``GET`` and decode the JSON answer."""
        return self.request("GET", url_or_path, **kwargs).json()

    def post_json(self, url_or_path: str, **kwargs: Any) -> Any:
        """``POST`` and decode the JSON answer."""
        return self.request("POST", url_or_path, **kwargs).json()

    def call(
        self,
        fn: Callable[..., T],
        *args: Any,
        operation: str = "",
        translate_exception: Callable[[BaseException], FragmentError | None] | None = None,
        pacer: RateBudget | None = None,
        **kwargs: Any,
    ) -> T:
        """Run an SDK call under the same pacer and retry policy; ``translate_exception``
        maps the SDK's exceptions to our error classes (retried when transient).

        ``pacer`` paces this call too (an API with its own, lower limit, such as a search
        endpoint). An error raised or translated without ``where`` is given the
        transport's, and its message is redacted of the credentials.
        """

        def once() -> T:
            try:
                with self.pacer.place(), pacer.place() if pacer else contextlib.nullcontext():
                    return fn(*args, **kwargs)
            except FragmentError as exc:
                raise self._named(exc) from None
            except Exception as exc:
                error = translate_exception(exc) if translate_exception else None
                if error is None and is_connection_failure(exc):
                    error = TransientError(
                        f"{operation or 'the call'}: could not reach {redact_url(self.base_url)}"
                        f" ({type(exc).__name__}); check base_url and the network"
                    )
                if error is None:
                    raise
                raise self._named(error) from None

        return self.retrying(once, operation or getattr(fn, "__qualname__", ""))

    def call_openapi(
        self,
        method: Callable[..., Any],
        *args: Any,
        operation: str,
        vendor: str,
        exceptions: tuple[type[BaseException], ...],
        timeout: float,
        translate_error: Callable[[httpx.Response], FragmentError | None] | None = None,
        pacer: RateBudget | None = None,
        **params: Any,
    ) -> dict[str, Any]:
        """One call of an openapi-generator SDK, ``method(*args, **params)``, under
        :meth:`call` -> the decoded JSON object it answered.

        The call passes ``_preload_content=False`` (results stay plain dicts: one malformed
        item fails alone in mapping, not the whole page in the SDK's model layer) and
        ``_request_timeout=timeout``. The SDK's ``exceptions`` are read as HTTP failures
        (``translate_error`` first, then :meth:`error_for`); one without a status (the
        SDK's own transport failure) is transient. ``vendor`` names the service in errors.
        """

        def once() -> dict[str, Any]:
            raw = method(*args, **params, _preload_content=False, _request_timeout=timeout)
            return json_object(raw.data, f"{vendor}'s answer to {operation}")

        def translate(exc: BaseException) -> FragmentError | None:
            if isinstance(exc, exceptions):
                status = getattr(exc, "status", None)
                if not status:
                    return TransientError(f"could not reach {vendor} to {operation}")
                headers, body = getattr(exc, "headers", None), getattr(exc, "body", None)
                response = sdk_response(status, headers, body)
                return self.error_for(response, operation, translate_error)
            # On a TLS failure the generated client raises ApiException(status=0, body=None)
            # and then trips over that body itself (``e.body.decode``): report the failure.
            cause = exc.__context__ if isinstance(exc, AttributeError) else None
            if cause is None or getattr(cause, "status", None) != 0:
                return None
            reason = " ".join(str(getattr(cause, "reason", "") or "").split())
            return TransientError(
                f"could not reach {vendor} to {operation}: {reason or 'connection failed'}"
            )

        return self.call(once, operation=operation, pacer=pacer, translate_exception=translate)

    def _named(self, error: FragmentError) -> FragmentError:
        error.attribute(self.where)
        error.message = redact(error.message, self._secrets)
        return error


#: SDK exceptions meaning "the vendor could not be reached", by module and class name (so
#: no SDK's HTTP library is imported here): urllib3 (openapi-generator SDKs), requests.
_CONNECTION_FAILURES = {
    ("urllib3.exceptions", "HTTPError"),
    ("requests.exceptions", "ConnectionError"),
    ("requests.exceptions", "Timeout"),
}


def is_connection_failure(exc: BaseException) -> bool:
    """Whether ``exc`` is an HTTP library's "could not reach the server" (connection
    refused or dropped, timeout, TLS): :meth:`Transport.call` retries those as transient
    when ``translate_exception`` does not map them."""
    if isinstance(exc, httpx.TransportError | ConnectionError | TimeoutError):
        return True
    return any((c.__module__, c.__name__) in _CONNECTION_FAILURES for c in type(exc).__mro__)


def sdk_response(
    status: int, headers: Any = None, body: bytes | str | None = None
) -> httpx.Response:
    """An :class:`httpx.Response` standing for an SDK's failed call (its status, headers and
    body), so one ``translate_error(response)`` and :meth:`Transport.error_for` read SDK
    failures as they read HTTP ones."""
    content = body.encode() if isinstance(body, str) else body or b""
    return httpx.Response(status, headers=dict(headers or {}), content=content)


def json_object(raw: bytes | str | None, what: str) -> dict[str, Any]:
    """Decode an answer that must be a JSON object (empty: ``{}``); a
    :class:`~fragment_core.errors.TransientError` naming ``what`` otherwise."""
    try:
        data = jsonlib.loads(raw) if raw else {}
    except ValueError:
        data = None
    if not isinstance(data, dict):
        raise TransientError(f"{what} is not a JSON object")
    return data


def error_body(response: httpx.Response, limit: int = 300) -> dict[str, Any]:
    """A failed answer's body, for reading the vendor's own words in ``translate_error``:
    its JSON object, else ``{"message": the first limit characters of its text}`` (HTML
    from a proxy, plain text, a JSON list), else ``{}`` when it has no body."""
    try:
        data = jsonlib.loads(response.content) if response.content else {}
    except ValueError:
        data = None
    if isinstance(data, dict):
        return data
    return {"message": response.text[:limit].strip()}
