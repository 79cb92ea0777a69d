"""The ``intercom`` connector: open conversations in, a close (and an optional note) back."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar

from fragment_core.connector import Completion, Connector, Record
from fragment_core.errors import (
    AuthenticationError,
    BadRecordError,
    ConfigurationError,
    WriteBackError,
)
from fragment_core.mapping import html_to_text, one_line, shorten
from fragment_core.paging import Page, paginate
from fragment_core.task import RemoteTask, Task, TaskStatus
from fragment_intercom.client import ConversationNotFoundError, Filter, IntercomClient
from fragment_intercom.config import IntercomConfig

OPEN_STATES = ("open",)
#: Intercom's conversation state -> the task's external status in Fragment.
EXTERNAL_STATUS = {"open": TaskStatus.TODO, "snoozed": TaskStatus.TODO, "closed": TaskStatus.DONE}
#: Author types whose email is the customer's (contacts are users or leads).
CONTACT_AUTHORS = {"user", "lead", "contact"}


def _text(value: Any) -> str:
    return one_line(html_to_text(value)) if isinstance(value, str) else ""


def _id(value: Any) -> str | None:
    """An Intercom id (integer or string; 0 and "" mean none) as text."""
    if value is None or isinstance(value, bool):
        return None
    text = str(value).strip()
    return None if text in ("", "0") else text


def _region_code(region: str) -> str | None:
    """``us``, ``eu`` or ``au`` for /me's ``app.region`` ("US", "Europe"...); ``None``
    when it names none of them (then nothing is checked)."""
    text = region.strip().lower()
    for code, names in (
        ("us", ("us", "united states", "america")),
        ("eu", ("eu", "europe")),
        ("au", ("au", "australia")),
    ):
        if text.startswith(names):
            return code
    return None


class IntercomConnector(Connector[IntercomConfig]):
    """Open Intercom conversations; completing one in Fragment closes it in Intercom.

    Backlog: open conversations (snoozed ones too if asked), optionally only some teams,
    admin assignees or tags, through the conversation search API. Incremental:
    conversations updated since the cursor.
    """

    name = "intercom"
    id_field = "id"
    cursor_field = "updated_at"
    example_options: ClassVar[dict[str, Any]] = {
        "access_token": "${INTERCOM_TOKEN}",
        "region": "us",
        "team_ids": ["5017691"],
        "admin_id": "991267",
        "close_note": "Closed from Fragment at {done_at}.",
        "default_sla": "4h",
    }

    def __init__(self, config: IntercomConfig, *, source: str = "") -> None:
        super().__init__(config, source=source)
        self._me: dict[str, Any] | None = None

    # -- plumbing -------------------------------------------------------------------------
    def build_client(self) -> IntercomClient:
        """The Intercom client (``self.client``, built on first use)."""
        return IntercomClient(self.config, where=self.where)

    def me(self) -> dict[str, Any]:
        """The token's admin and workspace (``GET /me``), fetched once and cached."""
        if self._me is None:
            self._me = self.client.me()
        return self._me

    def app_id(self) -> str:
        """The workspace code in inbox links: ``app_id``, else ``/me``'s ``app.id_code``."""
        if self.config.app_id:
            return self.config.app_id
        app = self.me().get("app")
        code = app.get("id_code") if isinstance(app, Mapping) else None
        if not code:
            raise ConfigurationError(
                "Intercom's /me answer names no workspace (app.id_code); set app_id in the "
                "source options",
                where=self.where,
            )
        return str(code)

    def admin_id(self) -> str:
        """Who closes conversations: ``admin_id``, else the token's own admin."""
        if self.config.admin_id:
            return self.config.admin_id
        admin = _id(self.me().get("id"))
        if admin is None:
            raise ConfigurationError(
                "Intercom's /me answer names no admin; set admin_id in the source options",
                where=self.where,
            )
        return admin

    def _states(self) -> list[str]:
        return ["open", "snoozed"] if self.config.include_snoozed else ["open"]

    def _state_filter(self) -> Filter:
        states = self._states()
        return ("state", "=", states[0]) if len(states) == 1 else ("state", "IN", states)

    def _narrowing(self) -> list[Filter]:
        config = self.config
        filters: list[Filter] = []
        for field, values in (
            ("team_assignee_id", config.team_ids),
            ("admin_assignee_id", config.admin_ids),
            ("tag_ids", config.tag_ids),
        ):
            if values:
                filters.append((field, "IN", list(values)))
        return filters

    def _search(self, filters: list[Filter], what: str) -> Iterator[Record]:
        def fetch(token: object | None) -> Page[Any]:
            page = self.client.search(
                filters,
                per_page=self.config.page_size,
                starting_after=None if token is None else str(token),
            )
            return Page(page.conversations, page.next, page.total_count)

        yield from paginate(fetch, id_of=self.record_id, what=what)

    # -- the contract ---------------------------------------------------------------------
    def fetch_backlog(self) -> Iterator[Record]:
        """Every open (or snoozed, if asked) conversation matching the configured filters."""
        if not self.config.app_id:
            self.app_id()  # fail before the first page if links cannot be made
        filters = [self._state_filter(), *self._narrowing()]
        yield from self._search(filters, "Intercom's open conversations")

    def fetch_changes(self, cursor: str | None) -> Iterator[Record]:
        """Conversations updated at or after ``cursor`` (unix seconds) less
        ``cursor_overlap_seconds``, in any state; :meth:`is_open` sorts them.

        Without a cursor: the open backlog. Team, admin and tag filters are checked
        locally, so a conversation moved out of them leaves the backlog.
        """
        if cursor is None:
            yield from self.fetch_backlog()
            return
        since = self.unix_cursor(cursor)
        if not self.config.app_id:
            self.app_id()
        since -= int(self.config.cursor_overlap_seconds)
        # Intercom's ">" is "greater or equal" (searchConversations description)
        yield from self._search(
            [("updated_at", ">", max(since, 0))], "Intercom's updated conversations"
        )

    def is_open(self, record: Record) -> bool:
        """In an open state, and within the configured teams, admins and tags."""
        if not isinstance(record, Mapping):
            return True  # let to_task report it
        if str(record.get("state") or "") not in self._states():
            return False
        config = self.config
        tags = record.get("tags")
        tag_list = tags.get("tags") if isinstance(tags, Mapping) else None
        tag_ids = {
            str(t.get("id")) for t in tag_list or [] if isinstance(t, Mapping) and t.get("id")
        }
        checks = (
            (config.team_ids, {_id(record.get("team_assignee_id"))}),
            (config.admin_ids, {_id(record.get("admin_assignee_id"))}),
            (config.tag_ids, tag_ids),
        )
        return all(not wanted or set(wanted) & have for wanted, have in checks)

    def cursor_value(self, record: Record) -> str | None:
        """``updated_at`` (unix seconds) as text; compared as a number by the runner."""
        if not isinstance(record, Mapping):
            return None
        value = record.get("updated_at")
        if isinstance(value, bool) or not isinstance(value, int):
            return None
        return str(value)

    def _time(self, record: Mapping[str, Any], key: str, record_id: str) -> datetime | None:
        value = record.get(key)
        if value is None:
            return None
        if isinstance(value, bool) or not isinstance(value, int):
            raise BadRecordError(
                f"{value!r} is not a unix time", record_id=record_id, field=key, where=self.where
            )
        try:
            return datetime.fromtimestamp(value, tz=UTC)
        except (OverflowError, OSError, ValueError):
            raise BadRecordError(
                f"{value!r} is out of range for a unix time",
                record_id=record_id,
                field=key,
                where=self.where,
            ) from None

    def _title(self, record: Mapping[str, Any], record_id: str) -> str:
        source = record.get("source")
        source = source if isinstance(source, Mapping) else {}
        for candidate in (record.get("title"), source.get("subject"), source.get("body")):
            text = _text(candidate)
            if text:
                return shorten(text, self.config.title_max_chars)
        return f"Intercom conversation {record_id}"

    def _due_at(self, record: Mapping[str, Any], waiting: datetime | None) -> datetime | None:
        start = waiting or self._time(record, "created_at", str(record.get("id")))
        if start is None:
            return None
        target: timedelta | None = None
        sla = record.get("sla_applied")
        if isinstance(sla, Mapping) and sla.get("sla_status") != "cancelled":
            target = self.config.sla_targets.get(str(sla.get("sla_name") or ""))
        target = target or self.config.default_sla
        return None if target is None else start + target

    def to_task(self, record: Record) -> Task:
        """Map a conversation (search result JSON) to a task."""
        if not isinstance(record, Mapping):
            raise BadRecordError(
                f"expected a conversation object, got {type(record).__name__}", where=self.where
            )
        conversation_id = self.record_id(record)
        if conversation_id is None:
            raise BadRecordError("conversation has no id", field="id", where=self.where)
        state = record.get("state")
        if state not in EXTERNAL_STATUS:
            raise BadRecordError(
                f"{state!r} is not a conversation state (open, snoozed, closed)",
                record_id=conversation_id,
                field="state",
                where=self.where,
            )
        created_at = self._time(record, "created_at", conversation_id)
        updated_at = self._time(record, "updated_at", conversation_id)
        waiting = self._time(record, "waiting_since", conversation_id)
        self._time(record, "snoozed_until", conversation_id)
        source = record.get("source")
        author = source.get("author") if isinstance(source, Mapping) else None
        email = None
        if isinstance(author, Mapping) and author.get("type") in CONTACT_AUTHORS:
            email = author.get("email") or None
        tags = record.get("tags")
        tag_list = tags.get("tags") if isinstance(tags, Mapping) else None
        if tag_list is not None and not isinstance(tag_list, list):
            raise BadRecordError(
                "tags.tags is not a list", record_id=conversation_id, field="tags",
                where=self.where,
            )  # fmt: skip
        custom: dict[str, Any] = {
            "state": state,
            "priority": record.get("priority") or None,
            "team": _id(record.get("team_assignee_id")),
            "admin_assignee": _id(record.get("admin_assignee_id")),
            "contact_email": email,
            "tags": sorted(
                str(t.get("name") or t.get("id"))
                for t in tag_list or []
                if isinstance(t, Mapping) and (t.get("name") or t.get("id"))
            ),
        }
        sla = record.get("sla_applied")
        if isinstance(sla, Mapping) and sla.get("sla_name"):
            custom["sla"] = str(sla["sla_name"])
        return Task.new(
            external_id=conversation_id,
            title=self._title(record, conversation_id),
            url=self.config.url_template.format(
                app_id=self.app_id(), conversation_id=conversation_id
            ),
            due_at=self._due_at(record, waiting),
            custom={k: v for k, v in custom.items() if v is not None},
            external_status=EXTERNAL_STATUS[state],
            external_created_at=created_at,
            external_updated_at=updated_at,
        )

    def on_complete(self, task: RemoteTask, completion: Completion) -> str | None:
        """Close the conversation as the configured admin (with the note); a conversation
        already closed is done, with nothing sent."""
        conversation_id = self.digits_id(completion.external_id, "an Intercom conversation")
        try:
            if self.client.state_of(conversation_id) == "closed":
                return f"Intercom conversation {conversation_id} was already closed"
            note = None
            if self.config.close_note:
                note = completion.fill(self.config.close_note)
            self.client.close_conversation(conversation_id, self.admin_id(), note)
        except ConversationNotFoundError:
            raise WriteBackError(
                f"Intercom conversation {conversation_id} no longer exists (deleted?); "
                "nothing to close",
                where=self.where,
            ) from None
        return f"closed Intercom conversation {conversation_id}"

    def check(self) -> str:
        """Reach the workspace and the conversation search; say what is wrong if not."""
        try:
            found = self.me().get("app")
        except AuthenticationError as exc:
            # without Read admins, /me is only needed when app_id or admin_id is unset
            if "permission" not in exc.message or not (self.config.app_id and self.config.admin_id):
                raise
            found = None
        app: Mapping[str, Any] = found if isinstance(found, Mapping) else {}
        region = str(app.get("region") or "").strip()
        wanted = _region_code(region)
        if wanted is not None and wanted != self.config.region:
            raise ConfigurationError(
                f"the Intercom workspace {app.get('name') or app.get('id_code')!r} is hosted "
                f'in the {region} region, but this source has region = "{self.config.region}"'
                f'; set region = "{wanted}" in the source options',
                where=self.where,
            )
        admin = self.admin_id()
        page = self.client.search([self._state_filter(), *self._narrowing()], per_page=1)
        count = (
            f"{page.total_count} open conversations match"
            if page.total_count is not None
            else "conversation search works"
        )
        return (
            f"Intercom workspace {self.app_id()} ({region or self.config.region}): {count}; "
            f"write-back closes as admin {admin}"
        )
