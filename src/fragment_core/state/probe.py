"""Is the state store usable? A check that changes nothing (``fragment check``).

Opening a :class:`~fragment_core.state.StateStore` creates a missing database and
migrates an old one; a check must do neither. :func:`probe_state` connects, reads the
schema version and makes a write that is rolled back, so a read-only file, a full
disk's lock or a refused Postgres user shows before the first run does.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

import sqlalchemy as sa

from fragment_core.state import schema
from fragment_core.state.faults import STATE_ERRORS, StateError, password_of, state_error


@dataclass(frozen=True)
class StateProbe:
    """What :func:`probe_state` found."""

    url: str
    """``[state] url``, its password hidden."""
    ok: bool
    message: str
    schema_version: int | None = None
    sources: tuple[str, ...] = ()
    """Sources the state holds a row of."""


def probe_state(url: str) -> StateProbe:
    """Check that the state store at ``url`` can be reached and written, creating and
    migrating nothing."""
    try:
        parsed = sa.make_url(url)
    except sa.exc.ArgumentError as exc:
        return StateProbe(url, False, f"not a database URL: {exc}")
    shown = parsed.render_as_string(hide_password=True)
    backend = parsed.get_backend_name()
    if backend not in ("sqlite", "postgresql"):
        return StateProbe(shown, False, f"unsupported database {backend!r}")
    if backend == "sqlite":
        missing = _missing_sqlite_file(parsed)
        if missing is not None:
            return StateProbe(shown, *missing)
    engine = sa.create_engine(parsed, hide_parameters=True)
    try:
        with engine.connect() as conn:
            tables = set(sa.inspect(conn).get_table_names())
            if schema.schema_version.name not in tables:
                return StateProbe(
                    shown, True, "reachable; holds no state yet (the first run creates it)", 0
                )
            version = conn.execute(sa.select(schema.schema_version.c.version)).scalar()
            names: tuple[str, ...] = ()
            if schema.sources.name in tables:
                names = tuple(conn.execute(sa.select(schema.sources.c.name)).scalars())
            conn.rollback()  # end the reads' transaction
            with conn.begin() as transaction:  # a write, undone: proves the store writable
                conn.execute(
                    schema.schema_version.update().values(version=schema.schema_version.c.version)
                )
                transaction.rollback()
    except STATE_ERRORS as exc:
        error: StateError = state_error(exc, shown, secrets=password_of(parsed))
        return StateProbe(shown, False, str(error))
    finally:
        engine.dispose()
    return StateProbe(shown, *_version_verdict(version), version, names)


def _version_verdict(version: int | None) -> tuple[bool, str]:
    if version is None:
        return False, "the schema version row is missing: the state is damaged"
    if version > schema.SCHEMA_VERSION:
        return False, (
            f"schema version {version} is newer than this fragment-core understands "
            f"({schema.SCHEMA_VERSION}); upgrade fragment-core"
        )
    if version < schema.SCHEMA_VERSION:
        return True, (
            f"reachable and writable; schema version {version}, migrated to "
            f"{schema.SCHEMA_VERSION} by the next run"
        )
    return True, f"reachable and writable (schema version {version})"


def _missing_sqlite_file(url: sa.URL) -> tuple[bool, str] | None:
    """For a SQLite file that does not exist yet: whether it can be created there."""
    database = url.database
    if not database or database == ":memory:" or database.startswith("file:"):
        return None
    path = Path(database).expanduser()
    if path.exists():
        return None
    folder = path.parent
    while not folder.exists() and folder != folder.parent:
        folder = folder.parent
    if not os.access(folder, os.W_OK | os.X_OK):
        return False, f"{path} does not exist and {folder} is not writable: it cannot be created"
    return True, f"{path} does not exist yet; the first run creates it (its folder is writable)"
