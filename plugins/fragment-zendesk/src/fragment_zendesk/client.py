"""The Zendesk client: zenpy, pointed at this source's base URL, over our transport.

zenpy addresses ``https://{subdomain}.{domain}/api/v2``; both are constructor arguments,
so each client is pointed at its own base URL (``https://acme.zendesk.com`` gives
``subdomain="acme", domain="zendesk.com"``; ``https://127.0.0.1:8443`` gives ``"127"``
and ``"0.0.1:8443"``). zenpy's ``ZENPY_FORCE_NETLOC`` / ``ZENPY_FORCE_SCHEME`` overrides
are process-wide and are never used. Caching is off (a sync must see the server's data).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Iterator
from typing import Any
from urllib.parse import urlsplit

import httpx
from zenpy import Zenpy
from zenpy.lib.api_objects import Comment, Ticket

from fragment_core.errors import (
    AuthenticationError,
    ConfigurationError,
    FragmentError,
)
from fragment_core.redaction import redact
from fragment_core.retries import RateBudget, RetryPolicy
from fragment_core.transport import BasicAuth, BearerAuth, OriginAuth, Transport, error_body
from fragment_zendesk.bridge import TransportAdapter, session_for
from fragment_zendesk.config import ZendeskConfig

#: Users per show_many request (Zendesk's maximum).
USERS_PER_REQUEST = 100


class TicketNotFoundError(ConfigurationError):
    """Zendesk answered 404 for a ticket (deleted, or never existed)."""


class RecordInvalidError(ConfigurationError):
    """Zendesk refused a change (HTTP 422); ``details`` is what it said per field."""

    def __init__(self, message: str, *, details: Any = None, where: str | None = None) -> None:
        super().__init__(message, where=where)
        self.details = details


def split_host(base_url: str) -> tuple[str, str]:
    """``(subdomain, domain)`` for zenpy's ``{subdomain}.{domain}`` (port kept in domain)."""
    netloc = urlsplit(base_url).netloc
    subdomain, _, domain = netloc.partition(".")
    return subdomain, domain


def _said(response: httpx.Response) -> tuple[str, str, Any]:
    """Zendesk's (error, description, details) from an error body (JSON or text)."""
    body = error_body(response, limit=200)
    error = body.get("error")
    if isinstance(error, dict):  # {"error": {"title", "message"}} (no help desk here)
        return str(error.get("title") or ""), str(error.get("message") or ""), None
    description = body.get("description") or body.get("message")  # message: not JSON
    return str(error or ""), str(description or ""), body.get("details")


class ZendeskClient:
    """The calls the connector makes, each through zenpy and the source's transports."""

    def __init__(self, config: ZendeskConfig, *, where: str) -> None:
        self.config = config
        self.where = where
        self.base_url = config.api_url
        auth_for = self._auth
        policy = RetryPolicy(attempts=config.retry_attempts, timeout=config.rate_limit_wait_seconds)
        limit = config.requests_per_minute

        def transport(per_minute: int, name: str) -> Transport:
            return Transport(
                self.base_url,
                auth=auth_for(),
                timeout=config.timeout,
                retry=policy,
                pacer=RateBudget(min(per_minute, limit), 60.0),
                translate_error=self._translate,
                name=f"{where} {name}".strip(),
                verify=config.ca_bundle or True,
            )

        self.transports = {
            "api": transport(limit, ""),
            "export": transport(config.export_requests_per_minute, "search export"),
            "incremental": transport(config.incremental_requests_per_minute, "incremental"),
            "update": transport(config.update_requests_per_minute, "ticket update"),
        }
        adapter = TransportAdapter(self.base_url, self._route, where)
        subdomain, domain = split_host(self.base_url)
        self.zenpy = Zenpy(
            subdomain=subdomain,
            domain=domain,
            session=session_for(adapter),
            anonymous=True,  # credentials live in our transports, on the origin only
            disable_cache=True,
            ratelimit_budget=0,  # zenpy never waits out a 429 itself: our one loop does
            timeout=config.timeout,
        )

    def _auth(self) -> OriginAuth:
        config = self.config
        if config.oauth_token is not None:
            return BearerAuth(config.oauth_token.get_secret_value())
        assert config.token is not None and config.email
        return BasicAuth(f"{config.email}/token", config.token.get_secret_value())

    def _route(self, method: str, path: str) -> Transport:
        if "/incremental/" in path:
            return self.transports["incremental"]
        if path.startswith("/api/v2/search/export"):
            return self.transports["export"]
        if method == "PUT" and path.startswith("/api/v2/tickets/"):
            return self.transports["update"]
        return self.transports["api"]

    @property
    def requests_made(self) -> int:
        """HTTP requests sent so far (every attempt counts)."""
        return sum(t.requests_made for t in self.transports.values())

    def close(self) -> None:
        """Close every connection pool."""
        for transport in self.transports.values():
            transport.close()

    # -- errors ---------------------------------------------------------------------------
    def _translate(self, response: httpx.Response) -> FragmentError | None:
        status = response.status_code
        if status == 429 or status >= 500:
            return None  # the default mapping: waited out / retried
        error, description, details = _said(response)
        what = f"{response.request.method} {response.request.url.path}"
        said = redact(f"{error}: {description}" if error else description)
        if status == 401:
            who = "the OAuth token" if self.config.oauth_token else (
                f"the API token of {self.config.email}"
            )  # fmt: skip
            return AuthenticationError(
                f"Zendesk at {self.base_url} rejected {who} (HTTP 401: {said}); create a "
                "new token in Admin Center > Apps and integrations > Zendesk API, check "
                "that token access is enabled there, and that email is the token's agent",
                where=self.where,
            )
        if status == 403:
            return AuthenticationError(
                f"Zendesk refused {what} (HTTP 403: {said}): the user lacks the "
                "permission; it needs an agent role that can see and edit these tickets",
                where=self.where,
            )
        if status == 404 and "help desk" in f"{error} {description}".lower():
            return ConfigurationError(
                f"there is no Zendesk account at {self.base_url} (HTTP 404: {said}); check "
                f"the subdomain ({self.config.subdomain!r}) and base_url",
                where=self.where,
            )
        if status == 404:
            return TicketNotFoundError(f"{what}: HTTP 404 ({said})", where=self.where)
        if status == 422:
            detail = json.dumps(details)[:300] if details else ""
            return RecordInvalidError(
                f"{what}: Zendesk refused it (HTTP 422: {said}{'; ' + detail if detail else ''})",
                details=details,
                where=self.where,
            )
        return None

    # -- reads ----------------------------------------------------------------------------
    def search_terms(self) -> str:
        """The search query of the backlog (statuses, then the configured terms)."""
        highest = "solved" if self.config.include_on_hold else "hold"
        terms = [f"status<{highest}"]
        if self.config.query:
            terms.append(self.config.query)
        return " ".join(terms)

    def count(self) -> int:
        """How many tickets the backlog query matches now (the search index's count)."""
        answer = self.zenpy.search.count(self.search_terms(), type="ticket")
        return int(answer)

    def export(self) -> Iterator[dict[str, Any]]:
        """Every ticket the backlog query matches, through the uncapped search export."""
        pages = self.zenpy.search_export(
            self.search_terms(), type="ticket", cursor_pagination=self.config.page_size
        )
        for ticket in pages:
            yield ticket.to_dict()

    def view(self, view_id: int) -> Iterator[dict[str, Any]]:
        """Every ticket of a view (cursor-paged, 100 a page)."""
        for ticket in self.zenpy.views.tickets(view_id):
            yield ticket.to_dict()

    def view_count(self, view_id: int) -> int | None:
        """How many tickets the view holds, or ``None`` while Zendesk's count is not fresh."""
        count = self.zenpy.views.count(view_id)
        return int(count.value) if count.fresh and count.value is not None else None

    def incremental(self, start_time: int) -> Iterator[dict[str, Any]]:
        """Tickets changed at or after ``start_time`` (unix), any status, deleted included."""
        pages = self.zenpy.tickets.incremental(
            start_time=start_time, per_page=self.config.incremental_page_size
        )
        for ticket in pages:
            yield ticket.to_dict()

    def ticket(self, ticket_id: int) -> dict[str, Any]:
        """One ticket."""
        return self.zenpy.tickets(id=ticket_id).to_dict()

    def me(self) -> dict[str, Any]:
        """The user the credentials act as."""
        return self.zenpy.users.me().to_dict()

    def ticket_fields(self) -> dict[int, str]:
        """Ticket field id -> title (custom fields included)."""
        return {int(f.id): str(f.title) for f in self.zenpy.ticket_fields() if f.id is not None}

    def groups(self) -> dict[int, str]:
        """Group id -> name."""
        return {int(g.id): str(g.name) for g in self.zenpy.groups() if g.id is not None}

    def users(self, ids: Iterable[int]) -> dict[int, dict[str, Any]]:
        """User id -> ``{"name", "email"}`` for ``ids`` (show_many, 100 a request)."""
        wanted = sorted(set(ids))
        found: dict[int, dict[str, Any]] = {}
        for start in range(0, len(wanted), USERS_PER_REQUEST):
            chunk = wanted[start : start + USERS_PER_REQUEST]
            for user in self.zenpy.users(ids=chunk):
                found[int(user.id)] = {"name": user.name, "email": user.email}
        return found

    # -- writes ---------------------------------------------------------------------------
    def update(self, ticket_id: int, status: str, note: str | None) -> None:
        """Set the ticket's status, adding ``note`` as an internal (private) comment."""
        ticket = Ticket(id=ticket_id, status=status)
        if note:
            ticket.comment = Comment(body=note, public=False)
        self.zenpy.tickets.update(ticket)
