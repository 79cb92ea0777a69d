"""Printing runs for people: a report's summary, a dry run's plan, the status table,
and a progress bar while a run goes."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from fragment_core.reports import RunOutcome, SyncReport
from fragment_core.sync.plan import Plan

#: Exit codes of ``fragment sync`` (and ``fragment run --once``), by outcome.
EXIT_CODES: dict[RunOutcome, int] = {
    RunOutcome.OK: 0,
    RunOutcome.DRY_RUN: 0,
    RunOutcome.FAILED: 1,
    RunOutcome.CAPPED: 3,
    RunOutcome.PARTIAL: 4,
}

#: Exit code of a run refused because another run holds the source's lease.
EXIT_BUSY = 5

#: Exit code of a run refused because the source's state belongs to another Tasks API.
EXIT_OTHER_DESTINATION = 6

_STYLE = {
    RunOutcome.OK: "green",
    RunOutcome.DRY_RUN: "cyan",
    RunOutcome.PARTIAL: "yellow",
    RunOutcome.CAPPED: "yellow",
    RunOutcome.FAILED: "red",
}


def print_report(console: Console, report: SyncReport) -> None:
    """The summary of one run: counts, requests, duration, then messages and errors."""
    style = _STYLE.get(report.outcome, "white")
    duration = f"{report.duration:.1f}s" if report.duration is not None else "-"
    console.print(
        f"[bold]{escape(report.source)}[/] ({escape(report.connector)}, {report.mode}): "
        f"[{style}]{report.outcome.value}[/] in {duration}"
    )
    table = Table(show_header=False, box=None, padding=(0, 2))
    rows = [
        ("created", report.created),
        ("updated", report.updated),
        ("closed", report.closed),
        ("reopened", report.reopened),
        ("unchanged", report.unchanged),
        ("  not mapped again", report.not_mapped),
        ("failed records", report.failed_records),
        ("written back", report.written_back),
        ("write-backs failed", report.write_back_failed),
        ("closes withheld", report.withheld_closes),
        ("verified in the Tasks API", report.verified),
        ("  created again", report.recreated),
        ("  written again", report.rewritten),
        ("requests", report.requests),
    ]
    for label, value in rows:
        if value or label in ("created", "updated", "closed", "unchanged", "requests"):
            table.add_row(label, str(value))
    console.print(table)
    for message in report.messages:
        console.print(f"[yellow]![/] {escape(message)}")
    for error in report.record_errors[:20]:
        console.print(f"[red]x[/] {escape(str(error))}")
    if len(report.record_errors) > 20:
        console.print(f"[red]x[/] ... and {len(report.record_errors) - 20} more failed records")


def print_plan(console: Console, plan: Plan, *, limit: int = 20) -> None:
    """A dry run's plan, like ``terraform plan``: what would change, nothing written."""
    console.print(
        f"[bold]Plan for {escape(plan.source)}[/] ({plan.mode} fetch, {plan.fetched} records"
        f"{'' if plan.complete else ', INCOMPLETE'}):"
    )
    sections: list[tuple[str, str, list[Any]]] = [
        ("+", "green", [(w.external_id, w.task.fields.title) for w in plan.create]),
        ("~", "yellow", [(w.external_id, w.task.fields.title) for w in plan.update]),
        ("^", "cyan", [(w.external_id, w.task.fields.title) for w in plan.reopen]),
        ("-", "red", [(c.external_id, "close") for c in plan.close]),
    ]
    for mark, style, items in sections:
        for external_id, text in items[:limit]:
            console.print(f"  [{style}]{mark}[/] {escape(external_id)}  {escape(str(text))}")
        if len(items) > limit:
            console.print(f"  [{style}]{mark}[/] ... and {len(items) - limit} more")
    console.print(
        f"Plan: {plan.planned['created']} to create, {plan.planned['updated']} to update, "
        f"{plan.planned['reopened']} to reopen, {len(plan.close)} to close, "
        f"{plan.unchanged} unchanged, "
        f"{len(plan.record_errors)} failed records, {plan.write_backs_due} write-backs due."
    )
    for message in plan.messages:
        console.print(f"[yellow]![/] {escape(message)}")
    for error in plan.record_errors[:limit]:
        console.print(f"[red]x[/] {escape(str(error))}")
    console.print("Nothing was written (dry run).")


def _ago(value: str | None, now: datetime) -> str:
    if not value:
        return "-"
    seconds = (now - datetime.fromisoformat(value)).total_seconds()
    if seconds < 120:
        return f"{seconds:.0f}s ago"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m ago"
    return f"{seconds / 3600:.1f}h ago"


def print_status(console: Console, rows: list[dict[str, Any]]) -> None:
    """The ``fragment status`` table: one row per source."""
    now = datetime.now(UTC)
    table = Table(title="Sources")
    for column in ("source", "last run", "outcome", "counts", "lag", "write-backs"):
        table.add_column(column)
    for row in rows:
        run = row.get("last_run") or {}
        outcome = run.get("outcome", "never ran")
        style = _STYLE.get(outcome, "white") if run else "dim"
        if run.get("fleet"):
            outcome += " (fleet)"
        counts = (
            f"+{run['created']} ~{run['updated']} -{run['closed']} ^{run['reopened']} "
            f"={run['unchanged']} x{run['failed_records']}"
            if run
            else "-"
        )
        wb = row["write_backs"]
        wb_text = f"{wb['pending']} pending, {wb['failed']} failed"
        if wb["failed"]:
            wb_text = f"[red]{wb_text}[/]"
        table.add_row(
            escape(row["source"]),
            _ago(run.get("finished_at") or run.get("started_at"), now),
            f"[{style}]{outcome}[/]",
            counts,
            _ago(row.get("last_complete_fetch"), now),
            wb_text,
        )
    console.print(table)
    console.print(STATUS_LEGEND)
    for row in rows:
        for kind, mark in (("failed", "[red]x[/]"), ("pending", "[yellow]…[/]")):
            entries = row.get(f"{kind}_write_backs", [])
            for entry in entries[:WRITE_BACKS_SHOWN]:
                console.print(
                    f"{mark} {escape(row['source'])}: write-back of record "
                    f"{escape(entry['external_id'])!s} {kind}: {escape(entry['reason'])}"
                )
            if len(entries) > WRITE_BACKS_SHOWN:
                more = len(entries) - WRITE_BACKS_SHOWN
                console.print(
                    f"{mark} {escape(row['source'])}: ... and {more} more {kind} write-backs "
                    f"(fragment state show {escape(row['source'])} --json lists them)"
                )


#: Write-backs listed per source and kind under the status table.
WRITE_BACKS_SHOWN = 10

#: What the columns of ``fragment status`` mean.
STATUS_LEGEND = (
    "counts of the last run: + created, ~ updated, - closed, ^ reopened, = unchanged, "
    "x failed records. lag: since the last complete fetch. write-backs: pending = an "
    "operator completed the task and the source is not told yet (first attempt due, or "
    "retried after an error); failed = failed 5 times or refused, still retried."
)


class RichProgress:
    """A progress bar on a terminal: records fetched, then plan items applied."""

    def __init__(self, console: Console, source: str) -> None:
        self.bar = Progress(
            TextColumn("[bold]{task.description}"),
            BarColumn(),
            MofNCompleteColumn(),
            TimeElapsedColumn(),
            console=console,
            transient=True,
        )
        self.fetch_task = self.bar.add_task(f"{source}: fetching", total=None)
        self.apply_task: Any = None
        self.applied_early = 0  # items written while the fetch went on, before the plan

    def __enter__(self) -> RichProgress:
        self.bar.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.bar.stop()

    def fetched(self, count: int) -> None:
        """Records fetched so far."""
        self.bar.update(self.fetch_task, completed=count)

    def planned(self, plan: Plan) -> None:
        """The plan is ready: switch to the apply bar."""
        self.bar.update(self.fetch_task, total=plan.fetched, completed=plan.fetched)
        total = plan.total_writes
        self.apply_task = self.bar.add_task(
            f"{plan.source}: writing", total=total, completed=self.applied_early
        )

    def applied(self, count: int) -> None:
        """More plan items applied."""
        if self.apply_task is not None:
            self.bar.advance(self.apply_task, count)
        else:  # writes start while the fetch goes on
            self.applied_early += count
