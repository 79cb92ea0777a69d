"""One bad record never blocks its source: each is a named BadRecordError (source,
record, field) and the rest of the backlog syncs, end to end against the sandbox."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from fragment_core.config import SourceSettings
from fragment_core.connectors.file import FileConfig, FileConnector
from fragment_core.errors import BadRecordError, ConfigurationError
from fragment_core.reports import RunOutcome
from fragment_core.sandbox.runner import run_sandbox
from fragment_core.state import StateStore
from fragment_core.sync.engine import sync_source
from fragment_core.task import SOURCE_FIELD, Task


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Any]:
    with run_sandbox() as handle:
        yield handle


@pytest.fixture
def client(sandbox: Any) -> Iterator[Any]:
    with sandbox.client() as api:
        yield api


def _sync(client: Any, path: Path, store_url: str = "sqlite://", **options: Any) -> Any:
    name = f"bad-{uuid.uuid4().hex[:10]}"
    connector = FileConnector(FileConfig(path=path, **options), source=name)
    store = StateStore(store_url)
    try:
        report = sync_source(SourceSettings(name=name, connector="file"), connector, client, store)
    finally:
        store.close()
    ids = {t.external_id for t in client.list_tasks(fields={SOURCE_FIELD: name})}
    return name, report, ids


def _one_error(report: Any, name: str, record: str | None, field: str | None) -> Any:
    assert report.outcome is not RunOutcome.FAILED, report
    assert len(report.record_errors) == 1, report.record_errors
    error = report.record_errors[0]
    assert (error.source, error.record_id, error.field) == (name, record, field)
    return error


def _jsonl(tmp_path: Path, bad_line: str) -> Path:
    path = tmp_path / "backlog.jsonl"
    path.write_text(
        '{"id": "1", "title": "one"}\n' + bad_line + '\n{"id": "3", "title": "three"}\n'
    )
    return path


def test_a_due_date_out_of_range_is_a_bad_record(client: Any, tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_text("id,title,due\n1,one,\n2,two,0001-01-01T00:00:00+01:00\n3,three,\n")
    name, report, ids = _sync(client, path, due_column="due")
    error = _one_error(report, name, "2", "due")
    assert "out of range" in error.message
    assert ids == {"1", "3"}


def test_a_due_date_out_of_range_is_refused_by_the_task_model() -> None:
    from datetime import datetime, timedelta, timezone

    due = datetime(1, 1, 1, tzinfo=timezone(timedelta(hours=1)))
    with pytest.raises(ValueError, match="out of range"):
        Task.new(external_id="x", title="t", due_at=due)


def test_json_nested_five_thousand_deep_is_a_bad_record(client: Any, tmp_path: Path) -> None:
    path = _jsonl(tmp_path, '{"id": "2", "title": "two", "x": ' + "[" * 5000 + "]" * 5000 + "}")
    name, report, ids = _sync(client, path)
    error = _one_error(report, name, None, None)
    assert "line 2" in error.message and "nested" in error.message
    assert ids == {"1", "3"}


def test_a_five_thousand_digit_integer_is_a_bad_record(client: Any, tmp_path: Path) -> None:
    path = _jsonl(tmp_path, '{"id": "2", "title": "two", "n": ' + "9" * 5000 + "}")
    name, report, ids = _sync(client, path)
    error = _one_error(report, name, None, None)
    assert "line 2" in error.message and "digits" in error.message
    assert ids == {"1", "3"}


@pytest.mark.parametrize("constant", ["Infinity", "-Infinity", "NaN"])
def test_a_non_finite_number_is_a_bad_record(
    client: Any, tmp_path: Path, constant: str
) -> None:
    path = _jsonl(tmp_path, '{"id": "2", "title": "two", "n": ' + constant + "}")
    name, report, ids = _sync(client, path)
    error = _one_error(report, name, None, None)
    assert "line 2" in error.message and constant in error.message
    assert ids == {"1", "3"}


def test_a_non_finite_number_from_a_connector_is_a_bad_record_not_a_crash() -> None:
    task = Task.new(external_id="x", title="t", custom={"n": float("inf")})
    with pytest.raises(BadRecordError) as caught:
        task.content_hash()
    assert caught.value.field == "fields.n" and caught.value.record_id == "x"


def test_a_csv_row_with_an_extra_field_is_a_bad_record(client: Any, tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_text("id,title,status\n1,one,\n2,two,,surplus\n3,three,\n")
    name, report, ids = _sync(client, path, outcome_column="outcome")
    error = _one_error(report, name, "2", None)
    assert "line 3" in error.message and "1 more field" in error.message
    assert ids == {"1", "3"}


def test_a_csv_with_a_utf8_bom_works_by_default(client: Any, tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_bytes("id,title\n1,one\n2,two\n".encode("utf-8-sig"))
    _name, report, ids = _sync(client, path)
    assert report.record_errors == [] and ids == {"1", "2"}


def test_a_missing_id_column_is_reported_as_missing(tmp_path: Path) -> None:
    path = tmp_path / "b.csv"
    path.write_text("key,title\n1,one\n")
    connector = FileConnector(FileConfig(path=path), source="s")
    with pytest.raises(ConfigurationError, match="no column 'id'") as caught:
        list(connector.fetch_backlog())
    assert "key, title" in str(caught.value)
    with pytest.raises(ConfigurationError, match="no column 'id'"):
        connector.check()


def test_a_nul_byte_in_an_id_with_postgres_state(
    client: Any, tmp_path: Path, postgres_url: str
) -> None:
    db = f"bad{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.execute(sa.text(f"CREATE DATABASE {db}"))
    admin.dispose()
    url = postgres_url.rsplit("/", 1)[0] + "/" + db
    path = tmp_path / "backlog.jsonl"
    path.write_text(
        '{"id": "1", "title": "one"}\n{"id": "2\\u0000x", "title": "two"}\n'
        '{"id": "3", "title": "three"}\n'
    )
    name, report, ids = _sync(client, path, url)
    error = _one_error(report, name, "2\\x00x", "external_id")
    assert "NUL" in error.message
    assert "Tasks API" not in str(error) and "parameters" not in str(error)
    assert ids == {"1", "3"}


def test_a_write_back_keeps_bad_lines_as_they_were(tmp_path: Path) -> None:
    jsonl = _jsonl(tmp_path, '{"id": "2", "title": "two", "n": Infinity}')
    connector = FileConnector(FileConfig(path=jsonl), source="s")
    assert connector.update_rows({"1": lambda row: row.update(status="done")}) == 1
    assert jsonl.read_text().splitlines()[1] == '{"id": "2", "title": "two", "n": Infinity}'
    csv_path = tmp_path / "b.csv"
    csv_path.write_text("id,title,status\n1,one,\n2,two,,surplus\n")
    connector = FileConnector(FileConfig(path=csv_path), source="s")
    assert connector.update_rows({"1": lambda row: row.update(status="done")}) == 1
    assert csv_path.read_text().splitlines() == ["id,title,status", "1,one,done", "2,two,,surplus"]


def test_a_huge_integer_from_a_connector_is_a_bad_record_naming_the_field() -> None:
    task = Task.new(external_id="x", title="t", custom={"n": 10**5000})
    with pytest.raises(BadRecordError) as caught:
        task.content_hash()
    assert (caught.value.record_id, caught.value.field) == ("x", "fields.n")
    assert "digits" in caught.value.message


@pytest.mark.parametrize("depth", [900, 980])
def test_json_nested_just_readable_is_mapped_or_a_bad_record(
    client: Any, tmp_path: Path, depth: int
) -> None:
    path = _jsonl(tmp_path, '{"id": "2", "title": "two", "x": ' + "[" * depth + "]" * depth + "}")
    _name, report, ids = _sync(client, path)
    assert report.outcome is not RunOutcome.FAILED, report
    assert {"1", "3"} <= ids
    assert ids == {"1", "2", "3"} or [e.record_id for e in report.record_errors] in (["2"], [None])


def test_a_jsonl_record_without_the_id_key_is_reported_as_missing(
    client: Any, tmp_path: Path
) -> None:
    path = _jsonl(tmp_path, '{"key": "2", "title": "two"}')
    name, report, ids = _sync(client, path)
    error = _one_error(report, name, None, "id")
    assert "missing" in error.message and "empty" not in error.message
    assert ids == {"1", "3"}


def test_a_nul_id_is_unknown_to_a_postgres_store_and_errors_carry_no_parameters(
    postgres_url: str,
) -> None:
    store = StateStore(postgres_url)
    try:
        assert store.lookup("s", ["a\x00b", "c"]) == {}
        with pytest.raises(Exception) as caught:
            store.record("s", "private-\x00-value")
        assert "private" not in str(caught.value) and "parameters:" not in str(caught.value)
    finally:
        store.close()
