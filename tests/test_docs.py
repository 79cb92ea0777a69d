"""The docs build strictly, and every CLI command and every hook is documented."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click

from fragment_core import hookspecs
from fragment_core.cli import cli

ROOT = Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"


def command_paths(group: click.Group, prefix: tuple[str, ...] = ("fragment",)) -> list[str]:
    """Every command of a click group, as typed: ``fragment connectors list``."""
    paths = []
    for name, command in sorted(group.commands.items()):
        path = (*prefix, name)
        paths.append(" ".join(path))
        if isinstance(command, click.Group):
            paths += command_paths(command, path)
    return paths


def hook_names() -> list[str]:
    """Every hookspec of fragment-core."""
    marker = f"{hookspecs.PROJECT}_spec"
    return sorted(
        name
        for name, value in vars(hookspecs).items()
        if name.startswith("fragment_") and hasattr(value, marker)
    )


def docs_text() -> str:
    return "\n".join(p.read_text() for p in sorted(DOCS.rglob("*.md")))


def undocumented(names: list[str], text: str) -> list[str]:
    """The names that do not appear in ``text`` as a whole word sequence."""
    return [n for n in names if not re.search(rf"(?<![\w-]){re.escape(n)}(?![\w-])", text)]


def test_mkdocs_builds_strictly(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "mkdocs",
            "build",
            "--strict",
            "--quiet",
            "-f",
            str(ROOT / "mkdocs.yml"),
            "-d",
            str(tmp_path / "site"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "site" / "writing-a-connector" / "index.html").is_file()


def test_nav_lists_every_page() -> None:
    nav = (ROOT / "mkdocs.yml").read_text()
    pages = sorted(str(p.relative_to(DOCS)) for p in DOCS.rglob("*.md"))
    assert [p for p in pages if p not in nav] == []


def test_every_cli_command_is_documented() -> None:
    commands = command_paths(cli)
    assert "fragment new-connector" in commands and "fragment sync" in commands
    assert undocumented(commands, docs_text()) == []


def test_every_hook_is_documented() -> None:
    hooks = hook_names()
    assert "fragment_transform_task" in hooks
    assert undocumented(hooks, docs_text()) == []


def test_a_missing_command_or_hook_is_caught() -> None:
    @click.group()
    def extra() -> None: ...

    @extra.command("frobnicate")
    def frobnicate() -> None: ...

    group = click.Group(commands={**cli.commands, "extra": extra})
    missing = undocumented(command_paths(group), docs_text())
    assert missing == ["fragment extra", "fragment extra frobnicate"]
    assert undocumented(["fragment_never_heard_of", *hook_names()], docs_text()) == [
        "fragment_never_heard_of"
    ]
    # a longer name is not documented by a mention of its prefix
    assert undocumented(["fragment connectors lis"], "fragment connectors list") == [
        "fragment connectors lis"
    ]


def test_tutorial_lists_the_generated_files(tmp_path: Path) -> None:
    from fragment_core.testing.scaffold import create_connector_package

    files = create_connector_package("acme-tickets", tmp_path / "fragment-acme-tickets")
    tutorial = (DOCS / "writing-a-connector.md").read_text()
    assert [f.name for f in files if f.name not in tutorial] == []
    assert "class AcmeTicketsConnector(Connector[AcmeTicketsConfig])" in tutorial
    connector = tmp_path / "fragment-acme-tickets/src/fragment_acme_tickets/connector.py"
    assert "class AcmeTicketsConnector(Connector[AcmeTicketsConfig])" in connector.read_text()
