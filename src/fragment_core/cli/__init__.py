"""The ``fragment`` command line: core commands, plus the commands of the other modules."""

from __future__ import annotations

import contextlib
import logging
import os
import sys
from pathlib import Path
from typing import Any

import click
from rich.markup import escape
from rich.table import Column, Table

from fragment_core import __version__
from fragment_core.cli.checks import check_state, check_tasks_api
from fragment_core.cli.checks import print_line as print_check_line
from fragment_core.cli.fleet import schedules_group, worker_command
from fragment_core.cli.init import init_command
from fragment_core.cli.options import options_of, toml_key, toml_value
from fragment_core.cli.sandbox import sandbox_command
from fragment_core.cli.state import state_group
from fragment_core.cli.support import (
    CliState,
    FragmentGroup,
    echo_json,
    load_config_from_context,
    plugin_manager_from_context,
    registry_from_context,
    stdout_console,
)
from fragment_core.cli.sync import demo_command, run_command, status_command, sync_command
from fragment_core.config import CONFIG_ENV, SourceSettings
from fragment_core.errors import (
    AuthenticationError,
    ConfigurationError,
    FragmentError,
    PluginError,
    RateLimitedError,
    TransientError,
)
from fragment_core.logs import configure_logging
from fragment_core.plugins import ConnectorEntry, install_command
from fragment_core.retries import QUICK, retry_policy
from fragment_core.signals import release_early
from fragment_core.testing.scaffold import new_connector_command

EXAMPLES = """\b
Examples:
  fragment connectors list --all        connectors installed, and the official ones
  fragment connectors show http         options of a connector, with an example
  fragment init                         a commented fragment.toml for the sandbox
  fragment config validate              check ./fragment.toml
  fragment --config prod.toml check     reach every source of prod.toml
  fragment plugins --json               installed plugins, as JSON
"""

log = logging.getLogger(__name__)

json_option = click.option("--json", "as_json", is_flag=True, help="Print the output as JSON.")


@click.group(cls=FragmentGroup, epilog=EXAMPLES)
@click.version_option(__version__, "-V", "--version", prog_name="fragment")
@click.option(
    "--config",
    "config_path",
    type=click.Path(dir_okay=False, path_type=Path),
    envvar=CONFIG_ENV,
    show_envvar=True,
    help="Configuration file  [default: ./fragment.toml]",
)
@click.option(
    "--log-format",
    type=click.Choice(["text", "json"]),
    default="text",
    show_default=True,
    help="Log lines as text (rich on a terminal) or JSON lines.",
)
@click.option("-v", "--verbose", count=True, help="More logging: -v info, -vv debug.")
@click.pass_context
def cli(ctx: click.Context, config_path: Path | None, log_format: str, verbose: int) -> None:
    """Keep a Fragment task queue in sync with the systems where the work lives."""
    state = ctx.ensure_object(CliState)
    state.config_path = config_path
    state.log_format = log_format
    state.verbose = verbose
    configure_logging(verbose, "json" if log_format == "json" else "text")
    release_early(ctx.invoked_subcommand)  # only sync and run act on an early SIGTERM


def _table(*headers: str) -> Table:
    return Table(*(Column(h, overflow="fold") for h in headers))


# -- fragment plugins --------------------------------------------------------------------


@cli.command("plugins", epilog="\b\nExamples:\n  fragment plugins\n  fragment plugins --json")
@json_option
@click.pass_context
def plugins_command(ctx: click.Context, as_json: bool) -> None:
    """List installed plugins, their versions and the hooks they implement."""
    pm = plugin_manager_from_context(ctx)
    rows: list[dict[str, Any]] = [
        {
            "name": info.name,
            "distribution": info.distribution,
            "version": info.version,
            "builtin": info.builtin,
            "hooks": pm.hooks_of(plugin),
        }
        for plugin, info in pm.plugins_in_order()
    ]
    if as_json:
        echo_json(rows)
        return
    table = _table("plugin", "package", "version", "hooks")
    for row in rows:
        name = row["name"] + (" (built-in)" if row["builtin"] else "")
        table.add_row(
            name, row["distribution"] or "-", row["version"] or "-", ", ".join(row["hooks"])
        )
    stdout_console().print(table)


# -- fragment connectors -----------------------------------------------------------------


@cli.group("connectors", cls=FragmentGroup)
def connectors_group() -> None:
    """List connectors and show their options."""


def _entry_row(entry: ConnectorEntry) -> dict[str, Any]:
    return {
        "name": entry.name,
        "package": entry.distribution,
        "version": entry.version,
        "capabilities": entry.capabilities,
        "installed": True,
        "install": None,
    }


@connectors_group.command(
    "list",
    epilog="\b\nExamples:\n  fragment connectors list\n  fragment connectors list --all --json",
)
@click.option("--all", "show_all", is_flag=True, help="Add official connectors not installed.")
@json_option
@click.pass_context
def connectors_list_command(ctx: click.Context, show_all: bool, as_json: bool) -> None:
    """List connectors: name, package, version and capabilities."""
    registry = registry_from_context(ctx)
    rows = [_entry_row(entry) for entry in registry.all()]
    if show_all:
        for name, dist in sorted(registry.not_installed().items()):
            rows.append(
                {
                    "name": name,
                    "package": dist,
                    "version": None,
                    "capabilities": [],
                    "installed": False,
                    "install": install_command(dist),
                }
            )
    if as_json:
        echo_json(rows)
        return
    table = _table("connector", "package", "version", "capabilities")
    for row in rows:
        if row["installed"]:
            caps = ", ".join(row["capabilities"]) or "-"
            table.add_row(row["name"], row["package"] or "-", row["version"] or "-", caps)
        else:
            table.add_row(
                f"[dim]{row['name']}[/]", row["package"], "[dim]not installed[/]", row["install"]
            )
    stdout_console().print(table)


@connectors_group.command(
    "show",
    epilog="\b\nExamples:\n  fragment connectors show file\n  fragment connectors show http --json",
)
@click.argument("name")
@json_option
@click.pass_context
def connectors_show_command(ctx: click.Context, name: str, as_json: bool) -> None:
    """Show a connector: description, its options as a table, an example config.

    The table lists each option of ``[sources.options]``: name (required ones in bold),
    type, default and description; ``--json`` prints the JSON Schema instead.
    """
    entry = registry_from_context(ctx).entry(name)
    cls = entry.cls
    schema = cls.Config.model_json_schema()
    example = example_source_block(entry)
    if as_json:
        echo_json(
            {
                **_entry_row(entry),
                "description": cls.description(),
                "config_schema": schema,
                "example": example,
            }
        )
        return
    console = stdout_console()
    package = f"{entry.distribution or '-'} {entry.version or ''}".strip()
    console.print(f"[bold]{escape(name)}[/] ({escape(package)})")
    if cls.description():
        console.print(escape(cls.description()))
    console.print(f"capabilities: {', '.join(entry.capabilities) or '-'}")
    table = _table("option", "type", "default", "description")
    table.title = escape("Options ([sources.options]; --json for the JSON Schema)")
    for option in options_of(schema):
        name = f"[bold]{escape(option.name)}[/]" if option.required else escape(option.name)
        table.add_row(
            name, escape(option.type), escape(option.default_text), escape(option.description)
        )
    console.print(table)
    console.print("\n[bold]Example[/]")
    click.echo(example)


def example_source_block(entry: ConnectorEntry) -> str:
    """A ``[[sources]]`` TOML block for ``entry``: its ``example_toml`` when it has one,
    else one built from its ``example_options``."""
    if entry.cls.example_toml:
        return entry.cls.example_toml
    lines = [
        "[[sources]]",
        f"name = {toml_value(entry.name)}",
        f"connector = {toml_value(entry.name)}",
        'every = "5m"',
    ]
    options = entry.cls.example_options
    if options:
        lines += ["[sources.options]"]
        lines += [f"{toml_key(k)} = {toml_value(v)}" for k, v in options.items()]
    return "\n".join(lines) + "\n"


# -- fragment config -------------------------------------------------------------------


@cli.group("config", cls=FragmentGroup)
def config_group() -> None:
    """Work with the configuration file."""


@config_group.command(
    "validate",
    epilog="\b\nExamples:\n  fragment config validate\n  fragment config validate prod.toml --json",
)
@click.argument("path", required=False, type=click.Path(dir_okay=False, path_type=Path))
@json_option
@click.pass_context
def config_validate_command(ctx: click.Context, path: Path | None, as_json: bool) -> None:
    """Validate a configuration file (default: --config, $FRAGMENT_CONFIG or ./fragment.toml)."""
    settings = load_config_from_context(ctx, path)
    sources = [
        {"name": s.name, "connector": s.connector, "enabled": s.enabled} for s in settings.sources
    ]
    if as_json:
        echo_json({"path": str(settings.path), "valid": True, "sources": sources})
        return
    described = ", ".join(f"{s['name']} ({s['connector']})" for s in sources) or "no sources"
    stdout_console().print(
        f"[green]✓[/] {escape(str(settings.path))} is valid: "
        f"{len(sources)} source{'s' if len(sources) != 1 else ''}: {escape(described)}"
    )


# -- fragment check --------------------------------------------------------------------


@cli.command(
    "check",
    epilog="\b\nExamples:\n  fragment check\n  fragment check support --json",
)
@click.argument("source", required=False)
@json_option
@click.pass_context
def check_command(ctx: click.Context, source: str | None, as_json: bool) -> None:
    """Check the destination, the state store and each source's credentials and settings.

    \b
    In order: the Tasks API (reachable, token accepted, the account it names), the
    state store (reachable and writable, created and migrated by nothing here; each
    source's state bound to this Tasks API), then each source (its connector's check()).
    Prints one line per check; exits with 1 if any check failed.
    """
    settings = load_config_from_context(ctx)
    registry = registry_from_context(ctx)
    sources = settings.sources
    if source is not None:
        sources = [s for s in sources if s.name == source]
        if not sources:
            names = ", ".join(s.name for s in settings.sources) or "none"
            raise ConfigurationError(
                f"no source named {source!r} in {settings.path}; configured sources: {names}"
            )
    api, destination = check_tasks_api(settings)
    results = [api, *check_state(settings, destination)]
    if source is not None:  # only the named source's destination
        results = [r for r in results if r.get("source") in (None, source)]
    results += [_check_source(s, registry) for s in sources]
    if as_json:
        echo_json(results)
    else:
        console = stdout_console()
        for r in results:
            if r["check"] != "source":
                print_check_line(console, r)
                continue
            mark = "[green]✓[/]" if r["ok"] else "[red]✗[/]"
            console.print(
                f"{mark} {escape(r['source'])} ({escape(r['connector'])}): {escape(r['message'])}"
            )
    if not all(r["ok"] for r in results):
        ctx.exit(1)


#: How ``fragment check`` names each kind of failure, in words rather than class names.
_CHECK_LABELS: dict[type[FragmentError], str] = {
    AuthenticationError: "credentials rejected",
    ConfigurationError: "configuration",
    TransientError: "unreachable or failing",
    RateLimitedError: "rate limited",
    PluginError: "plugin",
}


def _check_source(source: SourceSettings, registry: Any) -> dict[str, Any]:
    result: dict[str, Any] = {
        "check": "source",
        "source": source.name,
        "connector": source.connector,
        "ok": False,
        "message": "",
    }
    connector = None
    try:
        connector = registry.build(source)
        with retry_policy(QUICK):  # a person is waiting: report an unreachable host fast
            result["message"] = connector.check()
        result["ok"] = True
    except FragmentError as exc:
        result["message"] = f"{_CHECK_LABELS.get(type(exc), 'error')}: {exc}"
    except Exception as exc:  # a connector bug must not hide the other sources
        result["message"] = f"unexpected {type(exc).__name__}: {exc}"
    finally:
        log.info(
            "check of source %s: %s",
            source.name,
            "ok" if result["ok"] else "failed",
            extra={"source": source.name, "ok": result["ok"]},
        )
        if connector is not None:
            try:
                connector.close()
            except Exception as exc:
                result["message"] += f" (close failed: {exc})"
    return result


for command in (
    init_command,
    sandbox_command,
    state_group,
    sync_command,
    run_command,
    status_command,
    demo_command,
    new_connector_command,
    worker_command,
    schedules_group,
):
    cli.add_command(command)


def main() -> None:
    """Entry point of the ``fragment`` script and of ``python -m fragment_core``."""
    try:
        cli(prog_name="fragment")
    except SystemExit as exc:
        if TEMPORAL_BRIDGE in sys.modules:
            exit_without_teardown(exc.code)
        raise


#: Loaded once a Temporal client ran in this process.
TEMPORAL_BRIDGE = "temporalio.bridge.temporal_sdk_bridge"


def exit_without_teardown(code: object) -> None:
    """Flush and leave at once: after a Temporal client ran, the interpreter's teardown
    can abort in the SDK's runtime threads (temporalio/sdk-python issue 300), which would
    turn a finished command into a crash."""
    if code is None:
        status = 0
    elif isinstance(code, int):
        status = code
    else:
        print(code, file=sys.stderr)
        status = 1
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(status)


__all__ = ["cli", "main"]
