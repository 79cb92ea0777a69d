"""``fragment new-connector``: the generated package is complete and its tests pass."""

from __future__ import annotations

import os
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from fragment_core.cli import cli
from fragment_core.testing.scaffold import ConnectorNames, create_connector_package


def _run(args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    env["PYTHONPATH"] = str(cwd / "src")
    return subprocess.run(
        [sys.executable, *args], cwd=cwd, env=env, capture_output=True, text=True, timeout=240
    )


def test_generated_package_tests_pass_in_a_fresh_folder(tmp_path: Path) -> None:
    target = tmp_path / "fragment-acme-tickets"
    result = CliRunner().invoke(cli, ["new-connector", "acme-tickets", "--path", str(target)])
    assert result.exit_code == 0, result.output
    assert "Created fragment-acme-tickets" in result.output

    module = target / "src" / "fragment_acme_tickets"
    for path in (
        target / "README.md",
        module / "__init__.py",
        module / "connector.py",
        module / "plugin.py",
        target / "tests" / "conftest.py",
        target / "tests" / "test_contract.py",
    ):
        assert path.is_file(), f"{path.name} was not generated"
    project = tomllib.loads((target / "pyproject.toml").read_text())
    assert project["project"]["name"] == "fragment-acme-tickets"
    assert project["project"]["entry-points"]["fragment"] == {
        "acme-tickets": "fragment_acme_tickets.plugin"
    }
    placeholders = ("__NAME__", "__DIST__", "__MODULE__", "__CLASS__", "__TITLE__", "__ENV__")
    for path in target.rglob("*"):
        assert not any(p in str(path) for p in placeholders)
        if path.is_file():
            assert not any(p in path.read_text() for p in placeholders), path.name

    tests = _run(["-m", "pytest", "-q", "-p", "no:cacheprovider", "-rs"], target)
    assert tests.returncode == 0, tests.stdout + tests.stderr
    assert " passed" in tests.stdout and "skipped" not in tests.stdout
    lint = _run(["-m", "ruff", "check", "--no-cache", "."], target)
    assert lint.returncode == 0, lint.stdout + lint.stderr
    fmt = _run(["-m", "ruff", "format", "--check", "--no-cache", "."], target)
    assert fmt.returncode == 0, fmt.stdout + fmt.stderr


def test_default_path_is_under_plugins(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    result = CliRunner().invoke(cli, ["new-connector", "ledger"])
    assert result.exit_code == 0, result.output
    package = tmp_path / "plugins" / "fragment-ledger"
    connector = (package / "src" / "fragment_ledger" / "connector.py").read_text()
    assert 'name = "ledger"' in connector and "class LedgerConnector(" in connector


def test_refuses_bad_names_and_existing_folders(tmp_path: Path) -> None:
    runner = CliRunner()
    bad = runner.invoke(cli, ["new-connector", "Acme Tickets", "--path", str(tmp_path / "x")])
    assert bad.exit_code != 0 and "connector name 'Acme Tickets' is not valid" in bad.output
    (tmp_path / "taken").mkdir()
    (tmp_path / "taken" / "keep.txt").write_text("mine")
    taken = runner.invoke(cli, ["new-connector", "acme", "--path", str(tmp_path / "taken")])
    assert taken.exit_code != 0 and "already exists" in taken.output
    assert (tmp_path / "taken" / "keep.txt").read_text() == "mine"


@pytest.mark.parametrize(
    "name,dist,module,cls",
    [
        ("acme", "fragment-acme", "fragment_acme", "Acme"),
        ("acme-tickets", "fragment-acme-tickets", "fragment_acme_tickets", "AcmeTickets"),
        ("back_office2", "fragment-back-office2", "fragment_back_office2", "BackOffice2"),
    ],
)
def test_names(name: str, dist: str, module: str, cls: str) -> None:
    names = ConnectorNames.parse(name)
    assert (names.dist, names.module, names.class_prefix) == (dist, module, cls)


def test_create_returns_every_file(tmp_path: Path) -> None:
    files = create_connector_package("acme", tmp_path / "pkg")
    assert sorted(p.name for p in files) == sorted(
        p.name for p in (tmp_path / "pkg").rglob("*") if p.is_file()
    )
