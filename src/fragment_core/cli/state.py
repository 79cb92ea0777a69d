"""``fragment state``: what the state store knows of a source, its run history, and the
two ways to start a source's state over (``reset``, ``rebuild``)."""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

import click
from rich.markup import escape
from rich.table import Table

from fragment_core.cli.summary import EXIT_BUSY
from fragment_core.cli.support import (
    FragmentGroup,
    echo_json,
    load_config_from_context,
    stderr_console,
    stdout_console,
)
from fragment_core.cli.writebacks import SHOWN, describe, when
from fragment_core.config import Settings
from fragment_core.errors import ConfigurationError
from fragment_core.state import LeaseHeldError, OutboxState, RecordStatus, StateStore
from fragment_core.sync.destination import Destination

json_option = click.option("--json", "as_json", is_flag=True, help="Print the output as JSON.")

STATE_EXAMPLES = """\b
Examples:
  fragment state show support           what the state knows of "support"
  fragment state history support -n 5   its last five runs
  fragment state rebuild support        rebuild it from the Tasks API (after a move)
  fragment state reset support --yes    forget it; the next run rebuilds it
"""


@click.group("state", cls=FragmentGroup, epilog=STATE_EXAMPLES)
def state_group() -> None:
    """Inspect a source's state, its run history; rebuild or reset it."""


def _open(ctx: click.Context, source: str) -> tuple[Settings, StateStore]:
    """The settings and the state store, once ``source`` is known to either."""
    settings = load_config_from_context(ctx)
    store = StateStore(settings.state.url, lease_ttl=settings.state.lease_ttl)
    configured = [s.name for s in settings.sources]
    if source not in configured and source not in store.source_names():
        store.close()
        names = ", ".join(sorted({*configured, *store.source_names()})) or "none"
        raise ConfigurationError(
            f"no source named {source!r} in the configuration or the state (sources: {names})",
            where=str(settings.path or "the configuration"),
        )
    return settings, store


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def source_summary(settings: Settings, store: StateStore, name: str) -> dict[str, Any]:
    """What ``fragment state show`` prints, as a JSON-ready dict."""
    now = datetime.now(UTC)
    state = store.source_state(name)
    configured = next((s for s in settings.sources if s.name == name), None)
    counts = store.status_counts(name)
    destination = Destination.recorded(state)
    holder = store.lease_holder(name)
    waiting = [  # not the done ones: a source's outbox keeps every write-back made
        *store.write_backs(name, OutboxState.PENDING),
        *store.write_backs(name, OutboxState.FAILED),
    ]
    last = store.last_runs(name, limit=1)
    every = getattr(configured, "verify_every", None)
    return {
        "source": name,
        "configured": configured is not None,
        "connector": configured.connector if configured else None,
        "records": {str(s): counts.get(str(s), 0) for s in RecordStatus},
        "cursor": state.cursor,
        "last_complete_fetch": _iso(state.last_complete_fetch),
        "complete_runs": state.complete_runs,
        "completions_seen_until": _iso(state.completions_seen_until),
        "destination": None
        if destination is None
        else {**destination.to_dict(), "bound_at": _iso(state.bound_at)},
        "last_verified": _iso(state.last_verified),
        "verify_every_seconds": every.total_seconds() if every else None,
        "lease": None
        if holder is None
        else {
            "host": holder.host,
            "pid": holder.pid,
            "since": _iso(holder.since),
            "expires_at": _iso(holder.expires_at),
        },
        "runs": store.run_count(name),
        "last_run": last[0] if last else None,
        "write_backs": store.write_back_counts(name),
        "pending_write_backs": [
            describe(e, now) for e in waiting if e.state == OutboxState.PENDING
        ],
        "failed_write_backs": [describe(e, now) for e in waiting if e.state == OutboxState.FAILED],
    }


@state_group.command("show", epilog="\b\nExamples:\n  fragment state show support --json")
@click.argument("source")
@json_option
@click.pass_context
def show_command(ctx: click.Context, source: str, as_json: bool) -> None:
    """What the state knows of SOURCE: records by status, cursor, last complete fetch,
    destination, lease, and the write-backs not done yet (why, and when retried)."""
    settings, store = _open(ctx, source)
    try:
        data = source_summary(settings, store, source)
    finally:
        store.close()
    if as_json:
        echo_json(data)
        return
    print_summary(data)


def print_summary(data: dict[str, Any]) -> None:
    """``fragment state show`` as text."""
    console = stdout_console()
    now = datetime.now(UTC)
    where = f"{data['connector']}" if data["configured"] else "not in the configuration"
    console.print(f"[bold]{escape(data['source'])}[/] ({escape(where)})")
    table = Table(show_header=False, box=None, padding=(0, 2))
    records = data["records"]
    total = sum(records.values())
    parts = ", ".join(f"{count} {status}" for status, count in records.items() if count)
    table.add_row("records", f"{total}" + (f": {parts}" if parts else ""))
    table.add_row("cursor", escape(str(data["cursor"] or "-")))
    fetch = _parse(data["last_complete_fetch"])
    table.add_row(
        "last complete fetch", f"{when(fetch, now)}; {data['complete_runs']} complete runs"
    )
    table.add_row("completions seen until", when(_parse(data["completions_seen_until"]), now))
    dest = data["destination"]
    if dest is None:
        table.add_row("destination", "not recorded yet (the next run records it)")
    else:
        described = Destination(dest["url"], dest["account"], dest["name"]).describe()
        bound = when(_parse(dest["bound_at"]), now)
        table.add_row("destination", f"{escape(described)}, since {bound}")
    verified = when(_parse(data["last_verified"]), now)
    every = data["verify_every_seconds"]
    table.add_row(
        "last verified",
        verified + (f" (every {_hours(every)})" if every else " (verify_every: never)"),
    )
    lease = data["lease"]
    table.add_row(
        "lease",
        "free"
        if lease is None
        else f"held by PID {lease['pid']} on {escape(lease['host'])} since {lease['since']}",
    )
    last = data["last_run"]
    table.add_row(
        "runs",
        f"{data['runs']} in the history"
        + (f"; last: {last['outcome']}, {last.get('started_at')}" if last else ""),
    )
    wb = data["write_backs"]
    table.add_row(
        "write-backs", f"{wb['pending']} pending, {wb['failed']} failed, {wb['done']} done"
    )
    console.print(table)
    for kind in ("pending", "failed"):
        entries = data[f"{kind}_write_backs"]
        for entry in entries[:SHOWN]:
            mark = "[red]x[/]" if kind == "failed" else "[yellow]…[/]"
            console.print(
                f"  {mark} {kind} {escape(entry['external_id'])}: {escape(entry['reason'])}"
            )
        if len(entries) > SHOWN:
            console.print(f"  ... and {len(entries) - SHOWN} more {kind} (--json lists all)")


def _parse(value: str | None) -> datetime | None:
    return datetime.fromisoformat(value) if value else None


def _hours(seconds: float) -> str:
    if seconds % 86400 == 0:
        return f"{seconds / 86400:.0f}d"
    if seconds % 3600 == 0:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 60:.0f}m"


@state_group.command("history", epilog="\b\nExamples:\n  fragment state history support -n 50")
@click.argument("source")
@click.option(
    "-n", "--limit", default=20, show_default=True, type=click.IntRange(min=1), help="Runs shown."
)
@json_option
@click.pass_context
def history_command(ctx: click.Context, source: str, limit: int, as_json: bool) -> None:
    """The run history of SOURCE, newest first: when, mode, outcome, counts, requests."""
    _settings, store = _open(ctx, source)
    try:
        runs = store.run_history(source, limit)
    finally:
        store.close()
    if as_json:
        echo_json(runs)
        return
    console = stdout_console()
    if not runs:
        console.print(f"no run of {escape(source)} in the history")
        return
    table = Table(title=f"Runs of {escape(source)}")
    for column in ("run", "started", "mode", "outcome", "counts", "requests", "seconds", "note"):
        table.add_column(column)
    for run in runs:
        counts = (
            f"+{run.get('created', 0)} ~{run.get('updated', 0)} -{run.get('closed', 0)} "
            f"^{run.get('reopened', 0)} ={run.get('unchanged', 0)} "
            f"x{run.get('failed_records', 0)} wb{run.get('written_back', 0)}"
        )
        messages = run.get("messages") or []
        duration = run.get("duration")
        table.add_row(
            str(run["run"]),
            str(run.get("started_at") or "-")[:19],
            str(run.get("mode") or "-"),
            str(run.get("outcome") or "-"),
            counts,
            str(run.get("requests", 0)),
            f"{duration:.1f}" if isinstance(duration, int | float) else "-",
            escape(messages[0][:80] if messages else ""),
        )
    console.print(table)
    console.print(HISTORY_LEGEND)


#: The legend of the counts of ``fragment state history`` and ``fragment status``.
COUNTS_LEGEND = "+ created  ~ updated  - closed  ^ reopened  = unchanged  x failed records"
HISTORY_LEGEND = f"counts: {COUNTS_LEGEND}  wb written back"


@state_group.command("reset", epilog="\b\nExamples:\n  fragment state reset support --yes")
@click.argument("source")
@click.option("--yes", "-y", is_flag=True, help="Do not ask for confirmation.")
@json_option
@click.pass_context
def reset_command(ctx: click.Context, source: str, yes: bool, as_json: bool) -> None:
    """Forget what the state knows of SOURCE: records, cursor, destination and the
    write-backs not done yet (the run history is kept). The next run rebuilds it from
    the Tasks API, as after a lost state; write-backs still pending are not made."""
    _settings, store = _open(ctx, source)
    try:
        counts = store.write_back_counts(source)
        records = sum(store.status_counts(source).values())
        waiting = counts["pending"] + counts["failed"]
        if not yes:
            warning = (
                f"Forget {records} records of {source!r}"
                + (
                    f" and {waiting} write-backs not done yet (they will not be made)"
                    if waiting
                    else ""
                )
                + "? The next run rebuilds the state from the Tasks API."
            )
            click.confirm(warning, abort=True, err=True)
        with _lease(ctx, store, source):
            deleted = store.forget_source(source, write_backs=True)
    finally:
        store.close()
    if as_json:
        echo_json({"source": source, **deleted})
        return
    stdout_console().print(
        f"[green]✓[/] state of {escape(source)} reset: {deleted['records']} records and "
        f"{deleted.get('write_backs', 0)} write-backs forgotten; the next run rebuilds it "
        "from the Tasks API"
    )


@state_group.command(
    "rebuild",
    epilog="\b\nExamples:\n  fragment state rebuild support\n"
    "  fragment state rebuild support --json",
)
@click.argument("source")
@json_option
@click.pass_context
def rebuild_command(ctx: click.Context, source: str, as_json: bool) -> None:
    """Rebuild the state of SOURCE from the configured Tasks API, which becomes its
    destination: its tasks are adopted (open ones re-sent once by the next run, done
    ones never written back again); pending write-backs and the run history are kept.
    The remedy when a sync exits with 6 (the state belongs to another Tasks API)."""
    from fragment_core.runner import open_tasks_client
    from fragment_core.sync.rebuild import rebuild_source

    settings, store = _open(ctx, source)
    client = open_tasks_client(settings)
    try:
        with _lease(ctx, store, source):
            rebuilt = rebuild_source(source, client, store)
    finally:
        client.close()
        store.close()
    if as_json:
        echo_json(
            {
                "source": source,
                "destination": rebuilt.destination,
                "open": rebuilt.open,
                "done": rebuilt.done,
            }
        )
        return
    stdout_console().print(f"[green]✓[/] {escape(source)}: {escape(rebuilt.message())}")


@contextlib.contextmanager
def _lease(ctx: click.Context, store: StateStore, source: str) -> Iterator[None]:
    """Hold the source's lease for the block; exit 5 (busy) when a run holds it."""
    stack = contextlib.ExitStack()
    try:
        stack.enter_context(store.lease(source))
    except LeaseHeldError as exc:
        stderr_console().print(str(exc), markup=False, highlight=False, soft_wrap=True)
        ctx.exit(EXIT_BUSY)
    with stack:
        yield
