"""State faults: a full disk mid-sync, a read-only or damaged SQLite file, a PostgreSQL
server that is down or lacks the database, a state file deleted under ``fragment run``.
Each is one ``error:`` line naming ``[state] url`` (password hidden) and what to do, or a
failed run whose counts say what really reached the Tasks API."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa
from click.testing import CliRunner

from fragment_core.cli import cli
from fragment_core.config import SourceSettings
from fragment_core.connector import Connector, ConnectorConfig, Record
from fragment_core.reports import RunOutcome
from fragment_core.sandbox.runner import run_sandbox
from fragment_core.state import StateStore
from fragment_core.sync.engine import sync_source
from fragment_core.task import SOURCE_FIELD, Task

ROWS = 2000


class ListConfig(ConnectorConfig):
    pass


class ListConnector(Connector[ListConfig]):
    """``ROWS`` records with long titles (so the state grows quickly)."""

    name = "list"

    def __init__(self, source: str, rows: int = ROWS) -> None:
        super().__init__(ListConfig(), source=source)
        self.rows = rows

    def fetch_backlog(self) -> Iterator[Record]:
        for i in range(self.rows):
            yield {"id": f"record-{i:05d}-" + "x" * 60, "title": f"task {i}"}

    def to_task(self, record: Record) -> Task:
        return Task.new(external_id=record["id"], title=record["title"])


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Any]:
    with run_sandbox() as handle:
        yield handle


def _tasks(sandbox: Any, source: str) -> int:
    with sandbox.client() as client:
        listed = list(client.list_tasks(fields={SOURCE_FIELD: source}))
    assert len({t.uid for t in listed}) == len(listed)  # never a duplicate
    return len(listed)


def _full_disk(store: StateStore, spare_pages: int) -> None:
    """SQLite's own limit on the file's size: past it every write fails with
    SQLITE_FULL ("database or disk is full"), as on a full disk."""
    with store.engine.connect() as conn:
        pages = conn.exec_driver_sql("PRAGMA page_count").scalar()
    limit = int(pages) + spare_pages
    sa.event.listen(
        store.engine,
        "connect",
        lambda dbapi, _rec: dbapi.execute(f"PRAGMA max_page_count = {limit}"),
    )
    store.engine.dispose()  # every connection from now on has the limit


def test_a_full_disk_mid_sync_is_a_state_failure_with_true_counts(
    sandbox: Any, tmp_path: Path
) -> None:
    url = f"sqlite:///{(tmp_path / 'state.db').as_posix()}"
    source = SourceSettings(name="disk-full", connector="list")
    connector = ListConnector(source.name)
    store = StateStore(url)
    _full_disk(store, spare_pages=40)
    with sandbox.client() as client:
        report = sync_source(source, connector, client, store, batch_size=100)
    store.close()
    created = _tasks(sandbox, source.name)
    assert 0 < created < ROWS  # the disk filled up half-way
    assert report.outcome is RunOutcome.FAILED
    assert report.created == created  # the report says what reached the Tasks API
    text = "\n".join(report.messages)
    assert "the state store failed" in text and "disk of the state database is full" in text
    assert f"[state] url {url}" in text and "free some space" in text
    assert "INSERT" not in text and "[parameters" not in text  # never the SQL
    assert "writing to the Tasks API failed" not in text

    # space freed: the next run converges, nothing created twice
    store = StateStore(url)
    with sandbox.client() as client:
        again = sync_source(source, connector, client, store, batch_size=100)
    store.close()
    assert again.outcome is RunOutcome.OK, again.messages
    assert _tasks(sandbox, source.name) == ROWS


def test_a_401_mid_run_reports_what_was_created() -> None:
    """The sandbox revokes its token after six writes: a real HTTP 401 in the middle of
    the run fails it, and the report counts exactly what reached the Tasks API."""
    source = SourceSettings(name="revoked", connector="list")
    store = StateStore("sqlite://")
    with run_sandbox() as sandbox:
        sandbox.revoke_token(after_writes=6)
        with sandbox.client() as client:
            report = sync_source(
                source, ListConnector(source.name, 1000), client, store, batch_size=100
            )
        store.close()
        refused = sandbox.stats()["statuses"].get("401", 0)
        sandbox.revoke_token(after_writes=10**6)  # lifted again: count the tasks
        created = _tasks(sandbox, source.name)
    assert report.outcome is RunOutcome.FAILED
    assert created == 600 and report.created == 600, report.messages
    assert refused >= 1 and sandbox.token not in " ".join(report.messages)
    assert any("401" in m for m in report.messages), report.messages


def _config(tmp_path: Path, state_url: str, tasks_url: str = "http://127.0.0.1:9") -> Path:
    (tmp_path / "backlog.csv").write_text("id,title\n1,first\n")
    (tmp_path / "token").write_text("tasks-token")
    config = tmp_path / "fragment.toml"
    config.write_text(
        f'[tasks_api]\nurl = "{tasks_url}"\ntoken_file = "token"\nrate_limit = 0\n'
        f"[state]\nurl = '{state_url}'\n"
        '[[sources]]\nname = "sheet"\nconnector = "file"\nevery = "1s"\n'
        '[sources.options]\npath = "backlog.csv"\n'
    )
    return config


def _cli_error(tmp_path: Path, state_url: str, *args: str) -> str:
    config = _config(tmp_path, state_url)
    result = CliRunner().invoke(cli, ["--config", str(config), *args])
    assert result.exit_code == 1, result.output
    assert result.exception is None or isinstance(result.exception, SystemExit)
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: [state] url "), result.output
    assert "Traceback" not in result.output
    return lines[0]


def test_a_read_only_state_database_is_one_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    StateStore(f"sqlite:///{db.as_posix()}").close()
    before = db.read_bytes()
    line = _cli_error(tmp_path, f"sqlite:///file:{db.as_posix()}?mode=ro&uri=true", "status")
    assert "read-only" in line and "writable" in line
    assert db.read_bytes() == before


def test_a_damaged_state_file_is_one_clear_error(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    db.write_bytes(b"this is not a database\n" * 400)
    line = _cli_error(tmp_path, f"sqlite:///{db.as_posix()}", "sync", "sheet")
    assert "damaged" in line and "restore it from a backup" in line


def _closed_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_an_unreachable_postgres_is_one_clear_error_without_the_password(tmp_path: Path) -> None:
    url = f"postgresql+psycopg://fragment:pg-secret-9f2@127.0.0.1:{_closed_port()}/fragment"
    line = _cli_error(tmp_path, url, "sync", "sheet")
    assert "pg-secret-9f2" not in line and "fragment:***@" in line
    assert "cannot be reached" in line and "check that it runs" in line


def test_a_missing_postgres_database_is_one_clear_error(tmp_path: Path, postgres_url: str) -> None:
    url = sa.make_url(postgres_url).set(database="no_such_db_here").render_as_string(False)
    line = _cli_error(tmp_path, url, "status")
    assert "does not exist" in line and "createdb" in line


def test_a_wrong_postgres_password_is_one_clear_error_without_it(
    tmp_path: Path, postgres_url: str
) -> None:
    """The test server authenticates TCP clients by password (scram-sha-256), so this is
    the server's real refusal, not a simulated one."""
    right = sa.make_url(postgres_url)
    assert right.password, "the test server must use password authentication"
    url = right.set(password="wrong-pw-71c4").render_as_string(False)
    line = _cli_error(tmp_path, url, "sync", "sheet")
    assert "refused the user or password" in line and "check the user and password" in line
    assert "wrong-pw-71c4" not in line and str(right.password) not in line
    assert f"{right.username}:***@" in line


def test_a_state_file_deleted_under_fragment_run_is_noticed(tmp_path: Path) -> None:
    db = tmp_path / "state.db"
    with run_sandbox() as sandbox:
        config = _config(tmp_path, f"sqlite:///{db.as_posix()}", sandbox.url)
        (tmp_path / "token").write_text(sandbox.token)
        process = subprocess.Popen(
            [sys.executable, "-m", "fragment_core", "--config", str(config), "run"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            cwd=tmp_path,
        )
        try:
            deadline = time.monotonic() + 15
            while _tasks(sandbox, "sheet") < 1:
                assert process.poll() is None, process.communicate()
                if time.monotonic() > deadline:
                    process.kill()
                    raise AssertionError(f"no first run: {process.communicate()}")
                time.sleep(0.1)
            db.unlink()
            out, err = process.communicate(timeout=30)
        finally:
            if process.poll() is None:
                process.kill()
                process.wait()
    text = err.decode()
    assert process.returncode == 1, (out + err).decode()
    assert "error: [state] url" in text and "was deleted while fragment was running" in text
    assert "Traceback" not in text
    assert not db.exists()  # not silently recreated
