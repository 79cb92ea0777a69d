"""The Connector base class: ``where``, the lazy ``client``, ``close()``, capabilities per
instance and ``Config`` inferred from ``Connector[ConfigT]``."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar

import pytest

from fragment_core.config import Settings, SourceSettings, TasksApiSettings
from fragment_core.connector import Capability, Completion, Connector, ConnectorConfig, Record
from fragment_core.connectors.file import FileConfig, FileConnector
from fragment_core.connectors.http import HttpConnector
from fragment_core.connectors.http.config import HttpConfig
from fragment_core.hookspecs import hookimpl
from fragment_core.plugins import get_registry, new_plugin_manager
from fragment_core.runner import Runner
from fragment_core.sandbox.runner import run_sandbox
from fragment_core.task import RemoteTask, Task


class ItemsConfig(ConnectorConfig):
    count: int = 2


class OtherConfig(ConnectorConfig):
    pass


class FakeClient:
    """A vendor client that counts how often it is built and closed."""

    built: ClassVar[int] = 0
    closed: ClassVar[int] = 0

    def __init__(self, count: int) -> None:
        type(self).built += 1
        self.count = count

    def items(self) -> list[dict[str, object]]:
        return [{"id": str(i), "title": f"item {i}"} for i in range(self.count)]

    def close(self) -> None:
        type(self).closed += 1


class Items(Connector[ItemsConfig]):
    name = "items"

    def build_client(self) -> FakeClient:
        return FakeClient(self.config.count)

    def fetch_backlog(self) -> Iterator[Record]:
        yield from self.client.items()

    def to_task(self, record: Record) -> Task:
        return Task.new(external_id=str(record["id"]), title=str(record["title"]))


@pytest.fixture(autouse=True)
def _counts() -> None:
    FakeClient.built = FakeClient.closed = 0


def test_config_is_inferred_from_the_generic_parameter() -> None:
    assert Items.Config is ItemsConfig
    assert "Config" in Items.__dict__  # set on the class, not only found by lookup
    assert HttpConnector.Config is HttpConfig
    assert FileConnector.Config is FileConfig


def test_an_explicit_config_wins_and_subclasses_inherit_it() -> None:
    class Explicit(Connector[ItemsConfig]):
        Config = OtherConfig

    class Child(Items):
        pass

    class Generic_(Connector):  # type: ignore[type-arg]
        pass

    assert Explicit.Config is OtherConfig
    assert Child.Config is ItemsConfig
    assert Generic_.Config is ConnectorConfig


def test_where_names_the_source_and_the_connector() -> None:
    assert Items(ItemsConfig(), source="crm").where == "source 'crm' (items)"
    assert Items(ItemsConfig()).where == "source 'items' (items)"


def test_the_client_is_built_lazily_once_and_cached() -> None:
    connector = Items(ItemsConfig(count=3))
    assert FakeClient.built == 0  # nothing built by the constructor
    first = connector.client
    assert connector.client is first and FakeClient.built == 1
    assert len(list(connector.fetch_backlog())) == 3
    assert FakeClient.built == 1


def test_close_closes_the_client_once_and_a_later_use_builds_a_new_one() -> None:
    connector = Items(ItemsConfig())
    connector.close()  # nothing built: nothing to close
    assert FakeClient.closed == 0 and FakeClient.built == 0
    first = connector.client
    connector.close()
    connector.close()
    assert FakeClient.closed == 1
    assert connector.client is not first and FakeClient.built == 2


def test_close_accepts_a_client_without_close() -> None:
    class NoClose(Items):
        def build_client(self) -> object:
            return object()

    connector = NoClose(ItemsConfig())
    assert connector.client is not None
    connector.close()  # no error


def test_a_connector_without_build_client_says_so() -> None:
    class Bare(Connector[ItemsConfig]):
        pass

    with pytest.raises(NotImplementedError, match="Bare does not implement build_client"):
        _ = Bare(ItemsConfig()).client


def test_capabilities_on_the_class_and_per_instance() -> None:
    class Narrow(Items):
        def on_complete(self, task: RemoteTask, completion: Completion) -> str | None:
            return None

        def configured_capabilities(self) -> frozenset[Capability]:
            return super().configured_capabilities() - {Capability.WRITE_BACK}

    assert Narrow.capabilities() == {Capability.WRITE_BACK}
    assert Narrow(ItemsConfig()).capabilities() == frozenset()
    assert Items.capabilities() == Items(ItemsConfig()).capabilities() == frozenset()


def test_http_capabilities_follow_its_options() -> None:
    options = {
        "base_url": "http://127.0.0.1:9/",
        "backlog": {"path": "/items"},
        "mapping": {"external_id": "id", "title": "title"},
    }
    connector = HttpConnector(options)
    assert HttpConnector.capabilities() == {Capability.INCREMENTAL, Capability.WRITE_BACK}
    assert connector.capabilities() == frozenset()
    assert "capabilities" not in HttpConnector.__dict__  # no descriptor of its own


def test_completion_documents_every_field() -> None:
    doc = Completion.__doc__ or ""
    for f in dataclasses.fields(Completion):
        assert f"``{f.name}``" in doc, f.name
    guide = (Path(__file__).parents[1] / "docs" / "writing-a-connector.md").read_text()
    for f in dataclasses.fields(Completion):
        assert f"`{f.name}`" in guide, f.name


class ItemsPlugin:
    @hookimpl
    def fragment_register_connectors(self, register: Callable[[type[Connector]], None]) -> None:
        register(Items)


def test_the_runner_closes_the_connector_when_the_run_ends(tmp_path: Path) -> None:
    pm = new_plugin_manager(entrypoints=False)
    pm.register(ItemsPlugin())
    with run_sandbox() as sandbox:
        settings = Settings(
            tasks_api=TasksApiSettings(url=sandbox.url, token=sandbox.token, rate_limit=None),
            state={"url": f"sqlite:///{tmp_path / 'state.db'}"},
            sources=[SourceSettings(name="crm", connector="items")],
        )
        runner = Runner(settings, pm=pm, registry=get_registry(pm))
        try:
            runner.run(once=True)
        finally:
            runner.client.close()
            runner.store.close()
        assert [r.created for r in runner.reports] == [2]
        assert FakeClient.built == 1 and FakeClient.closed == 1
        with sandbox.client() as client:
            assert len(list(client.list_tasks())) == 2
