"""``FakeZendesk``: Zendesk Support's ticket API on loopback (HTTPS), for tests and benchmarks.

Built on :class:`~fragment_core.testing.fakevendor.FakeVendor`. It serves what zenpy calls
with the documented shapes and the awkward parts:

- HTTPS only (zenpy builds ``https://`` URLs): a throwaway CA made with ``trustme``;
  point a source at it with :meth:`FakeZendesk.config` (``base_url`` + ``ca_bundle``);
- the search API's 1,000-result cap (page 11 of 100 answers 422, as Zendesk does);
- the search export (uncapped, cursor-paged, ``filter[type]`` required) at 100 a minute;
- the cursor-based incremental export: 10 requests a minute, the last minute left out,
  ``start_time`` refused when less than a minute old, deleted tickets included;
- 429 with ``Retry-After`` in seconds (a plain-text body, as real 429s may have);
- ``PUT`` of a closed ticket answers 422; solving without an assignee can be made to fail;
- requests and responses of the operations in Zendesk's OpenAPI file are validated against
  it (paths without zenpy's ``.json``; nullability relaxed as real tickets need).
"""

from __future__ import annotations

import base64
import copy
import json
import tempfile
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from functools import cache
from pathlib import Path
from typing import Any

from fragment_core.testing.fakeapi import FakeAPI, FakeRequest, FakeResponse
from fragment_core.testing.fakevendor import Clock, FakeVendor, RateLimit
from fragment_zendesk.config import ZendeskConfig

SPEC = Path(__file__).parent / "openapi" / "zendesk.json"
SEARCH_CAP = 1000
ORDER = ("new", "open", "pending", "hold", "solved", "closed")
NO_HELP_DESK = {
    "error": {
        "title": "No help desk at nosuch.zendesk.com",
        "message": "There is no help desk configured at this address.",
    }
}


@cache
def tls_files() -> tuple[str, str]:
    """(server PEM with key and chain, CA bundle PEM) of a throwaway CA for 127.0.0.1."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1")
    folder = Path(tempfile.mkdtemp(prefix="fake-zendesk-tls-"))
    server, bundle = folder / "server.pem", folder / "ca.pem"
    cert.private_key_and_cert_chain_pem.write_to_path(str(server))
    ca.cert_pem.write_to_path(str(bundle))
    return str(server), str(bundle)


@cache
def spec() -> dict[str, Any]:
    """Zendesk's OpenAPI subset with a local overlay: every property nullable (real tickets
    carry null in many the file marks otherwise), ``start_time`` optional (cursor pages
    carry ``cursor`` instead), ``deleted`` a ticket status (the incremental export's)."""
    document = json.loads(SPEC.read_text())

    def relax(node: Any) -> None:
        if isinstance(node, dict):
            for prop in (node.get("properties") or {}).values():
                if isinstance(prop, dict) and "$ref" not in prop:
                    prop["nullable"] = True
            for value in node.values():
                relax(value)
        elif isinstance(node, list):
            for value in node:
                relax(value)

    relax(document["components"]["schemas"])
    # the incremental export reports deleted tickets with status "deleted" (Zendesk's docs)
    document["components"]["schemas"]["TicketObject"]["properties"]["status"]["enum"].append(
        "deleted"
    )
    document["components"]["parameters"]["IncrementalUnixTime"]["required"] = False
    return document


def spec_path(path: str) -> str:
    """The spec's path of a request path (zenpy adds ``.json``)."""
    return path.removesuffix(".json")


def _stamp(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _cursor(*parts: Any) -> str:
    return base64.urlsafe_b64encode(json.dumps(parts).encode()).decode()


def _uncursor(value: str) -> list[Any]:
    return list(json.loads(base64.urlsafe_b64decode(value.encode())))


class FakeZendesk(FakeVendor):
    """A fake Zendesk account: tickets, ticket fields, groups, users; effects counted.

    ``email``/``api_token`` are the one valid API-token credential. The clock moves only
    when told (``clock.advance``); every write ticks it.
    """

    def __init__(
        self,
        *,
        subdomain: str = "acme",
        email: str = "bot@acme.example",
        api_token: str = "zd-test-token-0000",
        export_limit: RateLimit | None = None,
        incremental_limit: RateLimit | None = None,
        clock: Clock | None = None,
    ) -> None:
        server_pem, self.ca_bundle = tls_files()
        basic = base64.b64encode(f"{email}/token:{api_token}".encode()).decode()
        headers = lambda wait: {"Retry-After": str(max(1, round(wait)))}  # noqa: E731
        self.export_limit = export_limit or RateLimit(100, 60.0)
        self.incremental_limit = incremental_limit or RateLimit(10, 60.0)
        for limit, template in (
            (self.export_limit, "/api/v2/search/export.json"),
            (self.incremental_limit, "/api/v2/incremental/tickets/cursor.json"),
        ):
            limit.paths = frozenset({template})
            limit.headers = headers
            limit.body = "Rate limit exceeded"  # text/plain, as real 429s may be
        super().__init__(
            "zendesk",
            token=basic,
            auth_prefix="Basic ",
            openapi=spec(),
            openapi_path=spec_path,
            clock=clock or Clock(datetime.now(UTC) - timedelta(days=1)),
            rate_limits=[self.export_limit, self.incremental_limit],
            api=FakeAPI(name="zendesk", tls_cert=server_pem, shutdown_timeout=0.3),
        )
        self.subdomain = subdomain
        self.email = email
        self.api_token = api_token
        self.role = "agent"
        self.require_assignee_to_solve = False
        #: Ticket ids an agent closes just before our update arrives (the update gets 422).
        self.closed_before_update: set[int] = set()
        self.fields: dict[int, dict[str, Any]] = {
            360001: {"id": 360001, "title": "Plan", "type": "tagger"},
            360002: {"id": 360002, "title": "Region", "type": "text"},
        }
        self.groups: dict[int, str] = {98738: "Billing", 98739: "Tier 2"}
        self.users: dict[int, dict[str, Any]] = {
            235323: {"id": 235323, "name": "Ada Agent", "email": "ada@acme.example",
                     "role": "agent"},
            20978392: {"id": 20978392, "name": "Carl Customer", "email": "carl@example.org",
                       "role": "end-user"},
        }  # fmt: skip
        #: View id -> the search terms its conditions amount to (e.g. "tags:vip").
        self.views: dict[int, str] = {}
        #: Whether view counts are fresh (Zendesk computes them lazily: "fresh": false).
        self.view_counts_fresh = True
        self._next_id = 1000
        self._malformed: list[str] = []
        self._routes()

    # -- data -----------------------------------------------------------------------------
    @property
    def tickets(self) -> dict[str, dict[str, Any]]:
        """Live tickets by id (as text), deleted ones included (status ``deleted``)."""
        return self.store.records

    def add_ticket(self, **fields: Any) -> int:
        """Add one ticket (fields override the defaults); returns its id."""
        self._next_id += 1
        ticket_id = int(fields.pop("id", self._next_id))
        now = self.clock.now()
        ticket = {
            "id": ticket_id,
            "url": f"https://{self.subdomain}.zendesk.com/api/v2/tickets/{ticket_id}.json",
            "external_id": None,
            "type": "incident",
            "subject": f"Printer on fire {ticket_id}",
            "raw_subject": f"Printer on fire {ticket_id}",
            "description": "The printer is on fire!",
            "priority": "high",
            "status": "open",
            "requester_id": 20978392,
            "submitter_id": 20978392,
            "assignee_id": 235323,
            "organization_id": None,
            "group_id": 98738,
            "brand_id": 1,
            "tags": ["printer"],
            "custom_fields": [{"id": 360001, "value": "gold"}, {"id": 360002, "value": None}],
            "via": {"channel": "web"},
            "is_public": True,
            "due_at": None,
            "created_at": _stamp(now),
            "updated_at": _stamp(now),
        }
        ticket.update(fields)
        self.store.put(str(ticket_id), ticket)
        self._restamp(ticket_id)
        return ticket_id

    def add_malformed(self, **fields: Any) -> int:
        """Add a ticket off Zendesk's spec on purpose (e.g. ``created_at="last tuesday"``):
        the answers that carry it are left out of :meth:`unexpected_invalid`."""
        ticket_id = self.add_ticket(**fields)
        self._malformed.extend(repr(v) for v in fields.values())
        return ticket_id

    def unexpected_invalid(self) -> list[str]:
        """``invalid_requests`` but for answers carrying a ticket added by :meth:`add_malformed`."""
        return [m for m in self.invalid_requests if not any(v in m for v in self._malformed)]

    def refusals(self) -> list[str]:
        """What ``checked()`` fails on: :meth:`unexpected_invalid`."""
        return self.unexpected_invalid()

    def add_tickets(self, n: int, **fields: Any) -> list[int]:
        """Add ``n`` tickets alike but for their ids."""
        return [self.add_ticket(**fields) for _ in range(n)]

    def change(self, ticket_id: int, **fields: Any) -> None:
        """Change a ticket as an agent would in Zendesk (a new version, updated_at now)."""
        ticket = self.tickets[str(ticket_id)]
        ticket.update(fields)
        self.store.touch(str(ticket_id))
        self._restamp(ticket_id)

    def _restamp(self, ticket_id: int) -> None:
        ticket = self.tickets[str(ticket_id)]
        ticket["updated_at"] = _stamp(self.store.updated_at(str(ticket_id)))

    def requests_to_put(self, ticket_id: int | str) -> int:
        """How many updates of this ticket arrived (whatever their effect)."""
        return len(self.api.requests_to("PUT", f"/api/v2/tickets/{ticket_id}.json"))

    def solves(self, ticket_id: int | str) -> int:
        """How many write-backs changed this ticket's status."""
        return self.effect_count("status", str(ticket_id))

    def config(self, **overrides: Any) -> ZendeskConfig:
        """Options of a source pointed at this fake."""
        options: dict[str, Any] = {
            "subdomain": self.subdomain,
            "email": self.email,
            "token": self.api_token,
            "base_url": self.api.base_url,
            "ca_bundle": self.ca_bundle,
            "sla_hours": 24,
        }
        options.update(overrides)
        return ZendeskConfig.model_validate(options)

    def no_help_desk(self) -> None:
        """From now on answer every request as Zendesk does for an unknown subdomain."""
        self.fail_next(10**6, status=404, body=NO_HELP_DESK)

    # -- helpers --------------------------------------------------------------------------
    def _visible(self, ticket: dict[str, Any]) -> dict[str, Any]:
        out = copy.deepcopy(ticket)
        out.pop("fragment_comments", None)
        return out

    def _matches(self, ticket: dict[str, Any], query: str) -> bool | FakeResponse:
        status = ticket.get("status")
        if status == "deleted":
            return False
        for term in query.split():
            if term == "type:ticket":
                continue
            if term.startswith("status<"):
                if ORDER.index(status) >= ORDER.index(term[7:]):
                    return False
            elif term.startswith("status:"):
                if status != term[7:]:
                    return False
            elif term.startswith("tags:"):
                if term[5:] not in (ticket.get("tags") or []):
                    return False
            elif term.startswith("group_id:"):
                if str(ticket.get("group_id")) != term[9:]:
                    return False
            else:
                return self.invalid(f"the fake does not know the search term {term!r}")
        return True

    def _search(self, query: str) -> list[dict[str, Any]] | FakeResponse:
        hits = []
        for _, ticket in sorted(self.store.searchable(), key=lambda kv: int(kv[0])):
            verdict = self._matches(ticket, query)
            if isinstance(verdict, FakeResponse):
                return verdict
            if verdict:
                hits.append(ticket)
        return hits

    def _authorized_agent(self) -> FakeResponse | None:
        if self.role == "end-user":
            return FakeResponse(
                403,
                json={"error": "Forbidden", "description": "You do not have access to this page."},
            )
        return None

    # -- routes ---------------------------------------------------------------------------
    def _routes(self) -> None:
        self.route("GET", "/api/v2/users/me.json", openapi=False)(self._serve_me)
        self.route("GET", "/api/v2/search/count.json", openapi=False)(self._serve_count)
        self.route("GET", "/api/v2/search.json")(self._serve_search)
        self.route("GET", "/api/v2/search/export.json", items="results")(self._serve_export)
        incremental = "/api/v2/incremental/tickets/cursor.json"
        self.route("GET", incremental, items="tickets")(self._serve_incremental)
        self.route("GET", "/api/v2/views/{view_id}/tickets", items="tickets")(self._serve_view)
        self.route("GET", "/api/v2/views/{view_id}/count.json", openapi=False)(
            self._serve_view_count
        )
        self.route("GET", "/api/v2/tickets/{ticket_id}.json")(self._serve_show)
        self.route("PUT", "/api/v2/tickets/{ticket_id}.json")(self._serve_update)
        self.route("GET", "/api/v2/ticket_fields.json", openapi=False)(self._serve_fields)
        self.route("GET", "/api/v2/groups.json", openapi=False)(self._serve_groups)
        self.route("GET", "/api/v2/users/show_many.json", openapi=False)(self._serve_users)


    def _serve_me(self, req: FakeRequest) -> Any:
        return {"user": {"id": 1, "name": "Fragment Bot", "email": self.email,
                         "role": self.role}}  # fmt: skip

    def _serve_count(self, req: FakeRequest) -> Any:
        if (denied := self._authorized_agent()) is not None:
            return denied
        hits = self._search(req.query.get("query", ""))
        return hits if isinstance(hits, FakeResponse) else {"count": len(hits)}

    def _serve_search(self, req: FakeRequest) -> Any:
        hits = self._search(req.query.get("query", ""))
        if isinstance(hits, FakeResponse):
            return hits
        page, per_page = int(req.query.get("page", 1)), int(req.query.get("per_page", 100))
        if page * per_page > SEARCH_CAP:
            return FakeResponse(422, json={"error": "invalid", "description":
                                "Search results are limited to 1000 per query"})  # fmt: skip
        chunk = hits[(page - 1) * per_page : page * per_page]
        more = page * per_page < len(hits)
        next_page = (
            self.api.url_for(req.path, query=req.query["query"], page=page + 1,
                             per_page=per_page) if more else None
        )  # fmt: skip
        results = [{**self._visible(t), "result_type": "ticket"} for t in chunk]
        return {"results": results, "facets": None, "next_page": next_page,
                "previous_page": None, "count": len(hits)}  # fmt: skip

    def _serve_export(self, req: FakeRequest) -> Any:
        if (denied := self._authorized_agent()) is not None:
            return denied
        if req.query.get("filter[type]") != "ticket":
            return self.invalid("search export needs filter[type]=ticket")
        size = int(req.query.get("page[size]", 100))
        if size > 1000:
            return self.invalid(f"page[size] {size} is over 1000")
        hits = self._search(req.query.get("query", ""))
        if isinstance(hits, FakeResponse):
            return hits
        after = req.query.get("page[after]")
        last = _uncursor(after)[0] if after else 0
        rest = [t for t in hits if int(t["id"]) > last]
        chunk, more = rest[:size], len(rest) > size
        cursor = _cursor(int(chunk[-1]["id"])) if chunk else None
        next_url = (
            self.api.url_for(req.path, query=req.query["query"],
                             **{"filter[type]": "ticket", "page[size]": size,
                                "page[after]": cursor}) if more else None
        )  # fmt: skip
        return {
            "results": [{**self._visible(t), "result_type": "ticket"} for t in chunk],
            "facets": None,
            "meta": {"has_more": more, "after_cursor": cursor, "before_cursor": None},
            "links": {"next": next_url, "prev": None},
        }

    def _serve_incremental(self, req: FakeRequest) -> Any:
        if (denied := self._authorized_agent()) is not None:
            return denied
        now = self.clock.now()
        horizon = now - timedelta(seconds=60)  # the last minute is left out
        per_page = min(int(req.query.get("per_page", 1000)), 1000)
        if "cursor" in req.query:
            since_ts, last_id = _uncursor(req.query["cursor"])
        elif "start_time" in req.query:
            since_ts, last_id = int(req.query["start_time"]), -1
            if since_ts > horizon.timestamp():
                too_recent = "Too recent start_time. Use a start_time older than one minute"
                return FakeResponse(
                    422, json={"error": "InvalidValue", "description": too_recent}
                )
        else:
            return self.invalid("incremental export needs start_time or cursor")
        rows = sorted(
            (int(self.store.updated_at(i).timestamp()), int(i), t)
            for i, t in self.store.records.items()
            if self.store.updated_at(i) <= horizon
        )
        rows = [r for r in rows if (r[0], r[1]) > (since_ts, last_id) and r[0] >= since_ts]
        chunk, end = rows[:per_page], len(rows) <= per_page
        cursor = _cursor(chunk[-1][0], chunk[-1][1]) if chunk else _cursor(since_ts, last_id)
        tickets = [{**self._visible(t), "generated_timestamp": ts} for ts, _, t in chunk]
        return {
            "tickets": tickets,
            "after_cursor": cursor,
            "after_url": self.api.url_for(req.path, cursor=cursor),
            "before_cursor": None,
            "before_url": None,
            "end_of_stream": end,
        }

    def _view_hits(self, req: FakeRequest) -> list[dict[str, Any]] | FakeResponse:
        terms = self.views.get(int(req.path_params["view_id"]))
        if terms is None:
            return FakeResponse(404, json={"error": "RecordNotFound", "description": "Not found"})
        hits: list[dict[str, Any]] = []
        for _, ticket in sorted(self.store.records.items(), key=lambda kv: int(kv[0])):
            verdict = self._matches(ticket, terms)
            if isinstance(verdict, FakeResponse):
                return verdict
            if verdict:
                hits.append(ticket)
        return hits

    def _serve_view(self, req: FakeRequest) -> Any:
        hits = self._view_hits(req)
        if isinstance(hits, FakeResponse):
            return hits
        size = min(int(req.query.get("page[size]", 100)), 100)
        after = req.query.get("page[after]")
        last = _uncursor(after)[0] if after else 0
        rest = [t for t in hits if int(t["id"]) > last]
        chunk, more = rest[:size], len(rest) > size
        cursor = _cursor(int(chunk[-1]["id"])) if chunk else None
        next_url = (
            self.api.url_for(req.path, **{"page[size]": size, "page[after]": cursor})
            if more else None
        )  # fmt: skip
        return {
            "tickets": [self._visible(t) for t in chunk],
            "meta": {"has_more": more, "after_cursor": cursor, "before_cursor": None},
            "links": {"next": next_url, "prev": None},
        }

    def _serve_view_count(self, req: FakeRequest) -> Any:
        hits = self._view_hits(req)
        if isinstance(hits, FakeResponse):
            return hits
        view_id = int(req.path_params["view_id"])
        count = {"view_id": view_id, "url": "", "value": len(hits), "pretty": str(len(hits))}
        return {"view_count": {**count, "fresh": self.view_counts_fresh}}

    def _serve_show(self, req: FakeRequest) -> Any:
        ticket = self.tickets.get(req.path_params["ticket_id"])
        if ticket is None or ticket.get("status") == "deleted":
            return FakeResponse(404, json={"error": "RecordNotFound",
                                           "description": "Not found"})  # fmt: skip
        return {"ticket": self._visible(ticket)}

    def _serve_update(self, req: FakeRequest) -> Any:
        if (denied := self._authorized_agent()) is not None:
            return denied
        ticket_id = req.path_params["ticket_id"]
        ticket = self.tickets.get(ticket_id)
        if ticket is None or ticket.get("status") == "deleted":
            return FakeResponse(404, json={"error": "RecordNotFound",
                                           "description": "Not found"})  # fmt: skip
        change = (req.json() or {}).get("ticket") or {}
        if int(ticket_id) in self.closed_before_update:
            ticket["status"] = "closed"
        if ticket["status"] == "closed":
            return FakeResponse(422, json={
                "error": "RecordInvalid", "description": "Record validation errors",
                "details": {"status": [
                    {"description": "Status: closed prevents ticket update"}]},
            })  # fmt: skip
        if (
            change.get("status") == "solved"
            and self.require_assignee_to_solve
            and not ticket.get("assignee_id")
        ):
            return FakeResponse(422, json={
                "error": "RecordInvalid", "description": "Record validation errors",
                "details": {"assignee": [{"description": "Assignee: is required"}]},
            })  # fmt: skip
        comment = change.pop("comment", None)
        if comment:
            ticket.setdefault("fragment_comments", []).append(comment)
        status = change.get("status")
        if status and status != ticket["status"]:
            self.effect("status", ticket_id)
        ticket.update({k: v for k, v in change.items() if k != "id"})
        self.store.touch(ticket_id)
        self._restamp(int(ticket_id))
        audit = {"id": len(self.api.requests), "ticket_id": int(ticket_id),
                 "created_at": ticket["updated_at"], "author_id": 1, "events": []}  # fmt: skip
        visible = {k: v for k, v in ticket.items() if k != "fragment_comments"}
        return {"ticket": visible, "audit": audit}

    def _serve_fields(self, req: FakeRequest) -> Any:
        return {"ticket_fields": list(self.fields.values()), "next_page": None,
                "previous_page": None, "count": len(self.fields)}  # fmt: skip

    def _serve_groups(self, req: FakeRequest) -> Any:
        rows = [{"id": i, "name": n} for i, n in self.groups.items()]
        return {"groups": rows, "meta": {"has_more": False, "after_cursor": None,
                "before_cursor": None}, "links": {"next": None, "prev": None}}  # fmt: skip

    def _serve_users(self, req: FakeRequest) -> Any:
        ids = [int(i) for i in req.query.get("ids", "").split(",") if i.strip()]
        if len(ids) > 100:
            return self.invalid(f"show_many takes at most 100 ids, got {len(ids)}")
        return {"users": [self.users[i] for i in ids if i in self.users],
                "next_page": None, "previous_page": None, "count": len(ids)}  # fmt: skip

    def unauthorized(self, req: FakeRequest) -> FakeResponse:
        """Zendesk's 401."""
        return FakeResponse(401, json={"error": "Couldn't authenticate you"})

    def iter_open(self) -> Iterator[dict[str, Any]]:
        """Tickets the backlog holds now (new, open, pending)."""
        for ticket in self.tickets.values():
            if ticket.get("status") in ("new", "open", "pending"):
                yield ticket
