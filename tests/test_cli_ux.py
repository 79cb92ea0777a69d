"""Small things a new user meets first: no-argument help, plurals, the options table."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from fragment_core.cli import cli
from fragment_core.connectors.file import FileConfig, FileConnector, write_sample
from fragment_core.testing.install import offline_env, overlay_venv, run

REPO = Path(__file__).resolve().parents[1]


def test_fragment_with_no_arguments_prints_help_and_exits_0() -> None:
    result = subprocess.run(
        [sys.executable, "-m", "fragment_core"], capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr
    assert "Usage: fragment" in result.stdout and "Commands:" in result.stdout
    group = CliRunner().invoke(cli, ["connectors"])
    assert group.exit_code == 0 and "show" in group.output


def test_one_open_row_is_singular(tmp_path) -> None:
    one = FileConnector(FileConfig(path=write_sample(tmp_path / "one.csv", 1)))
    many = FileConnector(FileConfig(path=write_sample(tmp_path / "many.csv", 3)))
    assert one.check() == "one.csv: 1 open row"
    assert many.check() == "many.csv: 3 open rows"


def test_connectors_show_prints_the_options_as_a_table() -> None:
    runner = CliRunner()
    result = runner.invoke(cli, ["connectors", "show", "file"], env={"COLUMNS": "250"})
    assert result.exit_code == 0, result.output
    rows = {
        cells[0]: cells[1:]
        for cells in (
            [c.strip() for c in line.split("│")[1:-1]]
            for line in result.output.splitlines()
            if line.startswith("│")
        )
    }
    described = "The CSV (.csv) or JSON Lines (.jsonl) backlog file."
    assert rows["path"] == ["path", "(required)", described]
    assert rows["format"][:2] == ["csv | jsonl", "-"]
    assert rows["id_column"][:2] == ["string", '"id"']
    assert rows["custom_columns"][0] == "list of string"
    assert "option" in result.output and "default" in result.output
    schema = runner.invoke(cli, ["connectors", "show", "file", "--json"])
    assert '"config_schema"' in schema.output and '"properties"' in schema.output


@pytest.mark.slow
def test_the_scaffolds_next_steps_work_as_printed(tmp_path) -> None:
    """``fragment new-connector`` prints next steps; run each, in a fresh venv."""
    venv = overlay_venv(tmp_path / "venv")
    env = offline_env(venv)
    installed = run(venv / "bin" / "pip", "install", "-q", REPO, cwd=tmp_path, env=env)
    assert installed.returncode == 0, installed.stderr
    for where in ("plugins", "acme"):  # the default folder, and a --path without a slash
        args = [] if where == "plugins" else ["--path", where]
        made = run(venv / "bin" / "fragment", "new-connector", "acme", *args, cwd=tmp_path, env=env)
        assert made.returncode == 0, made.stderr
        steps = [
            line.strip()
            for line in made.stdout.splitlines()
            if line.startswith("  ") and not line.strip().startswith("edit ")
        ]
        assert steps and steps[0].startswith("pip install -e")
        for step in steps:
            done = subprocess.run(
                step, shell=True, cwd=tmp_path, env=env, capture_output=True, text=True,
                timeout=300,
            )  # fmt: skip
            assert done.returncode == 0, f"{step}\n{done.stdout[-2000:]}{done.stderr[-2000:]}"
        run(venv / "bin" / "pip", "uninstall", "-y", "-q", "fragment-acme", env=env)


def test_the_connector_tutorial_uses_the_folder_new_connector_creates() -> None:
    page = (REPO / "docs" / "writing-a-connector.md").read_text()
    blocks = "\n".join(re.findall(r"^```bash\n(.*?)^```", page, flags=re.S | re.M))
    paths = re.findall(r"(?:pip install -e|python -m pytest) \"?([^\s\"\[]+)", blocks)
    assert paths and all(p.startswith("plugins/fragment-acme-tickets") for p in paths), paths
    assert not re.search(r"^\s*cd ", blocks, re.M)  # no step depends on a folder change
    assert re.search(r"^pytest", blocks, re.M) is None  # the venv's python, not any pytest


#: Connectors the docs may name that no package provides: the tutorial's own.
TUTORIAL_CONNECTORS = {"acme-tickets"}


def _documented_texts() -> dict[str, str]:
    texts = {str(p.relative_to(REPO)): p.read_text() for p in (REPO / "docs").rglob("*.md")}
    texts["README.md"] = (REPO / "README.md").read_text()
    for readme in (REPO / "plugins").glob("*/README.md"):
        texts[str(readme.relative_to(REPO))] = readme.read_text()
    for name, command in cli.commands.items():  # the --help texts, examples included
        with click.Context(command, info_name=f"fragment {name}") as ctx:
            texts[f"fragment {name} --help"] = command.get_help(ctx)
    with click.Context(cli, info_name="fragment") as ctx:
        texts["fragment --help"] = cli.get_help(ctx)
    return texts


def test_examples_only_use_connectors_and_packages_that_exist() -> None:
    from fragment_core.plugins import get_registry

    known = {entry.name for entry in get_registry().all()} | TUTORIAL_CONNECTORS
    packages = {p.name for p in (REPO / "plugins").iterdir() if (p / "pyproject.toml").exists()}
    wrong = []
    for where, text in _documented_texts().items():
        named = re.findall(
            r'connector = "([a-z][a-z0-9-]*)"'
            r"|connectors show ([a-z][a-z0-9-]*)|fragment init ([a-z][a-z0-9-]*)",
            text,
        )
        for name in {n for group in named for n in group if n}:
            if name not in known:
                wrong.append(f"{where}: connector {name!r}")
        for package in re.findall(r"plugins/(fragment-[a-z0-9-]+)", text):
            if package not in packages | {"fragment-acme-tickets"}:
                wrong.append(f"{where}: package {package!r}")
        for line in re.findall(r"^\s*(pip install[^\n]*)", text, re.M):
            if re.search(r"(?<![./\w-])fragment-[a-z]", line.split("#")[0]):
                wrong.append(f"{where}: {line.strip()!r} (not published: install from plugins/)")
    assert wrong == []


def test_the_upgrade_step_points_to_the_changelog() -> None:
    operating = (REPO / "docs" / "operating.md").read_text()
    upgrades = operating.split("## Upgrades", 1)[1]
    assert "[changelog](changelog.md)" in upgrades
    changelog = (REPO / "CHANGELOG.md").read_text()
    assert changelog.startswith("# Changelog") and "## Unreleased" in changelog
    assert (REPO / "docs" / "changelog.md").read_text() == changelog  # the docs site's copy


def test_the_file_connector_page_covers_columns_write_back_encodings_and_locking() -> None:
    page = (REPO / "docs" / "connectors" / "file.md").read_text()
    for heading in ("## Columns", "## Write-back", "## Encodings", "## Sharing the file"):
        assert heading in page
    from fragment_core.connectors.file import FileConfig

    assert [n for n in FileConfig.model_fields if f"`{n}`" not in page] == []
    nav = (REPO / "mkdocs.yml").read_text()
    assert "connectors/file.md" in nav and "connectors/http.md" in nav
