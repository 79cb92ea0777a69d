"""Paging, one way for every connector: ``paginate(fetch_page)`` and HTTP paginators.

``paginate`` is transport-agnostic: give it a function that fetches one page from the
previous page's ``next`` token (``None`` for the first page) and it owns the rules every
listing needs:

- ``max_pages``: a runaway listing stops with :class:`MaxPagesError`;
- loop detection: a ``next`` token seen before stops with :class:`PagingLoopError`;
- de-duplication by ``id_of``: an item whose id was already yielded is skipped;
- completeness: when a page announced ``total`` and the listing ends with fewer unique
  items than the largest total announced (a listing that shrank while paged may have
  shifted an item past the pages already read),
  :class:`~fragment_core.errors.IncompleteFetchError` (a TransientError) is raised: the
  run fails and is retried, nothing is closed for a record that was cut off.

The HTTP paginators (:class:`PageNumberPaging`, :class:`OffsetPaging`,
:class:`CursorPaging`, :class:`LinkHeaderPaging`, :class:`NextUrlPaging`) turn one page's
request and response into a :class:`Page` whose ``next`` is the following
:class:`PageRequest`; :func:`paginate_http` drives them through ``paginate``.
"""

from __future__ import annotations

import copy
import json
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from itertools import islice
from typing import Any, Generic, Protocol, TypeVar

import httpx

from fragment_core.dotted import MISSING, lookup, set_path
from fragment_core.errors import ConfigurationError, IncompleteFetchError

__all__ = [
    "CursorPaging",
    "LinkHeaderPaging",
    "MaxPagesError",
    "NextUrlPaging",
    "NoPaging",
    "OffsetPaging",
    "Page",
    "PageNumberPaging",
    "PageRequest",
    "Paginator",
    "PagingLoopError",
    "batched",
    "item_id",
    "paginate",
    "paginate_http",
    "unseen",
]

T = TypeVar("T")


@dataclass(frozen=True)
class Page(Generic[T]):
    """One page: its ``items``, the token of the ``next`` page (``None``: this was the
    last) and the ``total`` number of items the listing announced, when it does."""

    items: Sequence[T]
    next: object | None
    total: int | None = None


class MaxPagesError(ConfigurationError):
    """The listing went on past ``max_pages`` pages."""

    def __init__(self, what: str, max_pages: int, *, where: str | None = None) -> None:
        self.max_pages = max_pages
        super().__init__(
            f"{what or 'the fetch'}: stopped after {max_pages} pages (max_pages); raise it "
            "if the listing really is that large",
            where=where,
        )


class PagingLoopError(ConfigurationError):
    """A page's ``next`` token was seen before: the listing does not advance."""

    def __init__(self, what: str, page: int, token: object, *, where: str | None = None):
        self.page = page
        self.token = token
        super().__init__(
            f"{what or 'the fetch'}: page {page} repeats an earlier page's next token; "
            "the listing does not advance",
            where=where,
        )


def _token_key(token: object) -> str:
    signature = getattr(token, "signature", None)
    if callable(signature):
        return str(signature())
    try:
        return json.dumps(token, sort_keys=True, default=repr)
    except (TypeError, ValueError):
        return repr(token)


def paginate(
    fetch_page: Callable[[object | None], Page[T]],
    *,
    id_of: Callable[[T], str | None] | None = None,
    max_pages: int | None = None,
    what: str = "",
    where: str | None = None,
) -> Iterator[T]:
    """Every item of a paged listing, each once; see the module docstring for the rules.

    ``fetch_page(token)`` fetches one page (``token`` is ``None`` for the first).
    ``id_of`` names an item (``None``: an item without id, never de-duplicated); without
    ``id_of`` every item counts. ``what`` names the listing in errors, ``where`` its
    source (``connector.where``).
    """
    seen_tokens: set[str] = set()
    seen_ids: set[str] = set()
    count = 0
    total: int | None = None
    token: object | None = None
    number = 0
    while True:
        number += 1
        if max_pages is not None and number > max_pages:
            raise MaxPagesError(what, max_pages, where=where)
        page = fetch_page(token)
        if page.total is not None:
            total = page.total if total is None else max(total, page.total)
        for item in page.items:
            if id_of is not None:
                item_id = id_of(item)
                if item_id is not None:
                    if item_id in seen_ids:
                        continue
                    seen_ids.add(item_id)
            count += 1
            yield item
        if page.next is None:
            break
        key = _token_key(page.next)
        if key in seen_tokens:
            raise PagingLoopError(what, number + 1, page.next, where=where)
        seen_tokens.add(key)
        token = page.next
    if total is not None and count < total:
        raise IncompleteFetchError(what, fetched=count, total=total, where=where)


# -- HTTP ------------------------------------------------------------------------------------
@dataclass(frozen=True)
class PageRequest:
    """One page's request: ``url`` is a path under the base URL or an absolute next link."""

    method: str
    url: str
    params: dict[str, Any] = field(default_factory=dict)
    body: dict[str, Any] | None = None
    headers: dict[str, str] = field(default_factory=dict)
    number: int = 1
    """1 for the first page, 2 for the second..."""
    page_size: int | None = None
    """The page size learned from the first page (page-number paging without a size)."""

    def signature(self) -> str:
        """A key identifying the request (to detect a paging loop)."""
        return json.dumps([self.url, self.params, self.body], sort_keys=True, default=str)


class Paginator(Protocol):
    """From one page's request and response to a :class:`Page` naming the next request."""

    def first(self, request: PageRequest) -> PageRequest:
        """The request of the first page."""
        ...

    def page(
        self, request: PageRequest, response: httpx.Response, payload: Any, items: list[Any]
    ) -> Page[Any]:
        """The page fetched by ``request``; ``next`` is the following request or ``None``."""
        ...


def _following(request: PageRequest, **changes: Any) -> PageRequest:
    return replace(request, number=request.number + 1, **changes)


def _number(payload: Any, path: str, key: str) -> int:
    value = lookup(payload, path)
    if isinstance(value, bool) or not isinstance(value, (int, float, str)):
        raise ConfigurationError(
            f"{key}: no number at {path!r} in the response "
            f"(got {'nothing' if value is MISSING else type(value).__name__})"
        )
    try:
        return int(value)
    except ValueError:
        raise ConfigurationError(f"{key}: {value!r} at {path!r} is not a number") from None


@dataclass(frozen=True)
class NoPaging:
    """One request returns the whole listing."""

    def first(self, request: PageRequest) -> PageRequest:
        """The request as given."""
        return request

    def page(
        self, request: PageRequest, response: httpx.Response, payload: Any, items: list[Any]
    ) -> Page[Any]:
        """The only page."""
        return Page(items, None)


@dataclass(frozen=True)
class PageNumberPaging:
    """``?page=1``, ``?page=2``... until a short or empty page, or ``total_pages_path``.

    With a total page count, a short page before the last ends the listing with fewer
    items than the count promises (at least ``(pages - 1) * size + 1``), which
    ``paginate`` reports as incomplete.
    """

    param: str = "page"
    start: int = 1
    size_param: str | None = None
    size: int | None = None
    total_pages_path: str | None = None
    key: str = "pagination"
    """Names this paging's settings in errors."""

    def first(self, request: PageRequest) -> PageRequest:
        """Asks for page ``start`` (and ``size``)."""
        params = {**request.params, self.param: self.start}
        if self.size_param and self.size:
            params[self.size_param] = self.size
        return replace(request, params=params)

    def page(
        self, request: PageRequest, response: httpx.Response, payload: Any, items: list[Any]
    ) -> Page[Any]:
        """The next page number, unless this page was short or the last counted."""
        number = int(request.params[self.param])
        pages = (
            _number(payload, self.total_pages_path, f"{self.key}.total_pages_path")
            if self.total_pages_path
            else None
        )
        # the least the counted pages can hold: full pages (of ``size``, or as many as
        # the first page held) but the last, which holds one item at least
        full = self.size or request.page_size or (len(items) if number == self.start else 0)
        total = None
        if pages is not None and full:
            total = (pages - 1) * full + 1 if pages > 0 else 0
        last = pages is not None and number - self.start + 1 >= pages
        short = not items or (self.size is not None and len(items) < self.size)
        if last or short:
            return Page(items, None, total)
        nxt = _following(request, params={**request.params, self.param: number + 1})
        return Page(items, replace(nxt, page_size=full or None), total)


@dataclass(frozen=True)
class OffsetPaging:
    """``?offset=0&limit=100``, ``?offset=100&limit=100``... until a short page or the
    total at ``total_path`` (which ``paginate`` checks the listing reaches)."""

    param: str = "offset"
    limit_param: str = "limit"
    limit: int = 100
    start: int = 0
    total_path: str | None = None
    key: str = "pagination"

    def first(self, request: PageRequest) -> PageRequest:
        """Asks for ``limit`` items from ``start``."""
        params = {**request.params, self.param: self.start, self.limit_param: self.limit}
        return replace(request, params=params)

    def page(
        self, request: PageRequest, response: httpx.Response, payload: Any, items: list[Any]
    ) -> Page[Any]:
        """The next offset, unless this page was short or the total is reached."""
        offset = int(request.params[self.param]) + len(items)
        total = (
            _number(payload, self.total_path, f"{self.key}.total_path")
            if self.total_path
            else None
        )
        if len(items) < self.limit or (total is not None and offset >= total):
            return Page(items, None, total)
        nxt = _following(request, params={**request.params, self.param: offset})
        return Page(items, nxt, total)


@dataclass(frozen=True)
class CursorPaging:
    """The response holds the next cursor at ``cursor_path``; it is sent back as the query
    parameter ``param`` (or, ``in_body``, at the dotted body key ``param``)."""

    cursor_path: str
    param: str = "cursor"
    in_body: bool = False

    def first(self, request: PageRequest) -> PageRequest:
        """The request as given."""
        return request

    def page(
        self, request: PageRequest, response: httpx.Response, payload: Any, items: list[Any]
    ) -> Page[Any]:
        """The request carrying the next cursor, unless there is none (or no items)."""
        cursor = lookup(payload, self.cursor_path)
        if cursor in (MISSING, None, "") or not items:
            return Page(items, None)
        if not self.in_body:
            return Page(items, _following(request, params={**request.params, self.param: cursor}))
        body = copy.deepcopy(request.body) if request.body else {}
        set_path(body, self.param, cursor)
        return Page(items, _following(request, body=body))


@dataclass(frozen=True)
class LinkHeaderPaging:
    """Follow the ``Link: <...>; rel="next"`` response header (RFC 8288)."""

    rel: str = "next"

    def first(self, request: PageRequest) -> PageRequest:
        """The request as given."""
        return request

    def page(
        self, request: PageRequest, response: httpx.Response, payload: Any, items: list[Any]
    ) -> Page[Any]:
        """The request of the ``rel`` link, unless there is none."""
        link = response.links.get(self.rel, {}).get("url")
        if not link:
            return Page(items, None)
        return Page(items, _following(request, url=str(response.url.join(link)), params={}))


@dataclass(frozen=True)
class NextUrlPaging:
    """The response holds the URL of the next page at ``next_url_path``."""

    next_url_path: str
    key: str = "pagination"

    def first(self, request: PageRequest) -> PageRequest:
        """The request as given."""
        return request

    def page(
        self, request: PageRequest, response: httpx.Response, payload: Any, items: list[Any]
    ) -> Page[Any]:
        """The request of the next URL, unless there is none."""
        link = lookup(payload, self.next_url_path)
        if link in (MISSING, None, ""):
            return Page(items, None)
        if not isinstance(link, str):
            raise ConfigurationError(
                f"{self.key}.next_url_path: expected a URL at {self.next_url_path!r}, "
                f"got {type(link).__name__}"
            )
        return Page(items, _following(request, url=str(response.url.join(link)), params={}))


def paginate_http(
    send: Callable[[PageRequest], tuple[httpx.Response, Any]],
    request: PageRequest,
    paging: Paginator,
    items_of: Callable[[Any, PageRequest], list[Any]],
    *,
    id_of: Callable[[Any], str | None] | None = None,
    max_pages: int | None = None,
    what: str = "",
) -> Iterator[Any]:
    """Every item of an HTTP listing through :func:`paginate`.

    ``send(request)`` performs one page's request and returns the response and its
    decoded body; ``items_of(payload, request)`` picks the page's items from the body.
    """

    def fetch(token: object | None) -> Page[Any]:
        current = paging.first(request) if token is None else token
        if not isinstance(current, PageRequest):
            raise TypeError(f"{what or 'paginate_http'}: a next token must be a PageRequest")
        response, payload = send(current)
        items = items_of(payload, current)
        return paging.page(current, response, payload, items)

    return paginate(fetch, id_of=id_of, max_pages=max_pages, what=what)


def batched(items: Iterable[T], size: int) -> Iterator[list[T]]:
    """``items`` in lists of ``size`` (the last may be shorter), read lazily: one batch read
    per page of a streamed fetch (associations, side-loads)."""
    iterator = iter(items)
    while chunk := list(islice(iterator, size)):
        yield chunk


def item_id(item: Any) -> str | None:
    """A decoded JSON item's ``"id"`` as text (``None``: not a mapping, or no id): the
    usual ``id_of`` for :func:`paginate` and :func:`unseen`."""
    value = item.get("id") if isinstance(item, Mapping) else None
    return None if value is None else str(value)


def unseen(
    items: Iterable[T], seen: set[str], id_of: Callable[[T], str | None] = item_id
) -> Iterator[T]:
    """The items whose id is not in ``seen`` (each id yielded is added to it): one
    de-duplication across several listings, such as the overlapping windows of a capped
    search. Items without id are always yielded."""
    for item in items:
        key = id_of(item)
        if key is None or key not in seen:
            if key is not None:
                seen.add(key)
            yield item
