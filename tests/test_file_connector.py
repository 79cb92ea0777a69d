"""The built-in file connector: CSV and JSON Lines backlogs, mapping, atomic write-back."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import pytest
from pydantic import ValidationError

from fragment_core.connector import Capability, Completion
from fragment_core.connectors.file import (
    SAMPLE_COLUMNS,
    FileConfig,
    FileConnector,
    sample_rows,
    write_sample,
)
from fragment_core.errors import BadRecordError, ConfigurationError
from fragment_core.plugins import get_registry, new_plugin_manager
from fragment_core.task import RemoteTask


def connector(path: Path, **options: object) -> FileConnector:
    return FileConnector(FileConfig(path=path, **options), source="kyc")


def test_registered_through_the_hook_with_write_back() -> None:
    registry = get_registry(new_plugin_manager(entrypoints=False))
    cls = registry.get("file")
    assert cls is FileConnector and Capability.WRITE_BACK in cls.capabilities()


def test_sample_matches_the_integration_guide(tmp_path: Path) -> None:
    path = write_sample(tmp_path / "b.csv", 5)
    assert path.read_text().splitlines()[0] == ",".join(SAMPLE_COLUMNS)
    tasks = [connector(path).to_task(r) for r in connector(path).fetch_backlog()]
    assert len(tasks) == 5
    first = tasks[0]
    assert first.external_id == "C-0001" and first.fields.title == "KYC review: Ada Lovelace"
    assert first.fields.url == "https://backoffice.example.com/customers/C-0001"
    assert first.fields.custom == {
        "category": "KYC review",
        "name": "Ada Lovelace",
        "priority": "high",
    }


def test_csv_columns_are_configurable(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_text("ref,subject,link,deadline,team,notes\nA1,Check A,,2025-03-01,ops,x\n")
    c = connector(
        path,
        id_column="ref",
        title_column="subject",
        url_column="link",
        url_template="https://crm.example.com/{ref}",
        due_column="deadline",
        custom_columns=["team"],
    )
    (task,) = [c.to_task(r) for r in c.fetch_backlog()]
    assert task.external_id == "A1" and task.fields.url == "https://crm.example.com/A1"
    assert task.due_at == datetime(2025, 3, 1, tzinfo=UTC)
    assert task.fields.custom == {"team": "ops"}


def test_jsonl_backlog_and_bad_lines(tmp_path: Path) -> None:
    path = tmp_path / "b.jsonl"
    path.write_text(
        json.dumps({"id": 1, "title": "one", "score": 3})
        + "\n{oops\n"
        + json.dumps({"id": 2, "title": ""})
        + "\n"
    )
    c = connector(path)
    records = list(c.fetch_backlog())
    assert c.to_task(records[0]).fields.custom == {"score": 3}
    with pytest.raises(BadRecordError, match="line 2 is not JSON"):
        c.to_task(records[1])
    with pytest.raises(BadRecordError) as info:
        c.to_task(records[2])
    assert (info.value.record_id, info.value.field) == ("2", "title")
    assert "source 'kyc', file 'b.jsonl'" in str(info.value)


def test_bad_due_date_names_record_and_field(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_text("id,title,due\n7,Seven,next tuesday\n")
    c = connector(path, due_column="due")
    with pytest.raises(BadRecordError, match="'next tuesday' is not an ISO 8601") as info:
        c.to_task(next(c.fetch_backlog()))
    assert (info.value.record_id, info.value.field) == ("7", "due")


def test_config_errors(tmp_path: Path) -> None:
    with pytest.raises(ValidationError, match="cannot tell the format"):
        FileConfig(path=tmp_path / "b.xlsx")
    with pytest.raises(ConfigurationError, match="does not exist"):
        list(connector(tmp_path / "missing.csv").fetch_backlog())


@pytest.mark.parametrize("suffix", ["csv", "jsonl"])
def test_write_back_marks_the_row_atomically_and_idempotently(tmp_path: Path, suffix: str) -> None:
    path = write_sample(tmp_path / f"b.{suffix}", 3)
    c = connector(path, outcome_column="outcome")
    uid = uuid.uuid4()
    done_at = datetime(2025, 5, 6, 7, 8, 9, tzinfo=UTC)
    completion = Completion("kyc", "C-0002", uid, done_at, {"decision": "approved"}, "k")
    task = RemoteTask(uid=uid)
    assert "marked row 'C-0002' done" in c.on_complete(task, completion)
    assert "marked row" in c.on_complete(task, completion)  # again: same result
    _, rows = c.read_rows()
    row = next(r for r in rows if r["id"] == "C-0002")
    assert row["status"] == "done" and row["completed_at"] == "2025-05-06T07:08:09.000Z"
    assert json.loads(row["outcome"]) == {"decision": "approved"}
    assert [r["id"] for r in c.fetch_backlog()] == ["C-0001", "C-0003"]
    assert list(tmp_path.glob(".*tmp")) == []  # no temp file left behind
    gone = Completion("kyc", "C-0099", uid, done_at)
    assert "no longer in" in c.on_complete(task, gone)


def test_sample_rows_are_deterministic() -> None:
    assert sample_rows(3) == sample_rows(3) and len({r["id"] for r in sample_rows(50)}) == 50
