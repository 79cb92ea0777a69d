"""``fragment demo``: the whole loop on the local sandbox, explained step by step.

A sample backlog file is synced into a local Tasks API, an "operator" completes some
tasks, the next sync writes the completions back into the file, and rows removed from
the file close their tasks. No account anywhere; under a minute.
"""

from __future__ import annotations

import csv
import threading
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from fragment_core.cli.summary import print_report
from fragment_core.config import Settings, load_settings
from fragment_core.connectors.file import FileConnector, write_rows, write_sample
from fragment_core.plugins import get_plugin_manager, get_registry
from fragment_core.state import StateStore
from fragment_core.sync.engine import sync_source
from fragment_core.task import SOURCE_FIELD, RemoteTask, TaskStatus

SOURCE = "demo"


def _write_config(folder: Path, url: str, token: str) -> Path:
    (folder / "sandbox-token").write_text(token + "\n", encoding="utf-8")
    config = folder / "fragment.toml"
    config.write_text(
        "# Written by `fragment demo`: the local sandbox and the sample backlog.\n"
        "[tasks_api]\n"
        f'url = "{url}"\n'
        'token_file = "sandbox-token"\n'
        "rate_limit = 0\n\n"
        "[state]\n"
        f'url = "sqlite:///{(folder / "state.db").as_posix()}"\n\n'
        "[[sources]]\n"
        f'name = "{SOURCE}"\n'
        'connector = "file"\n'
        'every = "30s"\n'
        "[sources.options]\n"
        f'path = "{(folder / "backlog.csv").as_posix()}"\n',
        encoding="utf-8",
    )
    return config


def _tasks_table(tasks: list[RemoteTask], title: str) -> Table:
    table = Table(title=title)
    for column in ("id", "title", "priority", "status"):
        table.add_column(column)
    style = {TaskStatus.DONE: "green", TaskStatus.STARTED: "yellow", TaskStatus.TODO: "white"}
    for task in sorted(tasks, key=lambda t: t.external_id or ""):
        table.add_row(
            escape(task.external_id or ""),
            escape(task.title or ""),
            escape(str(task.fields.get("priority", ""))),
            f"[{style[task.status]}]{task.status.value}[/]",
        )
    return table


def _rows_table(path: Path, title: str) -> Table:
    with path.open(newline="", encoding="utf-8") as handle:
        reader = csv.DictReader(handle)
        columns = [
            c for c in reader.fieldnames or [] if c in ("id", "title", "status", "completed_at")
        ]
        rows = list(reader)
    table = Table(title=title)
    for column in columns:
        table.add_column(column)
    for row in rows:
        style = "green" if row.get("status") == "done" else "white"
        table.add_row(*[f"[{style}]{escape(row.get(c) or '')}[/]" for c in columns])
    return table


class Demo:
    """The demo's steps, sharing one sandbox, config and state."""

    def __init__(self, folder: Path, settings: Settings, console: Console, client: Any) -> None:
        self.folder = folder
        self.settings = settings
        self.console = console
        self.client = client
        self.pm = get_plugin_manager()
        self.source = settings.source(SOURCE)
        self.connector = get_registry(self.pm).build(self.source)
        self.store = StateStore(settings.state.url, lease_ttl=settings.state.lease_ttl)

    def say(self, step: str, text: str) -> None:
        """Explain a step."""
        self.console.print(f"\n[bold cyan]{step}[/] {text}")

    def sync(self) -> Any:
        """One ``fragment sync demo``."""
        report = sync_source(self.source, self.connector, self.client, self.store, pm=self.pm)
        print_report(self.console, report)
        return report

    def tasks(self) -> list[RemoteTask]:
        """Every task of the demo source, as the Tasks API has them."""
        return list(self.client.list_tasks(fields={SOURCE_FIELD: SOURCE}))

    def close(self) -> None:
        """Release the connector and the state store."""
        self.connector.close()
        self.store.close()


def run_demo(
    folder: Path,
    *,
    keep_running: bool = False,
    rows: int = 12,
    port: int = 0,
    console: Console | None = None,
    stop: threading.Event | None = None,
) -> dict[str, Any]:
    """Run the guided demo in ``folder``; return a few facts (for tests)."""
    from fragment_core.sandbox.runner import run_sandbox

    console = console or Console()
    folder = folder.resolve()
    folder.mkdir(parents=True, exist_ok=True)
    for stale in folder.glob("state.db*"):
        stale.unlink()
    backlog = folder / "backlog.csv"
    with run_sandbox(port=port) as sandbox:
        console.print(
            "[bold]fragment demo[/]: a local stand-in of the Fragment Tasks API is running at "
            f"{sandbox.base_url} (the sandbox; no account needed)."
        )
        config = _write_config(folder, sandbox.url, sandbox.token)
        settings = load_settings(config, registry=get_registry())
        client = sandbox.client()
        demo = Demo(folder, settings, console, client)
        try:
            facts = _steps(demo, backlog, rows)
        finally:
            demo.close()
        console.print(
            f"\n[bold green]That is the whole loop.[/] Your files are in {folder}:\n"
            f"  backlog.csv   the backlog (edit it: add, change or remove rows)\n"
            f"  fragment.toml the configuration the demo used\n"
        )
        if keep_running:
            console.print(
                "The sandbox keeps running. Open the operator page (this link signs you in)"
                f" at [bold]{escape(sandbox.operator_url)}[/] to "
                "start and complete tasks, edit the backlog, then sync again in another "
                f"terminal:\n  fragment --config {config} sync {SOURCE}\n"
                f"  fragment --config {config} status\nPress Ctrl-C to stop."
            )
            waiter = stop or threading.Event()
            try:
                while not waiter.wait(0.5):
                    pass
            except KeyboardInterrupt:
                pass
        else:
            console.print(
                "To keep playing, run [bold]fragment demo --keep-running[/]: the sandbox stays "
                "up, you open its operator page in a browser, complete tasks there, and run "
                f"`fragment --config {config} sync {SOURCE}` to see them written back."
            )
        client.close()
    return facts


def _steps(demo: Demo, backlog: Path, rows: int) -> dict[str, Any]:
    console = demo.console
    write_sample(backlog, rows)
    demo.say(
        "1. A backlog.",
        f"{backlog.name} lists {rows} customers waiting for a KYC review, one row each "
        "(id, title, url, category, name, priority), as a team keeps it in a spreadsheet.",
    )
    demo.say("2. First sync.", "Every row becomes a task in the Tasks API:")
    first = demo.sync()
    console.print(_tasks_table(demo.tasks(), "Tasks in the queue"))

    todo = [t for t in demo.tasks() if t.status == TaskStatus.TODO]
    completed = sorted(todo, key=lambda t: t.external_id or "")[:3]
    demo.say(
        "3. Operators work.",
        f"Someone completes {len(completed)} tasks in Fragment, with an outcome "
        "(here by calling the API as the operator page does):",
    )
    for task in completed:
        demo.client.patch_task(task.uid, {"status": "DONE", "form_data": {"outcome": "approved"}})
        console.print(f"  completed {escape(task.external_id or '')}: {escape(task.title or '')}")

    demo.say(
        "4. Next sync.",
        "The sync sees the completions and writes them back to the source: here it sets "
        "the row's status and completion time in the file.",
    )
    second = demo.sync()
    console.print(_rows_table(backlog, f"{backlog.name} after the write-back"))

    connector = demo.connector
    assert isinstance(connector, FileConnector)
    columns, all_rows = connector.read_rows()
    open_rows = [r for r in all_rows if r.get("status") != "done"]
    removed = [r["id"] for r in open_rows[:2]]
    kept = [r for r in all_rows if r["id"] not in removed]
    write_rows(backlog, columns, kept)
    demo.say(
        "5. Work resolved at the source.",
        f"Rows {', '.join(removed)} are removed from the file (resolved elsewhere). The next "
        "sync closes their tasks, and does not write anything back for them:",
    )
    third = demo.sync()
    console.print(_tasks_table(demo.tasks(), "Tasks in the queue"))
    demo.say(
        "6. Again, nothing changed.",
        "A sync of an unchanged backlog makes no write at all:",
    )
    fourth = demo.sync()
    return {
        "created": first.created,
        "completed": [t.external_id for t in completed],
        "written_back": second.written_back,
        "removed": removed,
        "closed": third.closed,
        "final_written_back": third.written_back + fourth.written_back,
        "final_unchanged": fourth.unchanged,
        "tasks": demo.tasks(),
    }
