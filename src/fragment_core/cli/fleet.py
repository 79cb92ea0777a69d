"""Fleet mode commands: ``fragment worker``, ``fragment schedules apply|list`` and the
Temporal side of ``fragment sync SOURCE --on-temporal`` (see docs/fleet.md).

They need the ``temporal`` extra of fragment-core (with ``postgres`` for the state);
without it they say so and exit 2.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from typing import Any, TypeVar

import click
from rich.markup import escape
from rich.table import Table

from fragment_core.cli.support import (
    echo_json,
    load_config_from_context,
    plugin_manager_from_context,
    registry_from_context,
    stdout_console,
)
from fragment_core.config import Settings
from fragment_core.errors import ConfigurationError

F = TypeVar("F", bound=Callable[..., Any])

CONNECTION_FIELDS = (
    "address",
    "namespace",
    "task_queue",
    "api_key",
    "tls_cert",
    "tls_key",
    "tls_ca",
    "tls_server_name",
)


def connection_options(function: F) -> F:
    """The flags that say where Temporal is (each overrides ``[fleet]`` and Temporal's
    environment variables)."""
    options = [
        click.option("--address", help="Temporal frontend host:port  [env: TEMPORAL_ADDRESS]"),
        click.option("--namespace", help="Temporal namespace  [env: TEMPORAL_NAMESPACE]"),
        click.option("--task-queue", help="Task queue  [default: [fleet] task_queue, fragment]"),
        click.option(
            "--api-key",
            help="API key (prefer TEMPORAL_API_KEY or [fleet] api_key_file)  "
            "[env: TEMPORAL_API_KEY]",
        ),
        click.option(
            "--tls-cert",
            type=click.Path(dir_okay=False, exists=True),
            help="Client certificate (PEM) for mTLS  [env: TEMPORAL_TLS_CLIENT_CERT_PATH]",
        ),
        click.option(
            "--tls-key",
            type=click.Path(dir_okay=False, exists=True),
            help="Client key (PEM) for mTLS  [env: TEMPORAL_TLS_CLIENT_KEY_PATH]",
        ),
        click.option(
            "--tls-ca",
            type=click.Path(dir_okay=False, exists=True),
            help="CA certificate of the server (PEM)  [env: TEMPORAL_TLS_SERVER_CA_CERT_PATH]",
        ),
        click.option("--tls-server-name", help="TLS server name  [env: TEMPORAL_TLS_SERVER_NAME]"),
    ]
    for option in reversed(options):
        function = option(function)
    return function


def require_temporal() -> None:
    """Raise a clear error when the ``temporal`` extra is not installed."""
    if importlib.util.find_spec("temporalio") is None:
        raise ConfigurationError(
            "fleet mode needs the temporal extra of fragment-core (temporalio): install "
            "fragment-core with its temporal and postgres extras"
        )


def connection_from(settings: Settings, flags: dict[str, Any]) -> Any:
    """The :class:`~fragment_core.temporal.client.Connection` of ``[fleet]``, Temporal's
    environment and the flags."""
    require_temporal()
    from fragment_core.temporal.client import resolve

    return resolve(settings.fleet, **{k: flags.get(k) for k in CONNECTION_FIELDS})


def _pop_connection(kwargs: dict[str, Any]) -> dict[str, Any]:
    return {k: kwargs.pop(k, None) for k in CONNECTION_FIELDS}


@click.command(
    "worker",
    epilog="\b\nExamples:\n  fragment worker\n"
    "  fragment worker --address temporal.internal:7233 --namespace ops\n"
    "  TEMPORAL_ADDRESS=acme.a1b2c.tmprl.cloud:7233 TEMPORAL_API_KEY=... fragment worker",
)
@connection_options
@click.option(
    "--concurrency",
    default=8,
    show_default=True,
    type=click.IntRange(min=1),
    help="Activities (source runs' phases) this worker runs at once.",
)
@click.pass_context
def worker_command(ctx: click.Context, concurrency: int, **kwargs: Any) -> None:
    """Run a Temporal worker: the fleet runs of this configuration's sources.

    Every worker needs the same configuration (sources, Tasks API, a shared state in
    Postgres). SIGINT/SIGTERM stops polling; activities in flight stop after their chunk
    and are retried on another worker.
    """
    flags = _pop_connection(kwargs)
    settings = load_config_from_context(ctx)
    connection = connection_from(settings, flags)
    from fragment_core.temporal.client import run
    from fragment_core.temporal.worker import run_worker

    stdout_console().print(
        f"Worker on {escape(connection.address)}, namespace {escape(connection.namespace)}, "
        f"task queue {escape(connection.task_queue)} (Ctrl-C to stop)"
    )
    run(
        run_worker(
            settings,
            connection,
            registry=registry_from_context(ctx),
            pm=plugin_manager_from_context(ctx),
            concurrency=concurrency,
        )
    )


@click.group("schedules")
def schedules_group() -> None:
    """Temporal Schedules: one per source, at its interval (fleet mode)."""


@schedules_group.command(
    "apply",
    epilog="\b\nExamples:\n  fragment schedules apply\n  fragment schedules apply --dry-run",
)
@connection_options
@click.option("--dry-run", is_flag=True, help="Say what would change; change nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the changes as JSON.")
@click.pass_context
def schedules_apply_command(
    ctx: click.Context, dry_run: bool, as_json: bool, **kwargs: Any
) -> None:
    """Create, update or delete Schedules so there is one per enabled source: every
    `every` with 10% jitter, a run still going when the next is due is skipped."""
    flags = _pop_connection(kwargs)
    settings = load_config_from_context(ctx)
    connection = connection_from(settings, flags)
    from fragment_core.temporal.client import run
    from fragment_core.temporal.fleet import apply_schedules

    async def go() -> Any:
        client = await connection.client()
        return await apply_schedules(
            client,
            settings,
            connection.task_queue,
            heartbeat_seconds=settings.fleet.heartbeat_timeout.total_seconds(),
            dry_run=dry_run,
        )

    changes = run(go())
    if as_json:
        echo_json([c.__dict__ for c in changes])
        return
    console = stdout_console()
    for change in changes:
        console.print(f"{change.action:9} {escape(change.source)}  ({escape(change.schedule_id)})")
    if not changes:
        console.print("no source is enabled and no Schedule exists")


@schedules_group.command(
    "list", epilog="\b\nExamples:\n  fragment schedules list\n  fragment schedules list --json"
)
@connection_options
@click.option("--json", "as_json", is_flag=True, help="Print as JSON.")
@click.pass_context
def schedules_list_command(ctx: click.Context, as_json: bool, **kwargs: Any) -> None:
    """The sources' Schedules: interval, next run, last run and its result."""
    flags = _pop_connection(kwargs)
    settings = load_config_from_context(ctx)
    connection = connection_from(settings, flags)
    from fragment_core.state import StateStore
    from fragment_core.temporal.client import run
    from fragment_core.temporal.fleet import list_schedules

    store = StateStore(settings.state.url, lease_ttl=settings.state.lease_ttl)

    async def go() -> Any:
        return await list_schedules(await connection.client(), store)

    try:
        rows = run(go())
    finally:
        store.close()
    if as_json:
        echo_json(rows)
        return
    table = Table(title="Schedules")
    for column in ("source", "every", "next run", "last run", "status", "last result"):
        table.add_column(column)
    for row in rows:
        result = row["last_result"] or {}
        table.add_row(
            escape(row["source"]),
            f"{row['every']:.0f}s" if row["every"] else "-",
            row["next_run"] or "-",
            row["last_started"] or "-",
            row["last_status"] or "-",
            escape(str(result.get("outcome") or "-")),
        )
    stdout_console().print(table)


def run_on_temporal(
    settings: Settings,
    source: str,
    flags: dict[str, Any],
    *,
    full: bool,
    force_close: bool,
    remap: bool,
    verify: bool = False,
    rebind: bool = False,
) -> tuple[str, Any]:
    """``fragment sync SOURCE --on-temporal``: start one run and wait for its result."""
    connection = connection_from(settings, flags)
    from fragment_core.temporal.client import run
    from fragment_core.temporal.fleet import start_run

    async def go() -> Any:
        client = await connection.client()
        return await start_run(
            client,
            source,
            connection.task_queue,
            full=full,
            force_close=force_close,
            remap=remap,
            verify=verify,
            rebind=rebind,
            heartbeat_seconds=settings.fleet.heartbeat_timeout.total_seconds(),
        )

    return run(go())


__all__ = [
    "connection_options",
    "run_on_temporal",
    "schedules_group",
    "worker_command",
]
