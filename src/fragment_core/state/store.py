"""The state store: what the sync knows about each source, record, write-back and run.

SQLAlchemy 2 Core over SQLite (WAL, the default) or PostgreSQL
(``postgresql+psycopg://...``). Every method runs in its own transaction, so what a
method wrote is durable when it returns: the applier commits after each chunk.
"""

from __future__ import annotations

import json
import os
import threading
import urllib.request
import uuid
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite

from fragment_core.errors import ConfigurationError
from fragment_core.reports import SyncReport
from fragment_core.state import schema
from fragment_core.state.faults import STATE_ERRORS, StateError, password_of, state_error
from fragment_core.state.lease import DEFAULT_TTL, Lease, LeaseHolder, lease_holder, take_lease
from fragment_core.state.schema import leases, outbox, records, runs, sources


class RecordStatus(StrEnum):
    """What became of a record's task, as far as the sync knows."""

    OPEN = "open"
    CLOSING = "closing"
    """The sync decided to close it and recorded that before the PATCH (intent)."""
    CLOSED = "closed"
    """Closed by the sync because the record left the backlog."""
    REOPENING = "reopening"
    """The sync decided to reopen it and recorded that before the PUT (intent); counted as
    open. ``closed_by`` and ``done_at`` of the close it undoes are kept."""
    DONE = "done"
    """Completed by an operator."""


class OutboxState(StrEnum):
    """State of one write-back."""

    PENDING = "pending"
    DONE = "done"
    FAILED = "failed"


@dataclass(frozen=True)
class RecordState:
    """One record's row."""

    external_id: str
    uid: str
    content_hash: str
    status: RecordStatus = RecordStatus.OPEN
    closed_by: str | None = None
    done_at: datetime | None = None
    times_missing: int = 0
    record_hash: str | None = None
    """Fingerprint of the raw record last mapped (see :meth:`Connector.fingerprint`)."""


@dataclass(frozen=True)
class SourceState:
    """One source's row."""

    name: str
    cursor: str | None = None
    last_complete_fetch: datetime | None = None
    completions_seen_until: datetime | None = None
    complete_runs: int = 0
    destination_url: str | None = None
    """The Tasks API this source's state belongs to (``None``: not bound yet)."""
    destination_account: str | None = None
    """The account id ``GET /accounts/me`` named for it."""
    destination_name: str | None = None
    """The account's name, for people."""
    bound_at: datetime | None = None
    last_verified: datetime | None = None
    """When a verifying run last compared the source's tasks with the state."""


#: The keys :meth:`StateStore.update_source_state` sets.
SOURCE_KEYS = frozenset(
    {
        "cursor",
        "last_complete_fetch",
        "completions_seen_until",
        "complete_runs",
        "destination_url",
        "destination_account",
        "destination_name",
        "bound_at",
        "last_verified",
    }
)


@dataclass(frozen=True)
class OutboxEntry:
    """One write-back, pending, done or failed."""

    id: int
    source: str
    uid: str
    external_id: str
    idempotency_key: str
    done_at: datetime | None
    task_json: str
    state: OutboxState
    attempts: int
    last_error: str | None
    message: str | None
    next_attempt_at: datetime | None
    claimed_by: str | None = None
    """The store (process) calling it now, if any (see :meth:`StateStore.claim_write_back`)."""
    created_at: datetime | None = None
    updated_at: datetime | None = None


#: How long a claimed write-back is kept from other claimants (its call's retries and
#: timeout fit well within it).
CLAIM_HOLD = timedelta(minutes=10)


def utcnow() -> datetime:
    """The current time, aware, in UTC."""
    return datetime.now(UTC)


def _prepare_sqlite_path(url: sa.URL) -> None:
    database = url.database
    if database and database != ":memory:" and not database.startswith("file:"):
        Path(database).expanduser().parent.mkdir(parents=True, exist_ok=True)


class StateStore:
    """Read and write the sync state. Thread-safe (one engine, short transactions)."""

    def __init__(self, url: str, *, lease_ttl: timedelta = DEFAULT_TTL) -> None:
        self.lease_ttl = lease_ttl
        self.claimant = str(uuid.uuid4())
        """This store's id in the write-backs it claims (see :meth:`claim_write_back`)."""
        try:
            parsed = sa.make_url(url)
        except sa.exc.ArgumentError as exc:
            raise ConfigurationError(f"not a database URL: {exc}", where="[state] url") from None
        self.url = parsed.render_as_string(hide_password=True)  # never the password
        self.dialect = parsed.get_backend_name()
        kwargs: dict[str, Any] = {}
        if self.dialect == "sqlite":
            _prepare_sqlite_path(parsed)
            kwargs["connect_args"] = {"timeout": 30, "check_same_thread": False}
            if parsed.database in (None, "", ":memory:"):
                kwargs["poolclass"] = sa.pool.StaticPool
        elif self.dialect != "postgresql":
            raise ConfigurationError(
                f"unsupported database {self.dialect!r}: use sqlite:///PATH or "
                "postgresql+psycopg://...",
                where="[state] url",
            )
        # errors never carry SQL parameters: they hold record data (ids, hashes)
        self.engine = sa.create_engine(parsed, hide_parameters=True, **kwargs)
        self._file = _sqlite_file(parsed) if self.dialect == "sqlite" else None
        self._identity: tuple[int, int] | None = None
        if self.dialect == "sqlite":
            sa.event.listen(self.engine, "connect", _sqlite_pragmas)
        try:
            self.schema_version = schema.ensure_schema(self.engine)
            self._probe_write()
        except STATE_ERRORS as exc:
            self.engine.dispose()
            raise state_error(exc, self.url, secrets=password_of(parsed)) from None
        except BaseException:
            self.engine.dispose()
            raise
        if self._file is not None:
            self._identity = _file_identity(self._file)
            # from now on a connection opens the file it found, never creates a new one
            sa.event.listen(self.engine, "do_connect", _open_existing(self._file))
        self._sql = _RecordSQL(self.engine.dialect)

    def _probe_write(self) -> None:
        """A write that changes nothing: a read-only database is refused at once, not
        half-way through a sync."""
        with self.engine.begin() as conn:
            conn.execute(
                schema.schema_version.update().values(version=schema.schema_version.c.version)
            )

    def verify(self) -> None:
        """Raise :class:`StateError` when the SQLite state file was deleted or replaced
        since this store opened it (a running process must not carry on with a state
        that is gone, nor silently start a new one)."""
        if self._file is None or self._identity is None:
            return
        try:
            found: tuple[int, int] | None = _file_identity(self._file)
        except OSError:
            found = None
        if found != self._identity:
            what = "deleted" if found is None else "replaced by another file"
            raise StateError(
                f"the state file {self._file} was {what} while fragment was running",
                url=self.url,
                hint="stop every fragment process using it, restore the file from a backup "
                "(or leave it missing: the next start rebuilds the state from the Tasks API)",
            )

    def __repr__(self) -> str:
        return f"<StateStore {self.url}>"

    def close(self) -> None:
        """Release the database connections."""
        self.engine.dispose()

    def _begin(self) -> Any:
        return self.engine.begin()

    def _insert(self, table: sa.Table) -> Any:
        return (sqlite.insert if self.dialect == "sqlite" else postgresql.insert)(table)

    def rate_budget(self, destination: str, limit: int, period: float = 60.0) -> Any:
        """The Tasks API rate budget of ``destination`` (its URL) shared by every process
        using this store: a :class:`~fragment_core.state.budget.SharedRateBudget` of
        ``limit`` requests per ``period`` seconds."""
        from fragment_core.state.budget import SharedRateBudget

        return SharedRateBudget(
            self.engine, destination.rstrip("/"), limit, period, url=self.url
        )

    # -- leases -----------------------------------------------------------------------------
    @contextmanager
    def lease(
        self,
        source: str,
        *,
        wait: bool | float = False,
        ttl: timedelta | None = None,
        on_lost: Callable[[], None] | None = None,
        cancel: threading.Event | None = None,
        run_id: str | None = None,
        keep: bool = False,
    ) -> Iterator[Lease]:
        """Hold ``source``'s lease for the block: the one run of that source, across
        processes and machines sharing this store.

        Raises :class:`~fragment_core.state.lease.LeaseHeldError` when another live run
        holds it (``wait=True`` waits for it instead; a number waits that many seconds).
        A heartbeat renews it every third of ``ttl`` (default :attr:`lease_ttl`); the
        lease of an owner that died expires after ``ttl`` and is then taken over.
        ``on_lost`` is called if a heartbeat finds the lease taken by another run;
        ``cancel`` set during a wait ends it with the refusal.
        ``run_id`` names the owner (a fleet run: its workflow run, so every activity of it,
        on any worker, holds the same lease); ``keep`` leaves the lease in place at the end
        of the block, heartbeat stopped, for the run's next activity (it expires after
        ``ttl`` if none comes).
        """
        held = take_lease(
            self.engine,
            source,
            ttl=ttl or self.lease_ttl,
            wait=wait,
            on_lost=on_lost,
            cancel=cancel,
            run_id=run_id,
        )
        try:
            self._void_claims(source)
            yield held
        finally:
            if keep:
                held.stop_heartbeat()
            else:
                held.release()

    def release_lease(self, source: str, run_id: str) -> None:
        """Give back ``source``'s lease if ``run_id`` holds it (a fleet run's last
        activity; see ``keep`` in :meth:`lease`)."""
        with self._begin() as conn:
            conn.execute(
                leases.delete().where(leases.c.source == source, leases.c.run_id == run_id)
            )

    def lease_holder(self, source: str) -> LeaseHolder | None:
        """Who holds ``source``'s lease now (``None``: nobody, or it expired)."""
        return lease_holder(self.engine, source)

    # -- sources ----------------------------------------------------------------------------
    def source_state(self, name: str) -> SourceState:
        """The state of source ``name`` (defaults when it never ran)."""
        with self.engine.connect() as conn:
            row = conn.execute(sa.select(sources).where(sources.c.name == name)).first()
        if row is None:
            return SourceState(name=name)
        return SourceState(
            name=row.name,
            cursor=row.cursor,
            last_complete_fetch=row.last_complete_fetch,
            completions_seen_until=row.completions_seen_until,
            complete_runs=row.complete_runs or 0,
            destination_url=row.destination_url,
            destination_account=row.destination_account,
            destination_name=row.destination_name,
            bound_at=row.bound_at,
            last_verified=row.last_verified,
        )

    def update_source_state(self, name: str, **changes: Any) -> None:
        """Set some of the :class:`SourceState` fields (:data:`SOURCE_KEYS`) of source
        ``name``."""
        unknown = set(changes) - SOURCE_KEYS
        if unknown:
            raise TypeError(f"unknown source state keys: {sorted(unknown)}")
        stmt = self._insert(sources).values({"name": name, "complete_runs": 0, **changes})
        stmt = stmt.on_conflict_do_update(index_elements=["name"], set_=changes)
        with self._begin() as conn:
            conn.execute(stmt)

    def forget_source(self, name: str, *, write_backs: bool = False) -> dict[str, int]:
        """Delete what the state knows of source ``name``: its records and its source
        row (cursor, high-water mark, destination), and with ``write_backs`` its outbox
        too, in one transaction. The run history is kept. Returns the rows deleted, by
        kind. A store that holds nothing of a source rebuilds it from the Tasks API on
        its next run (see :mod:`fragment_core.sync.rebuild`)."""
        deleted: dict[str, int] = {}
        with self._begin() as conn:
            deleted["records"] = conn.execute(
                records.delete().where(records.c.source == name)
            ).rowcount
            deleted["source_row"] = conn.execute(
                sources.delete().where(sources.c.name == name)
            ).rowcount
            if write_backs:
                deleted["write_backs"] = conn.execute(
                    outbox.delete().where(outbox.c.source == name)
                ).rowcount
        return deleted

    def forget_records(self, source: str, external_ids: Iterable[str]) -> int:
        """Delete the rows of these records (their tasks are gone from the Tasks API: the
        next plan creates the ones still in the source); return how many there were."""
        ids = list(external_ids)
        count = 0
        with self._begin() as conn:
            for start in range(0, len(ids), LOOKUP_CHUNK):
                chunk = ids[start : start + LOOKUP_CHUNK]
                count += conn.execute(
                    records.delete().where(
                        records.c.source == source, records.c.external_id.in_(chunk)
                    )
                ).rowcount
        return count

    def source_names(self) -> list[str]:
        """Every source the store knows of (from state or run history)."""
        with self.engine.connect() as conn:
            names = set(conn.execute(sa.select(sources.c.name)).scalars())
            names.update(conn.execute(sa.select(runs.c.source).distinct()).scalars())
        return sorted(names)

    # -- records ----------------------------------------------------------------------------
    @contextmanager
    def transaction(self) -> Iterator[StateWriter]:
        """One transaction for several record writes (committed when the block ends)."""
        with self._begin() as conn:
            yield StateWriter(conn, self._sql)

    def record_map(self, source: str) -> dict[str, tuple[str, str, int]]:
        """``{external_id: (content_hash, status, times_missing)}`` for a source, one query
        (small sources and tests; the sync reads by chunk with :meth:`lookup`)."""
        query = sa.select(
            records.c.external_id,
            records.c.content_hash,
            records.c.status,
            records.c.times_missing,
        ).where(records.c.source == source)
        with self.engine.connect() as conn:
            return {row[0]: (row[1], row[2], row[3]) for row in conn.execute(query)}

    def has_records(self, source: str) -> bool:
        """Whether the state holds any record of ``source``."""
        query = sa.select(records.c.external_id).where(records.c.source == source).limit(1)
        with self.engine.connect() as conn:
            return conn.execute(query).first() is not None

    def lookup(
        self, source: str, external_ids: Sequence[str]
    ) -> dict[str, tuple[str, str, int, str | None]]:
        """``{external_id: (content_hash, status, times_missing, record_hash)}`` of those of
        ``external_ids`` the state knows (one query per 500 ids)."""
        found: dict[str, tuple[str, str, int, str | None]] = {}
        if any("\x00" in eid for eid in external_ids):  # never stored: unknown, not an error
            external_ids = [eid for eid in external_ids if "\x00" not in eid]
        raw = self.engine.raw_connection()  # the driver's rows as they are: the hot path
        try:
            cursor = raw.cursor()
            for start in range(0, len(external_ids), LOOKUP_CHUNK):
                ids = external_ids[start : start + LOOKUP_CHUNK]
                cursor.execute(self._sql.lookup(len(ids)), (source, *ids))
                for eid, content_hash, status, missing, record_hash in cursor.fetchall():
                    found[eid] = (content_hash, status, missing or 0, record_hash)
            cursor.close()
            raw.commit()  # end the read transaction (PostgreSQL opens one)
        finally:
            raw.close()
        return found

    def status_counts(self, source: str) -> dict[str, int]:
        """``{status: number of records}`` of a source."""
        query = (
            sa.select(records.c.status, sa.func.count())
            .where(records.c.source == source)
            .group_by(records.c.status)
        )
        with self.engine.connect() as conn:
            return {status: count for status, count in conn.execute(query)}

    def records_in(
        self, source: str, statuses: Sequence[str], *, page: int = 5000
    ) -> Iterator[tuple[str, str, int]]:
        """``(external_id, status, times_missing)`` of the records in ``statuses``, in id
        order, read a page at a time (no connection is held between pages)."""
        after = ""
        base = sa.select(records.c.external_id, records.c.status, records.c.times_missing).where(
            records.c.source == source, records.c.status.in_(list(statuses))
        )
        while True:
            query = base.where(records.c.external_id > after).order_by(records.c.external_id)
            with self.engine.connect() as conn:
                rows = conn.execute(query.limit(page)).all()
            for eid, status, missing in rows:
                yield eid, status, missing or 0
            if len(rows) < page:
                return
            after = rows[-1][0]

    def record(self, source: str, external_id: str) -> RecordState | None:
        """One record's state, or ``None``."""
        query = sa.select(records).where(
            records.c.source == source, records.c.external_id == external_id
        )
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _record_state(row)

    def record_by_uid(self, source: str, uid: str) -> RecordState | None:
        """One record's state found by its task uid, or ``None``."""
        query = sa.select(records).where(records.c.source == source, records.c.uid == uid)
        with self.engine.connect() as conn:
            row = conn.execute(query).first()
        return None if row is None else _record_state(row)

    def records(self, source: str) -> list[RecordState]:
        """Every record of a source (for tests and small tools; prefer :meth:`lookup`)."""
        query = sa.select(records).where(records.c.source == source).order_by(records.c.external_id)
        with self.engine.connect() as conn:
            return [_record_state(row) for row in conn.execute(query)]

    def save_records(self, source: str, states: Sequence[RecordState]) -> None:
        """Insert or replace the rows of ``states`` in one transaction."""
        if states:
            with self.transaction() as tx:
                tx.save_records(source, states)

    def set_status(
        self,
        source: str,
        external_ids: Iterable[str],
        status: RecordStatus,
        *,
        closed_by: str | None = None,
        done_at: datetime | None = None,
    ) -> None:
        """Set the status (and who closed it) of existing records, in one transaction."""
        with self.transaction() as tx:
            tx.set_status(source, external_ids, status, closed_by=closed_by, done_at=done_at)

    def mark_reopening(self, source: str, external_ids: Iterable[str]) -> None:
        """Record the intent to reopen tasks, keeping who closed them and when."""
        with self.transaction() as tx:
            tx.mark_reopening(source, external_ids)

    def set_times_missing(self, source: str, counts: dict[str, int]) -> None:
        """Set ``times_missing`` of records, in one transaction."""
        with self.transaction() as tx:
            tx.set_times_missing(source, counts)

    # -- outbox -----------------------------------------------------------------------------
    def add_write_back(
        self,
        *,
        source: str,
        uid: str,
        external_id: str,
        idempotency_key: str,
        done_at: datetime | None,
        task_json: str,
    ) -> bool:
        """Record a write-back intent; ``False`` when that completion is already there."""
        now = utcnow()
        stmt = (
            self._insert(outbox)
            .values(
                source=source,
                uid=uid,
                external_id=external_id,
                idempotency_key=idempotency_key,
                done_at=done_at,
                task_json=task_json,
                state=str(OutboxState.PENDING),
                attempts=0,
                next_attempt_at=now,
                created_at=now,
                updated_at=now,
            )
            .on_conflict_do_nothing(index_elements=["idempotency_key"])
            .returning(outbox.c.id)
        )
        with self._begin() as conn:
            return conn.execute(stmt).first() is not None

    def due_write_backs(self, source: str, now: datetime | None = None) -> list[OutboxEntry]:
        """Pending or failed write-backs of a source whose next attempt time has come."""
        now = now or utcnow()
        query = (
            sa.select(outbox)
            .where(
                outbox.c.source == source,
                outbox.c.state != str(OutboxState.DONE),
                sa.or_(outbox.c.next_attempt_at.is_(None), outbox.c.next_attempt_at <= now),
            )
            .order_by(outbox.c.id)
        )
        with self.engine.connect() as conn:
            return [_outbox_entry(row) for row in conn.execute(query)]

    def claim_write_back(
        self, entry: OutboxEntry, *, hold: timedelta = CLAIM_HOLD, now: datetime | None = None
    ) -> bool:
        """Claim a due write-back for this process: ``True`` for exactly one claimant.

        One conditional ``UPDATE`` (atomic on SQLite and Postgres) moves the entry's next
        attempt ``hold`` ahead while it is still due and not done; a second claimant finds
        it no longer due. A claimant that dies leaves it due again once ``hold`` passed.
        """
        now = now or utcnow()
        with self._begin() as conn:
            result = conn.execute(
                outbox.update()
                .where(
                    outbox.c.id == entry.id,
                    outbox.c.state != str(OutboxState.DONE),
                    sa.or_(outbox.c.next_attempt_at.is_(None), outbox.c.next_attempt_at <= now),
                )
                .values(claimed_by=self.claimant, next_attempt_at=now + hold, updated_at=now)
            )
        return result.rowcount == 1

    def _void_claims(self, source: str) -> None:
        """Make due again the write-backs other stores claimed but never finished: the
        caller holds the source's lease, so their claimants are gone."""
        with self._begin() as conn:
            conn.execute(
                outbox.update()
                .where(
                    outbox.c.source == source,
                    outbox.c.state != str(OutboxState.DONE),
                    outbox.c.claimed_by.is_not(None),
                    outbox.c.claimed_by != self.claimant,
                )
                .values(claimed_by=None, next_attempt_at=None)
            )

    def write_backs(self, source: str, state: OutboxState | None = None) -> list[OutboxEntry]:
        """Write-backs of a source, optionally in one state."""
        query = sa.select(outbox).where(outbox.c.source == source).order_by(outbox.c.id)
        if state is not None:
            query = query.where(outbox.c.state == str(state))
        with self.engine.connect() as conn:
            return [_outbox_entry(row) for row in conn.execute(query)]

    def finish_write_back(
        self,
        entry_id: int,
        *,
        state: OutboxState,
        attempts: int,
        message: str | None = None,
        error: str | None = None,
        next_attempt_at: datetime | None = None,
    ) -> None:
        """Record the outcome of a write-back attempt."""
        with self._begin() as conn:
            conn.execute(
                outbox.update()
                .where(outbox.c.id == entry_id)
                .values(
                    state=str(state),
                    attempts=attempts,
                    message=message,
                    last_error=error,
                    next_attempt_at=next_attempt_at,
                    claimed_by=None,
                    updated_at=utcnow(),
                )
            )

    def write_back_counts(self, source: str) -> dict[str, int]:
        """``{"pending": n, "failed": n, "done": n}`` for a source."""
        query = (
            sa.select(outbox.c.state, sa.func.count())
            .where(outbox.c.source == source)
            .group_by(outbox.c.state)
        )
        counts = {str(s): 0 for s in OutboxState}
        with self.engine.connect() as conn:
            for state, count in conn.execute(query):
                counts[state] = count
        return counts

    # -- runs -------------------------------------------------------------------------------
    def save_run(self, report: SyncReport) -> int:
        """Store a finished run's report in the run history; return its id."""
        with self._begin() as conn:
            result = conn.execute(
                runs.insert().values(
                    source=report.source,
                    started_at=report.started_at or utcnow(),
                    finished_at=report.finished_at,
                    mode=report.mode,
                    outcome=str(report.outcome),
                    report_json=json.dumps(report.to_dict(), default=str),
                )
            )
            return int(result.inserted_primary_key[0])

    def start_run_row(self, source: str, data: dict[str, Any], *, mode: str = "full") -> int:
        """A run in progress in the run history (outcome ``running``; fleet mode keeps a
        run's report there between its activities); return its id."""
        with self._begin() as conn:
            result = conn.execute(
                runs.insert().values(
                    source=source,
                    started_at=utcnow(),
                    finished_at=None,
                    mode=mode,
                    outcome="running",
                    report_json=json.dumps({**data, "outcome": "running"}, default=str),
                )
            )
            return int(result.inserted_primary_key[0])

    def update_run_row(
        self, run_id: int, data: dict[str, Any], *, outcome: str = "running"
    ) -> None:
        """Replace the report of run ``run_id`` (see :meth:`start_run_row`)."""
        finished = data.get("finished_at")
        with self._begin() as conn:
            conn.execute(
                runs.update()
                .where(runs.c.id == run_id)
                .values(
                    outcome=outcome,
                    mode=data.get("mode") or "full",
                    finished_at=datetime.fromisoformat(finished) if finished else None,
                    report_json=json.dumps({**data, "outcome": outcome}, default=str),
                )
            )

    def running_rows(self, source: str) -> list[tuple[int, dict[str, Any]]]:
        """``(id, report dict)`` of the source's runs whose outcome is ``running``."""
        query = (
            sa.select(runs.c.id, runs.c.report_json)
            .where(runs.c.source == source, runs.c.outcome == "running")
            .order_by(runs.c.id)
        )
        with self.engine.connect() as conn:
            return [(int(row.id), json.loads(row.report_json)) for row in conn.execute(query)]

    def run_row(self, run_id: int) -> dict[str, Any] | None:
        """The report dict of run ``run_id``, or ``None``."""
        query = sa.select(runs.c.report_json).where(runs.c.id == run_id)
        with self.engine.connect() as conn:
            text = conn.execute(query).scalar()
        return None if text is None else json.loads(text)

    def last_runs(self, source: str, limit: int = 1) -> list[dict[str, Any]]:
        """The latest runs of a source, newest first, as report dicts."""
        query = (
            sa.select(runs.c.report_json)
            .where(runs.c.source == source)
            .order_by(runs.c.id.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [json.loads(text) for text in conn.execute(query).scalars()]

    def run_history(self, source: str, limit: int = 20) -> list[dict[str, Any]]:
        """The latest runs of a source, newest first: each run's report dict with the
        history's ``run`` number (its row id)."""
        query = (
            sa.select(runs.c.id, runs.c.report_json)
            .where(runs.c.source == source)
            .order_by(runs.c.id.desc())
            .limit(limit)
        )
        with self.engine.connect() as conn:
            return [{"run": rid, **json.loads(text)} for rid, text in conn.execute(query)]

    def run_count(self, source: str) -> int:
        """How many runs of a source the history holds."""
        query = sa.select(sa.func.count()).select_from(runs).where(runs.c.source == source)
        with self.engine.connect() as conn:
            return int(conn.execute(query).scalar() or 0)

    def closes_since(self, source: str, since: datetime) -> int:
        """The most open tasks the source's runs started at or after ``since`` took away,
        from the run history: over the latest runs (the last one, the last two, ...),
        the largest sum of tasks closed minus tasks created and reopened (0 when none
        is positive). So a source that churns counts about nothing, one that shrinks
        run after run counts every close since it began to. A run forced past the
        blast-radius cap restarts the count: only the runs after it count."""
        query = (
            sa.select(runs.c.report_json)
            .where(runs.c.source == source, runs.c.started_at >= since)
            .order_by(runs.c.id.desc())
        )
        total = largest = 0
        with self.engine.connect() as conn:
            for text in conn.execute(query).scalars():
                report = json.loads(text)
                if report.get("forced_close"):
                    break
                total += int(report.get("closed") or 0)
                total -= sum(int(report.get(key) or 0) for key in ("created", "reopened"))
                largest = max(largest, total)
        return largest



#: Ids per lookup query.
LOOKUP_CHUNK = 500

_RECORD_COLUMNS = (
    "source",
    "external_id",
    "uid",
    "content_hash",
    "status",
    "closed_by",
    "done_at",
    "times_missing",
    "record_hash",
)


class _RecordSQL:
    """The record statements of the sync's hot path, as driver SQL for one dialect.

    A sync writes a state row per task written (and reads one per record fetched), so
    these skip SQLAlchemy's statement compilation and per-row type processing: plain
    tuples go to the driver's ``executemany``. Only portable SQL (``ON CONFLICT`` is
    understood by SQLite and PostgreSQL alike).
    """

    def __init__(self, dialect: sa.Dialect) -> None:
        p = "?" if dialect.paramstyle == "qmark" else "%s"
        self.p = p
        process = records.c.done_at.type.bind_processor(dialect)
        self.time: Any = process or (lambda value: value)
        columns = ", ".join(_RECORD_COLUMNS)
        updates = ", ".join(f"{c} = excluded.{c}" for c in _RECORD_COLUMNS[2:])
        self.upsert = (
            f"INSERT INTO fragment_records ({columns}) "
            f"VALUES ({', '.join([p] * len(_RECORD_COLUMNS))}) "
            f"ON CONFLICT (source, external_id) DO UPDATE SET {updates}"
        )
        where = f"WHERE source = {p} AND external_id = {p}"
        self.status = (
            f"UPDATE fragment_records SET status = {p}, closed_by = {p}, done_at = {p}, "
            f"times_missing = 0 {where}"
        )
        self.reopening = f"UPDATE fragment_records SET status = {p}, times_missing = 0 {where}"
        self.missing = f"UPDATE fragment_records SET times_missing = {p} {where}"
        self.record_hash = f"UPDATE fragment_records SET record_hash = {p} {where}"
        self.unknown = f"UPDATE fragment_records SET content_hash = '', record_hash = NULL {where}"
        self._lookups: dict[int, str] = {}

    def lookup(self, count: int) -> str:
        """The SELECT of ``count`` records by id (cached by count)."""
        sql = self._lookups.get(count)
        if sql is None:
            marks = ", ".join([self.p] * count)
            sql = self._lookups[count] = (
                "SELECT external_id, content_hash, status, times_missing, record_hash "
                f"FROM fragment_records WHERE source = {self.p} AND external_id IN ({marks})"
            )
        return sql


class StateWriter:
    """The record writes of one transaction (see :meth:`StateStore.transaction`)."""

    def __init__(self, conn: sa.Connection, sql: _RecordSQL) -> None:
        self.conn, self.sql = conn, sql

    def _many(self, statement: str, rows: list[tuple[Any, ...]]) -> None:
        if rows:
            self.conn.exec_driver_sql(statement, rows)

    def save_records(self, source: str, states: Iterable[RecordState]) -> None:
        """Insert or replace the rows of ``states``."""
        time = self.sql.time
        rows = [
            (
                source,
                s.external_id,
                s.uid,
                s.content_hash,
                str(s.status),
                s.closed_by,
                None if s.done_at is None else time(s.done_at),
                s.times_missing,
                s.record_hash,
            )
            for s in states
        ]
        self._many(self.sql.upsert, rows)

    def save_open(self, source: str, rows: Iterable[tuple[str, str, str, str | None]]) -> None:
        """Insert or replace records whose task is open: ``(external_id, uid,
        content_hash, record_hash)`` each (what the applier writes for every task)."""
        status = str(RecordStatus.OPEN)
        values = [(source, e, u, h, status, None, None, 0, r) for e, u, h, r in rows]
        self._many(self.sql.upsert, values)

    def set_status(
        self,
        source: str,
        external_ids: Iterable[str],
        status: RecordStatus,
        *,
        closed_by: str | None = None,
        done_at: datetime | None = None,
    ) -> None:
        """Set the status (and who closed it, and when) of existing records."""
        when = None if done_at is None else self.sql.time(done_at)
        rows = [(str(status), closed_by, when, source, eid) for eid in external_ids]
        self._many(self.sql.status, rows)

    def mark_reopening(self, source: str, external_ids: Iterable[str]) -> None:
        """Record the intent to reopen tasks, keeping who closed them and when."""
        status = str(RecordStatus.REOPENING)
        self._many(self.sql.reopening, [(status, source, eid) for eid in external_ids])

    def set_times_missing(self, source: str, counts: dict[str, int]) -> None:
        """Set ``times_missing`` of records."""
        self._many(self.sql.missing, [(n, source, eid) for eid, n in counts.items()])

    def forget_hashes(self, source: str, external_ids: Iterable[str]) -> None:
        """Record the intent to update tasks: until the update is committed, the state
        does not know what the Tasks API holds, so the next run writes them again."""
        self._many(self.sql.unknown, [(source, eid) for eid in external_ids])

    def set_record_hashes(self, source: str, hashes: dict[str, str]) -> None:
        """Remember the fingerprint of records found unchanged after mapping."""
        self._many(self.sql.record_hash, [(h, source, eid) for eid, h in hashes.items()])


def _sqlite_file(url: sa.URL) -> Path | None:
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    return Path(database).expanduser().resolve()


def _file_identity(path: Path) -> tuple[int, int]:
    info = os.stat(path)
    return info.st_dev, info.st_ino


def _open_existing(path: Path) -> Any:
    """A ``do_connect`` hook: open ``path`` read-write, failing if it no longer exists."""
    uri = f"file:{urllib.request.pathname2url(str(path))}?mode=rw"

    def do_connect(_dialect: Any, _record: Any, cargs: list[Any], cparams: dict[str, Any]) -> None:
        if cargs:
            cargs[0] = uri
        else:
            cparams["database"] = uri
        cparams["uri"] = True

    return do_connect


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.close()


def _record_state(row: Any) -> RecordState:
    return RecordState(
        external_id=row.external_id,
        uid=row.uid,
        content_hash=row.content_hash,
        status=RecordStatus(row.status),
        closed_by=row.closed_by,
        done_at=row.done_at,
        times_missing=row.times_missing or 0,
        record_hash=row.record_hash,
    )


def _outbox_entry(row: Any) -> OutboxEntry:
    return OutboxEntry(
        id=row.id,
        source=row.source,
        uid=row.uid,
        external_id=row.external_id,
        idempotency_key=row.idempotency_key,
        done_at=row.done_at,
        task_json=row.task_json,
        state=OutboxState(row.state),
        attempts=row.attempts or 0,
        last_error=row.last_error,
        message=row.message,
        next_attempt_at=row.next_attempt_at,
        claimed_by=row.claimed_by,
        created_at=row.created_at,
        updated_at=row.updated_at,
    )
