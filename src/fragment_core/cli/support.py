"""Shared pieces of the ``fragment`` commands: global options, config loading, errors, output.

Any command can read the global ``--config`` through the click context::

    @click.command("sync")
    @click.pass_context
    def sync_command(ctx: click.Context) -> None:
        settings = load_config_from_context(ctx)
        registry = registry_from_context(ctx)
"""

from __future__ import annotations

import json
import sys
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO, Any

import click
import sqlalchemy as sa
from rich.console import Console
from rich.markup import escape

from fragment_core.config import Settings, load_settings
from fragment_core.errors import ConfigurationError, FragmentError, PluginError
from fragment_core.plugins import (
    ConnectorRegistry,
    FragmentPluginManager,
    PluginLoadWarning,
    get_plugin_manager,
    get_registry,
)
from fragment_core.state.faults import STATE_ERRORS, state_error

__all__ = [
    "CliState",
    "FragmentClickError",
    "FragmentGroup",
    "echo_json",
    "load_config_from_context",
    "plugin_manager_from_context",
    "registry_from_context",
    "state_from_context",
    "stderr_console",
    "stdout_console",
]


@dataclass
class CliState:
    """What the ``fragment`` group passes to its commands (``ctx.obj``).

    Tests may pass their own (``CliRunner().invoke(cli, args, obj=CliState(...))``) to
    use a plugin manager of their choosing.
    """

    config_path: Path | None = None
    plugin_manager: FragmentPluginManager | None = None
    verbose: int = 0
    log_format: str = "text"
    settings: Settings | None = field(default=None, repr=False)


def state_from_context(ctx: click.Context) -> CliState:
    """The :class:`CliState` of the running command (created if the group did not)."""
    return ctx.find_root().ensure_object(CliState)


def plugin_manager_from_context(ctx: click.Context) -> FragmentPluginManager:
    """The plugin manager; a plugin that failed to import is shown as a yellow warning."""
    state = state_from_context(ctx)
    if state.plugin_manager is None:
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always", PluginLoadWarning)
            pm = get_plugin_manager()
        for warning in caught:
            if issubclass(warning.category, PluginLoadWarning):
                stderr_console().print(f"[yellow]warning:[/] {escape(str(warning.message))}")
            else:
                warnings.showwarning(
                    warning.message, warning.category, warning.filename, warning.lineno
                )
        state.plugin_manager = pm
    return state.plugin_manager


def registry_from_context(ctx: click.Context) -> ConnectorRegistry:
    """The connector registry of the context's plugin manager."""
    return get_registry(plugin_manager_from_context(ctx))


def load_config_from_context(ctx: click.Context, path: str | Path | None = None) -> Settings:
    """Load ``path``, else the group's ``--config`` / ``$FRAGMENT_CONFIG``, else ./fragment.toml.

    The settings of the group's file are loaded once per invocation. Raises
    :class:`ConfigurationError` (shown as a one-line error by :class:`FragmentGroup`).
    """
    state = state_from_context(ctx)
    registry = registry_from_context(ctx)
    if path is not None:
        return load_settings(path, registry=registry)
    if state.settings is None:
        state.settings = load_settings(state.config_path, registry=registry)
    return state.settings


def stdout_console() -> Console:
    """A rich console on click's stdout (so ``CliRunner`` captures it)."""
    return Console(file=sys.stdout, soft_wrap=True)


def stderr_console() -> Console:
    """A rich console on click's stderr."""
    return Console(file=sys.stderr, soft_wrap=True)


def echo_json(data: Any) -> None:
    """Print ``data`` as indented JSON (the ``--json`` output of every command)."""
    click.echo(json.dumps(data, indent=2, default=str, ensure_ascii=False))


class FragmentClickError(click.ClickException):
    """A :class:`FragmentError` shown as a red ``error:`` line without a traceback.

    Exit code 2 for configuration and plugin errors (the user must fix something), 1 else.
    """

    def __init__(self, error: FragmentError) -> None:
        super().__init__(str(error))
        self.exit_code = 2 if isinstance(error, (ConfigurationError, PluginError)) else 1  # type: ignore[misc]  # click declares it a ClassVar; per instance by design

    def show(self, file: IO[Any] | None = None) -> None:
        console = Console(file=file or sys.stderr, soft_wrap=True)
        for line in self.format_message().splitlines() or [""]:
            console.print(f"[bold red]error:[/] {escape(line)}")


class FragmentGroup(click.Group):
    """A click group that turns a :class:`FragmentError` of any subcommand into a clean error.

    Called with no subcommand it prints its help and exits 0 (click's default is 2).
    """

    def parse_args(self, ctx: click.Context, args: list[str]) -> list[str]:
        if not args and self.no_args_is_help and not ctx.resilient_parsing:
            click.echo(ctx.get_help(), color=ctx.color)
            ctx.exit(0)
        return super().parse_args(ctx, args)

    def invoke(self, ctx: click.Context) -> Any:
        try:
            return super().invoke(ctx)
        except FragmentError as exc:
            raise FragmentClickError(exc) from exc
        except STATE_ERRORS as exc:  # a state database failure outside a sync's report
            raise FragmentClickError(state_error(exc, _state_url(ctx))) from None


def _state_url(ctx: click.Context) -> str:
    """``[state] url`` of the loaded settings, password hidden."""
    settings = state_from_context(ctx).settings
    if settings is None:
        return "(not loaded)"
    try:
        return sa.make_url(settings.state.url).render_as_string(hide_password=True)
    except sa.exc.ArgumentError:
        return "(not a URL)"
