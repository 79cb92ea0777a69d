"""A small typed client of ComplyAdvantage's legacy API (screening searches).

``GET /searches`` (page/per_page, filters), ``GET /searches/{id}`` and
``PATCH /searches/{id}``; answers arrive in the envelope
``{"code": 200, "status": "success", "content": {"data": ...}}``.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from typing import Any

import httpx

from fragment_complyadvantage.config import SearchesConfig
from fragment_complyadvantage.http import (
    NotFoundError,
    TokenAuth,
    error_message,
    fetch_json,
    make_transport,
    named,
    ratelimit_pacer,
)
from fragment_core.dotted import MISSING, lookup
from fragment_core.errors import AuthenticationError, ConfigurationError, FragmentError
from fragment_core.paging import Page, paginate
from fragment_core.redaction import redact


def search_id_of(item: Any) -> str | None:
    """A search's id as text (``None`` when it has none)."""
    if isinstance(item, Mapping) and item.get("id") not in (None, ""):
        return str(item["id"])
    return None


class SearchesClient:
    """The calls the ``complyadvantage`` connector makes."""

    def __init__(self, config: SearchesConfig, *, where: str) -> None:
        self.config = config
        self.where = where
        self.gate = ratelimit_pacer(config.requests_per_minute or None)
        self.transport = make_transport(
            config.base_url,
            auth=TokenAuth(config.api_key.get_secret_value()),
            gate=self.gate,
            where=where,
            timeout=config.timeout,
            translate=self._translate,
        )

    def close(self) -> None:
        """Close the connection pool."""
        self.transport.close()

    @property
    def requests_made(self) -> int:
        """Requests sent so far (retries included)."""
        return self.transport.requests_made

    def _translate(self, response: httpx.Response) -> FragmentError | None:
        status = response.status_code
        said = redact(error_message(response), (self.config.api_key.get_secret_value(),))
        detail = f" (ComplyAdvantage said: {said})" if said else ""
        asked = f"{response.request.method} {response.request.url.path}"
        if status == 401:
            return AuthenticationError(
                f"ComplyAdvantage rejected the API key at {self.config.base_url} "
                f"({asked}: HTTP 401){detail}. Check api_key, and that base_url is the API "
                "host of your account's region (a key of one region is unknown in another).",
                where=self.where,
            )
        if status == 403:
            return AuthenticationError(
                f"the API key's user may not {asked} (HTTP 403){detail}: give the API user "
                "permission to view and update searches.",
                where=self.where,
            )
        if status == 404:
            return NotFoundError(
                f"{asked}: not found (HTTP 404){detail}. If every request fails this way, "
                "check base_url.",
                where=self.where,
            )
        return None

    def _data(self, payload: Any, operation: str) -> Any:
        data = lookup(payload, "content.data")
        if data is MISSING:
            raise ConfigurationError(
                f"{operation}: the answer has no content.data (is base_url the "
                "ComplyAdvantage API?)",
                where=self.where,
            )
        return data

    def list_page(
        self, page: int, *, per_page: int | None = None, changes: bool = False
    ) -> Page[Any]:
        """One page of searches needing review (oldest first), or with ``changes`` of
        every search, most recently updated first."""
        size = per_page or self.config.per_page
        params: dict[str, Any] = {"page": page, "per_page": size}
        if changes:
            params.update(sort_by="updated_at", sort_dir="desc")
        else:
            params["match_status"] = ",".join(self.config.review_statuses)
            params.update(sort_by="created_at", sort_dir="asc")
        if self.config.assignee_id is not None:
            params["assignee_id"] = self.config.assignee_id
        operation = f"list searches (page {page})"
        payload = fetch_json(self.transport, "GET", "/searches", params=params, operation=operation)
        data = self._data(payload, operation)
        if not isinstance(data, list):
            raise ConfigurationError(
                f"{operation}: content.data is {type(data).__name__}, not a list",
                where=self.where,
            )
        total = None
        if self.config.total_path:
            value = lookup(payload, self.config.total_path)
            if isinstance(value, int) and not isinstance(value, bool):
                total = value
            else:
                raise ConfigurationError(
                    f"total_path: no number at {self.config.total_path!r} in the list answer",
                    where=self.where,
                )
        following = page + 1 if len(data) >= size else None
        return Page(data, following, total)

    def searches(self) -> Iterator[Any]:
        """Every search needing review, each once."""

        def fetch(token: object | None) -> Page[Any]:
            return self.list_page(1 if token is None else int(str(token)))

        listing = paginate(fetch, id_of=search_id_of, what="ComplyAdvantage searches")
        return named(listing, self.where)

    def changes(self) -> Iterator[Any]:
        """Every search, most recently updated first (stop reading when old enough)."""

        def fetch(token: object | None) -> Page[Any]:
            return self.list_page(1 if token is None else int(str(token)), changes=True)

        listing = paginate(fetch, id_of=search_id_of, what="ComplyAdvantage search changes")
        return named(listing, self.where)

    def get(self, search_id: str) -> Mapping[str, Any]:
        """One search."""
        operation = f"read search {search_id}"
        payload = fetch_json(self.transport, "GET", f"/searches/{search_id}", operation=operation)
        data = self._data(payload, operation)
        if not isinstance(data, Mapping):
            raise ConfigurationError(
                f"{operation}: content.data is not an object", where=self.where
            )
        return data

    def update(self, search_id: str, body: Mapping[str, Any]) -> None:
        """``PATCH /searches/{id}`` with ``body`` (match_status, risk_level...)."""
        fetch_json(
            self.transport,
            "PATCH",
            f"/searches/{search_id}",
            json=dict(body),
            operation=f"update search {search_id}",
        )
