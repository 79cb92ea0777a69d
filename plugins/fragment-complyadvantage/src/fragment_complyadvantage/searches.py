"""The ``complyadvantage`` connector: screening searches needing review, decisions back."""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from datetime import UTC, datetime
from typing import Any, ClassVar

from fragment_complyadvantage.config import RESOLVED_STATUSES, RISK_LEVELS, SearchesConfig
from fragment_complyadvantage.http import NotFoundError, newest_since
from fragment_complyadvantage.searches_client import SearchesClient
from fragment_core.connector import Capability, Completion, Connector, Record
from fragment_core.errors import BadRecordError, WriteBackError
from fragment_core.task import RemoteTask, Task, format_datetime


def parse_time(value: Any) -> datetime | None:
    """``2025-05-02 09:15:00`` (UTC, the legacy API's format) or ISO 8601; ``None`` if empty."""
    if value in (None, ""):
        return None
    if not isinstance(value, str):
        raise ValueError(value)
    parsed = datetime.fromisoformat(value.strip().replace("Z", "+00:00"))
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def updated_cursor(record: Any) -> str | None:
    """A record's ``updated_at`` as a cursor (UTC ISO 8601, so cursors compare as times)."""
    at = updated_at(record)
    return None if at is None else format_datetime(at)


def updated_at(record: Any) -> datetime | None:
    """A record's ``updated_at`` as a time (``None`` when absent or unreadable)."""
    try:
        return parse_time(record.get("updated_at")) if isinstance(record, Mapping) else None
    except ValueError:
        return None


def plural(n: int, word: str) -> str:
    """``1 hit``, ``3 hits``."""
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


class SearchesConnector(Connector[SearchesConfig]):
    """ComplyAdvantage screening searches whose match_status needs review.

    Backlog: searches with a match_status in ``review_statuses`` (potential_match and
    unknown by default). Completing a task sets the search's match_status (and
    risk_level) from the operator's outcome.
    """

    name = "complyadvantage"
    id_field = "id"
    example_options: ClassVar[dict[str, Any]] = {
        "api_key": "${COMPLYADVANTAGE_API_KEY}",
        "review_statuses": ["potential_match", "unknown"],
        "outcome_map": {"cleared": "false_positive", "confirmed": "true_positive"},
        "default_match_status": "false_positive",
    }

    def build_client(self) -> SearchesClient:
        """The legacy API client (``self.client``)."""
        return SearchesClient(self.config, where=self.where)

    def configured_capabilities(self) -> frozenset[Capability]:
        """Incremental only with ``incremental = true``."""
        caps = super().configured_capabilities()
        return caps if self.config.incremental else caps - {Capability.INCREMENTAL}

    # -- fetch --------------------------------------------------------------------------
    def fetch_backlog(self) -> Iterator[Record]:
        """Every search whose match_status is one of ``review_statuses``."""
        yield from self.client.searches()

    def fetch_changes(self, cursor: str | None) -> Iterator[Record]:
        """Searches updated at or after ``cursor``, any match_status (newest first)."""
        if cursor is None:
            yield from self.fetch_backlog()
            return
        yield from newest_since(self.client.changes(), self.time_cursor(cursor), updated_at)

    def is_open(self, record: Record) -> bool:
        """Its match_status needs review (and it is the configured assignee's)."""
        if not isinstance(record, Mapping):
            return True  # let to_task report it
        if self.config.assignee_id is not None and record.get("assignee_id") != (
            self.config.assignee_id
        ):
            return False
        return record.get("match_status") in self.config.review_statuses

    def cursor_value(self, record: Record) -> str | None:
        """updated_at, normalized (UTC ISO 8601) so cursors compare as times."""
        return updated_cursor(record)

    def to_task(self, record: Record) -> Task:
        """Title from the search term and hit count, url = share_url, review fields."""
        if not isinstance(record, Mapping):
            raise BadRecordError(
                f"expected a search object, got {type(record).__name__}",
                field="search",
                where=self.where,
            )
        search_id = self.record_id(record)
        if search_id is None:
            raise BadRecordError("search has no id", field="id", where=self.where)

        def bad(field: str, message: str) -> BadRecordError:
            return BadRecordError(message, record_id=search_id, field=field, where=self.where)

        term = record.get("search_term") or record.get("submitted_term")
        if not isinstance(term, str) or not term.strip():
            raise bad("search_term", f"expected the searched name, got {term!r}")
        hits = record.get("total_hits", 0)
        if isinstance(hits, bool) or not isinstance(hits, int) or hits < 0:
            raise bad("total_hits", f"expected a count, got {hits!r}")
        share_url = record.get("share_url")
        if not isinstance(share_url, str) or not share_url.startswith(("https://", "http://")):
            raise bad("share_url", f"expected the search's link, got {share_url!r}")
        times = {}
        for field in ("created_at", "updated_at"):
            try:
                times[field] = parse_time(record.get(field))
            except ValueError:
                raise bad(field, f"{record.get(field)!r} is not a time") from None
        custom = {
            "match_status": record.get("match_status"),
            "risk_level": record.get("risk_level"),
            "total_hits": hits,
            "client_ref": record.get("client_ref"),
            "assignee": record.get("assignee_id"),
        }
        return Task.new(
            external_id=search_id,
            title=f"{term.strip()} ({plural(hits, 'hit')})",
            url=share_url,
            custom={k: v for k, v in custom.items() if v is not None},
            external_created_at=times["created_at"],
            external_updated_at=times["updated_at"],
        )

    # -- write-back ---------------------------------------------------------------------
    def decision(self, outcome: Mapping[str, Any]) -> dict[str, str]:
        """The PATCH body for an operator's outcome (match_status, maybe risk_level)."""
        config = self.config
        value = outcome.get(config.outcome_field)
        status = config.default_match_status if value in (None, "") else str(value)
        status = config.outcome_map.get(status, status)
        if status not in RESOLVED_STATUSES:
            raise WriteBackError(
                f"the completion's {config.outcome_field} is {value!r}, which is no match_status "
                f"that resolves a search ({', '.join(RESOLVED_STATUSES)}); map it in "
                "outcome_map. Nothing was sent.",
                where=self.where,
            )
        body = {"match_status": status}
        risk = outcome.get(config.risk_level_field) or config.default_risk_level
        if risk is not None:
            if str(risk) not in RISK_LEVELS:
                raise WriteBackError(
                    f"the completion's {config.risk_level_field} is {risk!r}, not one of "
                    f"{', '.join(RISK_LEVELS)}. Nothing was sent.",
                    where=self.where,
                )
            body["risk_level"] = str(risk)
        return body

    def on_complete(self, task: RemoteTask, completion: Completion) -> str | None:
        """Set match_status (and risk_level); a search already resolved is left as it is."""
        search_id = self.digits_id(completion.external_id, "a search")
        body = self.decision(completion.outcome)
        try:
            current = self.client.get(search_id)
        except NotFoundError:
            raise WriteBackError(
                f"search {search_id} no longer exists in ComplyAdvantage; nothing to resolve",
                where=self.where,
            ) from None
        status = current.get("match_status")
        if status in RESOLVED_STATUSES:
            return f"search {search_id} was already resolved ({status})"
        self.client.update(search_id, body)
        return f"search {search_id}: match_status {body['match_status']}" + (
            f", risk_level {body['risk_level']}" if "risk_level" in body else ""
        )

    def check(self) -> str:
        """One list request: the key, the region and the listing work."""
        page = self.client.list_page(1, per_page=1)
        statuses = "/".join(self.config.review_statuses)
        count = f"{page.total} searches" if page.total is not None else "the search listing"
        return f"ComplyAdvantage at {self.config.base_url}: {count} ({statuses}) reached"
