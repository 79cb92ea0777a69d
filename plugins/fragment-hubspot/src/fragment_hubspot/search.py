"""Fetching every match of a HubSpot search, past its 10,000-results-per-query cap.

One query pages at most ``cap`` results (HubSpot answers 400 past 10,000). So results are
sorted by ``hs_lastmodifieddate`` ascending, and when paging reaches the cap a new query
starts with ``hs_lastmodifieddate GTE <latest seen>`` (a moving window); ids already
yielded are skipped at the boundary. If one window is entirely one instant (more than
``cap`` tasks modified in the same millisecond, e.g. a bulk import), that instant is paged
on its own, sorted by ``hs_object_id`` with a moving ``hs_object_id GT <last>`` window.
Each query is paged by :func:`fragment_core.paging.paginate`, so a query that ends short
of the results it announced raises IncompleteFetchError instead of passing for the end.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import datetime
from typing import Any

from fragment_core.errors import TransientError
from fragment_core.mapping import epoch_ms, parse_datetime
from fragment_core.paging import Page, item_id, paginate, unseen

MODIFIED = "hs_lastmodifieddate"
OBJECT_ID = "hs_object_id"

SearchFn = Callable[[Mapping[str, Any]], Mapping[str, Any]]
Filters = list[dict[str, Any]]
Key = Callable[[Any], int | None]


def modified_at(item: Any) -> datetime | None:
    """A search result's hs_lastmodifieddate, or ``None`` when missing or unreadable."""
    properties = item.get("properties") if isinstance(item, Mapping) else None
    try:
        return parse_datetime(properties.get(MODIFIED), epoch="ms") if properties else None
    except (AttributeError, ValueError):
        return None


def _modified_ms(item: Any) -> int | None:
    parsed = modified_at(item)
    return None if parsed is None else epoch_ms(parsed)


def _object_id(item: Any) -> int | None:
    try:
        return int(item["id"])
    except (KeyError, TypeError, ValueError):
        return None


def _filter(prop: str, operator: str, value: int) -> dict[str, Any]:
    return {"propertyName": prop, "operator": operator, "value": str(value)}


class WindowedSearch:
    """Every result of ``filters`` through ``search``, whatever the per-query cap."""

    def __init__(
        self,
        search: SearchFn,
        *,
        properties: list[str],
        page_size: int,
        cap: int,
        where: str | None = None,
    ) -> None:
        self.search = search
        self.where = where
        self.properties = properties
        self.page_size = page_size
        self.cap = cap

    def fetch(self, filters: Filters, *, since_ms: int | None = None) -> Iterator[Any]:
        """Yield each matching result once (by id); raw items, malformed ones included."""
        seen: set[str] = set()
        lower = since_ms
        while True:
            window = filters if lower is None else [*filters, _filter(MODIFIED, "GTE", lower)]
            query = Query(self, window, MODIFIED, _modified_ms)
            yield from unseen(query, seen)
            if not query.capped:
                return
            if query.last is None:
                raise TransientError(
                    f"HubSpot search reached its {self.cap}-result cap and the results carry "
                    f"no {MODIFIED} to continue from",
                    where=self.where,
                )
            if query.last == lower:  # the whole window is one instant: page it by object id
                yield from self._fetch_instant(filters, query.last, seen)
                lower = query.last + 1
            else:
                lower = query.last

    def _fetch_instant(self, filters: Filters, instant_ms: int, seen: set[str]) -> Iterator[Any]:
        last_id: int | None = None
        while True:
            window = [*filters, _filter(MODIFIED, "EQ", instant_ms)]
            if last_id is not None:
                window.append(_filter(OBJECT_ID, "GT", last_id))
            query = Query(self, window, OBJECT_ID, _object_id)
            yield from unseen(query, seen)
            if not query.capped:
                return
            if query.last is None or query.last == last_id:
                raise TransientError(
                    f"HubSpot search reached its {self.cap}-result cap without numeric task ids "
                    "to continue from",
                    where=self.where,
                )
            last_id = query.last


class Query:
    """The results of one search query (up to the cap), each once, through ``paginate``.

    Each page announces ``min(total, cap)``, the results one query can reach. Once
    iterated, ``capped`` says whether the cap (not the end) stopped it and ``last`` is the
    greatest ``key`` of its results (the sort property, where the next window starts).
    """

    def __init__(self, search: WindowedSearch, filters: Filters, sort: str, key: Key) -> None:
        self.search = search
        self.key = key
        self.body: dict[str, Any] = {
            "filterGroups": [{"filters": filters}],
            "sorts": [{"propertyName": sort, "direction": "ASCENDING"}],
            "properties": search.properties,
            "limit": search.page_size,
        }
        self.capped = False
        self.last: int | None = None

    def __iter__(self) -> Iterator[Any]:
        what = f"HubSpot search (page size {self.search.page_size})"
        for item in paginate(self._page, id_of=item_id, what=what, where=self.search.where):
            key = self.key(item)
            if key is not None and (self.last is None or key > self.last):
                self.last = key
            yield item

    def _page(self, after: object | None) -> Page[Any]:
        body = self.body if after is None else {**self.body, "after": str(after)}
        page = self.search.search(body)
        total = page.get("total")
        reachable = min(int(total), self.search.cap) if isinstance(total, int) else None
        nxt = ((page.get("paging") or {}).get("next") or {}).get("after") or None
        if nxt is not None and str(nxt).isdigit() and int(nxt) >= self.search.cap:
            self.capped, nxt = True, None
        return Page(list(page.get("results") or []), nxt, reachable)
