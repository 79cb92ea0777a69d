"""A re-sync does not map records whose raw form is unchanged (their fingerprint is the
one stored), and still maps every record that changed, came back, or could have changed
for a reason outside the record (options, versions, hooks)."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
import sqlalchemy as sa

from fragment_core import hookimpl
from fragment_core.config import SourceSettings
from fragment_core.connector import Connector, ConnectorConfig, Record
from fragment_core.plugins import new_plugin_manager
from fragment_core.reports import RunOutcome
from fragment_core.sandbox.runner import run_sandbox
from fragment_core.state import RecordStatus, StateStore
from fragment_core.state.schema import records as records_table
from fragment_core.sync.engine import CHUNK, sync_source
from fragment_core.sync.fingerprint import Fingerprinter, mapping_key
from fragment_core.task import SOURCE_FIELD, RemoteTask, Task, TaskStatus, task_uid


class CountingConfig(ConnectorConfig):
    prefix: str = ""


class CountingConnector(Connector[CountingConfig]):
    """Records from a list; counts ``to_task`` calls."""

    name = "counting"

    def __init__(self, source: str, config: CountingConfig | None = None) -> None:
        super().__init__(config or CountingConfig(), source=source)
        self.records: list[Any] = []
        self.mapped: list[str] = []

    def fetch_backlog(self) -> Iterator[Record]:
        yield from self.records

    def to_task(self, record: Record) -> Task:
        rid = str(record["id"])
        self.mapped.append(rid)
        return Task.new(external_id=rid, title=f"{self.config.prefix}{record['title']}")


class Ticket:
    """A record that is an SDK object, not a dict: its fingerprint is unknown."""

    def __init__(self, rid: str, title: str) -> None:
        self.data = {"id": rid, "title": title}

    def __getitem__(self, key: str) -> Any:
        return self.data[key]


@pytest.fixture(scope="module")
def sandbox() -> Iterator[Any]:
    with run_sandbox() as handle:
        yield handle


class World:
    def __init__(self, sandbox: Any, name: str) -> None:
        self.name = name
        self.client = sandbox.client()
        self.store = StateStore("sqlite://")
        self.connector = CountingConnector(name)
        self.settings = SourceSettings(name=name, connector="counting")

    def backlog(self, n: int, title: str = "t") -> None:
        self.connector.records = [{"id": str(i), "title": f"{title} {i}"} for i in range(n)]

    def sync(self, **kwargs: Any) -> Any:
        self.connector.mapped = []
        return sync_source(self.settings, self.connector, self.client, self.store, **kwargs)

    def tasks(self) -> dict[str, RemoteTask]:
        listed = list(self.client.list_tasks(fields={SOURCE_FIELD: self.name}))
        assert len({t.uid for t in listed}) == len(listed)
        return {t.external_id: t for t in listed}


@pytest.fixture
def world(sandbox: Any, request: pytest.FixtureRequest) -> Iterator[World]:
    w = World(sandbox, f"fp-{request.node.name[:40]}")
    yield w
    w.client.close()
    w.store.close()


def test_unchanged_records_are_not_mapped_and_edits_are(world: World) -> None:
    world.backlog(2 * CHUNK + 7)  # several fetch chunks
    first = world.sync()
    assert first.created == 2 * CHUNK + 7 and len(world.connector.mapped) == 2 * CHUNK + 7
    again = world.sync()
    assert (again.outcome, again.unchanged, again.requests) == (RunOutcome.OK, 2 * CHUNK + 7, 1)
    assert world.connector.mapped == []  # nothing mapped, nothing written
    assert again.not_mapped == 2 * CHUNK + 7 and again.to_dict()["not_mapped"] == again.not_mapped
    world.connector.records[3]["title"] = "edited"
    world.connector.records[CHUNK + 1]["title"] = "edited too"
    edited = world.sync()
    assert edited.updated == 2 and sorted(world.connector.mapped) == sorted(["3", str(CHUNK + 1)])
    assert world.tasks()["3"].title == "edited"
    assert world.sync().updated == 0 and world.connector.mapped == []


def test_records_that_are_not_plain_dicts_are_always_mapped(world: World) -> None:
    world.connector.records = [Ticket(str(i), f"t {i}") for i in range(5)]
    world.sync()
    again = world.sync()
    assert again.unchanged == 5 and again.updated == 0 and len(world.connector.mapped) == 5
    assert all(s.record_hash is None for s in world.store.records(world.name))


def test_a_record_with_a_value_that_is_not_plain_data_is_always_mapped(world: World) -> None:
    world.backlog(3)
    world.connector.records[1]["seen"] = object()  # marshal refuses it: no fingerprint
    world.sync()
    world.sync()
    assert world.connector.mapped == ["1"]


def test_changed_options_map_every_record_once_more(world: World) -> None:
    world.backlog(4)
    world.sync()
    world.connector = CountingConnector(world.name, CountingConfig(prefix="KYC: "))
    world.connector.records = [{"id": str(i), "title": f"t {i}"} for i in range(4)]
    world.settings = SourceSettings(
        name=world.name, connector="counting", options=world.connector.config
    )
    changed = world.sync()
    assert changed.updated == 4 and len(world.connector.mapped) == 4
    assert world.tasks()["0"].title == "KYC: t 0"
    assert world.sync().unchanged == 4 and world.connector.mapped == []


class Upper:
    @hookimpl
    def fragment_transform_task(self, task: Task, record: Record) -> Task:
        return task.model_copy(
            update={"fields": task.fields.model_copy(update={"title": task.fields.title.upper()})}
        )


def test_a_new_transform_hook_maps_every_record_once_more(world: World) -> None:
    world.backlog(3)
    pm = new_plugin_manager(entrypoints=False)
    world.sync(pm=pm)
    pm.register(Upper(), name="upper")
    hooked = world.sync(pm=pm)
    assert hooked.updated == 3 and world.tasks()["1"].title == "T 1"
    assert world.sync(pm=pm).unchanged == 3 and world.connector.mapped == []


def test_skip_unchanged_false_and_remap_map_every_record(world: World) -> None:
    world.backlog(3)
    world.sync()
    assert world.sync(remap=True).unchanged == 3 and len(world.connector.mapped) == 3
    world.settings = SourceSettings(name=world.name, connector="counting", skip_unchanged=False)
    assert world.sync().unchanged == 3 and len(world.connector.mapped) == 3


def test_a_record_back_after_its_task_was_closed_is_reopened(world: World) -> None:
    world.backlog(12)
    world.sync()
    gone = world.connector.records.pop(5)
    assert world.sync().closed == 1
    world.connector.records.append(gone)  # the same raw record: its fingerprint is stored
    back = world.sync()
    assert back.reopened == 1 and world.connector.mapped == ["5"]
    assert world.tasks()["5"].status == TaskStatus.TODO


def test_an_operator_completion_is_not_reopened_by_an_unchanged_record(world: World) -> None:
    world.backlog(3)
    world.sync()
    world.client.patch_task(task_uid(world.name, "1"), {"status": "DONE"})
    done = world.sync()
    assert done.reopened == 0 and world.connector.mapped == []
    assert world.store.record(world.name, "1").status == RecordStatus.DONE
    world.connector.records[1]["title"] = "changed after completion"
    assert world.sync().reopened == 1  # reopen = "on-change"


def test_fingerprints_missing_from_the_state_are_stored_without_writing(world: World) -> None:
    world.backlog(6)
    world.sync()
    with world.store.engine.begin() as conn:  # as a state migrated from schema 1 is
        conn.execute(sa.update(records_table).values(record_hash=None))
    mapped_again = world.sync()
    assert (mapped_again.unchanged, mapped_again.requests) == (6, 1)
    assert len(world.connector.mapped) == 6
    assert all(s.record_hash for s in world.store.records(world.name))
    assert world.sync().unchanged == 6 and world.connector.mapped == []


def test_a_dry_run_stores_no_fingerprint(world: World) -> None:
    world.backlog(3)
    world.sync()
    with world.store.engine.begin() as conn:
        conn.execute(sa.update(records_table).values(record_hash=None))
    world.sync(dry_run=True)
    assert all(s.record_hash is None for s in world.store.records(world.name))


class RenamingConnector(CountingConnector):
    """The task's external id is not the record's id field: nothing can be skipped, and
    the state is still read right (one lookup per record, no duplicate)."""

    def to_task(self, record: Record) -> Task:
        task = super().to_task(record)
        return Task.new(external_id=f"X-{task.external_id}", title=task.fields.title)


def test_tasks_whose_id_differs_from_the_record_id_are_still_found(world: World) -> None:
    world.connector = RenamingConnector(world.name)
    world.backlog(4)
    assert world.sync().created == 4
    again = world.sync()
    assert (again.created, again.updated, again.unchanged, again.closed) == (0, 0, 4, 0)
    assert sorted(world.tasks()) == ["X-0", "X-1", "X-2", "X-3"]


def test_the_mapping_key_covers_what_shapes_a_task() -> None:
    connector = CountingConnector("s")
    base = SourceSettings(name="s", connector="counting", options=CountingConfig())
    key = mapping_key(base, connector)
    assert key == mapping_key(base, CountingConnector("s"))
    other_options = base.model_copy(update={"options": CountingConfig(prefix="x")})
    assert mapping_key(other_options, connector) != key
    assert mapping_key(base.model_copy(update={"name": "t"}), connector) != key

    class Bumped(CountingConnector):
        mapping_version = "2"

    assert mapping_key(base, Bumped("s")) != key
    pm = new_plugin_manager(entrypoints=False)
    hooked = new_plugin_manager(entrypoints=False)
    hooked.register(Upper(), name="upper")
    assert mapping_key(base, connector, pm) != mapping_key(base, connector, hooked)
    fingerprint = Fingerprinter(connector, key)
    record = {"id": "1", "title": "a", "n": 1.5, "tags": ["x"], "nested": {"k": None}}
    assert fingerprint(record) == fingerprint(dict(record))
    assert fingerprint({**record, "n": 1.6}) != fingerprint(record)
    assert Fingerprinter(connector, mapping_key(other_options, connector))(record) != (
        fingerprint(record)
    )
    assert fingerprint(Ticket("1", "a")) is None
    mixed = [record, Ticket("1", "a"), {"id": "2", "at": object()}, {**record, "n": 2}]
    assert fingerprint.many(mixed) == [fingerprint(r) for r in mixed]
    assert fingerprint.many(mixed)[1:3] == [None, None]


class SDKConnector(CountingConnector):
    """Records are SDK objects; the connector says what covers them."""

    def record_id(self, record: Record) -> str | None:
        return str(record["id"])

    def fingerprint(self, record: Record) -> bytes | None:
        if record["title"] == "broken":
            raise RuntimeError("cannot serialize")
        return repr(sorted(record.data.items())).encode()


def test_a_connector_fingerprint_for_sdk_objects_is_used_and_may_fail(world: World) -> None:
    world.connector = SDKConnector(world.name)
    world.connector.records = [Ticket(str(i), f"t {i}") for i in range(4)]
    world.sync()
    world.connector.records[2] = Ticket("2", "broken")
    again = world.sync()
    assert again.updated == 1 and world.connector.mapped == ["2"]  # mapped, not failed
    assert world.sync().updated == 0 and world.connector.mapped == ["2"]
