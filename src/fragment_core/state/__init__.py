"""The sync state store (SQLAlchemy Core): SQLite by default, Postgres for fleets."""

from fragment_core.state.lease import LeaseHeldError, LeaseHolder
from fragment_core.state.schema import SCHEMA_VERSION
from fragment_core.state.store import (
    OutboxEntry,
    OutboxState,
    RecordState,
    RecordStatus,
    SourceState,
    StateStore,
)

__all__ = [
    "SCHEMA_VERSION",
    "LeaseHeldError",
    "LeaseHolder",
    "OutboxEntry",
    "OutboxState",
    "RecordState",
    "RecordStatus",
    "SourceState",
    "StateStore",
]
