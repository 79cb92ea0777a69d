"""The planner's view of the state store: records read a chunk at a time.

The fetch asks for the rows of each chunk of records it fetched (:meth:`StoredKnown.load`,
one query), decides from them which records it need not map (their fingerprint is the
one stored), and the planner then reads those same rows (:meth:`StoredKnown.get`). The
records that may have to close are read once the fetch has ended, a page at a time. So
memory does not grow with the state, only with the set of ids a fetch has seen.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from fragment_core.state import StateStore
from fragment_core.sync.plan import ACTIVE, OPEN_LIKE, Known


class StoredKnown:
    """:class:`~fragment_core.sync.plan.KnownRecords` read from a :class:`StateStore`."""

    def __init__(self, store: StateStore, source: str) -> None:
        self.store, self.source = store, source
        counts = store.status_counts(source)  # as the run starts
        self._open = sum(counts.get(status, 0) for status in OPEN_LIKE)
        self._active = sum(counts.get(status, 0) for status in ACTIVE)
        self._empty = not counts
        self._chunk: dict[str, Known] = {}
        self._ids: Sequence[str] = ()
        self._id_set: set[str] | None = None

    def load(self, external_ids: Sequence[str]) -> dict[str, Known]:
        """Read the rows of ``external_ids`` (those the state knows) and keep them for
        :meth:`get` until the next call."""
        rows = {} if self._empty else self.store.lookup(self.source, external_ids)
        self._chunk = {eid: Known._make(row) for eid, row in rows.items()}
        self._ids = external_ids
        self._id_set = None
        return self._chunk

    def get(self, external_id: str) -> Known | None:
        """The record's state: from the chunk loaded last, else one query."""
        row = self._chunk.get(external_id)
        if row is not None or self._empty:
            return row
        if self._id_set is None:
            self._id_set = set(self._ids)
        if external_id in self._id_set:
            return None  # looked up with its chunk: unknown
        found = self.store.lookup(self.source, [external_id]).get(external_id)
        return None if found is None else Known._make(found)

    def open_count(self) -> int:
        """Records whose task was open or reopening when the run started."""
        return self._open

    def active_count(self) -> int:
        """Records whose task was open, reopening or closing when the run started."""
        return self._active

    def candidates(self) -> Iterator[tuple[str, str, int]]:
        """Records whose task is open, reopening or closing, a page at a time."""
        return self.store.records_in(self.source, ACTIVE)
