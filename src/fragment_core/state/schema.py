"""Tables of the state store, and the schema version they describe.

Only portable SQL types are used, so one schema serves SQLite and PostgreSQL. Every
change to these tables bumps :data:`SCHEMA_VERSION` and adds a step to ``MIGRATIONS``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime

import sqlalchemy as sa

from fragment_core.errors import ConfigurationError

#: The version of the schema this code reads and writes.
SCHEMA_VERSION = 5

metadata = sa.MetaData()


class UTCDateTime(sa.TypeDecorator[datetime]):
    """A timezone-aware datetime stored as UTC on every backend (SQLite keeps no zone)."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: datetime | None, dialect: sa.Dialect) -> datetime | None:
        if value is None:
            return None
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


schema_version = sa.Table(
    "fragment_schema_version",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("version", sa.Integer, nullable=False),
)

#: Per source: incremental cursor, last complete fetch, completion high-water mark.
sources = sa.Table(
    "fragment_sources",
    metadata,
    sa.Column("name", sa.String(200), primary_key=True),
    sa.Column("cursor", sa.Text, nullable=True),
    sa.Column("last_complete_fetch", UTCDateTime(), nullable=True),
    sa.Column("completions_seen_until", UTCDateTime(), nullable=True),
    sa.Column("complete_runs", sa.Integer, nullable=False, default=0),
    # the Tasks API this source's state belongs to (schema version 4): its url and the
    # account ``GET /accounts/me`` named, recorded by the first run
    sa.Column("destination_url", sa.Text, nullable=True),
    sa.Column("destination_account", sa.String(200), nullable=True),
    sa.Column("destination_name", sa.Text, nullable=True),
    sa.Column("bound_at", UTCDateTime(), nullable=True),
    # when a verifying run last compared the source's tasks with the state (version 4)
    sa.Column("last_verified", UTCDateTime(), nullable=True),
)

#: Per record: what the sync last wrote and what became of its task.
records = sa.Table(
    "fragment_records",
    metadata,
    sa.Column("source", sa.String(200), primary_key=True),
    sa.Column("external_id", sa.String(500), primary_key=True),
    sa.Column("uid", sa.String(36), nullable=False),
    sa.Column("content_hash", sa.String(64), nullable=False),
    # open | closing (sync close intent recorded, not yet confirmed) | closed | done
    # | reopening (reopen intent recorded, not yet confirmed; counted as open)
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("closed_by", sa.String(16), nullable=True),  # sync | operator
    sa.Column("done_at", UTCDateTime(), nullable=True),
    sa.Column("times_missing", sa.Integer, nullable=False, default=0),
    # fingerprint of the raw record last mapped (see Connector.fingerprint): a record
    # whose fingerprint is unchanged is not mapped again (schema version 2)
    sa.Column("record_hash", sa.String(64), nullable=True),
    sa.Index("ix_fragment_records_uid", "uid"),
)

#: The write-back outbox: intent recorded before ``on_complete`` is called.
outbox = sa.Table(
    "fragment_outbox",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(200), nullable=False),
    sa.Column("uid", sa.String(36), nullable=False),
    sa.Column("external_id", sa.String(500), nullable=False),
    sa.Column("idempotency_key", sa.String(100), nullable=False, unique=True),
    sa.Column("done_at", UTCDateTime(), nullable=True),
    sa.Column("task_json", sa.Text, nullable=False),
    sa.Column("state", sa.String(16), nullable=False),  # pending | done | failed
    sa.Column("attempts", sa.Integer, nullable=False, default=0),
    sa.Column("last_error", sa.Text, nullable=True),
    sa.Column("message", sa.Text, nullable=True),
    sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
    # the store (process) that claimed the write-back and is calling it; its claim
    # holds ``next_attempt_at`` ahead until it finishes (schema version 3)
    sa.Column("claimed_by", sa.String(36), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Index("ix_fragment_outbox_source_state", "source", "state"),
)

#: One lease per source: the run that holds it is the only one syncing that source.
leases = sa.Table(
    "fragment_leases",
    metadata,
    sa.Column("source", sa.String(200), primary_key=True),
    sa.Column("run_id", sa.String(36), nullable=False),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer, nullable=False),
    sa.Column("since", UTCDateTime(), nullable=False),
    sa.Column("heartbeat_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
)

#: Run history: one row per run, with its report.
runs = sa.Table(
    "fragment_runs",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
    sa.Column("source", sa.String(200), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    sa.Column("mode", sa.String(16), nullable=False),
    sa.Column("outcome", sa.String(16), nullable=False),
    sa.Column("report_json", sa.Text, nullable=False),
    sa.Index("ix_fragment_runs_source", "source", "id"),
)

#: The Tasks API rate budget shared by every process using this store (schema version
#: 5): ``limit`` places per destination, each holding when its request's place in the
#: window started, in seconds since the epoch (see :mod:`fragment_core.state.budget`).
rate_slots = sa.Table(
    "fragment_rate_slots",
    metadata,
    sa.Column("destination", sa.String(500), primary_key=True),
    sa.Column("slot", sa.Integer, primary_key=True, autoincrement=False),
    sa.Column("started", sa.Float, nullable=False),
    sa.Index("ix_fragment_rate_slots_started", "destination", "started"),
)


def _add_record_hash(conn: sa.Connection) -> None:
    """1 -> 2: ``fragment_records.record_hash`` (empty: every record is mapped once more)."""
    conn.exec_driver_sql("ALTER TABLE fragment_records ADD COLUMN record_hash VARCHAR(64)")


def _add_leases_and_claims(conn: sa.Connection) -> None:
    """2 -> 3: ``fragment_leases`` (one run per source) and ``fragment_outbox.claimed_by``."""
    conn.exec_driver_sql("ALTER TABLE fragment_outbox ADD COLUMN claimed_by VARCHAR(36)")
    metadata.create_all(conn, tables=[leases])


def _add_destination(conn: sa.Connection) -> None:
    """3 -> 4: the destination of each source (``fragment_sources.destination_*``,
    ``bound_at``) and ``last_verified``; empty: the next run of each source binds it."""
    for column, kind in (
        ("destination_url", "TEXT"),
        ("destination_account", "VARCHAR(200)"),
        ("destination_name", "TEXT"),
        ("bound_at", _timestamp_type(conn)),
        ("last_verified", _timestamp_type(conn)),
    ):
        conn.exec_driver_sql(f"ALTER TABLE fragment_sources ADD COLUMN {column} {kind}")


def _add_rate_slots(conn: sa.Connection) -> None:
    """4 -> 5: ``fragment_rate_slots``, the shared Tasks API rate budget (empty: filled
    by the first client of each destination)."""
    metadata.create_all(conn, tables=[rate_slots])


def _timestamp_type(conn: sa.Connection) -> str:
    """The DDL type of a :class:`UTCDateTime` column on this connection's database."""
    return str(UTCDateTime().impl.compile(dialect=conn.dialect))


#: ``MIGRATIONS[n]`` upgrades a database at version ``n`` to ``n + 1``.
MIGRATIONS: dict[int, Callable[[sa.Connection], None]] = {
    1: _add_record_hash,
    2: _add_leases_and_claims,
    3: _add_destination,
    4: _add_rate_slots,
}


def ensure_schema(engine: sa.Engine) -> int:
    """Create the tables, or upgrade them to :data:`SCHEMA_VERSION`; return the version.

    A database written by a newer fragment-core is refused rather than damaged. Safe
    when several processes create one new database at once: the creation is serialized
    (SQLite ``BEGIN IMMEDIATE``, a Postgres advisory lock), and a process that still
    lost a race to another's ``CREATE TABLE`` finds the schema made and carries on.
    """
    for attempt in range(_CREATE_ATTEMPTS):
        try:
            return _ensure_schema_once(engine)
        except (sa.exc.OperationalError, sa.exc.ProgrammingError, sa.exc.IntegrityError):
            if attempt == _CREATE_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
    raise AssertionError("unreachable")


#: How often a schema creation that lost a race is tried again.
_CREATE_ATTEMPTS = 5

#: The Postgres advisory lock key that serializes schema creation.
_SCHEMA_LOCK_KEY = 0x46524147  # "FRAG"


def _ensure_schema_once(engine: sa.Engine) -> int:
    with engine.begin() as conn:
        if conn.dialect.name == "sqlite":
            conn.exec_driver_sql("BEGIN IMMEDIATE")
        elif conn.dialect.name == "postgresql":
            conn.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": _SCHEMA_LOCK_KEY})
        metadata.create_all(conn, tables=[schema_version])
        found = conn.execute(sa.select(schema_version.c.version)).scalar()
        if found is None:
            metadata.create_all(conn)
            conn.execute(schema_version.insert().values(id=1, version=SCHEMA_VERSION))
            return SCHEMA_VERSION
        if found > SCHEMA_VERSION:
            raise ConfigurationError(
                f"state store schema version {found} is newer than this fragment-core "
                f"understands ({SCHEMA_VERSION}); upgrade fragment-core",
                where="[state] url",
            )
        while found < SCHEMA_VERSION:
            if found not in MIGRATIONS:
                raise ConfigurationError(
                    f"state store schema version {found} is older than any this "
                    f"fragment-core can migrate (to {SCHEMA_VERSION}); run the fragment-core "
                    "that wrote it, or start a new state (it is rebuilt from the Tasks API)",
                    where="[state] url",
                )
            MIGRATIONS[found](conn)
            found += 1
            conn.execute(schema_version.update().values(version=found))
        metadata.create_all(conn)  # tables added since (no-op when present)
        return found
