"""State faults: the state database deleted, or left by an older fragment-core.

A deleted database is rebuilt from the Tasks API (the source's tasks, by
``fields.sync_source``): no task is duplicated, no write-back repeated, no task the sync
closed is echoed back as an operator completion. A database of an older schema version
is migrated in place and the sync goes on from where it was.
"""

from __future__ import annotations

import sqlite3
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from fragment_core.config import SourceSettings
from fragment_core.connector import Completion, Connector, ConnectorConfig, Record
from fragment_core.errors import ConfigurationError
from fragment_core.reports import RunOutcome, SyncReport
from fragment_core.sandbox.runner import run_sandbox
from fragment_core.state import SCHEMA_VERSION, RecordStatus, StateStore
from fragment_core.sync.engine import sync_source
from fragment_core.task import SOURCE_FIELD, RemoteTask, Task, TaskStatus, task_uid
from fragment_core.tasks_api import TasksClient


class ListConfig(ConnectorConfig):
    pass


class ListConnector(Connector[ListConfig]):
    """Records from a dict; write-backs counted per record (the vendor's effects)."""

    name = "list"

    def __init__(self, source: str, n: int) -> None:
        super().__init__(ListConfig(), source=source)
        self.records = {str(i): f"Record {i}" for i in range(n)}
        self.effects: Counter[str] = Counter()

    def fetch_backlog(self) -> Iterator[Record]:
        for eid, title in list(self.records.items()):
            yield {"id": eid, "title": title}

    def to_task(self, record: Record) -> Task:
        return Task.new(external_id=record["id"], title=record["title"])

    def on_complete(self, task: RemoteTask, completion: Completion) -> str | None:
        self.effects[completion.external_id] += 1
        return "done"


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Any]:
    with run_sandbox() as handle:
        yield handle


class World:
    def __init__(self, sandbox: Any, tmp_path: Path, name: str, n: int = 20) -> None:
        self.name = name
        self.path = tmp_path / "state.db"
        self.client = sandbox.client()
        self.connector = ListConnector(name, n)
        self.source = SourceSettings(name=name, connector="list")
        self.store = StateStore(f"sqlite:///{self.path}")

    def sync(self) -> SyncReport:
        return sync_source(self.source, self.connector, self.client, self.store)

    def tasks(self) -> dict[str, RemoteTask]:
        listed = list(self.client.list_tasks(fields={SOURCE_FIELD: self.name}))
        assert len(listed) == len({t.external_id for t in listed}), "duplicate task"
        return {str(t.external_id): t for t in listed}

    def complete(self, eid: str) -> None:
        self.client.patch_task(task_uid(self.name, eid), {"status": "DONE"})

    def reopen_store(self) -> None:
        self.store = StateStore(f"sqlite:///{self.path}")

    def close(self) -> None:
        self.store.close()
        self.client.close()


def _delete_database(path: Path) -> None:
    for suffix in ("", "-wal", "-shm"):
        Path(f"{path}{suffix}").unlink(missing_ok=True)


def test_deleted_state_is_rebuilt_from_the_tasks_api(sandbox: Any, tmp_path: Path) -> None:
    w = World(sandbox, tmp_path, "rebuilt")
    assert w.sync().created == 20
    for eid in ("1", "2", "3"):
        w.complete(eid)  # operators complete 3 tasks: written back once each
    for eid in ("10", "11", "12", "13"):
        del w.connector.records[eid]  # resolved in the source: the sync closes 4
    second = w.sync()
    assert (second.written_back, second.closed) == (3, 4)
    before = {eid: t.status for eid, t in w.tasks().items()}

    w.store.close()
    _delete_database(w.path)  # the state is lost
    w.reopen_store()
    rebuilt = w.sync()
    assert rebuilt.outcome == RunOutcome.OK, rebuilt.messages
    assert any("state rebuilt from the Tasks API" in m for m in rebuilt.messages)
    assert "adopted 20 tasks" in " ".join(rebuilt.messages)
    assert rebuilt.created == 0 and rebuilt.closed == 0 and rebuilt.reopened == 0
    assert rebuilt.updated == 13  # open tasks re-sent once (idempotent PUT), unchanged
    assert rebuilt.written_back == 0  # nothing written back again, nothing echoed
    assert w.connector.effects == Counter({"1": 1, "2": 1, "3": 1})
    assert {eid: t.status for eid, t in w.tasks().items()} == before
    assert w.store.record(w.name, "12").status == RecordStatus.DONE
    assert w.store.record(w.name, "0").status == RecordStatus.OPEN

    # the rebuilt state works like the lost one: closes, completions, quiet re-runs
    del w.connector.records["5"]
    w.complete("6")
    w.connector.records["100"] = "New"
    after = w.sync()
    assert (after.closed, after.written_back, after.created) == (1, 1, 1), after.messages
    assert w.connector.effects == Counter({"1": 1, "2": 1, "3": 1, "6": 1})
    quiet = w.sync()
    assert (quiet.created, quiet.updated, quiet.closed, quiet.written_back) == (0, 0, 0, 0)
    tasks = w.tasks()
    assert len(tasks) == 21
    done = {eid for eid, t in tasks.items() if t.status == TaskStatus.DONE}
    assert done == {"1", "2", "3", "10", "11", "12", "13", "5", "6"}
    assert w.store.record(w.name, "6").status == RecordStatus.DONE
    w.close()


def test_a_rebuild_that_cannot_list_writes_nothing(sandbox: Any, tmp_path: Path) -> None:
    w = World(sandbox, tmp_path, "rebuild-refused", n=5)
    w.sync()
    w.complete("1")
    assert w.sync().written_back == 1
    w.store.close()
    _delete_database(w.path)
    w.reopen_store()
    good = w.client
    w.client = TasksClient(sandbox.url, "not-the-token", rate_limit=None)
    refused = w.sync()
    assert refused.outcome == RunOutcome.FAILED and refused.requests == 1
    assert "could not be rebuilt from the Tasks API" in " ".join(refused.messages)
    assert w.store.record_map(w.name) == {}  # nothing adopted half-way, nothing written
    w.client.close()
    w.client = good
    rebuilt = w.sync()
    assert rebuilt.outcome == RunOutcome.OK and "adopted 5 tasks" in " ".join(rebuilt.messages)
    assert w.connector.effects == Counter({"1": 1})
    w.close()


def test_rebuild_of_a_source_that_never_ran_is_a_no_op(sandbox: Any, tmp_path: Path) -> None:
    w = World(sandbox, tmp_path, "brand-new", n=3)
    first = w.sync()
    assert first.created == 3 and not any("rebuilt" in m for m in first.messages)
    assert w.sync().requests == 1  # later runs do not list the source's tasks again
    w.close()


#: The schema as fragment-core wrote it at state schema version 1, frozen. A database
#: in this shape must open in every later version (migrated) with nothing lost.
V1_SCHEMA = """
CREATE TABLE fragment_schema_version (id INTEGER NOT NULL, version INTEGER NOT NULL,
    PRIMARY KEY (id));
CREATE TABLE fragment_sources (name VARCHAR(200) NOT NULL, cursor TEXT,
    last_complete_fetch DATETIME, completions_seen_until DATETIME,
    complete_runs INTEGER NOT NULL, PRIMARY KEY (name));
CREATE TABLE fragment_records (source VARCHAR(200) NOT NULL,
    external_id VARCHAR(500) NOT NULL, uid VARCHAR(36) NOT NULL,
    content_hash VARCHAR(64) NOT NULL, status VARCHAR(16) NOT NULL, closed_by VARCHAR(16),
    done_at DATETIME, times_missing INTEGER NOT NULL, PRIMARY KEY (source, external_id));
CREATE INDEX ix_fragment_records_uid ON fragment_records (uid);
CREATE TABLE fragment_outbox (id INTEGER NOT NULL, source VARCHAR(200) NOT NULL,
    uid VARCHAR(36) NOT NULL, external_id VARCHAR(500) NOT NULL,
    idempotency_key VARCHAR(100) NOT NULL, done_at DATETIME, task_json TEXT NOT NULL,
    state VARCHAR(16) NOT NULL, attempts INTEGER NOT NULL, last_error TEXT, message TEXT,
    next_attempt_at DATETIME, created_at DATETIME NOT NULL, updated_at DATETIME NOT NULL,
    PRIMARY KEY (id), UNIQUE (idempotency_key));
CREATE INDEX ix_fragment_outbox_source_state ON fragment_outbox (source, state);
CREATE TABLE fragment_runs (id INTEGER NOT NULL, source VARCHAR(200) NOT NULL,
    started_at DATETIME NOT NULL, finished_at DATETIME, mode VARCHAR(16) NOT NULL,
    outcome VARCHAR(16) NOT NULL, report_json TEXT NOT NULL, PRIMARY KEY (id));
CREATE INDEX ix_fragment_runs_source ON fragment_runs (source, id);
INSERT INTO fragment_schema_version (id, version) VALUES (1, 1);
"""
V1_TABLES = ["fragment_sources", "fragment_records", "fragment_outbox", "fragment_runs"]
V1_COLUMNS = {
    "fragment_sources": "name, cursor, last_complete_fetch, completions_seen_until, complete_runs",
    "fragment_records": "source, external_id, uid, content_hash, status, closed_by, done_at, "
    "times_missing",
    "fragment_outbox": "id, source, uid, external_id, idempotency_key, done_at, task_json, "
    "state, attempts, last_error, message, next_attempt_at, created_at, updated_at",
    "fragment_runs": "id, source, started_at, finished_at, mode, outcome, report_json",
}


def test_state_left_by_schema_v1_is_migrated_and_nothing_is_lost(
    sandbox: Any, tmp_path: Path
) -> None:
    w = World(sandbox, tmp_path, "from-v1")
    w.sync()
    w.complete("4")
    del w.connector.records["7"]
    assert w.sync().written_back == 1
    w.store.close()
    # the same state, as a version-1 fragment-core would have left it
    old = tmp_path / "v1.db"
    with sqlite3.connect(old) as conn:
        conn.executescript(V1_SCHEMA)
        conn.execute("ATTACH DATABASE ? AS current", (str(w.path),))
        for table in V1_TABLES:
            columns = V1_COLUMNS[table]
            conn.execute(f"INSERT INTO {table} ({columns}) SELECT {columns} FROM current.{table}")
    conn.close()

    w.path = old
    w.reopen_store()
    assert w.store.schema_version == SCHEMA_VERSION
    with w.store.engine.connect() as conn:
        version = conn.execute(sa.text("SELECT version FROM fragment_schema_version")).scalar()
    assert version == SCHEMA_VERSION
    assert len(w.store.last_runs(w.name, limit=10)) == 2  # the run history is kept
    again = w.sync()
    assert (again.created, again.updated, again.closed, again.written_back) == (0, 0, 0, 0)
    assert not any("rebuilt" in m for m in again.messages)  # the state was not lost
    assert w.connector.effects == Counter({"4": 1})
    assert len(w.tasks()) == 20
    w.close()


def test_state_of_an_unknown_older_version_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "ancient.db"
    with sqlite3.connect(path) as conn:
        conn.executescript(V1_SCHEMA.replace("VALUES (1, 1)", "VALUES (1, 0)"))
    conn.close()
    with pytest.raises(ConfigurationError) as caught:
        StateStore(f"sqlite:///{path}")
    assert caught.value.where == "[state] url"
    assert "version 0" in str(caught.value)
