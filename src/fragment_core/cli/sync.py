"""``fragment sync``, ``fragment run``, ``fragment status`` and ``fragment demo``.

Exit codes of ``fragment sync`` (and ``fragment run --once``, for the worst run):

====  =======================================================================
0     ok (or ``--dry-run``)
1     failed: the fetch, the credentials or the Tasks API stopped the run early;
      nothing was closed
2     the configuration or a plugin is wrong (nothing ran)
3     capped: closes were withheld by the blast-radius cap (``--force-close``)
4     partial: applied, but some records or write-backs failed
5     busy: another run holds the source's lease (nothing ran; see ``--wait``)
6     another destination: the source's state belongs to another Tasks API (nothing
      ran; see ``--rebind``)
====  =======================================================================
"""

from __future__ import annotations

import contextlib
import signal
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from fragment_core.cli.fleet import connection_options, run_on_temporal
from fragment_core.cli.summary import (
    EXIT_BUSY,
    EXIT_CODES,
    EXIT_OTHER_DESTINATION,
    RichProgress,
    print_plan,
    print_report,
)
from fragment_core.cli.support import (
    echo_json,
    load_config_from_context,
    plugin_manager_from_context,
    registry_from_context,
    stderr_console,
    stdout_console,
)
from fragment_core.cli.writebacks import describe as describe_write_back
from fragment_core.config import Settings, SourceSettings
from fragment_core.errors import ConfigurationError
from fragment_core.metrics import RunMetrics, serve_metrics
from fragment_core.reports import RunOutcome
from fragment_core.runner import Runner, open_tasks_client
from fragment_core.signals import early_sigterm
from fragment_core.state import LeaseHeldError, OutboxState, StateStore
from fragment_core.sync.destination import DestinationMismatchError
from fragment_core.sync.engine import NoProgress, sync_source
from fragment_core.sync.plan import Plan

SYNC_EXAMPLES = """\b
Examples:
  fragment sync support                 one run of the source "support"
  fragment sync support --dry-run       show what would change, write nothing
  fragment sync support --full          a full fetch even if an incremental one is due
  fragment sync support --force-close   close even above the blast-radius cap
  fragment sync support --remap         map every record again (after a transform hook
                                        or the data it reads changed)
  fragment sync support --verify        repair tasks deleted or changed in the Tasks API
  fragment sync support --rebind        the Tasks API changed: rebuild the state from it
"""


def _source(settings: Settings, name: str) -> SourceSettings:
    try:
        return settings.source(name)
    except KeyError:
        names = ", ".join(s.name for s in settings.sources) or "none"
        where = str(settings.path) if settings.path else "the configuration"
        raise ConfigurationError(
            f"no source named {name!r} (sources: {names})", where=where
        ) from None


@contextlib.contextmanager
def _stop_on_signals(stop: threading.Event) -> Iterator[None]:
    """SIGINT/SIGTERM set ``stop``: the run finishes the chunk in flight and saves."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, _frame: Any) -> None:
        stderr_console().print(
            f"[yellow]{signal.Signals(signum).name}: finishing the current chunk...[/]"
        )
        stop.set()

    previous = {sig: signal.signal(sig, handler) for sig in (signal.SIGINT, signal.SIGTERM)}
    if early_sigterm():  # sent while the command was starting: stop before any write
        handler(signal.SIGTERM, None)
    try:
        yield
    finally:
        for sig, old in previous.items():
            signal.signal(sig, old)


class _PlanKeeper(NoProgress):
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.plan: Plan | None = None

    def fetched(self, count: int) -> None:
        self.inner.fetched(count)

    def planned(self, plan: Plan) -> None:
        self.plan = plan
        self.inner.planned(plan)

    def applied(self, count: int) -> None:
        self.inner.applied(count)


@click.command("sync", epilog=SYNC_EXAMPLES)
@click.argument("source")
@click.option("--dry-run", is_flag=True, help="Print the plan; write nothing.")
@click.option("--full", is_flag=True, help="Fetch the whole backlog (no incremental fetch).")
@click.option("--force-close", is_flag=True, help="Close even above the blast-radius cap.")
@click.option(
    "--remap",
    is_flag=True,
    help="Map every record, even those whose raw form is unchanged since the last run.",
)
@click.option("--json", "as_json", is_flag=True, help="Print the report as JSON.")
@click.option(
    "--wait",
    is_flag=True,
    help="When another run is syncing SOURCE, wait for it to end instead of exiting with 5.",
)
@click.option(
    "--verify",
    is_flag=True,
    help="A full run that first lists the source's tasks in the Tasks API, creates again "
    "those deleted there and writes again those changed there (see verify_every).",
)
@click.option(
    "--rebind",
    is_flag=True,
    help="When the source's state belongs to another Tasks API (exit code 6), rebuild it "
    "from the configured one first, then sync (creating the tasks it lacks).",
)
@click.option(
    "--on-temporal",
    is_flag=True,
    help="Run on the fleet: start the source's Temporal workflow now and follow it to its "
    "end (a run of it started by hand and still going is followed instead).",
)
@connection_options
@click.pass_context
def sync_command(
    ctx: click.Context,
    source: str,
    dry_run: bool,
    full: bool,
    force_close: bool,
    remap: bool,
    as_json: bool,
    wait: bool,
    verify: bool,
    rebind: bool,
    on_temporal: bool,
    **connection: Any,
) -> None:
    """Run one sync of SOURCE, then print a summary.

    On a terminal a progress bar shows records fetched, then plan items written.

    \b
    Exit codes:
      0  ok (or --dry-run)
      1  failed: the fetch, the credentials or the Tasks API stopped the run (or the
         operator completions could not be listed); nothing closed
      2  the configuration or a plugin is wrong (nothing ran)
      3  capped: closes withheld by the blast-radius cap (see --force-close)
      4  partial: applied, but some records or write-backs failed
      5  busy: another run (any process or machine on this state) is syncing SOURCE;
         nothing ran (see --wait)
      6  another destination: the state of SOURCE belongs to another Tasks API (url or
         account); nothing ran (see --rebind)
    """
    settings = load_config_from_context(ctx)
    src = _source(settings, source)
    if on_temporal:
        if dry_run:
            raise click.UsageError("--dry-run runs here, not on the fleet: drop --on-temporal")
        flags = {"full": full, "force_close": force_close, "remap": remap}
        flags |= {"verify": verify, "rebind": rebind}
        _sync_on_temporal(ctx, settings, src.name, connection, flags, as_json)
        return
    if any(value is not None for value in connection.values()):
        raise click.UsageError("the Temporal connection flags need --on-temporal")
    pm = plugin_manager_from_context(ctx)
    connector = registry_from_context(ctx).build(src)
    store = StateStore(settings.state.url, lease_ttl=settings.state.lease_ttl)
    try:
        client = open_tasks_client(settings, store)  # its budget shared through the store
    except BaseException:
        store.close()
        raise
    console = stdout_console()
    stop = threading.Event()
    terminal = console.is_terminal and not as_json
    try:
        with _stop_on_signals(stop):
            bar = RichProgress(console, src.name) if terminal else None
            keeper = _PlanKeeper(bar or NoProgress())
            with bar or contextlib.nullcontext():
                report = sync_source(
                    src,
                    connector,
                    client,
                    store,
                    wait=wait,
                    pm=pm,
                    dry_run=dry_run,
                    full=full,
                    force_close=force_close,
                    remap=remap,
                    rebind=rebind,
                    verify=verify,
                    batch_size=settings.tasks_api.batch_size,
                    stop=stop,
                    progress=keeper,
                )
    except LeaseHeldError as exc:
        stderr_console().print(str(exc), markup=False, highlight=False, soft_wrap=True)
        ctx.exit(EXIT_BUSY)
    except DestinationMismatchError as exc:
        console_error(str(exc))
        ctx.exit(EXIT_OTHER_DESTINATION)
    finally:
        connector.close()
        client.close()
        store.close()
    if as_json:
        echo_json(report.to_dict())
    else:
        if dry_run and keeper.plan is not None:
            print_plan(console, keeper.plan)
        print_report(console, report)
    ctx.exit(EXIT_CODES[report.outcome])


def _sync_on_temporal(
    ctx: click.Context,
    settings: Settings,
    source: str,
    connection: dict[str, Any],
    flags: dict[str, bool],
    as_json: bool,
) -> None:
    console = stdout_console()
    if not as_json:
        console.print(f"Starting a fleet run of {source} and following it ...")
    workflow, summary = run_on_temporal(settings, source, connection, **flags)
    if as_json:
        echo_json({"workflow_id": workflow, **summary.__dict__})
    else:
        counts = ", ".join(f"{k} {v}" for k, v in summary.counts.items() if v)
        line = f"{source}: {summary.outcome} (workflow {workflow})"
        console.print(line + (f": {counts}" if counts else ""), markup=False)
        for message in summary.messages:
            console.print(f"  {message}", markup=False, highlight=False)
    if summary.outcome == "busy":
        ctx.exit(EXIT_BUSY)
    ctx.exit(EXIT_CODES.get(RunOutcome(summary.outcome), 1))


RUN_EXAMPLES = """\b
Examples:
  fragment run
  fragment run --once
  fragment run --metrics-port 9464      Prometheus metrics at :9464/metrics, /healthz
"""


@click.command("run", epilog=RUN_EXAMPLES)
@click.option("--once", is_flag=True, help="Run every source once, then exit.")
@click.option(
    "--wait",
    is_flag=True,
    help="When another run is syncing a source, wait for it instead of skipping that run.",
)
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=None,
    help="Serve Prometheus metrics at /metrics and a health check at /healthz on this "
    "port (0: a free one, printed).",
)
@click.option(
    "--metrics-host",
    default="127.0.0.1",
    show_default=True,
    help="Address the metrics server listens on (0.0.0.0 in a container).",
)
@click.pass_context
def run_command(
    ctx: click.Context, once: bool, wait: bool, metrics_port: int | None, metrics_host: str
) -> None:
    """Run every source at its interval until SIGINT/SIGTERM (then finish the chunk, exit 0).

    A source another run is syncing (any process or machine on this state) is skipped
    for that interval with a one-line message (--wait waits instead). A source whose
    state belongs to another Tasks API is refused at each interval with an error line
    (fix [tasks_api], or `fragment sync SOURCE --rebind`).

    \b
    Exit codes of --once (the worst of its runs):
      0  every run ok
      1  a run failed (the fetch, the credentials or the Tasks API stopped it,
         or the operator completions could not be listed)
      2  the configuration or a plugin is wrong (nothing ran)
      3  a run was capped: closes withheld by the blast-radius cap
      4  a run was partial: some records or write-backs failed
      5  a source was skipped: another run was syncing it
      6  a source's state belongs to another Tasks API (unless 1, 3 or 4)
    Without --once: 0 after SIGINT/SIGTERM, 1 when the state became unusable.
    """
    settings = load_config_from_context(ctx)
    if not any(s.enabled for s in settings.sources):
        raise ConfigurationError("no enabled source to run", where=str(settings.path or ""))
    console = stdout_console()
    metrics = RunMetrics() if metrics_port is not None else None
    runner: Runner

    def show(report: Any) -> None:
        if metrics is not None:
            metrics.observe(report)
            state = runner.store.source_state(report.source)
            metrics.complete_fetch(report.source, state.last_complete_fetch)
        print_report(console, report)

    runner = Runner(
        settings,
        pm=plugin_manager_from_context(ctx),
        registry=registry_from_context(ctx),
        on_report=show,
        wait=wait,
    )
    names = ", ".join(s.name for s in runner.sources())
    with contextlib.ExitStack() as cleanup:
        if metrics is not None and metrics_port is not None:
            cleanup.enter_context(_serving_metrics(runner, metrics, metrics_host, metrics_port))
        console.print(f"Running {names}" + ("" if once else " (Ctrl-C to stop)"))
        try:
            with _stop_on_signals(runner.stop):
                runner.run(once=once)
        finally:
            runner.client.close()
            runner.store.close()
    if runner.fatal is not None:
        raise runner.fatal
    code = EXIT_CODES[runner.worst_outcome()] if once else 0
    if once and code == 0 and runner.other_destination:
        code = EXIT_OTHER_DESTINATION
    if once and code == 0 and runner.busy:
        code = EXIT_BUSY
    ctx.exit(code)


@contextlib.contextmanager
def _serving_metrics(runner: Runner, metrics: RunMetrics, host: str, port: int) -> Iterator[None]:
    """Serve ``/metrics`` and ``/healthz`` of ``runner`` while the block runs."""
    names = [s.name for s in runner.sources()]
    metrics.add_sources(names)
    for name in names:
        metrics.complete_fetch(name, runner.store.source_state(name).last_complete_fetch)

    def health() -> tuple[bool, dict[str, Any]]:
        last = {r.source: r.outcome.value for r in runner.reports}
        detail: dict[str, Any] = {"sources": {n: last.get(n, "not run yet") for n in names}}
        if runner.fatal is not None:
            detail["error"] = str(runner.fatal)
        return runner.fatal is None, detail

    try:
        server = serve_metrics(metrics, health, port=port, host=host)
    except OSError as exc:
        raise ConfigurationError(
            f"cannot serve metrics on {host}:{port}: {exc.strerror or exc}", where="--metrics-port"
        ) from None
    remove_hook = metrics.install_retry_hook()
    stderr_console().print(f"metrics at {server.url}/metrics, health at {server.url}/healthz")
    try:
        yield
    finally:
        remove_hook()
        server.close()


def console_error(message: str) -> None:
    """An ``error:`` line on stderr, as :class:`~fragment_core.cli.support.FragmentClickError`
    prints one."""
    stderr_console().print(f"[bold red]error:[/] {escape(message)}", soft_wrap=True)


def status_rows(settings: Settings, store: StateStore) -> list[dict[str, Any]]:
    """What ``fragment status`` shows, per source."""
    names = [s.name for s in settings.sources]
    names += [n for n in store.source_names() if n not in names]
    rows = []
    now = datetime.now(UTC)
    for name in names:
        state = store.source_state(name)
        runs = store.last_runs(name, limit=1)
        lag = (
            (now - state.last_complete_fetch).total_seconds() if state.last_complete_fetch else None
        )
        waiting = [  # not the done ones: a source's outbox keeps every write-back made
            *store.write_backs(name, OutboxState.PENDING),
            *store.write_backs(name, OutboxState.FAILED),
        ]
        failed = [e for e in waiting if e.state == OutboxState.FAILED]
        rows.append(
            {
                "source": name,
                "configured": name in {s.name for s in settings.sources},
                "last_run": runs[0] if runs else None,
                "last_complete_fetch": (
                    state.last_complete_fetch.isoformat() if state.last_complete_fetch else None
                ),
                "lag_seconds": round(lag, 1) if lag is not None else None,
                "cursor": state.cursor,
                "write_backs": store.write_back_counts(name),
                "pending_write_backs": [
                    describe_write_back(e, now) for e in waiting if e.state == OutboxState.PENDING
                ],
                "failed_write_backs": [describe_write_back(e, now) for e in failed],
            }
        )
    return rows


@click.command("status", epilog="\b\nExamples:\n  fragment status\n  fragment status --json")
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def status_command(ctx: click.Context, as_json: bool) -> None:
    """Per source: the last run, its outcome and counts, lag, pending and failed write-backs.

    \b
    Counts of the last run: + created, ~ updated, - closed, ^ reopened, = unchanged,
    x failed records. Each write-back not done yet is listed with why (first attempt
    due, or the last error) and when the next run tries it; `fragment state show
    SOURCE` has the rest of a source's state.
    """
    from fragment_core.cli.summary import print_status

    settings = load_config_from_context(ctx)
    store = StateStore(settings.state.url, lease_ttl=settings.state.lease_ttl)
    try:
        rows = status_rows(settings, store)
    finally:
        store.close()
    if as_json:
        echo_json(rows)
    else:
        print_status(stdout_console(), rows)


@click.command("demo")
@click.option(
    "--dir",
    "folder",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("fragment-demo"),
    show_default=True,
    help="Folder for the sample backlog, the state and the config.",
)
@click.option("--keep-running", is_flag=True, help="Keep the sandbox up at the end.")
@click.option("--rows", default=12, show_default=True, help="Rows in the sample backlog.")
@click.option("--port", default=0, help="Sandbox port (default: a free one).")
def demo_command(folder: Path, keep_running: bool, rows: int, port: int) -> None:
    """A guided demo on the local sandbox: sync a sample backlog, complete, write back."""
    from fragment_core.cli.demo import run_demo

    run_demo(folder, keep_running=keep_running, rows=rows, port=port)
