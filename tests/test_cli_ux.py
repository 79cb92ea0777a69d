"""Small things a new user meets first: no-argument help, plurals, the options table."""

from __future__ import annotations

import subprocess
import sys

from click.testing import CliRunner

from fragment_core.cli import cli
from fragment_core.connectors.file import FileConfig, FileConnector, write_sample


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
