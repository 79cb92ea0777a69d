"""The ``hubspot`` connector: open CRM tasks in, completion (and an optional note) back."""

from __future__ import annotations

from collections.abc import Iterable, Iterator, Mapping
from datetime import datetime, timedelta
from functools import cached_property
from typing import Any, ClassVar

from fragment_core.connector import Completion, Connector, Record
from fragment_core.errors import BadRecordError, ConfigurationError, WriteBackError
from fragment_core.mapping import epoch_ms, html_to_text, record_time, shorten
from fragment_core.paging import batched, item_id
from fragment_core.task import RemoteTask, Task, TaskStatus, format_datetime
from fragment_hubspot.client import HubSpotClient, MissingScopeError, TaskNotFoundError
from fragment_hubspot.config import HubSpotConfig
from fragment_hubspot.search import (
    MODIFIED,
    WindowedSearch,
    modified_at,
)

COMPLETED = "COMPLETED"
DEFAULT_APP_HOST = "app.hubspot.com"

#: Properties every search asks for (extra_properties are added).
BASE_PROPERTIES = (
    "hs_object_id",
    "hs_task_subject",
    "hs_task_body",
    "hs_timestamp",
    "hs_task_status",
    "hs_task_priority",
    "hs_task_type",
    "hubspot_owner_id",
    "hs_queue_membership_ids",
    "hs_createdate",
    MODIFIED,
)

#: hs_task_status -> the task's external status in Fragment.
EXTERNAL_STATUS = {COMPLETED: TaskStatus.DONE, "IN_PROGRESS": TaskStatus.STARTED}


def _split(value: Any) -> list[str]:
    """A (multi-value: "a;b") HubSpot property as a list of its values, upper case."""
    return [part for part in str(value or "").upper().split(";") if part]


class HubSpotConnector(Connector[HubSpotConfig]):
    """Open HubSpot CRM tasks; completing one in Fragment marks it COMPLETED in HubSpot.

    Backlog: tasks whose hs_task_status is not COMPLETED (optionally only some owners,
    queues, types or priorities), fetched through the CRM search API past its
    10,000-results cap. Incremental: tasks modified since the cursor.
    """

    name = "hubspot"
    id_field = "id"
    cursor_field = MODIFIED
    example_options: ClassVar[dict[str, Any]] = {
        "access_token": "${HUBSPOT_TOKEN}",
        "portal_id": 1234567,
        "owner_ids": ["61230045"],
        "priorities": ["HIGH", "MEDIUM"],
        "associations": ["contacts", "companies"],
        "completion_note": "Completed in Fragment at {done_at}.",
    }

    # -- plumbing -------------------------------------------------------------------------
    def build_client(self) -> HubSpotClient:
        """The HubSpot client (``self.client``, built on first use)."""
        return HubSpotClient(self.config, where=self.where)

    @cached_property
    def properties(self) -> list[str]:
        """Task properties each search asks for: BASE_PROPERTIES, then the extra ones."""
        return list(dict.fromkeys([*BASE_PROPERTIES, *self.config.extra_properties]))

    @cached_property
    def portal(self) -> tuple[int, str]:
        """(portal id, app host) for task links: from config, else from account-info."""
        portal_id, app_host = self.config.portal_id, self.config.app_host
        if portal_id is not None and app_host is not None:
            return portal_id, app_host
        try:
            details = self.client.account_details()
        except MissingScopeError as exc:
            raise MissingScopeError(
                f"{exc.message} Or set portal_id and app_host in the source options so the "
                "account details are not needed.",
                where=exc.where,
            ) from None
        try:
            portal_id = int(details["portalId"]) if portal_id is None else portal_id
        except (KeyError, TypeError, ValueError):
            raise ConfigurationError(
                "HubSpot's account details carry no portalId; set portal_id in the source options",
                where=self.where,
            ) from None
        return portal_id, app_host or str(details.get("uiDomain") or DEFAULT_APP_HOST)

    def _filtered(self) -> list[tuple[str, list[str]]]:
        """(property, the values a task must have one of) of the owner/queue/type/priority
        options; an empty list filters nothing."""
        config = self.config
        return [
            ("hubspot_owner_id", config.owner_ids),
            ("hs_queue_membership_ids", config.queue_ids),
            ("hs_task_type", config.task_types),
            ("hs_task_priority", config.priorities),
        ]

    def _open_filters(self) -> list[dict[str, Any]]:
        """Not COMPLETED, and the configured owners/queues/types/priorities."""
        not_done = {"propertyName": "hs_task_status", "operator": "NEQ", "value": COMPLETED}
        return [not_done] + [
            {"propertyName": prop, "operator": "IN", "values": list(values)}
            for prop, values in self._filtered()
            if values
        ]

    def _fetch(self, filters: list[dict[str, Any]], since_ms: int | None = None) -> Iterator[Any]:
        """Every search result of ``filters`` (modified since ``since_ms``), associations added."""
        _ = self.portal  # read first: a token without access fails the fetch, not each task
        search = WindowedSearch(
            self.client.search,
            properties=self.properties,
            page_size=self.config.page_size,
            cap=self.config.search_result_cap,
            where=self.where,
        )
        yield from self._with_associations(search.fetch(filters, since_ms=since_ms))

    def _with_associations(self, items: Iterable[Any]) -> Iterator[Any]:
        """Attach ``associations: {type: [ids]}`` to each task, one batch read per page."""
        if not self.config.associations:
            yield from items
            return
        for chunk in batched(items, self.config.page_size):
            ids = [task_id for task_id in map(item_id, chunk) if task_id]
            found = {t: self.client.associated_ids(t, ids) for t in self.config.associations}
            for item in chunk:
                if task_id := item_id(item):
                    links = {t: found[t].get(task_id, []) for t in found}
                    item = {**item, "associations": links}
                yield item

    # -- the contract ---------------------------------------------------------------------
    def fetch_backlog(self) -> Iterator[Record]:
        """Every open task (hs_task_status NEQ COMPLETED, plus the configured filters)."""
        yield from self._fetch(self._open_filters())

    def fetch_changes(self, cursor: str | None) -> Iterator[Record]:
        """Tasks modified at or after ``cursor`` (an ISO time) less ``cursor_overlap_seconds``
        (search results lag behind changes), open or not.

        Without a cursor: the open backlog. Owner/queue/type/priority filters are checked
        locally by :meth:`is_open`, so a task moved out of them leaves the backlog.
        """
        if cursor is None:
            yield from self.fetch_backlog()
            return
        since = self.time_cursor(cursor)
        since -= timedelta(seconds=self.config.cursor_overlap_seconds)
        yield from self._fetch([], since_ms=epoch_ms(since))

    def is_open(self, record: Record) -> bool:
        """Not COMPLETED, and within the configured owners/queues/types/priorities."""
        properties = record.get("properties") if isinstance(record, Mapping) else None
        if not isinstance(properties, Mapping):
            return True  # let to_task report it
        if str(properties.get("hs_task_status") or "").upper() == COMPLETED:
            return False
        return all(
            not wanted or {w.upper() for w in wanted} & set(_split(properties.get(prop)))
            for prop, wanted in self._filtered()
        )

    def cursor_value(self, record: Record) -> str | None:
        """hs_lastmodifieddate, normalized (UTC, milliseconds) so strings sort as times."""
        parsed = modified_at(record)
        return None if parsed is None else format_datetime(parsed)

    def to_task(self, record: Record) -> Task:
        """Map a search result (``{"id", "properties": {...}}``) to a task."""
        if not isinstance(record, Mapping):
            raise BadRecordError(f"expected a task object, got {type(record).__name__}")
        task_id = self.record_id(record)
        if task_id is None:
            raise BadRecordError("task has no id", field="id")
        properties = record.get("properties")
        if not isinstance(properties, Mapping):
            raise BadRecordError("task has no properties object", field="properties")

        def when(prop: str, fallback: str | None = None) -> datetime | None:
            value = properties.get(prop)
            if value in (None, "") and fallback:
                value = record.get(fallback)
            return record_time(value, prop, epoch="ms")

        due_at = when("hs_timestamp")
        updated_at = when(MODIFIED, "updatedAt")
        created_at = when("hs_createdate", "createdAt")
        status = str(properties.get("hs_task_status") or "").upper()
        subject = str(properties.get("hs_task_subject") or "").strip()
        portal_id, app_host = self.portal
        body = html_to_text(str(properties.get("hs_task_body") or ""))
        body = shorten(body, self.config.body_max_chars)

        custom: dict[str, Any] = {
            "priority": properties.get("hs_task_priority") or None,
            "type": properties.get("hs_task_type") or None,
            "owner": properties.get("hubspot_owner_id") or None,
            "status": status or None,
            "body": body or None,
        }
        for prop in self.properties[len(BASE_PROPERTIES) :]:  # extra_properties
            custom[prop] = properties.get(prop)
        associations = record.get("associations")
        if isinstance(associations, Mapping):
            for object_type in self.config.associations:
                custom[f"associated_{object_type}"] = list(associations.get(object_type) or [])
        return Task.new(
            external_id=task_id,
            title=subject or f"HubSpot task {task_id}",
            url=self.config.url_template.format(
                app_host=app_host, portal_id=portal_id, task_id=task_id
            ),
            due_at=due_at,
            custom={k: v for k, v in custom.items() if v is not None},
            external_status=EXTERNAL_STATUS.get(status, TaskStatus.TODO),
            external_created_at=created_at,
            external_updated_at=updated_at,
        )

    def on_complete(self, task: RemoteTask, completion: Completion) -> str | None:
        """Set hs_task_status = COMPLETED (and append the note); a no-op if already done."""
        task_id = self.digits_id(completion.external_id, "a HubSpot task")
        try:
            current = self.client.get_task(task_id, ["hs_task_status", "hs_task_body"])
            properties = current.get("properties") or {}
            if str(properties.get("hs_task_status") or "").upper() == COMPLETED:
                return f"HubSpot task {task_id} was already completed"
            update = {"hs_task_status": COMPLETED}
            if self.config.completion_note:
                note = completion.fill(self.config.completion_note)
                existing = str(properties.get("hs_task_body") or "")
                update["hs_task_body"] = f"{existing}<p>{note}</p>"
            self.client.update_task(task_id, update)
        except TaskNotFoundError:
            raise WriteBackError(
                f"HubSpot task {task_id} no longer exists (deleted?); nothing to complete"
            ) from None
        return f"completed HubSpot task {task_id}"

    def check(self) -> str:
        """Reach the account and the task search; say what is wrong in actionable words.

        A configured portal_id must be the token's account, else every link is wrong (it
        is trusted when the token lacks the oauth scope to read the account).
        """
        portal_id, app_host = self.portal
        if self.config.portal_id is not None:
            try:
                actual = self.client.account_details().get("portalId")
            except MissingScopeError:
                actual = None
            if actual is not None and str(actual) != str(portal_id):
                raise ConfigurationError(
                    f"portal_id is {portal_id} but the access token belongs to HubSpot account "
                    f"{actual}; set portal_id = {actual} (or remove it) in the source options",
                    where=self.where,
                )
        query = {"filterGroups": [{"filters": self._open_filters()}], "limit": 1}
        page = self.client.search({**query, "properties": ["hs_object_id"]})
        total = page.get("total")
        count = f"{total} open tasks match" if total is not None else "task search works"
        return f"HubSpot account {portal_id} ({app_host}): {count}"
