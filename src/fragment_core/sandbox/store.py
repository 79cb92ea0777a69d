"""SQLite storage of the sandbox's tasks (a file in WAL mode, or in memory).

Each task is one row: its read-model JSON as text, plus the columns lists sort and
filter on. Lists page by keyset on ``(created_at, uid)`` or ``(updated_at, uid)``.
"""

from __future__ import annotations

import base64
import binascii
import json
import re
import sqlite3
import threading
import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from fragment_core.task import SOURCE_FIELD

OrderBy = Literal["created_at", "updated_at"]

_SCHEMA = """
CREATE TABLE IF NOT EXISTS tasks (
    uid TEXT PRIMARY KEY,
    status TEXT NOT NULL,
    archived INTEGER NOT NULL,
    created_at TEXT NOT NULL,
    updated_at TEXT NOT NULL,
    body TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
"""

#: Columns the operator page filters, searches and sorts on (copies of the body's values),
#: and who closed a DONE task: ``api`` (a client of the API: the sync) or ``operator``.
_PAGE_COLUMNS = {
    "source": "json_extract(body, '$.fields.sync_source')",
    "external_id": "json_extract(body, '$.fields.external_id')",
    "title": "json_extract(body, '$.fields.title')",
    "due_at": "json_extract(body, '$.due_at')",
    "closed_by": "CASE WHEN status = 'DONE' THEN 'api' END",
}

#: Only the list endpoint's orders are indexed. Every index slows each write, the hot path of
#: the sync, its tests and bench/sync.py (three more for the operator page halved the batch
#: rate); the page sorts at query time instead (bench/operator_page.py: about 0.1 s a page
#: at 50,000 tasks). Databases made with those indexes lose them.
_INDEXES = """
CREATE INDEX IF NOT EXISTS tasks_created ON tasks (created_at, uid);
CREATE INDEX IF NOT EXISTS tasks_updated ON tasks (updated_at, uid);
DROP INDEX IF EXISTS tasks_due;
DROP INDEX IF EXISTS tasks_status_due;
DROP INDEX IF EXISTS tasks_source_due;
"""

_UPSERT = """
INSERT INTO tasks (uid, status, archived, created_at, updated_at, body,
                   source, external_id, title, due_at, closed_by)
VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
ON CONFLICT (uid) DO UPDATE SET
    status = excluded.status, archived = excluded.archived,
    updated_at = excluded.updated_at, body = excluded.body,
    source = excluded.source, external_id = excluded.external_id,
    title = excluded.title, due_at = excluded.due_at,
    closed_by = CASE
        WHEN excluded.status != 'DONE' THEN NULL
        WHEN tasks.status = 'DONE' THEN tasks.closed_by
        ELSE excluded.closed_by
    END
"""

#: Who closed a task, as the store records it.
ClosedBy = Literal["api", "operator"]


#: Custom-field keys a list filter may name (``fields.<key>=<value>``).
FIELD_KEY = re.compile(r"^[A-Za-z0-9_\-]{1,100}$")


class CursorError(ValueError):
    """A ``cursor`` that this sandbox did not hand out."""


def encode_cursor(order_by: OrderBy, stamp: str, uid: str) -> str:
    """The opaque cursor after the row ``(stamp, uid)``."""
    raw = json.dumps([order_by, stamp, uid], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str, order_by: OrderBy) -> tuple[str, str]:
    """``(stamp, uid)`` of a cursor made by :func:`encode_cursor` for ``order_by``."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        kind, stamp, uid = json.loads(raw)
    except (binascii.Error, ValueError, TypeError, UnicodeDecodeError) as exc:
        raise CursorError("not a cursor returned by this API") from exc
    if kind != order_by or not isinstance(stamp, str) or not isinstance(uid, str):
        raise CursorError(f"cursor was made for order_by={kind!r}, not {order_by!r}")
    return stamp, uid


@dataclass
class TaskFilter:
    """Filters of ``GET /tasks``; empty means everything."""

    statuses: Sequence[str] = ()
    updated_after: str | None = None
    archived: bool | None = None
    fields: dict[str, str] = field(default_factory=dict)

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = []
        params: list[Any] = []
        if self.statuses:
            clauses.append(f"status IN ({','.join('?' * len(self.statuses))})")
            params.extend(self.statuses)
        if self.updated_after is not None:
            clauses.append("updated_at > ?")
            params.append(self.updated_after)
        if self.archived is not None:
            clauses.append("archived = ?")
            params.append(int(self.archived))
        for key, value in self.fields.items():
            path = f'$.fields."{key}"'
            clauses.append(
                "(CASE json_type(body, ?) WHEN 'true' THEN 'true' WHEN 'false' THEN 'false'"
                " ELSE CAST(json_extract(body, ?) AS TEXT) END) = ?"
            )
            params.extend([path, path, value])
        return (" AND ".join(clauses) or "1=1"), params


class TaskStore:
    """Tasks in SQLite; safe to share between threads (one connection, one lock)."""

    def __init__(self, db: str = ":memory:") -> None:
        self._lock = threading.Lock()
        self._conn = sqlite3.connect(db, check_same_thread=False, isolation_level=None)
        if db != ":memory:":
            self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(_SCHEMA)
        self._add_page_columns()
        self._conn.executescript(_INDEXES)
        self._conn.execute(
            "INSERT OR IGNORE INTO meta (key, value) VALUES ('account_uid', ?)",
            (str(uuid.uuid4()),),
        )
        row = self._conn.execute("SELECT value FROM meta WHERE key = 'account_uid'").fetchone()
        self.account_uid = uuid.UUID(row[0])
        """The account this sandbox's ``GET /accounts/me`` names: made with its database
        (a sandbox in memory is a new account each start, as a new Tasks API would be)."""

    def _add_page_columns(self) -> None:
        """Add (and fill) the operator page's columns to a database made before them."""
        have = {row[1] for row in self._conn.execute("PRAGMA table_info(tasks)")}
        for name, value in _PAGE_COLUMNS.items():
            if name not in have:
                self._conn.execute(f"ALTER TABLE tasks ADD COLUMN {name} TEXT")
                self._conn.execute(f"UPDATE tasks SET {name} = {value}")

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def get(self, uid: str) -> dict[str, Any] | None:
        with self._lock:
            row = self._conn.execute("SELECT body FROM tasks WHERE uid = ?", (uid,)).fetchone()
        return None if row is None else json.loads(row[0])

    def get_many(self, uids: Iterable[str]) -> dict[str, dict[str, Any]]:
        wanted = list(dict.fromkeys(uids))
        found: dict[str, dict[str, Any]] = {}
        with self._lock:
            for start in range(0, len(wanted), 500):
                chunk = wanted[start : start + 500]
                marks = ",".join("?" * len(chunk))
                for uid, body in self._conn.execute(
                    f"SELECT uid, body FROM tasks WHERE uid IN ({marks})", chunk
                ):
                    found[uid] = json.loads(body)
        return found

    def save_many(self, tasks: Sequence[dict[str, Any]], *, closed_by: ClosedBy = "api") -> None:
        """Insert or replace ``tasks`` in one transaction.

        ``closed_by`` is who writes them: a task that becomes DONE records it (the
        operator page shows a task the sync closed apart from one an operator completed).
        """
        rows = [
            (
                task["uid"],
                task["status"],
                int(task["archived"]),
                task["created_at"],
                task["updated_at"],
                json.dumps(task, separators=(",", ":")),
                _text(task["fields"].get(SOURCE_FIELD)),
                _text(task["fields"].get("external_id")),
                _text(task["fields"].get("title")),
                task.get("due_at"),
                closed_by if task["status"] == "DONE" else None,
            )
            for task in tasks
        ]
        if not rows:
            return
        with self._lock:
            self._conn.execute("BEGIN")
            try:
                self._conn.executemany(_UPSERT, rows)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")

    def delete(self, uid: str) -> bool:
        with self._lock:
            return self._conn.execute("DELETE FROM tasks WHERE uid = ?", (uid,)).rowcount > 0

    def count(self, task_filter: TaskFilter | None = None) -> int:
        where, params = (task_filter or TaskFilter()).where()
        with self._lock:
            row = self._conn.execute(f"SELECT count(*) FROM tasks WHERE {where}", params).fetchone()
        return int(row[0])

    def page(
        self,
        task_filter: TaskFilter,
        *,
        order_by: OrderBy = "created_at",
        after: tuple[str, str] | None = None,
        limit: int = 100,
    ) -> tuple[list[str], str | None]:
        """Up to ``limit`` task JSON texts after the keyset ``after``, and the next cursor."""
        where, params = task_filter.where()
        if after is not None:
            where += f" AND ({order_by}, uid) > (?, ?)"
            params.extend(after)
        sql = (
            f"SELECT {order_by}, uid, body FROM tasks WHERE {where}"
            f" ORDER BY {order_by}, uid LIMIT ?"
        )
        with self._lock:
            rows = self._conn.execute(sql, [*params, limit + 1]).fetchall()
        more = len(rows) > limit
        rows = rows[:limit]
        cursor = encode_cursor(order_by, rows[-1][0], rows[-1][1]) if more else None
        return [row[2] for row in rows], cursor

    def closed_by(self, uid: str) -> ClosedBy | None:
        """Who closed the task ``uid`` (None unless it is DONE)."""
        with self._lock:
            row = self._conn.execute("SELECT closed_by FROM tasks WHERE uid = ?", (uid,)).fetchone()
        return None if row is None else row[0]

    def operator_page(
        self, view: OperatorQuery, *, offset: int, limit: int
    ) -> tuple[list[tuple[dict[str, Any], ClosedBy | None]], int]:
        """One page of unarchived tasks matching ``view``, earliest due first, each with
        who closed it; and how many match in all."""
        where, params = view.where()
        with self._lock:
            total = self._conn.execute(
                f"SELECT count(*) FROM tasks WHERE {where}", params
            ).fetchone()[0]
            rows = self._conn.execute(
                f"SELECT body, closed_by FROM tasks WHERE {where}"
                " ORDER BY due_at, uid LIMIT ? OFFSET ?",
                [*params, limit, offset],
            ).fetchall()
        return [(json.loads(body), closed_by) for body, closed_by in rows], int(total)

    def status_counts(self, source: str | None = None) -> dict[str, int]:
        """Unarchived tasks per status (of ``source`` when given)."""
        sql = "SELECT status, count(*) FROM tasks WHERE archived = 0"
        params: list[Any] = []
        if source:
            sql += " AND source = ?"
            params.append(source)
        with self._lock:
            rows = self._conn.execute(sql + " GROUP BY status", params).fetchall()
        return {status: int(count) for status, count in rows}

    def sources(self) -> list[str]:
        """The sources (``fields.sync_source``) of the unarchived tasks."""
        with self._lock:
            rows = self._conn.execute(
                "SELECT DISTINCT source FROM tasks WHERE archived = 0 AND source IS NOT NULL"
                " ORDER BY source"
            ).fetchall()
        return [row[0] for row in rows]


@dataclass(frozen=True)
class OperatorQuery:
    """The operator page's filters: statuses, one source, a search text."""

    statuses: tuple[str, ...] = ()
    source: str | None = None
    search: str = ""

    def where(self) -> tuple[str, list[Any]]:
        clauses: list[str] = ["archived = 0"]
        params: list[Any] = []
        if self.statuses:
            clauses.append(f"status IN ({','.join('?' * len(self.statuses))})")
            params.extend(self.statuses)
        if self.source:
            clauses.append("source = ?")
            params.append(self.source)
        text = self.search.strip()
        if text:
            pattern = "%" + re.sub(r"([\\%_])", r"\\\1", text) + "%"
            clauses.append(
                "(title LIKE ? ESCAPE '\\' OR external_id LIKE ? ESCAPE '\\' OR uid = ?)"
            )
            params.extend([pattern, pattern, text.lower()])
        return " AND ".join(clauses), params


def _text(value: Any) -> str | None:
    return None if value is None else str(value)
