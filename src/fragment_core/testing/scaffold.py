"""``fragment new-connector NAME``: create a connector package from the bundled template.

The template (``fragment_core/templates/connector``) is a working toy connector with a
fake API, the contract suite passing, and a README. File names and contents use the
placeholders ``__NAME__`` (type key), ``__DIST__`` (distribution), ``__MODULE__`` (import
name), ``__CLASS__`` (class prefix), ``__TITLE__`` and ``__ENV__``; ``.tmpl`` is dropped.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from importlib import resources
from importlib.resources.abc import Traversable
from pathlib import Path

import click

__all__ = ["ConnectorNames", "create_connector_package", "new_connector_command"]

_NAME = re.compile(r"^[a-z][a-z0-9]*(?:[-_][a-z0-9]+)*$")
#: Connectors fragment-core ships itself (``fragment_core.connectors``).
BUILTIN_CONNECTORS: tuple[str, ...] = ("file", "http")


def _taken(name: str) -> str | None:
    """Why ``name`` may not be used for a new connector, or ``None`` when it is free."""
    from fragment_core.plugins import OFFICIAL_CONNECTORS

    key = name.replace("_", "-")
    if key in BUILTIN_CONNECTORS:
        return f"connector name {name!r} is taken: it is a built-in connector of fragment-core"
    if key in OFFICIAL_CONNECTORS:
        return (
            f"connector name {name!r} is taken: it is an official connector "
            f"(pip install {OFFICIAL_CONNECTORS[key]}); choose another name, e.g. "
            f"'{key}-custom'"
        )
    return None


@dataclass(frozen=True)
class ConnectorNames:
    """The names derived from a connector's type key."""

    name: str

    @classmethod
    def parse(cls, name: str) -> ConnectorNames:
        """Validate ``name`` (lowercase letters, digits, ``-`` or ``_``; a letter first)."""
        if not _NAME.match(name):
            raise ValueError(
                f"connector name {name!r} is not valid: use lowercase letters, digits and "
                "single '-' or '_' (starting with a letter), e.g. 'acme-tickets'"
            )
        reason = _taken(name)
        if reason is not None:
            raise ValueError(reason)
        return cls(name)

    @property
    def dist(self) -> str:
        return f"fragment-{self.name.replace('_', '-')}"

    @property
    def module(self) -> str:
        return f"fragment_{self.name.replace('-', '_')}"

    @property
    def class_prefix(self) -> str:
        return "".join(part.capitalize() for part in re.split(r"[-_]", self.name))

    @property
    def title(self) -> str:
        return " ".join(part.capitalize() for part in re.split(r"[-_]", self.name))

    @property
    def env(self) -> str:
        return self.name.replace("-", "_").upper()

    def render(self, text: str) -> str:
        """Replace every placeholder in ``text``."""
        for placeholder, value in (
            ("__DIST__", self.dist),
            ("__MODULE__", self.module),
            ("__CLASS__", self.class_prefix),
            ("__TITLE__", self.title),
            ("__ENV__", self.env),
            ("__NAME__", self.name),
        ):
            text = text.replace(placeholder, value)
        return text


def _template_root() -> Traversable:
    return resources.files("fragment_core").joinpath("templates", "connector")


def _walk(node: Traversable, prefix: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str]]:
    files: list[tuple[tuple[str, ...], str]] = []
    for child in sorted(node.iterdir(), key=lambda c: c.name):
        if child.name == "__pycache__":
            continue
        if child.is_dir():
            files += _walk(child, (*prefix, child.name))
        elif child.name.endswith(".tmpl"):
            files.append(((*prefix, child.name.removesuffix(".tmpl")), child.read_text()))
    return files


def create_connector_package(name: str, target: Path) -> list[Path]:
    """Write the package for connector ``name`` into ``target``; return the files written.

    ``target`` must not exist or be empty. Raises ``ValueError`` for a bad name and
    ``FileExistsError`` rather than overwrite anything.
    """
    names = ConnectorNames.parse(name)
    if target.exists() and (not target.is_dir() or any(target.iterdir())):
        raise FileExistsError(f"{target} already exists and is not empty; choose another path")
    written: list[Path] = []
    for parts, text in _walk(_template_root()):
        path = target.joinpath(*(names.render(p) for p in parts))
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(names.render(text))
        written.append(path)
    return written


@click.command("new-connector")
@click.argument("name")
@click.option(
    "--path",
    "path",
    type=click.Path(file_okay=False, path_type=Path),
    default=None,
    help="Folder to create (default: plugins/fragment-NAME).",
)
def new_connector_command(name: str, path: Path | None) -> None:
    """Create a new connector package NAME: skeleton, fake API, contract tests, README."""
    try:
        names = ConnectorNames.parse(name)
        target = path if path is not None else Path("plugins") / names.dist
        files = create_connector_package(name, target)
    except (ValueError, FileExistsError) as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"Created {names.dist} in {target} ({len(files)} files).")
    click.echo("Next steps (in the virtualenv you run fragment from):")
    click.echo(f'  pip install -e "{target}[test]"')
    click.echo(f"  python -m pytest {target / 'tests'}")
    click.echo(f"  edit {target / 'src' / names.module / 'connector.py'} for your API")
