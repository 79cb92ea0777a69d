"""The connector's HTTP layer: one :class:`~fragment_core.transport.Transport` with the
configured auth, a per-source rate limit, retries and 429 handling, and error messages
that name the option to fix and never a secret."""

from __future__ import annotations

import json
import sys
from typing import Any
from urllib.parse import parse_qs, urlsplit, urlunsplit

import httpx

from fragment_core.connectors.http.config import ApiKeyAuth, HttpConfig
from fragment_core.connectors.http.config import BasicAuth as HttpBasicAuth
from fragment_core.connectors.http.config import BearerAuth as HttpBearerAuth
from fragment_core.errors import (
    AuthenticationError,
    ConfigurationError,
    FragmentError,
    TransientError,
)
from fragment_core.redaction import REDACTED, redact
from fragment_core.retries import Pacer
from fragment_core.task import UnreadableNumber
from fragment_core.transport import (
    BasicAuth,
    BearerAuth,
    HeaderAuth,
    OriginAuth,
    QueryAuth,
    Transport,
    origin_of,
)

__all__ = ["REDACTED", "HttpSession", "redact"]

class HttpSession:
    """Sends the connector's requests through one :class:`~fragment_core.transport.Transport`
    (paced by ``rate_limit``, retried by error class); ``requests_made`` counts them
    (retries included)."""

    def __init__(self, config: HttpConfig, *, source: str) -> None:
        self.config = config
        self.where = f"source {source!r}"
        self._origin = origin_of(config.base_url)
        auth: OriginAuth | None = None
        match config.auth:
            case HttpBearerAuth(token=token):
                auth = BearerAuth(token.get_secret_value())
            case HttpBasicAuth(username=username, password=password):
                auth = BasicAuth(username, password.get_secret_value())
            case ApiKeyAuth(key=key, location="header", name=name):
                auth = HeaderAuth(name, key.get_secret_value())
            case ApiKeyAuth(key=key, name=name):
                auth = QueryAuth(name, key.get_secret_value())
        self.secrets: set[str] = set(auth.secrets) if auth is not None else set()
        self.transport = Transport(
            config.base_url,
            auth=auth,
            headers=dict(config.headers),
            timeout=config.timeout,
            pacer=Pacer(config.rate_limit),
            name=self.where,
        )

    @property
    def requests_made(self) -> int:
        """Requests sent so far, retries included."""
        return self.transport.requests_made

    def close(self) -> None:
        """Close the connection pool."""
        self.transport.close()

    def request(
        self,
        method: str,
        url: str,
        *,
        key: str,
        params: dict[str, Any] | None = None,
        body: Any = None,
        headers: dict[str, str] | None = None,
        accept: frozenset[int] = frozenset(),
        decode: bool = True,
        retries: bool = True,
        unreachable_is_config: bool = False,
    ) -> tuple[httpx.Response, Any]:
        """Send one request (retrying transient failures and 429s); return it and its JSON.

        ``key`` is the option that chose the request (``options.backlog.path``); errors
        name it. Statuses in ``accept`` are returned instead of raised.
        """
        if "://" in url and origin_of(url) != self._origin:
            raise ConfigurationError(
                f"{key}: refusing to follow {origin_of(url)} outside options.base_url "
                f"({self._origin}): credentials are only sent to base_url"
            )

        # httpx replaces a URL's query with ``params``: move the query into params first
        parts = urlsplit(url)
        if parts.query:
            url = urlunsplit(parts._replace(query=""))
            params = {**_query_params(parts.query), **(params or {})}

        def unreachable(exc: httpx.TransportError) -> ConfigurationError | None:
            if not (unreachable_is_config and isinstance(exc, httpx.ConnectError)):
                return None
            return ConfigurationError(
                f"options.base_url: cannot reach {self.config.base_url} "
                f"({self._redact(str(exc))}); check the host name and port",
                where=self.where,
            )

        def send() -> tuple[httpx.Response, Any]:
            response = self.transport.request(
                method,
                url,
                params=params,
                json=body,
                headers=headers,
                retry=False,
                accept=accept,
                translate_error=lambda response: self._error_for(response, key),
                translate_exception=unreachable,
            )
            if response.status_code in accept:
                return response, None
            return response, self._decode(response, key) if decode else None

        return self.transport.retrying(send) if retries else send()

    # -- helpers ------------------------------------------------------------------------
    def _redact(self, text: str) -> str:
        return redact(text, self.secrets)

    def _error_for(self, response: httpx.Response, key: str) -> FragmentError | None:
        """The error naming the option to fix, for a refused request (``None`` leaves
        transient failures and 429s to the transport's default mapping)."""
        status = response.status_code
        if status in (408, 429) or status >= 500:
            return None
        request = response.request
        what = f"{request.method} {request.url.path}"
        said = self._redact(response.text[:300].strip()) if response.content else ""
        said = f"; the server said: {said}" if said else ""
        if status in (401, 403):
            return AuthenticationError(
                f"{what} was refused (HTTP {status}): the API at options.base_url "
                f"({self.config.base_url}) rejected the credentials of options.auth "
                f"(type {self.config.auth.type!r}); check the secret and its permissions"
                f"{said}",
                where=self.where,
            )
        hint = (
            f"no such path at {self.config.base_url}; check options.base_url and {key}"
            if status in (404, 405)
            else f"the request was refused; check {key}"
        )
        return ConfigurationError(
            f"{what} returned HTTP {status}: {hint}{said}", where=self.where
        )

    def _decode(self, response: httpx.Response, key: str) -> Any:
        if not response.content:
            return None
        try:
            return json.loads(
                response.content, parse_int=_int_or_unreadable, parse_constant=UnreadableNumber
            )
        except ValueError:
            what = f"{response.request.method} {response.request.url.path}"
            if "json" in response.headers.get("content-type", ""):
                raise TransientError(
                    f"{what}: the JSON response was cut short or is invalid", where=self.where
                ) from None
            start = self._redact(response.text[:60])
            raise ConfigurationError(
                f"{what}: the response is not JSON ({response.headers.get('content-type')}: "
                f"{start!r}); check options.base_url and {key}",
                where=self.where,
            ) from None


def _query_params(query: str) -> dict[str, str | list[str]]:
    values = parse_qs(query, keep_blank_values=True)
    return {k: v[0] if len(v) == 1 else v for k, v in values.items()}


def _int_or_unreadable(text: str) -> int | UnreadableNumber:
    """An integer, or for one of more digits than Python converts, an UnreadableNumber (so
    one record holding it is a bad record, not the whole page unreadable)."""
    limit = sys.get_int_max_str_digits()
    return int(text) if not limit or len(text.lstrip("-")) <= limit else UnreadableNumber(text)
