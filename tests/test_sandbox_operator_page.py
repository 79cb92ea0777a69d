"""The sandbox's operator page: counts per status, filters by source and status, search,
server-side paging through 50,000 tasks, external id and due date, and a task the sync
closed shown apart from one an operator completed. (Its guards: test_sandbox_operator.)"""

from __future__ import annotations

import json
import re
import sqlite3
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from click.testing import CliRunner

from fragment_core.cli import cli
from fragment_core.connectors.file import SAMPLE_COLUMNS, sample_rows, write_rows
from fragment_core.sandbox import tasks
from fragment_core.sandbox.schemas import TaskWrite
from fragment_core.sandbox.store import TaskStore
from fragment_core.task import SOURCE_FIELD

DUE = datetime(2026, 1, 1, tzinfo=UTC)


def _rows(page: str) -> list[str]:
    return re.findall(r"<tr class=\"[^\"]*\">.*?</tr>", page, flags=re.S)


def _seed(store: TaskStore, count: int, *, source: str, start: int = 0) -> None:
    now = tasks.now_text()
    batch = []
    for n in range(start, start + count):
        body = TaskWrite(
            fields={"title": f"Review {n:05d}", "external_id": f"R-{n:05d}", SOURCE_FIELD: source},
            due_at=DUE + timedelta(minutes=n),
        )
        batch.append(tasks.create(body, uuid.uuid4(), now))
        if len(batch) == 5000:
            store.save_many(batch)
            batch = []
    store.save_many(batch)


@pytest.fixture
def page(sandbox):
    client = httpx.Client(
        base_url=sandbox.base_url, headers={"Authorization": f"Bearer {sandbox.token}"}
    )
    with client:
        yield lambda query="": client.get("/" + query)


def test_counts_filters_search_external_id_and_due_date(sandbox, api, page) -> None:
    store = sandbox.app.state.store
    _seed(store, 30, source="kyc")
    _seed(store, 5, source="support", start=100)
    api.put(
        f"/tasks/{uuid.uuid4()}",
        json={
            "fields": {"title": "Call Ada", "external_id": "C-77", SOURCE_FIELD: "support"},
            "due_at": "2026-03-04T05:06:07Z",
        },
    ).raise_for_status()
    first = page().text
    assert "open: 36" in first and "TODO: 36" in first and "DONE: 0" in first
    assert '<option value="kyc">' in first and '<option value="support">' in first
    only = page("?source=support").text
    assert "open: 6" in only and len(_rows(only)) == 6
    assert all("support" in row for row in _rows(only))
    found = page("?q=C-77").text  # by external id
    (row,) = _rows(found)
    assert "Call Ada" in row and "<td>C-77</td>" in row and "2026-03-04T05:06:07" in row
    assert len(_rows(page("?q=review+0001").text)) == 10  # title, case-insensitive
    assert _rows(page("?q=100%25").text) == []  # % is a character, not a wildcard
    assert len(_rows(page("?status=DONE").text)) == 0


@pytest.mark.slow
def test_pages_through_50000_tasks_server_side(sandbox, page) -> None:
    _seed(sandbox.app.state.store, 50_000, source="bulk")
    first = page().text
    last = page("?page=1000").text
    beyond = page("?page=1001&q=review&source=bulk").text
    assert "open: 50,000" in first and "page 1 of 1,000" in first
    assert len(_rows(first)) == 50 and "R-00000" in first
    assert "49,951-50,000 of 50,000" in last and len(_rows(last)) == 50
    assert 'rel="next"' not in last and 'rel="first"' in last
    assert _rows(beyond) == []


def _config(folder: Path, sandbox, backlog: Path) -> Path:
    (folder / "token").write_text(sandbox.token)
    config = folder / "fragment.toml"
    config.write_text(
        f'[tasks_api]\nurl = "{sandbox.url}"\ntoken_file = "token"\nrate_limit = 0\n'
        f'[state]\nurl = "sqlite:///{(folder / "state.db").as_posix()}"\n'
        '[[sources]]\nname = "kyc"\nconnector = "file"\n'
        f'[sources.options]\npath = "{backlog.as_posix()}"\n'
    )
    return config


def test_a_task_the_sync_closed_looks_unlike_one_an_operator_completed(
    sandbox, tmp_path, page
) -> None:
    backlog = tmp_path / "backlog.csv"
    write_rows(backlog, SAMPLE_COLUMNS, sample_rows(3))
    config = _config(tmp_path, sandbox, backlog)
    assert CliRunner().invoke(cli, ["--config", str(config), "sync", "kyc"]).exit_code == 0
    with sandbox.operator_client() as operator:
        listing = operator.get("/").text
        uid, csrf = re.findall(r'/operator/tasks/([0-9a-f-]+)/complete">'
                               r'<input type="hidden" name="csrf" value="([^"]+)"', listing)[0]
        done = operator.post(
            f"/operator/tasks/{uid}/complete",
            data={"csrf": csrf, "outcome": "verified", "next": "/?source=kyc"},
        )
        assert done.headers["location"] == "/?source=kyc"  # back to the filtered page
    rows = sample_rows(3)
    write_rows(backlog, SAMPLE_COLUMNS, [r for r in rows if r["id"] != rows[2]["id"]])
    assert CliRunner().invoke(cli, ["--config", str(config), "sync", "kyc"]).exit_code == 0
    closed = _rows(page("?status=DONE").text)
    assert len(closed) == 2
    by_operator = [r for r in closed if 'class="by-operator"' in r]
    by_sync = [r for r in closed if 'class="by-sync"' in r]
    assert len(by_operator) == len(by_sync) == 1
    assert uid in by_operator[0] and "completed by an operator" in by_operator[0]
    assert "verified" in by_operator[0]
    assert rows[2]["id"] in by_sync[0] and "closed by the sync (API)" in by_sync[0]
    assert sandbox.app.state.store.closed_by(uid) == "operator"


def test_reopening_forgets_who_closed_and_a_later_close_by_the_api_keeps_the_first(
    sandbox, api
) -> None:
    store = sandbox.app.state.store
    uid = str(uuid.uuid4())
    api.put(f"/tasks/{uid}", json={"fields": {"title": "t"}}).raise_for_status()
    api.patch(f"/tasks/{uid}", json={"status": "DONE"}).raise_for_status()
    assert store.closed_by(uid) == "api"
    api.patch(f"/tasks/{uid}", json={"status": "TODO"}).raise_for_status()
    assert store.closed_by(uid) is None
    with sandbox.operator_client() as operator:
        csrf = re.search(r'name="csrf" value="([^"]+)"', operator.get("/").text).group(1)
        operator.post(f"/operator/tasks/{uid}/complete", data={"csrf": csrf})
    api.patch(f"/tasks/{uid}", json={"fields": {"note": "x"}}).raise_for_status()
    assert store.closed_by(uid) == "operator"


def test_a_database_made_before_the_page_columns_is_upgraded(tmp_path) -> None:
    db = tmp_path / "sandbox.db"
    old = sqlite3.connect(db)
    old.executescript(
        "CREATE TABLE tasks (uid TEXT PRIMARY KEY, status TEXT NOT NULL, archived INTEGER"
        " NOT NULL, created_at TEXT NOT NULL, updated_at TEXT NOT NULL, body TEXT NOT NULL);"
    )
    task = tasks.create(
        TaskWrite(fields={"title": "Old", "external_id": "O-1", SOURCE_FIELD: "legacy"}),
        uuid.uuid4(), tasks.now_text(),
    )  # fmt: skip
    task["status"] = "DONE"
    old.execute(
        "INSERT INTO tasks VALUES (?, ?, 0, ?, ?, ?)",
        (task["uid"], "DONE", task["created_at"], task["updated_at"], json.dumps(task)),
    )
    old.commit()
    old.close()
    store = TaskStore(str(db))
    assert store.sources() == ["legacy"] and store.status_counts() == {"DONE": 1}
    assert store.closed_by(task["uid"]) == "api"
    store.close()
