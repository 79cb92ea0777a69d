"""``fragment demo``: the whole loop on the sandbox, in seconds, with no account."""

from __future__ import annotations

import csv
import io
from pathlib import Path

from click.testing import CliRunner
from rich.console import Console

from fragment_core.cli import cli
from fragment_core.cli.demo import run_demo
from fragment_core.task import TaskStatus


def test_demo_shows_the_whole_loop(tmp_path: Path) -> None:
    out = io.StringIO()
    facts = run_demo(tmp_path / "demo", rows=12, console=Console(file=out, width=120))
    assert facts["created"] == 12 and facts["written_back"] == 3 and facts["closed"] == 2
    assert facts["final_written_back"] == 0 and facts["final_unchanged"] == 7
    status = {t.external_id: t.status for t in facts["tasks"]}
    assert len(status) == 12
    done = {eid for eid, s in status.items() if s == TaskStatus.DONE}
    assert done == set(facts["completed"]) | set(facts["removed"])
    with (tmp_path / "demo" / "backlog.csv").open() as handle:
        rows = list(csv.DictReader(handle))
    assert {r["id"] for r in rows if r["status"] == "done"} == set(facts["completed"])
    assert all(r["completed_at"] for r in rows if r["status"] == "done")
    assert not {r["id"] for r in rows} & set(facts["removed"])
    text = out.getvalue()
    for words in ("First sync", "Operators work", "write-back", "--keep-running", "operator page"):
        assert words in text


def test_demo_command_runs(tmp_path: Path) -> None:
    result = CliRunner().invoke(cli, ["demo", "--dir", str(tmp_path / "d"), "--rows", "5"])
    assert result.exit_code == 0, result.output
    assert "That is the whole loop" in result.output
