"""What a sync run and a write-back report: passed to hooks, printed, stored as run history."""

from __future__ import annotations

import uuid
from dataclasses import asdict, dataclass, field, fields
from datetime import datetime
from enum import StrEnum
from typing import Any


class RunOutcome(StrEnum):
    """How a run ended."""

    OK = "ok"
    """Everything planned was applied."""
    PARTIAL = "partial"
    """Applied, but some records or write-backs failed (see ``errors``)."""
    CAPPED = "capped"
    """Closes were withheld by the blast-radius cap; everything else was applied."""
    FAILED = "failed"
    """The run stopped early (fetch, auth or config failure); nothing was closed."""
    DRY_RUN = "dry-run"
    """Planned only; nothing was written."""


@dataclass
class RecordError:
    """A record that could not become a task, named by source, record and field."""

    source: str
    record_id: str | None
    field: str | None
    message: str

    def __str__(self) -> str:
        where = f"source {self.source!r}"
        if self.record_id is not None:
            where += f", record {self.record_id!r}"
        if self.field is not None:
            where += f", field {self.field!r}"
        return f"{where}: {self.message}"


@dataclass
class SyncReport:
    """The summary of one run of one source."""

    source: str
    connector: str
    mode: str = "full"  # "full" | "incremental"
    dry_run: bool = False
    started_at: datetime | None = None
    finished_at: datetime | None = None
    outcome: RunOutcome = RunOutcome.OK
    fetched: int = 0
    created: int = 0
    updated: int = 0
    closed: int = 0
    reopened: int = 0
    unchanged: int = 0
    not_mapped: int = 0
    """Of the unchanged records, those recognised by their raw form, without mapping."""
    dropped: int = 0
    withheld_closes: int = 0
    forced_close: bool = False
    """The run was told to bypass the blast-radius cap (``--force-close``)."""
    written_back: int = 0
    write_back_failed: int = 0
    verified: int = 0
    """A verifying run: the source's tasks listed and compared with the state."""
    recreated: int = 0
    """Of ``created``: tasks deleted from the Tasks API by someone else, created again."""
    rewritten: int = 0
    """Of ``updated``: tasks someone else changed in the Tasks API, written again."""
    requests: int = 0
    record_errors: list[RecordError] = field(default_factory=list)
    messages: list[str] = field(default_factory=list)

    @property
    def failed_records(self) -> int:
        """How many records could not be mapped."""
        return len(self.record_errors)

    @property
    def duration(self) -> float | None:
        """Seconds from start to finish, when both are known."""
        if self.started_at and self.finished_at:
            return (self.finished_at - self.started_at).total_seconds()
        return None

    def to_dict(self) -> dict[str, Any]:
        """A JSON-ready dict."""
        data = asdict(self)
        data["outcome"] = self.outcome.value
        data["failed_records"] = self.failed_records
        data["duration"] = self.duration
        for key in ("started_at", "finished_at"):
            if data[key] is not None:
                data[key] = data[key].isoformat()
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SyncReport:
        """The report of :meth:`to_dict` (as stored in the run history)."""
        names = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in names}
        for key in ("started_at", "finished_at"):
            if values.get(key) is not None:
                values[key] = datetime.fromisoformat(values[key])
        outcome = str(values.get("outcome"))
        known = outcome in {str(o) for o in RunOutcome}  # else a run still going
        values["outcome"] = RunOutcome(outcome) if known else RunOutcome.OK
        values["record_errors"] = [RecordError(**e) for e in values.get("record_errors", [])]
        values["messages"] = list(values.get("messages", []))
        return cls(**values)


@dataclass
class WriteBackOutcome:
    """The result of one write-back attempt (``Connector.on_complete``)."""

    source: str
    uid: uuid.UUID
    external_id: str
    ok: bool
    message: str = ""
    attempts: int = 1
    transient: bool = False
    """It failed with a transient error: the source may be down (no more this run)."""
