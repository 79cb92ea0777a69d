"""The state store on SQLite (default) and PostgreSQL: schema, records, outbox, runs."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest
import sqlalchemy as sa

from fragment_core.errors import ConfigurationError
from fragment_core.reports import RunOutcome, SyncReport
from fragment_core.state import (
    SCHEMA_VERSION,
    OutboxState,
    RecordState,
    RecordStatus,
    StateStore,
    schema,
)


@pytest.fixture(params=["sqlite", "postgres"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[StateStore]:
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'nested' / 'state.db'}"
    else:
        base = request.getfixturevalue("postgres_url")
        name = f"t{uuid.uuid4().hex[:12]}"
        admin = sa.create_engine(base, isolation_level="AUTOCOMMIT")
        with admin.connect() as conn:
            conn.execute(sa.text(f"CREATE DATABASE {name}"))
        admin.dispose()
        url = base.rsplit("/", 1)[0] + "/" + name
    s = StateStore(url)
    yield s
    s.close()


def test_schema_is_created_and_versioned(store: StateStore) -> None:
    assert store.schema_version == SCHEMA_VERSION
    with store.engine.connect() as conn:
        assert conn.execute(sa.select(schema.schema_version.c.version)).scalar() == SCHEMA_VERSION
    again = StateStore(store.engine.url.render_as_string(hide_password=False))
    assert again.schema_version == SCHEMA_VERSION
    again.close()


def test_sqlite_uses_wal_and_creates_the_folder(tmp_path: Path) -> None:
    path = tmp_path / "a" / "b" / "state.db"
    s = StateStore(f"sqlite:///{path}")
    with s.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
    assert path.exists()
    s.close()


def test_newer_schema_is_refused(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    StateStore(url).close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(schema.schema_version.update().values(version=SCHEMA_VERSION + 1))
    engine.dispose()
    with pytest.raises(ConfigurationError, match=r"\[state\] url.*newer"):
        StateStore(url)


def test_upgrade_runs_missing_steps(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    StateStore(url).close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.execute(schema.schema_version.update().values(version=SCHEMA_VERSION - 1))
    engine.dispose()
    ran: list[int] = []
    monkeypatch.setitem(schema.MIGRATIONS, SCHEMA_VERSION - 1, lambda conn: ran.append(1))
    s = StateStore(url)
    assert ran == [1] and s.schema_version == SCHEMA_VERSION
    s.close()


def test_unsupported_url_names_the_key() -> None:
    with pytest.raises(ConfigurationError, match=r"\[state\] url"):
        StateStore("mysql://x/y")


def test_records_round_trip_and_map(store: StateStore) -> None:
    done = datetime(2025, 1, 2, 3, 4, 5, tzinfo=UTC)
    store.save_records(
        "s",
        [
            RecordState("1", "u1", "h1"),
            RecordState("2", "u2", "h2", RecordStatus.DONE, "operator", done, 0),
        ],
    )
    store.save_records("s", [RecordState("1", "u1", "h1b", times_missing=2)])
    store.save_records("other", [RecordState("1", "x", "y")])
    assert store.record_map("s") == {"1": ("h1b", "open", 2), "2": ("h2", "done", 0)}
    assert store.record("s", "2") == RecordState(
        "2", "u2", "h2", RecordStatus.DONE, "operator", done, 0
    )
    assert store.record_by_uid("s", "u1").external_id == "1"
    store.set_status("s", ["1"], RecordStatus.CLOSED, closed_by="sync", done_at=done)
    assert store.record("s", "1").status == RecordStatus.CLOSED
    assert store.record("s", "1").times_missing == 0
    store.set_times_missing("s", {"2": 3})
    assert store.record_map("s")["2"][2] == 3
    assert store.record("s", "nope") is None


def test_source_state(store: StateStore) -> None:
    assert store.source_state("s").cursor is None
    now = datetime.now(UTC)
    store.update_source_state("s", cursor="10", last_complete_fetch=now)
    store.update_source_state("s", complete_runs=4)
    state = store.source_state("s")
    assert (state.cursor, state.complete_runs) == ("10", 4)
    assert abs(state.last_complete_fetch - now) < timedelta(seconds=1)
    assert "s" in store.source_names()
    with pytest.raises(TypeError):
        store.update_source_state("s", bogus=1)


def test_outbox_records_intent_once_and_tracks_attempts(store: StateStore) -> None:
    args = dict(source="s", uid="u", external_id="1", done_at=None, task_json="{}")
    assert store.add_write_back(idempotency_key="k1", **args) is True
    assert store.add_write_back(idempotency_key="k1", **args) is False
    (entry,) = store.due_write_backs("s")
    later = datetime.now(UTC) + timedelta(minutes=5)
    store.finish_write_back(
        entry.id, state=OutboxState.FAILED, attempts=5, error="boom", next_attempt_at=later
    )
    assert store.due_write_backs("s") == []
    (again,) = store.due_write_backs("s", now=later + timedelta(seconds=1))
    assert (again.state, again.attempts, again.last_error) == (OutboxState.FAILED, 5, "boom")
    store.finish_write_back(entry.id, state=OutboxState.DONE, attempts=6, message="ok")
    assert store.due_write_backs("s", now=later + timedelta(days=1)) == []
    assert store.write_back_counts("s") == {"pending": 0, "done": 1, "failed": 0}


def test_run_history(store: StateStore) -> None:
    now = datetime.now(UTC)
    for n in range(3):
        report = SyncReport(source="s", connector="file", started_at=now, finished_at=now)
        report.created = n
        report.outcome = RunOutcome.CAPPED if n == 2 else RunOutcome.OK
        store.save_run(report)
    runs = store.last_runs("s", limit=2)
    assert [r["created"] for r in runs] == [2, 1]
    assert runs[0]["outcome"] == "capped"


def test_chunked_reads_and_one_transaction_for_several_writes(store: StateStore) -> None:
    store.save_records("s", [RecordState(f"r{i:03d}", f"u{i}", f"h{i}") for i in range(1200)])
    with store.transaction() as tx:
        tx.save_open("s", [("r000", "u0", "h0-new", "raw0"), ("new", "un", "", None)])
        tx.set_status("s", ["r001"], RecordStatus.CLOSING, closed_by="sync")
        tx.set_record_hashes("s", {"r002": "raw2"})
        tx.set_times_missing("s", {"r003": 2})
    ids = [f"r{i:03d}" for i in range(0, 1200, 2)] + ["new", "absent"]
    found = store.lookup("s", ids)  # more ids than one query takes
    assert len(found) == 601 and "absent" not in found
    assert found["r000"] == ("h0-new", "open", 0, "raw0")
    assert found["r002"] == ("h2", "open", 0, "raw2") and found["new"] == ("", "open", 0, None)
    assert store.status_counts("s") == {"open": 1200, "closing": 1}
    active = list(store.records_in("s", ["open", "closing"], page=500))
    assert len(active) == 1201 and [a[0] for a in active] == sorted(a[0] for a in active)
    assert ("r001", "closing", 0) in active and ("r003", "open", 2) in active
    assert store.has_records("s") and not store.has_records("other")
    with pytest.raises(RuntimeError), store.transaction() as tx:  # all or nothing
        tx.set_record_hashes("s", {"r004": "lost"})
        raise RuntimeError("crash before the commit")
    assert store.record("s", "r004").record_hash is None
