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

from collections.abc import Callable, Generator, Iterator, Mapping
from dataclasses import KW_ONLY, dataclass
from datetime import datetime
from typing import Any, cast

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
    task_id = item_id(item)
    return int(task_id) if task_id and task_id.isdigit() else None


def _filter(prop: str, operator: str, value: int) -> dict[str, Any]:
    return {"propertyName": prop, "operator": operator, "value": str(value)}


@dataclass(frozen=True)
class WindowedSearch:
    """Every result of ``filters`` through ``search``, whatever the per-query cap."""

    search: SearchFn
    _: KW_ONLY
    properties: list[str]
    page_size: int
    cap: int
    where: str | None = None

    def fetch(self, filters: Filters, *, since_ms: int | None = None) -> Iterator[Any]:
        """Yield each matching result once (by id); raw items, malformed ones included."""
        seen: set[str] = set()
        lower = since_ms
        while True:
            window = filters if lower is None else [*filters, _filter(MODIFIED, "GTE", lower)]
            capped, last = yield from self._query(window, MODIFIED, _modified_ms, seen)
            if not capped:
                return
            if last is None:
                raise TransientError(
                    f"HubSpot search reached its {self.cap}-result cap and the results carry "
                    f"no {MODIFIED} to continue from",
                    where=self.where,
                )
            if last == lower:  # the whole window is one instant: page it by object id
                yield from self._fetch_instant(filters, last, seen)
                lower = last + 1
            else:
                lower = last

    def _fetch_instant(self, filters: Filters, instant_ms: int, seen: set[str]) -> Iterator[Any]:
        last_id: int | None = None
        while True:
            window = [*filters, _filter(MODIFIED, "EQ", instant_ms)]
            if last_id is not None:
                window.append(_filter(OBJECT_ID, "GT", last_id))
            capped, last = yield from self._query(window, OBJECT_ID, _object_id, seen)
            if not capped:
                return
            if last is None or last == last_id:
                raise TransientError(
                    f"HubSpot search reached its {self.cap}-result cap without numeric task ids "
                    "to continue from",
                    where=self.where,
                )
            last_id = last

    def _query(
        self, filters: Filters, sort: str, key: Key, seen: set[str]
    ) -> Generator[Any, None, tuple[bool, int | None]]:
        """The results of one query (up to the cap) not in ``seen``, through ``paginate``.

        Each page announces ``min(total, cap)``, the results one query can reach. Returns
        whether the cap (not the end) stopped it and the greatest ``key`` of its results
        (the sort property, where the next window starts).
        """
        body: dict[str, Any] = {
            "filterGroups": [{"filters": filters}],
            "sorts": [{"propertyName": sort, "direction": "ASCENDING"}],
            "properties": self.properties,
            "limit": self.page_size,
        }
        capped, last = False, cast(int | None, None)

        def page(after: object | None) -> Page[Any]:
            nonlocal capped
            answer = self.search(body if after is None else {**body, "after": str(after)})
            total = answer.get("total")
            reachable = min(int(total), self.cap) if isinstance(total, int) else None
            nxt = ((answer.get("paging") or {}).get("next") or {}).get("after") or None
            if nxt is not None and str(nxt).isdigit() and int(nxt) >= self.cap:
                capped, nxt = True, None
            return Page(list(answer.get("results") or []), nxt, reachable)

        what = f"HubSpot search (page size {self.page_size})"
        for item in paginate(page, id_of=item_id, what=what, where=self.where):
            value = key(item)
            if value is not None and (last is None or value > last):
                last = value
            yield from unseen([item], seen)
        return capped, last
