"""A synthetic source for the benchmarks: ``count`` records made up on the fly.

Records stream (nothing is held in memory), are the same on every run, and can be
edited or removed by a rule, so a benchmark knows exactly how many writes a re-sync
must make. Register it on a plugin manager with :func:`plugin_manager`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import Field

from fragment_core.connector import Connector, ConnectorConfig, Record
from fragment_core.hookspecs import hookimpl
from fragment_core.plugins import FragmentPluginManager, PluginInfo, new_plugin_manager
from fragment_core.task import Task

CATEGORIES = ("KYC review", "Document check", "Address proof", "Sanctions hit")
NAMES = ("Ada Lovelace", "Alan Turing", "Grace Hopper", "Edsger Dijkstra", "Barbara Liskov")
PRIORITIES = ("high", "normal", "low")
BASE_DUE = datetime(2026, 1, 5, 9, 0, tzinfo=UTC)


class BenchConfig(ConnectorConfig):
    """Options of the ``bench`` connector (``edit_every`` and ``remove_every`` also
    describe a backlog's changes: see :attr:`BenchConnector.changes`)."""

    count: int = Field(ge=0, description="Records in the backlog.")
    edit_every: int = Field(default=0, ge=0, description="Every n-th record is edited; 0 none.")
    remove_every: int = Field(
        default=0, ge=0, description="Every n-th record (offset by one) is gone; 0 none."
    )


def is_edited(index: int, config: BenchConfig) -> bool:
    """Whether record ``index`` carries an edit."""
    return bool(config.edit_every) and index % config.edit_every == 0


def is_removed(index: int, config: BenchConfig) -> bool:
    """Whether record ``index`` has left the backlog."""
    return bool(config.remove_every) and index % config.remove_every == 1 % config.remove_every


def expected_changes(config: BenchConfig) -> tuple[int, int]:
    """``(edited, removed)`` records among ``config.count``, relative to no edit at all."""
    edited = sum(
        1 for i in range(config.count) if is_edited(i, config) and not is_removed(i, config)
    )
    removed = sum(1 for i in range(config.count) if is_removed(i, config))
    return edited, removed


def make_record(index: int, *, edited: bool = False) -> dict[str, Any]:
    """Record ``index`` as a source API would return it (decoded JSON)."""
    rid = f"R-{index:07d}"
    name = NAMES[index % len(NAMES)]
    category = CATEGORIES[index % len(CATEGORIES)]
    due = BASE_DUE + timedelta(hours=index % 500)
    return {
        "id": rid,
        "title": f"{category}: {name}{' (updated)' if edited else ''}",
        "url": f"https://backoffice.example.com/customers/{rid}",
        "category": category,
        "name": name,
        "priority": PRIORITIES[index % len(PRIORITIES)],
        "amount": (index * 37) % 10_000 / 100,
        "due": due.isoformat(),
    }


def records(config: BenchConfig) -> Iterator[dict[str, Any]]:
    """The backlog described by ``config``, streamed."""
    for index in range(config.count):
        if not is_removed(index, config):
            yield make_record(index, edited=is_edited(index, config))


class BenchConnector(Connector[BenchConfig]):
    """A synthetic backlog of ``count`` records (benchmarks only)."""

    name = "bench"

    def __init__(self, config: BenchConfig, *, source: str = "") -> None:
        super().__init__(config, source=source)
        self.changes = config
        """Which records are edited or removed: the source's own changes, set apart from
        the options so that a re-sync sees a changed backlog under unchanged settings (a
        change of options maps every record again)."""

    def fetch_backlog(self) -> Iterator[Record]:
        """Every record, streamed."""
        return records(self.changes)

    def to_task(self, record: Record) -> Task:
        """Map a record as a typical connector does: title, url, due date, custom fields."""
        return Task.new(
            external_id=record["id"],
            title=record["title"],
            url=record["url"],
            due_at=datetime.fromisoformat(record["due"]),
            custom={
                "category": record["category"],
                "name": record["name"],
                "priority": record["priority"],
                "amount": record["amount"],
            },
        )

    def check(self) -> str:
        """Nothing to reach."""
        return f"{self.config.count} synthetic records"


@hookimpl
def fragment_register_connectors(register: Callable[[type[Connector]], None]) -> None:
    """Register the ``bench`` connector."""
    register(BenchConnector)


def plugin_manager() -> FragmentPluginManager:
    """A plugin manager with the built-ins and this module registered (no entry points)."""
    import sys

    pm = new_plugin_manager(entrypoints=False)
    module = sys.modules[__name__]
    pm.register_plugin(module, PluginInfo(name="bench", module=__name__))
    return pm
