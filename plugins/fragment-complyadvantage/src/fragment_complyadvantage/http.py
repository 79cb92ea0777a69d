"""HTTP plumbing both ComplyAdvantage clients share: the Ratelimit-* pacer, JSON answers
that are retried when cut short, and the token auth of the legacy API."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from datetime import datetime
from typing import Any, TypeVar

import httpx

from fragment_core.errors import (
    ConfigurationError,
    FragmentError,
    IncompleteFetchError,
    TransientError,
)
from fragment_core.retries import HeaderPacer
from fragment_core.transport import OriginAuth, Transport, error_body

T = TypeVar("T")


def named(items: Iterator[T], where: str) -> Iterator[T]:
    """``items``, an incomplete listing's error naming the source (``where``)."""
    try:
        yield from items
    except IncompleteFetchError as exc:
        if exc.where is not None:
            raise
        raise IncompleteFetchError(
            exc.what, fetched=exc.fetched, total=exc.total, where=where
        ) from None


def newest_since(
    items: Iterable[T], since: datetime, updated: Callable[[T], datetime | None]
) -> Iterator[T]:
    """Items of a newest-first listing until the first one updated before ``since``
    (no further page is fetched). An item without a readable time is yielded."""
    for item in items:
        at = updated(item)
        if at is not None and at < since:
            return
        yield item


class NotFoundError(ConfigurationError):
    """The API answered 404 for a search, case or alert."""


class TokenAuth(OriginAuth):
    """``Authorization: Token <api_key>`` (ComplyAdvantage's legacy API)."""

    def __init__(self, api_key: str, *, origin: str | None = None) -> None:
        super().__init__(origin=origin)
        self._key = api_key

    @property
    def secrets(self) -> tuple[str, ...]:
        return (self._key,)

    def attach(self, request: httpx.Request) -> None:
        request.headers["Authorization"] = f"Token {self._key}"


def ratelimit_pacer(per_minute: float | None) -> HeaderPacer:
    """The pacer both clients share: ``per_minute`` spacing, and when an answer said
    ``Ratelimit-Remaining: 0``, the next request waits for its ``Ratelimit-Reset`` (seconds),
    so the account's limit is not tripped."""
    return HeaderPacer(
        per_minute, remaining_header="Ratelimit-Remaining", reset_header="Ratelimit-Reset"
    )


def make_transport(
    base_url: str,
    *,
    gate: HeaderPacer,
    where: str,
    timeout: float,
    translate: Callable[[httpx.Response], FragmentError | None],
    auth: OriginAuth | None = None,
) -> Transport:
    """A Transport paced by ``gate`` (which reads its answers) and whose failures
    ``translate`` names."""
    return Transport(
        base_url, auth=auth, timeout=timeout, pacer=gate, translate_error=translate, name=where
    )


def fetch_json(
    transport: Transport,
    method: str,
    path: str,
    *,
    operation: str,
    params: Mapping[str, Any] | None = None,
    json: Any = None,
) -> Any:
    """Send one request and decode its JSON; an answer that is not whole JSON (cut short
    on the way) is a :class:`TransientError`, retried with the rest."""

    def once() -> Any:
        response = transport.request(
            method, path, params=params, json=json, operation=operation, retry=False
        )
        if not response.content:
            return None
        try:
            return response.json()
        except ValueError:
            raise TransientError(
                f"{operation}: the answer ({len(response.content)} bytes) is not whole JSON "
                "(cut short on the way?)",
                where=transport.where,
            ) from None

    return transport.retrying(once)


def error_message(response: httpx.Response) -> str:
    """The vendor's own words from an error body (``message`` / ``error``), short."""
    body = error_body(response, limit=200)
    for key in ("message", "error", "detail", "status"):
        if isinstance(body.get(key), str) and body[key].strip():
            return str(body[key]).strip()[:200]
    return ""
