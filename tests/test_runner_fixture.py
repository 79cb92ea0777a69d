"""The author kit's ``fragment_runner`` fixture drives a real runner against the sandbox."""

from __future__ import annotations

import csv
from collections.abc import Callable
from pathlib import Path

from fragment_core.task import TaskStatus


def _write(path: Path, rows: list[dict[str, str]]) -> None:
    with path.open("w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=["id", "title", "url"])
        writer.writeheader()
        writer.writerows(rows)


def test_fragment_runner_syncs_completes_and_writes_back(
    fragment_runner: Callable, tmp_path: Path
) -> None:
    backlog = tmp_path / "backlog.csv"
    _write(backlog, [{"id": str(i), "title": f"row {i}", "url": ""} for i in range(3)])
    runner = fragment_runner("file", {"path": str(backlog)}, source="sheet")

    first = runner.sync()
    assert (first.created, first.failed_records) == (3, 0)
    assert sorted(runner.tasks()) == ["0", "1", "2"]

    runner.complete("1", outcome={"note": "done by hand"})
    second = runner.sync()
    assert second.written_back == 1
    assert runner.tasks()["1"].status is TaskStatus.DONE
    rows = {row["id"]: row for row in csv.DictReader(backlog.open())}
    assert rows["1"]["status"] == "done"
