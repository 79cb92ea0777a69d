"""The registration and transform hooks, as a plugin author uses them."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest

from fragment_core import hookimpl
from fragment_core.config import SourceSettings
from fragment_core.connector import Connector, ConnectorConfig, Record
from fragment_core.errors import BadRecordError, PluginError
from fragment_core.plugins import (
    get_registry,
    new_plugin_manager,
    notify_sync_finished,
    transform_task,
)
from fragment_core.reports import SyncReport
from fragment_core.task import Task

SOURCE = SourceSettings(name="support", connector="tickets")
RECORD: Record = {"id": "7", "priority": "high"}


class Tickets(Connector[ConnectorConfig]):
    """Tickets of a test desk."""

    name = "tickets"

    def fetch_backlog(self) -> Iterator[Record]:
        yield RECORD

    def to_task(self, record: Record) -> Task:
        return Task.new(external_id=record["id"], title=f"Ticket {record['id']}")


def manager(*plugins: object, **named: object) -> Any:
    pm = new_plugin_manager(entrypoints=False)
    for plugin in plugins:
        pm.register(plugin)
    for name, plugin in named.items():
        pm.register(plugin, name=name)
    pm.check_pending()
    return pm


def test_hook_fragment_register_connectors() -> None:
    class Plugin:
        @hookimpl
        def fragment_register_connectors(self, register: Callable[[type[Connector]], None]):
            register(Tickets)

    plugin = Plugin()
    pm = manager(plugin)
    registry = get_registry(pm)
    assert registry.get("tickets") is Tickets
    assert registry.entry("tickets").plugin.name == pm.get_name(plugin)
    assert registry.entry("tickets").capabilities == []


def test_register_connectors_goes_through_the_hook_caller() -> None:
    """A ``wrapper=True`` registration runs around the others, ``tryfirst`` orders them,
    tracing sees the call, each class is attributed to its plugin, and a failing one is
    named."""
    seen: list[str] = []

    class Desk(Tickets):
        name = "desk"

    class First:
        @hookimpl(tryfirst=True)
        def fragment_register_connectors(self, register: Callable[[type[Connector]], None]):
            seen.append("first")
            register(Tickets)

    class Second:
        @hookimpl
        def fragment_register_connectors(self, register: Callable[[type[Connector]], None]):
            seen.append("second")

    class Around:
        @hookimpl(wrapper=True)
        def fragment_register_connectors(self, register: Callable[[type[Connector]], None]):
            seen.append("before")
            result = yield
            register(Desk)  # a wrapper may register too, after the others
            seen.append("after")
            return result

    first, around = First(), Around()
    pm = manager(Second(), first, around)  # Second registered first: it runs last anyway
    traced: list[str] = []
    undo = pm.add_hookcall_monitoring(lambda name, impls, kw: traced.append(name), lambda *a: None)
    registry = get_registry(pm)
    undo()
    assert seen == ["before", "first", "second", "after"]
    assert traced == ["fragment_register_connectors"]
    assert registry.entry("tickets").plugin.name == pm.get_name(first)
    assert registry.entry("desk").plugin.name == pm.get_name(around)

    class Broken:
        def fragment_register_connectors(self, register: Callable[[type[Connector]], None]):
            raise KeyError("tickets")

    broken = Broken()
    with_broken = manager(first, broken)
    name = with_broken.get_name(broken)
    with pytest.raises(PluginError, match=rf"plugin '{name}' .* KeyError: 'tickets'"):
        get_registry(with_broken)


def test_hook_fragment_transform_task() -> None:
    task = Tickets(ConnectorConfig()).to_task(RECORD)

    class AddPriority:
        @hookimpl
        def fragment_transform_task(self, task: Task, record: Record, source: SourceSettings):
            custom = {**task.fields.custom, "priority": record["priority"], "src": source.name}
            return Task.new(external_id=task.external_id, title=task.fields.title, custom=custom)

    class Shout:  # registered last, runs first unless steered: mark it trylast
        @hookimpl(trylast=True)
        def fragment_transform_task(self, task: Task):
            return task.model_copy(update={"fields": task.fields.model_copy(
                update={"title": task.fields.title.upper()})})  # fmt: skip

    class LeaveAlone:
        @hookimpl(tryfirst=True)
        def fragment_transform_task(self, task: Task) -> None:
            assert task.fields.title == "Ticket 7"  # sees the connector's task first

    pm = manager(AddPriority(), Shout(), LeaveAlone())
    result = transform_task(pm, task, RECORD, SOURCE)
    assert result is not None
    assert result.fields.title == "TICKET 7"
    assert result.fields.custom == {"priority": "high", "src": "support"}
    assert task.fields.title == "Ticket 7"  # the input is not modified


def test_transform_task_false_drops_and_stops_the_chain() -> None:
    calls: list[str] = []

    class Drop:
        @hookimpl
        def fragment_transform_task(self, record: Record):
            calls.append("drop")
            return False if record["priority"] == "high" else None

    class After:
        @hookimpl(trylast=True)
        def fragment_transform_task(self):
            calls.append("after")

    task = Tickets(ConnectorConfig()).to_task(RECORD)
    assert transform_task(manager(Drop(), After()), task, RECORD, SOURCE) is None
    assert calls == ["drop"]
    assert transform_task(manager(), task, RECORD, SOURCE) is task


def test_transform_task_bad_return_value_names_the_plugin() -> None:
    class Wrong:
        @hookimpl
        def fragment_transform_task(self, task: Task):
            return {"title": "x"}

    task = Tickets(ConnectorConfig()).to_task(RECORD)
    with pytest.raises(PluginError) as excinfo:
        transform_task(manager(wrong=Wrong()), task, RECORD, SOURCE)
    assert str(excinfo.value) == (
        f"plugin 'wrong' (module {__name__}): fragment_transform_task returned dict; "
        "expected a Task, None (unchanged) or False (drop)"
    )


def test_transform_task_exceptions() -> None:
    class Crash:
        @hookimpl
        def fragment_transform_task(self, task: Task):
            raise KeyError("region")

    class Bad:
        @hookimpl
        def fragment_transform_task(self, task: Task):
            raise BadRecordError("no region", record_id=task.external_id, field="region")

    task = Tickets(ConnectorConfig()).to_task(RECORD)
    with pytest.raises(PluginError) as excinfo:
        transform_task(manager(crash=Crash()), task, RECORD, SOURCE)
    assert str(excinfo.value) == (
        f"plugin 'crash' (module {__name__}) failed in "
        "fragment_transform_task for record '7': KeyError: 'region'"
    )
    with pytest.raises(BadRecordError, match="record '7', field 'region': no region"):
        transform_task(manager(Bad()), task, RECORD, SOURCE)


def test_failing_observer_does_not_stop_the_others(caplog: pytest.LogCaptureFixture) -> None:
    seen: list[str] = []

    class Broken:
        @hookimpl
        def fragment_sync_finished(self, report: SyncReport) -> None:
            raise RuntimeError("disk full")

    class Recorder:
        @hookimpl(trylast=True)
        def fragment_sync_finished(self, report: SyncReport) -> None:
            seen.append(report.source)

    errors = notify_sync_finished(manager(Broken(), Recorder()), SyncReport("support", "tickets"))
    assert seen == ["support"]
    assert (
        len(errors) == 1
        and "failed in fragment_sync_finished: RuntimeError: disk full" in (errors[0])
    )
    assert errors[0] in caplog.text


def test_transform_task_wrapper_runs_and_can_change_the_result() -> None:
    seen: list[object] = []

    class Upper:
        @hookimpl
        def fragment_transform_task(self, task: Task):
            return task.model_copy(update={"fields": task.fields.model_copy(
                update={"title": task.fields.title.upper()})})  # fmt: skip

    class Wrap:
        @hookimpl(wrapper=True)
        def fragment_transform_task(self, task: Task):
            assert task.fields.title == "Ticket 7"  # wraps the whole chain
            result = yield
            seen.append(result.fields.title)
            return result.model_copy(update={"fields": result.fields.model_copy(
                update={"title": result.fields.title + "!"})})  # fmt: skip

    task = Tickets(ConnectorConfig()).to_task(RECORD)
    result = transform_task(manager(Upper(), Wrap()), task, RECORD, SOURCE)
    assert seen == ["TICKET 7"]
    assert result is not None and result.fields.title == "TICKET 7!"


def test_transform_task_wrapper_can_drop_and_sees_drops() -> None:
    class Drop:
        @hookimpl
        def fragment_transform_task(self):
            return False

    class Veto:
        @hookimpl(wrapper=True)
        def fragment_transform_task(self, task: Task):
            result = yield
            assert result is False
            return task  # keeps what the chain dropped

    task = Tickets(ConnectorConfig()).to_task(RECORD)
    assert transform_task(manager(Drop(), Veto()), task, RECORD, SOURCE) is task

    class DropAll:
        @hookimpl(wrapper=True)
        def fragment_transform_task(self):
            yield
            return False

    assert transform_task(manager(DropAll()), task, RECORD, SOURCE) is None


def test_transform_task_tryfirst_trylast_order() -> None:
    calls: list[str] = []

    def plugin(label: str, **opts: bool) -> object:
        class P:
            @hookimpl(**opts)
            def fragment_transform_task(self) -> None:
                calls.append(label)

        return P()

    pm = manager(
        plugin("last", trylast=True), plugin("first", tryfirst=True), plugin("a"), plugin("b")
    )
    task = Tickets(ConnectorConfig()).to_task(RECORD)
    assert transform_task(pm, task, RECORD, SOURCE) is task
    assert calls == ["first", "b", "a", "last"]  # registered last runs first, unless steered


def test_hook_calls_are_traced() -> None:
    class Keep:
        @hookimpl
        def fragment_transform_task(self) -> None:
            return None

    class Observe:
        @hookimpl
        def fragment_sync_finished(self, report: SyncReport) -> None:
            return None

    pm = manager(Keep(), Observe())
    lines: list[str] = []
    pm.trace.root.setwriter(lines.append)
    undo = pm.enable_tracing()
    try:
        task = Tickets(ConnectorConfig()).to_task(RECORD)
        transform_task(pm, task, RECORD, SOURCE)
        notify_sync_finished(pm, SyncReport("support", "tickets"))
    finally:
        undo()
    text = "".join(lines)
    assert "fragment_transform_task" in text
    assert "fragment_sync_finished" in text


def test_observer_wrapper_runs_around_the_observers() -> None:
    calls: list[str] = []

    class Observe:
        @hookimpl
        def fragment_sync_finished(self, report: SyncReport) -> None:
            calls.append("observer")
            raise RuntimeError("boom")  # isolated: the wrapper still completes

    class Wrap:
        @hookimpl(wrapper=True)
        def fragment_sync_finished(self, report: SyncReport):
            calls.append("before")
            result = yield
            calls.append("after")
            return result

    errors = notify_sync_finished(manager(Observe(), Wrap()), SyncReport("support", "tickets"))
    assert calls == ["before", "observer", "after"]
    assert len(errors) == 1 and "boom" in errors[0]
