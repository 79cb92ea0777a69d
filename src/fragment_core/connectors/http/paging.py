"""Pagination styles: from one page's request and response to the next page's request."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from fragment_core.connectors.http.config import (
    CursorPagination,
    LinkHeaderPagination,
    NextUrlPagination,
    NoPagination,
    OffsetPagination,
    PagePagination,
)
from fragment_core.connectors.http.paths import MISSING, lookup, set_path
from fragment_core.errors import ConfigurationError, TransientError

__all__ = ["PageRequest", "first_request", "next_request"]

AnyPagination = (
    NoPagination
    | PagePagination
    | OffsetPagination
    | CursorPagination
    | LinkHeaderPagination
    | NextUrlPagination
)


@dataclass(frozen=True)
class PageRequest:
    """One page's request: ``url`` is a path under base_url or an absolute next link."""

    method: str
    url: str
    params: dict[str, Any] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    number: int = 1
    """1 for the first page, 2 for the second..."""

    def signature(self) -> str:
        """A key identifying the request (to detect a pagination loop)."""
        return json.dumps([self.url, self.params, self.body], sort_keys=True, default=str)


def first_request(pagination: AnyPagination, request: PageRequest) -> PageRequest:
    """The request of the first page."""
    params = dict(request.params)
    match pagination:
        case PagePagination():
            params[pagination.param] = pagination.start
            if pagination.size_param and pagination.size:
                params[pagination.size_param] = pagination.size
        case OffsetPagination():
            params[pagination.param] = pagination.start
            params[pagination.limit_param] = pagination.limit
    return replace(request, params=params)


def next_request(  # noqa: C901
    pagination: AnyPagination,
    request: PageRequest,
    response: httpx.Response,
    payload: Any,
    records: list[Any],
) -> PageRequest | None:
    """The request of the page after ``request``, or ``None`` when it was the last."""
    following = replace(request, number=request.number + 1)
    match pagination:
        case PagePagination():
            page = int(request.params[pagination.param])
            total = (
                _number(payload, pagination.total_pages_path, "total_pages_path")
                if pagination.total_pages_path
                else None
            )
            last = total is not None and page - pagination.start + 1 >= total
            if not records or (pagination.size and len(records) < pagination.size):
                if total is not None and not last:
                    raise _short_page(request, len(records), f"{total} pages")
                return None
            if last:
                return None
            return replace(following, params={**request.params, pagination.param: page + 1})
        case OffsetPagination():
            offset = int(request.params[pagination.param]) + len(records)
            total = (
                _number(payload, pagination.total_path, "total_path")
                if pagination.total_path
                else None
            )
            if len(records) < pagination.limit:
                if total is not None and offset < total:
                    raise _short_page(request, len(records), f"{total} records")
                return None
            if total is not None and offset >= total:
                return None
            return replace(following, params={**request.params, pagination.param: offset})
        case CursorPagination():
            cursor = lookup(payload, pagination.cursor_path)
            if cursor in (MISSING, None, "") or not records:
                return None
            if pagination.location == "query":
                return replace(following, params={**request.params, pagination.param: cursor})
            body = copy.deepcopy(request.body) if request.body else {}
            set_path(body, pagination.param, cursor)
            return replace(following, body=body)
        case LinkHeaderPagination():
            link = response.links.get(pagination.rel, {}).get("url")
            if not link:
                return None
            return replace(following, url=str(response.url.join(link)), params={})
        case NextUrlPagination():
            link = lookup(payload, pagination.next_url_path)
            if link in (MISSING, None, ""):
                return None
            if not isinstance(link, str):
                raise ConfigurationError(
                    f"options.pagination.next_url_path: expected a URL at "
                    f"{pagination.next_url_path!r}, got {type(link).__name__}"
                )
            return replace(following, url=str(response.url.join(link)), params={})
    return None


def _short_page(request: PageRequest, count: int, claimed: str) -> TransientError:
    """A page shorter than a full one while the response claims more: the listing changed
    or was cut short, so the fetch is not complete (and nothing may be closed)."""
    return TransientError(
        f"page {request.number} ({request.method} {request.url}) returned {count} records, "
        f"a short page, but the response claims {claimed}: the fetch is incomplete"
    )


def _number(payload: Any, path: str, key: str) -> int:
    value = lookup(payload, path)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigurationError(
            f"options.pagination.{key}: no number at {path!r} in the response "
            f"(got {'nothing' if value is MISSING else type(value).__name__})"
        )
    try:
        return int(value)
    except ValueError:
        raise ConfigurationError(
            f"options.pagination.{key}: {value!r} at {path!r} is not a number"
        ) from None
