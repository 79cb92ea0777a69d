"""``fragment init``: a commented fragment.toml that ``fragment sync`` can use at once."""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest
from click.testing import CliRunner

from fragment_core.cli import cli
from fragment_core.cli.init import render_config
from fragment_core.plugins import get_registry
from fragment_core.task import SOURCE_FIELD


def test_init_then_sync_against_the_sandbox(sandbox, tmp_path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    runner = CliRunner()
    env = {"FRAGMENT_SANDBOX_TOKEN": sandbox.token}
    made = runner.invoke(cli, ["init", "--url", sandbox.url], env=env)
    assert made.exit_code == 0, made.output
    assert (tmp_path / "fragment.toml").is_file() and (tmp_path / "backlog.csv").is_file()
    assert "fragment sync backlog" in made.output
    text = (tmp_path / "fragment.toml").read_text()
    assert "# Column holding the external id. (string)" in text  # from the Config schema
    assert '# id_column = "id"   # the default' in text
    synced = runner.invoke(cli, ["sync", "backlog"], env=env)
    assert synced.exit_code == 0, synced.output
    assert "backlog (file, full): ok" in synced.output
    with sandbox.client() as client:
        tasks = list(client.list_tasks(fields={SOURCE_FIELD: "backlog"}))
    assert len(tasks) == 5


def test_init_refuses_to_overwrite_without_force(tmp_path) -> None:
    config = tmp_path / "prod.toml"
    config.write_text("# mine\n")
    runner = CliRunner()
    refused = runner.invoke(cli, ["--config", str(config), "init"])
    assert refused.exit_code == 2
    assert "exists" in refused.stderr and "--force" in refused.stderr
    assert config.read_text() == "# mine\n"
    forced = runner.invoke(cli, ["--config", str(config), "init", "--force", "--name", "kyc"])
    assert forced.exit_code == 0, forced.output
    assert tomllib.loads(config.read_text())["sources"][0]["name"] == "kyc"


def test_init_of_an_unknown_connector_names_the_installed_ones(tmp_path) -> None:
    result = CliRunner().invoke(cli, ["--config", str(tmp_path / "f.toml"), "init", "nope"])
    assert result.exit_code == 2 and "nope" in result.stderr
    assert not (tmp_path / "f.toml").exists()


@pytest.mark.parametrize("name", sorted(e.name for e in get_registry().all()))
def test_every_installed_connector_gets_a_file_that_is_valid_toml(name: str) -> None:
    entry = get_registry().entry(name)
    data = tomllib.loads(render_config(entry, "src"))
    assert data["sources"][0] == {**data["sources"][0], "name": "src", "connector": name}
    assert data["tasks_api"]["url"].startswith("http://127.0.0.1:")


def test_an_initialised_http_source_validates(tmp_path: Path) -> None:
    config = tmp_path / "fragment.toml"
    runner = CliRunner()
    assert runner.invoke(cli, ["--config", str(config), "init", "http"]).exit_code == 0
    result = runner.invoke(
        cli, ["config", "validate", str(config)], env={"BACKOFFICE_TOKEN": "t"}
    )
    assert result.exit_code == 0, result.output
