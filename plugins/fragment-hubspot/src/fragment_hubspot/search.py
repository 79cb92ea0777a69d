"""Fetching every match of a HubSpot search, past its 10,000-results-per-query cap.

One query pages at most ``cap`` results (HubSpot answers 400 past 10,000). So results are
sorted by ``hs_lastmodifieddate`` ascending, and when paging reaches the cap a new query
starts with ``hs_lastmodifieddate GTE <latest seen>`` (a moving window); ids already
yielded are skipped at the boundary. If one window is entirely one instant (more than
``cap`` tasks modified in the same millisecond, e.g. a bulk import), that instant is paged
on its own, sorted by ``hs_object_id`` with a moving ``hs_object_id GT <last>`` window.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from datetime import UTC, datetime
from typing import Any

from fragment_core.errors import IncompleteFetchError, TransientError
from fragment_core.paging import Page, paginate

MODIFIED = "hs_lastmodifieddate"
OBJECT_ID = "hs_object_id"

SearchFn = Callable[[Mapping[str, Any]], Mapping[str, Any]]
Filters = list[dict[str, Any]]


def parse_hubspot_time(value: Any) -> datetime | None:
    """HubSpot datetime property (ISO 8601 or epoch milliseconds) -> aware datetime."""
    if value is None or value == "":
        return None
    text = str(value).strip()
    if text.lstrip("-").isdigit():
        return datetime.fromtimestamp(int(text) / 1000, tz=UTC)
    parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def to_epoch_ms(value: datetime) -> int:
    """An aware datetime as epoch milliseconds (HubSpot's filter value for datetimes)."""
    return int(value.timestamp() * 1000)


def modified_at(item: Any) -> datetime | None:
    """A search result's hs_lastmodifieddate, or ``None`` when missing or unreadable."""
    properties = item.get("properties") if isinstance(item, Mapping) else None
    if not isinstance(properties, Mapping):
        return None
    try:
        return parse_hubspot_time(properties.get(MODIFIED))
    except (ValueError, OverflowError, OSError):
        return None


def _modified_ms(item: Any) -> int | None:
    parsed = modified_at(item)
    return None if parsed is None else to_epoch_ms(parsed)


def _first_sighting(item: Any, seen: set[str]) -> bool:
    """False for a result whose id was already yielded (ids are remembered here)."""
    item_id = item.get("id") if isinstance(item, Mapping) else None
    if item_id is None:
        return True
    if str(item_id) in seen:
        return False
    seen.add(str(item_id))
    return True


def _offset(after: str) -> int | None:
    try:
        return int(after)
    except (TypeError, ValueError):
        return None


def _object_id(item: Any) -> int | None:
    try:
        return int(item["id"])
    except (KeyError, TypeError, ValueError):
        return None


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
        self.queries = 0

    def _query(self, filters: Filters, sort_property: str) -> Query:
        """One query, paged through :func:`fragment_core.paging.paginate`."""
        self.queries += 1
        body: dict[str, Any] = {
            "filterGroups": [{"filters": filters}],
            "sorts": [{"propertyName": sort_property, "direction": "ASCENDING"}],
            "properties": self.properties,
            "limit": self.page_size,
        }
        return Query(self, body)

    def fetch(self, filters: Filters, *, since_ms: int | None = None) -> Iterator[Any]:
        """Yield each matching result once (by id); raw items, malformed ones included."""
        seen: set[str] = set()
        lower = since_ms
        while True:
            window = list(filters)
            if lower is not None:
                window.append({"propertyName": MODIFIED, "operator": "GTE", "value": str(lower)})
            latest = lower
            query = self._query(window, MODIFIED)
            for item in query:
                ms = _modified_ms(item)
                if ms is not None and (latest is None or ms > latest):
                    latest = ms
                if _first_sighting(item, seen):
                    yield item
            if not query.capped:
                return
            if latest is None:
                raise TransientError(
                    f"HubSpot search reached its {self.cap}-result cap and the results carry "
                    f"no {MODIFIED} to continue from",
                    where=self.where,
                )
            if latest == lower:
                # the whole window is one instant: page that instant by object id
                yield from self._fetch_instant(filters, latest, seen)
                lower = latest + 1
            else:
                lower = latest

    def _fetch_instant(self, filters: Filters, instant_ms: int, seen: set[str]) -> Iterator[Any]:
        last_id: int | None = None
        while True:
            at_instant = {"propertyName": MODIFIED, "operator": "EQ", "value": str(instant_ms)}
            window = [*filters, at_instant]
            if last_id is not None:
                window.append({"propertyName": OBJECT_ID, "operator": "GT", "value": str(last_id)})
            progressed = False
            query = self._query(window, OBJECT_ID)
            for item in query:
                object_id = _object_id(item)
                if object_id is not None and (last_id is None or object_id > last_id):
                    last_id = object_id
                    progressed = True
                if _first_sighting(item, seen):
                    yield item
            if not query.capped:
                return
            if not progressed:
                raise TransientError(
                    f"HubSpot search reached its {self.cap}-result cap without numeric task ids "
                    "to continue from",
                    where=self.where,
                )


class Query:
    """The results of one search query (up to the cap), each once, through ``paginate``.

    Each page announces ``min(total, cap)``, the results one query can reach, so a
    listing that ends short of it (a short page, a page gone missing) raises
    :class:`~fragment_core.errors.IncompleteFetchError` instead of passing for the end.
    ``capped`` says, once iterated, whether the cap (not the end) stopped it.
    """

    def __init__(self, search: WindowedSearch, body: dict[str, Any]) -> None:
        self.search = search
        self.body = body
        self.capped = False

    def __iter__(self) -> Iterator[Any]:
        try:
            yield from paginate(
                self._page,
                id_of=_item_id,
                what=f"HubSpot search (page size {self.search.page_size})",
            )
        except IncompleteFetchError as exc:
            if exc.where is None:
                raise IncompleteFetchError(
                    exc.what, fetched=exc.fetched, total=exc.total, where=self.search.where
                ) from None
            raise

    def _page(self, after: object | None) -> Page[Any]:
        body = self.body if after is None else {**self.body, "after": str(after)}
        page = self.search.search(body)
        results = list(page.get("results") or [])
        total = page.get("total")
        reachable = min(int(total), self.search.cap) if isinstance(total, int) else None
        nxt = ((page.get("paging") or {}).get("next") or {}).get("after") or None
        offset = _offset(nxt) if nxt is not None else None
        if offset is not None and offset >= self.search.cap:
            self.capped = True
            nxt = None
        return Page(results, nxt, reachable)


def _item_id(item: Any) -> str | None:
    item_id = item.get("id") if isinstance(item, Mapping) else None
    return None if item_id is None else str(item_id)
