"""The connector's HTTP layer: one httpx client with the configured auth, a per-source
rate limit, retries and 429 handling through :mod:`fragment_core.retries`, and error
messages that name the option to fix and never a secret."""

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
    TransientError,
)
from fragment_core.redaction import REDACTED, redact
from fragment_core.retries import Pacer, call_with_retries, error_for_status, transport_error
from fragment_core.task import UnreadableNumber
from fragment_core.transport import (
    BasicAuth,
    BearerAuth,
    HeaderAuth,
    OriginAuth,
    QueryAuth,
    guarded_client,
    origin_of,
)

__all__ = ["REDACTED", "HttpSession", "redact"]

class HttpSession:
    """Sends the connector's requests; ``requests_made`` counts them (retries included)."""

    def __init__(self, config: HttpConfig, *, source: str) -> None:
        self.config = config
        self.where = f"source {source!r}"
        self.requests_made = 0
        self._limiter = Pacer(config.rate_limit)
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
        self._client = guarded_client(
            config.base_url,
            auth=auth,
            headers=dict(config.headers),
            timeout=config.timeout,
            where=self.where,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self._client.close()

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

        def send() -> tuple[httpx.Response, Any]:
            self._limiter.wait()
            self.requests_made += 1
            try:
                response = self._client.request(
                    method, url, params=params, json=body, headers=headers
                )
            except httpx.TransportError as exc:
                if unreachable_is_config and isinstance(exc, httpx.ConnectError):
                    raise ConfigurationError(
                        f"options.base_url: cannot reach {self.config.base_url} "
                        f"({self._redact(str(exc))}); check the host name and port",
                        where=self.where,
                    ) from None
                error = transport_error(exc, where=self.where)
                raise TransientError(
                    self._redact(f"{method} {_path(url)}: {error.message}"), where=self.where
                ) from None
            if response.status_code in accept:
                return response, None
            self._raise_for_status(response, key)
            return response, self._decode(response, key) if decode else None

        if not retries:
            return send()
        return call_with_retries(send)

    # -- helpers ------------------------------------------------------------------------
    def _redact(self, text: str) -> str:
        return redact(text, self.secrets)

    def _raise_for_status(self, response: httpx.Response, key: str) -> None:
        request = response.request
        what = f"{request.method} {request.url.path}"
        said = self._redact(response.text[:300].strip()) if response.content else ""
        said = f"; the server said: {said}" if said else ""
        error = error_for_status(
            response.status_code, response.headers, f"{what}{said}", where=self.where
        )
        if error is None:
            return
        status = response.status_code
        if isinstance(error, AuthenticationError):
            raise AuthenticationError(
                f"{what} was refused (HTTP {status}): the API at options.base_url "
                f"({self.config.base_url}) rejected the credentials of options.auth "
                f"(type {self.config.auth.type!r}); check the secret and its permissions"
                f"{said}",
                where=self.where,
            )
        if isinstance(error, ConfigurationError):
            hint = (
                f"no such path at {self.config.base_url}; check options.base_url and {key}"
                if status in (404, 405)
                else f"the request was refused; check {key}"
            )
            raise ConfigurationError(
                f"{what} returned HTTP {status}: {hint}{said}", where=self.where
            )
        raise error

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


def _path(url: str) -> str:
    return urlsplit(url).path or "/"


def _int_or_unreadable(text: str) -> int | UnreadableNumber:
    """An integer, or for one of more digits than Python converts, an UnreadableNumber (so
    one record holding it is a bad record, not the whole page unreadable)."""
    limit = sys.get_int_max_str_digits()
    return int(text) if not limit or len(text.lstrip("-")) <= limit else UnreadableNumber(text)
