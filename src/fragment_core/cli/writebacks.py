"""Write-backs of the outbox, described for people: why one is waiting, when it is
tried again (``fragment status``, ``fragment state show``)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from fragment_core.state import OutboxEntry, OutboxState

#: Write-backs listed per source and state in text output (``--json`` lists them all).
SHOWN = 10


def when(value: datetime | None, now: datetime) -> str:
    """``2026-01-01 10:00:00 UTC (in 4m)`` / ``(3m ago)`` / ``-``."""
    if value is None:
        return "-"
    seconds = (value - now).total_seconds()
    text = value.strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{text} ({_span(seconds)})"


def _span(seconds: float) -> str:
    ahead, size = seconds >= 0, abs(seconds)
    if size < 120:
        amount = f"{size:.0f}s"
    elif size < 7200:
        amount = f"{size / 60:.0f}m"
    else:
        amount = f"{size / 3600:.1f}h"
    return f"in {amount}" if ahead else f"{amount} ago"


def reason(entry: OutboxEntry, now: datetime) -> str:
    """Why the write-back is not done yet, and when it is tried again."""
    due = entry.next_attempt_at
    if entry.claimed_by is not None and due is not None and due > now:
        return "being written back now by a run that claimed it"
    if due is None or due <= now:
        retry = "the next run of the source tries it"
    else:
        retry = f"the first run of the source after {when(due, now)} tries it again"
    if entry.attempts == 0:
        return f"completed by an operator, not written back yet: {retry}"
    error = entry.last_error or "no error recorded"
    if entry.state == OutboxState.FAILED:
        return (
            f"failed {entry.attempts} times, last: {error} (shown as failed after 5 "
            f"attempts or a refusal; still retried): {retry}"
        )
    return f"attempt {entry.attempts} failed: {error}; {retry}"


def describe(entry: OutboxEntry, now: datetime) -> dict[str, Any]:
    """A JSON-ready description of a write-back that is not done."""
    return {
        "external_id": entry.external_id,
        "uid": entry.uid,
        "state": str(entry.state),
        "attempts": entry.attempts,
        "last_error": entry.last_error,
        "error": entry.last_error,
        "completed_at": entry.done_at.isoformat() if entry.done_at else None,
        "next_attempt_at": entry.next_attempt_at.isoformat() if entry.next_attempt_at else None,
        "reason": reason(entry, now),
    }
