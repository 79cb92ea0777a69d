"""The ``zendesk`` connector: unsolved tickets in, solved (plus an internal note) back."""

from __future__ import annotations

import time
from collections.abc import Iterable, Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from fragment_core.connector import Capability, Completion, Connector, Record
from fragment_core.errors import (
    AuthenticationError,
    BadRecordError,
    IncompleteFetchError,
    WriteBackError,
)
from fragment_core.task import RemoteTask, Task, TaskStatus
from fragment_zendesk.client import RecordInvalidError, TicketNotFoundError, ZendeskClient
from fragment_zendesk.config import ZendeskConfig

#: Where resolved names travel inside a record (so its fingerprint covers them).
RESOLVED = "fragment_resolved"
#: Statuses after which the ticket is no longer work (deleted: the export's own status).
RESOLVED_STATUSES = frozenset({"solved", "closed", "deleted"})
#: Tickets looked up together (one show_many request for their people).
CHUNK = 100
#: The incremental export leaves out the last minute; a start_time must be older.
EXPORT_LAG_SECONDS = 60

EXTERNAL_STATUS = {
    "pending": TaskStatus.STARTED,
    "hold": TaskStatus.STARTED,
    "solved": TaskStatus.DONE,
    "closed": TaskStatus.DONE,
}


def parse_time(value: Any) -> datetime | None:
    """A Zendesk timestamp (``2025-05-01T10:00:00Z``) as an aware datetime, or ``None``."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ValueError(f"{value!r} is not a timestamp")
    parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    if parsed.tzinfo is None:
        raise ValueError(f"{value!r} has no time zone")
    return parsed.astimezone(UTC)


class ZendeskConnector(Connector[ZendeskConfig]):
    """Unsolved Zendesk Support tickets; completing one in Fragment solves the ticket.

    Backlog: tickets new, open or pending (on hold too if configured), optionally narrowed
    by search terms, read through the uncapped search export and checked against the
    search count. Incremental: the cursor-based incremental ticket export; tickets it
    reports solved, closed or deleted close their tasks.
    """

    name = "zendesk"
    id_field = "id"
    cursor_field = "updated_at"
    example_options: ClassVar[dict[str, Any]] = {
        "subdomain": "acme",
        "email": "fragment-bot@acme.com",
        "token": "${ZENDESK_TOKEN}",
        "include_on_hold": False,
        "custom_fields": ["Plan", "Region"],
        "completion_note": "Solved from Fragment at {done_at}.",
    }

    def __init__(self, config: ZendeskConfig, *, source: str = "") -> None:
        super().__init__(config, source=source)
        self._fields: dict[int, str] | None = None
        self._groups: dict[int, str] = {}
        self._users: dict[int, dict[str, Any]] = {}

    # -- plumbing -------------------------------------------------------------------------
    def build_client(self) -> ZendeskClient:
        """The zenpy-backed client (``self.client``, built on first use)."""
        return ZendeskClient(self.config, where=self.where)

    def configured_capabilities(self) -> frozenset[Capability]:
        """No incremental fetch when search terms or a view narrow the backlog (the export
        cannot tell whether a changed ticket still matches them)."""
        caps = super().configured_capabilities()
        narrowed = self.config.query or self.config.view_id is not None
        return caps - {Capability.INCREMENTAL} if narrowed else caps

    def _start_run(self) -> None:
        """Names are looked up once per run, when the first ticket arrives (fields, groups;
        people as they appear): a run that sees no ticket makes no lookup."""
        self._fields = None
        self._groups = {}
        self._users = {}

    def _load_names(self) -> None:
        self._fields = self.client.ticket_fields()
        self._groups = self.client.groups() if self.config.resolve_names else {}

    def _resolved(self, tickets: Iterable[Any]) -> Iterator[Any]:
        """Attach ``fragment_resolved`` (field titles, group, assignee, requester) per chunk."""
        chunk: list[Any] = []
        for ticket in tickets:
            chunk.append(ticket)
            if len(chunk) >= CHUNK:
                yield from self._resolve(chunk)
                chunk = []
        yield from self._resolve(chunk)

    def _resolve(self, chunk: list[Any]) -> Iterator[Any]:
        if chunk and self._fields is None:
            self._load_names()
        if self.config.resolve_names:
            people = {
                t.get(key)
                for t in chunk
                if isinstance(t, dict)
                for key in ("requester_id", "assignee_id")
            }
            wanted = [p for p in people if isinstance(p, int) and p not in self._users]
            if wanted:
                self._users.update(self.client.users(wanted))
        for ticket in chunk:
            if isinstance(ticket, dict):
                yield {**ticket, RESOLVED: self._names_for(ticket)}
            else:
                yield ticket

    def _names_for(self, ticket: Mapping[str, Any]) -> dict[str, Any]:
        fields = self._fields or {}
        custom = {}
        for entry in ticket.get("custom_fields") or ():
            if isinstance(entry, Mapping) and isinstance(entry.get("id"), int):
                title = fields.get(entry["id"])
                if title is not None:
                    custom[title] = entry.get("value")
        requester = self._users.get(ticket.get("requester_id"))  # type: ignore[arg-type]
        assignee = self._users.get(ticket.get("assignee_id"))  # type: ignore[arg-type]
        return {
            "group": self._groups.get(ticket.get("group_id")),  # type: ignore[arg-type]
            "assignee": assignee.get("name") if assignee else None,
            "requester_email": requester.get("email") if requester else None,
            "custom_fields": custom,
        }

    # -- the contract ---------------------------------------------------------------------
    def fetch_backlog(self) -> Iterator[Record]:
        """Every unsolved ticket matching the query (or of the view); fails (closing
        nothing) if the listing ends with fewer tickets than the count announced."""
        self._start_run()
        if self.config.view_id is not None:
            yield from self._resolved(self._view(self.config.view_id))
            return
        announced = self.client.count()
        seen: set[Any] = set()

        def counted() -> Iterator[Any]:
            for ticket in self.client.export():
                seen.add(ticket.get("id"))
                yield ticket

        yield from self._resolved(counted())
        if len(seen) < announced:
            again = self.client.count()  # tickets solved during the fetch leave the count
            if len(seen) < min(announced, again):
                raise IncompleteFetchError(
                    "the search export of unsolved tickets (checked against the search count)",
                    fetched=len(seen),
                    total=min(announced, again),
                    where=self.where,
                )

    def _view(self, view_id: int) -> Iterator[Any]:
        """The view's tickets of a backlog status; checked against a fresh view count."""
        announced = self.client.view_count(view_id)
        seen: set[Any] = set()
        for ticket in self.client.view(view_id):
            seen.add(ticket.get("id"))
            if ticket.get("status") in self.config.statuses:
                yield ticket
        if announced is not None and len(seen) < announced:
            raise IncompleteFetchError(
                f"view {view_id} (checked against its count)",
                fetched=len(seen),
                total=announced,
                where=self.where,
            )

    def fetch_changes(self, cursor: str | None) -> Iterator[Record]:
        """Tickets changed since ``cursor`` (unix seconds) less ``cursor_overlap_seconds``,
        any status, from the cursor-based incremental export. Without a cursor: the backlog.
        """
        if cursor is None:
            yield from self.fetch_backlog()
            return
        since = self.unix_cursor(cursor)
        start = since - int(self.config.cursor_overlap_seconds)
        start = min(start, int(time.time()) - EXPORT_LAG_SECONDS - 1)
        self._start_run()
        yield from self._resolved(self.client.incremental(max(start, 0)))

    def is_open(self, record: Record) -> bool:
        """Not solved, closed or deleted, and of a status the backlog holds."""
        status = record.get("status") if isinstance(record, Mapping) else None
        if not isinstance(status, str):
            return True  # let to_task report it
        return status in self.config.statuses

    def cursor_value(self, record: Record) -> str | None:
        """``updated_at`` as unix seconds (numbers compare as numbers)."""
        try:
            updated = parse_time(record.get("updated_at")) if isinstance(record, Mapping) else None
        except ValueError:
            return None
        return None if updated is None else str(int(updated.timestamp()))

    def to_task(self, record: Record) -> Task:
        """Map a ticket (as the search export or incremental export gives it) to a task."""
        if not isinstance(record, Mapping):
            raise BadRecordError(
                f"expected a ticket object, got {type(record).__name__}", where=self.where
            )
        ticket_id = record.get("id")
        if not isinstance(ticket_id, int) or isinstance(ticket_id, bool):
            raise BadRecordError(
                f"ticket id {ticket_id!r} is not a number", field="id", where=self.where
            )

        def when(key: str) -> datetime | None:
            try:
                return parse_time(record.get(key))
            except ValueError as exc:
                raise BadRecordError(
                    f"{exc} (expected ISO 8601 like 2025-05-01T10:00:00Z)",
                    record_id=str(ticket_id),
                    field=key,
                    where=self.where,
                ) from None

        created_at = when("created_at")
        updated_at = when("updated_at")
        due_at = when("due_at")
        if due_at is None and created_at is not None and self.config.sla_hours:
            due_at = created_at + timedelta(hours=self.config.sla_hours)
        status = record.get("status")
        if not isinstance(status, str):
            raise BadRecordError(
                f"status {status!r} is not text", record_id=str(ticket_id), field="status",
                where=self.where,
            )  # fmt: skip
        tags = record.get("tags") or []
        if not isinstance(tags, list):
            raise BadRecordError(
                "tags is not a list", record_id=str(ticket_id), field="tags", where=self.where
            )
        resolved = record.get(RESOLVED)
        if not isinstance(resolved, Mapping):
            resolved = self._names_for(record)
        custom: dict[str, Any] = {
            "status": status,
            "priority": record.get("priority"),
            "type": record.get("type"),
            "group": resolved.get("group") or record.get("group_id"),
            "assignee": resolved.get("assignee") or record.get("assignee_id"),
            "requester_email": resolved.get("requester_email"),
            "requester_id": record.get("requester_id"),
            "tags": [str(t) for t in tags] or None,
        }
        wanted = self.config.custom_fields
        for title, value in (resolved.get("custom_fields") or {}).items():
            if value not in (None, "", []) and (not wanted or title in wanted):
                custom[title] = value
        subject = str(record.get("subject") or record.get("raw_subject") or "").strip()
        return Task.new(
            external_id=str(ticket_id),
            title=subject or f"Zendesk ticket {ticket_id}",
            url=self.config.agent_url.format(subdomain=self.config.subdomain, id=ticket_id),
            due_at=due_at,
            custom={k: v for k, v in custom.items() if v is not None},
            external_status=EXTERNAL_STATUS.get(status, TaskStatus.TODO),
            external_created_at=created_at,
            external_updated_at=updated_at,
        )

    def on_complete(self, task: RemoteTask, completion: Completion) -> str | None:
        """Set the ticket to ``solve_status`` with the optional internal note; a ticket
        already solved or closed (Zendesk's 422 for a closed one) counts as done."""
        ticket_id = self.digits_id(completion.external_id, "a Zendesk ticket")
        target = self.config.solve_status
        try:
            current = self.client.ticket(int(ticket_id))
            if current.get("status") in ("solved", "closed", target):
                return f"Zendesk ticket {ticket_id} was already {current.get('status')}"
            note = None
            if self.config.completion_note:
                note = completion.fill(self.config.completion_note)
            self.client.update(int(ticket_id), target, note)
        except TicketNotFoundError:
            raise WriteBackError(
                f"Zendesk ticket {ticket_id} no longer exists (deleted?); nothing to solve",
                where=self.where,
            ) from None
        except RecordInvalidError as exc:
            if "closed" in exc.message.lower():
                return f"Zendesk ticket {ticket_id} was already closed"
            raise WriteBackError(
                f"Zendesk would not set ticket {ticket_id} to {target}: {exc.message} "
                "(solving needs an assignee and every required field filled)",
                where=self.where,
            ) from None
        return f"set Zendesk ticket {ticket_id} to {target}"

    def check(self) -> str:
        """Reach the account as the configured user and count the backlog."""
        me = self.client.me()
        role = me.get("role")
        if me.get("id") is None or role == "end-user":
            raise AuthenticationError(
                f"Zendesk at {self.client.base_url} takes these credentials for "
                f"{'an anonymous user' if me.get('id') is None else 'an end user'}; the "
                "token must belong to an agent (or admin) who can see these tickets",
                where=self.where,
            )
        count = self.client.count()
        return (
            f"Zendesk {self.config.subdomain} as {me.get('email') or me.get('name')} "
            f"({role}): {count} unsolved tickets match"
        )
