"""Built-in ``file`` connector: a CSV or JSON Lines file is the backlog.

Each row is a record. Which column holds the external id, the title, the url and the
due date, and which become custom fields, is configurable. A row whose status column
says done is not in the backlog, and a row removed from the file closes its task.
Write-back sets the status column (and the completion time) of the row, atomically:
the new file is written next to the old one and renamed over it. The file is shared
with other programs: every write-back holds an advisory lock (``flock``) on the sidecar
file ``<file>.lock`` and re-reads the file under it, so a program that appends rows
while holding the same lock loses nothing (see ``docs/connectors/file.md``).

Example (the spreadsheet of the integration guide)::

    [[sources]]
    name = "kyc-backlog"
    connector = "file"
    [sources.options]
    path = "backlog.csv"
    url_template = "https://backoffice.example.com/customers/{id}"
"""

from __future__ import annotations

import contextlib
import csv
import glob
import json
import os
import tempfile
import threading
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from pydantic import Field, model_validator

try:
    import fcntl
except ImportError:  # not POSIX (Windows): write-backs of this process still take turns
    fcntl = None  # type: ignore[assignment]

from fragment_core.connector import Completion, Connector, ConnectorConfig, Record
from fragment_core.errors import BadRecordError, ConfigurationError
from fragment_core.hookspecs import hookimpl
from fragment_core.task import RemoteTask, Task, format_datetime

#: The columns of the sample backlog (the integration guide's spreadsheet).
SAMPLE_COLUMNS = ["id", "title", "url", "category", "name", "priority"]
_LINE = "_line"
_locks: dict[str, threading.Lock] = {}
_locks_guard = threading.Lock()


def _lock_for(path: Path) -> threading.Lock:
    key = str(path.resolve())
    with _locks_guard:
        return _locks.setdefault(key, threading.Lock())


def lock_path(path: Path) -> Path:
    """The sidecar lock file of a backlog file: ``<file>.lock`` next to it."""
    return path.with_name(path.name + ".lock")


@contextlib.contextmanager
def locked(path: Path) -> Iterator[None]:
    """Hold the write lock of ``path``: this process's thread lock, then an exclusive
    ``flock`` on ``<file>.lock`` that other programs honour (``flock backlog.csv.lock ...``).

    The lock is on the sidecar, not on the backlog itself, because a write-back replaces
    the backlog (a new inode), which would silently drop a lock held on the old one.
    """
    with _lock_for(path):
        path.parent.mkdir(parents=True, exist_ok=True)
        if fcntl is None:
            yield
            return
        fd = os.open(lock_path(path), os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing the descriptor releases the flock


def _stale_temporaries(path: Path) -> list[Path]:
    return list(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))


def _remove_stale_temporaries(path: Path) -> None:
    """Delete temporary files a killed write-back left (call only under the lock)."""
    for stale in _stale_temporaries(path):
        stale.unlink(missing_ok=True)


class FileConfig(ConnectorConfig):
    """Options of the ``file`` connector."""

    path: Path = Field(description="The CSV (.csv) or JSON Lines (.jsonl) backlog file.")
    format: Literal["csv", "jsonl"] | None = Field(
        default=None, description="File format; default: from the file's suffix."
    )
    id_column: str = Field(default="id", description="Column holding the external id.")
    title_column: str = Field(default="title", description="Column holding the task title.")
    url_column: str | None = Field(default="url", description="Column holding the task url.")
    url_template: str | None = Field(
        default=None,
        description="Build the url from the row, e.g. https://crm.example.com/c/{id} "
        "(used when the url column is empty or absent).",
    )
    due_column: str | None = Field(
        default=None, description="Column holding the due date (ISO 8601 date or time)."
    )
    custom_columns: list[str] | None = Field(
        default=None,
        description="Columns that become custom fields; default: every other column.",
    )
    status_column: str = Field(
        default="status", description="Column the write-back sets; rows marked done are closed."
    )
    done_value: str = Field(default="done", description="Status value of a completed row.")
    completed_at_column: str | None = Field(
        default="completed_at", description="Column the write-back sets to the completion time."
    )
    outcome_column: str | None = Field(
        default=None, description="Column the write-back sets to the operator's outcome (JSON)."
    )
    encoding: str = Field(
        default="utf-8",
        description="Text encoding of the file (utf-8 also reads a file starting with a BOM).",
    )

    @model_validator(mode="after")
    def _known_format(self) -> FileConfig:
        if self.format is None:
            suffix = self.path.suffix.lower()
            if suffix == ".csv":
                self.format = "csv"
            elif suffix in (".jsonl", ".ndjson"):
                self.format = "jsonl"
            else:
                raise ValueError(
                    f"cannot tell the format of {self.path.name!r} from its suffix; "
                    "set format = 'csv' or 'jsonl'"
                )
        return self


class FileConnector(Connector[FileConfig]):
    """A CSV or JSON Lines file as the backlog; write-back sets a status column in the file."""

    name = "file"
    example_options = {"path": "backlog.csv", "url_column": "url", "due_column": "due"}

    def __init__(self, config: FileConfig, *, source: str = "") -> None:
        super().__init__(config, source=source)
        self.id_field = config.id_column  # type: ignore[misc]

    # -- reading ------------------------------------------------------------------------
    @property
    def where(self) -> str:
        """How errors name this source: the source and the file."""
        return f"source {self.source!r}, file {self.config.path.name!r}"

    def read_rows(self) -> tuple[list[str], list[dict[str, Any]]]:
        """Every row of the file (with its line number under ``_line``) and the columns."""
        path = self.config.path
        if not path.exists():
            raise ConfigurationError(
                f"the backlog file {str(path)!r} does not exist", where=self.where
            )
        try:
            with path.open(newline="", encoding=_encoding(self.config.encoding)) as handle:
                if self.config.format == "csv":
                    reader = csv.DictReader(handle, restkey=_EXTRA)
                    columns: list[str] = list(reader.fieldnames or [])
                    if columns and self.config.id_column not in columns:
                        raise ConfigurationError(
                            f"{path.name} has no column {self.config.id_column!r} "
                            f"(options.id_column); its columns: {', '.join(columns) or 'none'}",
                            where=self.where,
                        )
                    rows = [{**row, _LINE: reader.line_num} for row in reader]
                    return columns, rows
                columns = []
                rows = []
                for number, line in enumerate(handle, start=1):
                    if not line.strip():
                        continue
                    row = _json_line(line, number)
                    if not isinstance(row, dict):
                        row = {"_error": f"line {number} is not a JSON object"}
                    if "_error" in row:
                        row["_raw"] = line.rstrip("\r\n")
                    for key in row:
                        if key not in columns and not key.startswith("_"):
                            columns.append(key)
                    rows.append({**row, _LINE: number})
                return columns, rows
        except UnicodeDecodeError as exc:
            raise ConfigurationError(
                f"{path.name} is not {self.config.encoding} text (byte "
                f"{exc.object[exc.start]:#04x} at offset {exc.start}); save it as "
                f"{self.config.encoding} or set options.encoding",
                where=self.where,
            ) from None
        except csv.Error as exc:
            raise ConfigurationError(
                f"{path.name} is not valid CSV: {exc}", where=self.where
            ) from None

    def fetch_backlog(self) -> Iterator[Record]:
        """Every row not marked done (first removing temporaries a killed write-back left)."""
        if _stale_temporaries(self.config.path):
            with locked(self.config.path):
                _remove_stale_temporaries(self.config.path)
        _, rows = self.read_rows()
        status, done = self.config.status_column, self.config.done_value
        for row in rows:
            if str(row.get(status) or "").strip().lower() != done.lower():
                yield row

    def to_task(self, record: Record) -> Task:
        """Map a row: id, title, url, due date and custom columns."""
        cfg = self.config
        line = record.get(_LINE)
        if "_error" in record:
            raise BadRecordError(record["_error"], where=self.where)
        if cfg.id_column not in record:
            raise BadRecordError(
                f"line {line}: the id column is missing", field=cfg.id_column, where=self.where
            )
        external_id = self.record_id(record)
        if external_id is None:
            raise BadRecordError(
                f"line {line}: the id column is empty", field=cfg.id_column, where=self.where
            )
        if "\x00" in external_id:
            raise BadRecordError(
                f"line {line}: the id contains a NUL character, which no state store can keep",
                record_id=external_id.replace("\x00", "\\x00"),
                field=cfg.id_column,
                where=self.where,
            )
        extra = record.get(_EXTRA)
        if extra is not None:
            raise BadRecordError(
                f"line {line}: {len(extra)} more field{'s' if len(extra) > 1 else ''} than "
                "the header has columns",
                record_id=external_id,
                where=self.where,
            )
        title = str(record.get(cfg.title_column) or "").strip()
        if not title:
            raise BadRecordError(
                f"line {line}: the title column is empty",
                record_id=external_id,
                field=cfg.title_column,
                where=self.where,
            )
        url = str(record.get(cfg.url_column) or "").strip() or None if cfg.url_column else None
        if url is None and cfg.url_template:
            try:
                url = cfg.url_template.format(**{k: v for k, v in record.items()})
            except (KeyError, IndexError, ValueError) as exc:
                raise BadRecordError(
                    f"line {line}: url_template cannot be filled: {exc}",
                    record_id=external_id,
                    where=self.where,
                ) from None
        due_at = self._due(record, external_id, line)
        return Task.new(
            external_id=external_id,
            title=title,
            url=url,
            due_at=due_at,
            custom=self._custom(record),
        )

    def _due(self, record: Record, external_id: str, line: Any) -> datetime | None:
        column = self.config.due_column
        value = str(record.get(column) or "").strip() if column else ""
        if not value:
            return None
        try:
            due = datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise BadRecordError(
                f"line {line}: {value!r} is not an ISO 8601 date or time",
                record_id=external_id,
                field=column,
                where=self.where,
            ) from None
        due = due if due.tzinfo else due.replace(tzinfo=UTC)
        try:
            due.astimezone(UTC)
        except OverflowError:
            raise BadRecordError(
                f"line {line}: {value!r} is out of range (no such instant in UTC)",
                record_id=external_id,
                field=column,
                where=self.where,
            ) from None
        return due

    def _custom(self, record: Record) -> dict[str, Any]:
        cfg = self.config
        reserved = {
            cfg.id_column,
            cfg.title_column,
            cfg.url_column,
            cfg.due_column,
            cfg.status_column,
            cfg.completed_at_column,
            cfg.outcome_column,
            "external_id",
        }
        names = cfg.custom_columns
        if names is None:
            names = [
                k for k in record if isinstance(k, str) and k not in reserved and k[:1] != "_"
            ]
        return {name: record.get(name) for name in names if record.get(name) not in (None, "")}

    # -- write-back ---------------------------------------------------------------------
    def on_complete(self, task: RemoteTask, completion: Completion) -> str | None:
        """Mark the row done (status and completion time), atomically; idempotent."""
        cfg = self.config
        when = format_datetime(completion.done_at or datetime.now(UTC))
        outcome = json.dumps(dict(completion.outcome), sort_keys=True) if completion.outcome else ""

        def mark(row: dict[str, Any]) -> None:
            row[cfg.status_column] = cfg.done_value
            if cfg.completed_at_column:
                row[cfg.completed_at_column] = when
            if cfg.outcome_column:
                row[cfg.outcome_column] = outcome

        found = self.update_rows({completion.external_id: mark})
        if not found:
            return f"row {completion.external_id!r} is no longer in {cfg.path.name}"
        return f"marked row {completion.external_id!r} {cfg.done_value} in {cfg.path.name}"

    def update_rows(self, changes: dict[str, Callable[[dict[str, Any]], None]]) -> int:
        """Apply ``changes`` (external id -> function changing the row) and rewrite the file
        atomically; return how many rows were found.

        Holds the file's lock (:func:`locked`) from the read to the rename, so rows another
        program appended under the same lock are read and kept.
        """
        cfg = self.config
        with locked(cfg.path):
            columns, rows = self.read_rows()
            found = 0
            for row in rows:
                change = changes.get(self.record_id(row) or "")
                if change is not None:
                    change(row)
                    found += 1
            if found:
                for row in rows:
                    for key in row:
                        if key not in columns and not key.startswith("_"):
                            columns.append(key)
                _write_unlocked(cfg.path, columns, rows, cfg.format or "csv", cfg.encoding)
            return found

    def check(self) -> str:
        """Read the header and every line, and count the open rows.

        Fails (:class:`ConfigurationError` naming the lines) when the CSV has no header
        or no id column, or when a line is not JSON, not an object, or has no id: a
        sync would report such lines as bad records on every run. Rows that would fail
        to map for another reason (an empty title, a date that is not one) are counted
        in the message.
        """
        cfg = self.config
        columns, rows = self.read_rows()  # a CSV header without the id column raises
        name = cfg.path.name
        if cfg.format == "csv" and not columns:
            raise ConfigurationError(
                f"{name} has no header line (expected columns such as {cfg.id_column!r})",
                where=self.where,
            )
        unreadable: list[str] = []
        for row in rows:
            line = row.get(_LINE)
            if "_error" in row:
                unreadable.append(str(row["_error"]))
            elif cfg.id_column not in row:
                unreadable.append(f"line {line} has no {cfg.id_column!r} (options.id_column)")
            elif self.record_id(row) is None:
                unreadable.append(f"line {line}: the id column {cfg.id_column!r} is empty")
            elif row.get(_EXTRA) is not None:
                unreadable.append(f"line {line} has more fields than the header has columns")
        if unreadable:
            shown = "; ".join(unreadable[:5])
            more = f"; and {len(unreadable) - 5} more" if len(unreadable) > 5 else ""
            raise ConfigurationError(
                f"{name}: {len(unreadable)} unreadable line"
                f"{'' if len(unreadable) == 1 else 's'}: {shown}{more}",
                where=self.where,
            )
        status, done = cfg.status_column, cfg.done_value.lower()
        open_rows = [r for r in rows if str(r.get(status) or "").strip().lower() != done]
        bad: list[str] = []
        for row in open_rows:
            try:
                self.to_task(row)
            except BadRecordError as exc:
                bad.append(exc.message)
        count = len(open_rows)
        message = f"{name}: {count} open row{'' if count == 1 else 's'}"
        if bad:
            message += (
                f"; {len(bad)} would not become tasks (bad records, reported by each sync;"
                f" the first: {bad[0]})"
            )
        return message


#: Where a CSV row keeps the values beyond the header's columns.
_EXTRA = "_extra"


def _encoding(name: str) -> str:
    """UTF-8 reads skip a byte-order mark (Excel's CSV export starts with one)."""
    return "utf-8-sig" if name.lower().replace("_", "-") in ("utf-8", "utf8") else name


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not a number the Tasks API accepts")


def _json_line(line: str, number: int) -> Any:
    """One JSON Lines line, or ``{"_error": ...}`` saying why it is a bad record."""
    try:
        return json.loads(line, parse_constant=_refuse_constant)
    except json.JSONDecodeError as exc:
        return {"_error": f"line {number} is not JSON: {exc.msg}"}
    except RecursionError:
        return {"_error": f"line {number} is nested too deeply to read"}
    except ValueError as exc:  # a constant refused above, or an integer of too many digits
        return {"_error": f"line {number}: {exc}"}


def write_rows(
    path: Path,
    columns: list[str],
    rows: list[dict[str, Any]],
    *,
    fmt: str = "csv",
    encoding: str = "utf-8",
) -> None:
    """Write a backlog file atomically (a temporary file in the same folder, then rename),
    holding its lock (:func:`locked`)."""
    with locked(path):
        _write_unlocked(path, columns, rows, fmt, encoding)


def _write_unlocked(
    path: Path, columns: list[str], rows: list[dict[str, Any]], fmt: str, encoding: str
) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(path)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with contextlib.suppress(FileNotFoundError):
            os.chmod(tmp, path.stat().st_mode & 0o7777)  # keep the file's permissions
        with os.fdopen(fd, "w", newline="", encoding=encoding) as handle:
            if fmt == "csv":
                writer = csv.DictWriter(handle, fieldnames=columns, extrasaction="ignore")
                writer.writeheader()
                plain = csv.writer(handle)
                for row in rows:
                    extra = row.get(_EXTRA)
                    if extra:  # a row longer than the header: kept as it was
                        plain.writerow([row.get(c) or "" for c in columns] + list(extra))
                        continue
                    writer.writerow({k: ("" if v is None else v) for k, v in row.items()})
            else:
                for row in rows:
                    if "_raw" in row:  # a line that is not a JSON object: kept as it was
                        handle.write(row["_raw"] + "\n")
                        continue
                    clean = {k: v for k, v in row.items() if not k.startswith("_")}
                    handle.write(json.dumps(clean, ensure_ascii=False) + "\n")
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def sample_rows(count: int = 12, *, start: int = 1) -> list[dict[str, Any]]:
    """Rows of a sample KYC backlog: title, url, category, name, priority, id."""
    names = [
        "Ada Lovelace",
        "Alan Turing",
        "Grace Hopper",
        "Edsger Dijkstra",
        "Barbara Liskov",
        "Donald Knuth",
        "Margaret Hamilton",
        "Ken Thompson",
        "Frances Allen",
        "John Backus",
    ]
    categories = ["KYC review", "Document check", "Address proof", "Sanctions hit"]
    rows = []
    for number in range(start, start + count):
        name = names[(number - 1) % len(names)]
        category = categories[(number - 1) % len(categories)]
        rows.append(
            {
                "id": f"C-{number:04d}",
                "title": f"{category}: {name}",
                "url": f"https://backoffice.example.com/customers/C-{number:04d}",
                "category": category,
                "name": name,
                "priority": ["high", "normal", "low"][(number - 1) % 3],
            }
        )
    return rows


def write_sample(path: Path, count: int = 12) -> Path:
    """Write a sample backlog (CSV or JSON Lines, by suffix) and return its path."""
    fmt = "jsonl" if path.suffix.lower() in (".jsonl", ".ndjson") else "csv"
    write_rows(path, list(SAMPLE_COLUMNS), sample_rows(count), fmt=fmt)
    return path


@hookimpl
def fragment_register_connectors(register: Callable[[type[Connector]], None]) -> None:
    """Register the built-in ``file`` connector."""
    register(FileConnector)
