"""``fragment init [CONNECTOR]``: write a commented ``fragment.toml`` for the local
sandbox and one source of CONNECTOR, built from the connector's ``Config`` schema."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import click
from rich.markup import escape

from fragment_core.cli.options import Option, options_of, toml_key, toml_value
from fragment_core.cli.support import registry_from_context, state_from_context, stdout_console
from fragment_core.config import DEFAULT_CONFIG_FILE
from fragment_core.connectors.file import write_sample
from fragment_core.errors import ConfigurationError
from fragment_core.plugins import ConnectorEntry

#: Where ``fragment sandbox`` listens by default.
SANDBOX_URL = "http://127.0.0.1:8765/api/v1"
#: The token the written file expects the sandbox to use (``fragment sandbox --token``).
SANDBOX_TOKEN = "dev-token"
#: Rows of the sample backlog written next to a new file-connector configuration.
SAMPLE_SIZE = 5

INIT_EXAMPLES = """\b
Examples:
  fragment init                       the file connector, with a sample backlog.csv
  fragment init http --name backoffice
  fragment --config prod.toml init hubspot --force
"""

_HEADER = """\
# fragment.toml: written by `fragment init {connector}`.
# Every key is described in the configuration guide; `fragment connectors show
# {connector}` lists the connector's options. Check it with `fragment config validate`.

# The Tasks API to sync into: here the local sandbox. Start it with
#     fragment sandbox --token {token}
# For production: url = "https://api.onfragment.com/api/v1", token = "${{FRAGMENT_TOKEN}}".
[tasks_api]
url = {url}
token = "${{FRAGMENT_SANDBOX_TOKEN:-{token}}}"   # from the environment, else the sandbox's
# rate_limit = 60                   # requests per minute

# Where fragment keeps what it synced (SQLite here; PostgreSQL for a fleet).
[state]
url = "sqlite:///fragment-state.db"

[[sources]]
name = {name}                       # part of every task uid: never rename casually
connector = {connector_value}
every = "5m"                        # how often `fragment run` syncs it
# full_every = "1h"                 # incremental fetches in between (when supported)
# reopen = "on-change"              # or "never"
# close = {{ max_share = 0.5, min_open = 10, debounce = 1 }}   # the blast-radius cap
"""


def _comment(text: str, width: int = 88) -> list[str]:
    """``text`` as ``#`` comment lines."""
    words, lines, line = text.split(), [], "#"
    for word in words:
        if len(line) + 1 + len(word) > width and line != "#":
            lines.append(line)
            line = "#"
        line += " " + word
    if line != "#":
        lines.append(line)
    return lines


def _option_lines(option: Option, example: dict[str, Any]) -> list[str]:
    """The lines of one option: its description, then the key (commented out unless it
    is required or the connector's example sets it)."""
    lines = _comment(f"{option.description} ({option.type})" if option.description else "")
    key = toml_key(option.name)
    if option.name in example:
        lines.append(f"{key} = {toml_value(example[option.name])}")
    elif option.required:
        lines.append(f"# {key} = ...   # required: fill in (see `fragment connectors show`)")
    elif option.has_default and option.default is not None:
        lines.append(f"# {key} = {toml_value(option.default)}   # the default")
    else:
        lines.append(f"# {key} =   # unset by default")
    return lines


def render_config(entry: ConnectorEntry, name: str, url: str = SANDBOX_URL) -> str:
    """The text of a commented ``fragment.toml`` for one source of ``entry``."""
    text = _HEADER.format(
        connector=entry.name,
        connector_value=toml_value(entry.name),
        name=toml_value(name),
        url=toml_value(url),
        token=SANDBOX_TOKEN,
    )
    options = options_of(entry.cls.Config.model_json_schema())
    example = dict(entry.cls.example_options)
    if entry.cls.example_toml and any(o.required and o.name not in example for o in options):
        # options that are tables of their own: the connector's annotated example
        block = entry.cls.example_toml
        body = block[block.index("[sources.options]") :] if "[sources.options]" in block else ""
        return text + "\n" + body.rstrip() + "\n"
    lines = ["", "[sources.options]"]
    for option in options:
        lines += ["", *_option_lines(option, example)]
    return text + "\n".join(lines) + "\n"


def _write_sample_backlog(path: Path) -> bool:
    """Write a small sample backlog at ``path`` unless a file is there; True when written."""
    if path.exists():
        return False
    path.parent.mkdir(parents=True, exist_ok=True)
    write_sample(path, SAMPLE_SIZE)
    return True


@click.command("init", epilog=INIT_EXAMPLES)
@click.argument("connector", default="file")
@click.option("--name", help="Name of the source  [default: backlog for file, else CONNECTOR]")
@click.option(
    "--url",
    default=SANDBOX_URL,
    show_default=True,
    help="Tasks API URL written in [tasks_api] (the local sandbox by default).",
)
@click.option("--force", is_flag=True, help="Overwrite an existing configuration file.")
@click.pass_context
def init_command(
    ctx: click.Context, connector: str, name: str | None, url: str, force: bool
) -> None:
    """Write a commented fragment.toml for the sandbox and one CONNECTOR source.

    The file goes to --config (default ./fragment.toml); an existing file is kept unless
    --force. Each option of the connector is listed with its description and default.
    For the file connector a sample backlog.csv is written too when none exists, so
    `fragment sync backlog` works at once against `fragment sandbox --token dev-token`.
    """
    entry = registry_from_context(ctx).entry(connector)
    target = state_from_context(ctx).config_path or Path(DEFAULT_CONFIG_FILE)
    if target.exists() and not force:
        raise ConfigurationError(
            "the configuration file exists; keep it, or overwrite it with --force",
            where=str(target),
        )
    source = name or ("backlog" if entry.name == "file" else entry.name)
    text = render_config(entry, source, url)
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text, encoding="utf-8")
    console = stdout_console()
    console.print(f"[green]✓[/] wrote {escape(str(target))} (source {escape(source)!r})")
    sample = entry.cls.example_options.get("path") if entry.name == "file" else None
    if sample and _write_sample_backlog(target.parent / str(sample)):
        console.print(f"[green]✓[/] wrote a sample backlog: {escape(str(target.parent / sample))}")
    config = "" if target == Path(DEFAULT_CONFIG_FILE) else f"--config {target} "
    console.print(
        "Next steps:\n"
        f"  fragment sandbox --token {SANDBOX_TOKEN}      (in another terminal)\n"
        f"  fragment {config}check\n"
        f"  fragment {config}sync {source} --dry-run\n"
        f"  fragment {config}sync {source}",
        markup=False,
        highlight=False,
    )
