"""pytest fixture ``fragment_runner``: a configured runner against the fixture sandbox.

A connector author writes an end-to-end test in a few lines::

    def test_round_trip(fragment_runner, fake_vendor):
        runner = fragment_runner("tickets", {"base_url": fake_vendor.base_url})
        report = runner.sync()
        assert report.created == 3
        runner.complete("42", outcome={"resolution": "refunded"})
        runner.sync()                                    # the write-back runs here
        assert fake_vendor.effects["close:42"] == 1

The connector is looked up in the plugin registry (installed packages and built-ins), its
options are validated by its ``Config`` model, state lives in a SQLite file under the
test's ``tmp_path``.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from pydantic import SecretStr

from fragment_core.config import (
    ClosePolicy,
    Settings,
    SourceSettings,
    StateSettings,
    TasksApiSettings,
)
from fragment_core.connector import Connector
from fragment_core.plugins import get_plugin_manager, get_registry
from fragment_core.reports import SyncReport
from fragment_core.runner import Runner
from fragment_core.sandbox.runner import SandboxHandle
from fragment_core.task import SOURCE_FIELD, RemoteTask, task_uid


class ConfiguredRunner:
    """One source wired to the sandbox through a real :class:`~fragment_core.runner.Runner`."""

    def __init__(self, settings: Settings, connector: Connector) -> None:
        self.settings = settings
        self.source = settings.sources[0]
        self.connector = connector
        self.pm = get_plugin_manager()
        self.runner = Runner(settings, pm=self.pm)
        self.client = self.runner.client
        self.store = self.runner.store

    def sync(self) -> SyncReport:
        """One run of the source (the same code path as ``fragment sync``)."""
        report = self.runner.run_once(self.source, self.connector)
        assert report is not None  # one run at a time in a test
        return report

    def tasks(self) -> dict[str, RemoteTask]:
        """The source's tasks in the sandbox, by external id."""
        listed = self.client.list_tasks(fields={SOURCE_FIELD: self.source.name})
        return {task.external_id or str(task.uid): task for task in listed}

    def complete(self, external_id: str, outcome: Mapping[str, Any] | None = None) -> RemoteTask:
        """Complete a task as an operator would (status DONE, outcome in ``form_data``)."""
        changes: dict[str, Any] = {"status": "DONE"}
        if outcome is not None:
            changes["form_data"] = dict(outcome)
        return self.client.patch_task(task_uid(self.source.name, external_id), changes)

    def close(self) -> None:
        """Release the client, the store and the connector."""
        self.connector.close()
        self.client.close()
        self.store.close()


@pytest.fixture
def fragment_runner(
    sandbox: SandboxHandle, tmp_path: Path
) -> Iterator[Callable[..., ConfiguredRunner]]:
    """Factory: ``fragment_runner(connector, options, source="test", **source_settings)``."""
    with contextlib.ExitStack() as stack:

        def make(
            connector: str,
            options: Mapping[str, Any] | None = None,
            *,
            source: str = "test",
            **source_settings: Any,
        ) -> ConfiguredRunner:
            cls = get_registry().get(connector)
            validated = cls.Config.model_validate(dict(options or {}))
            source_settings.setdefault("close", ClosePolicy())
            settings = Settings(
                tasks_api=TasksApiSettings(
                    url=sandbox.url, token=SecretStr(sandbox.token), rate_limit=None
                ),
                state=StateSettings(url=f"sqlite:///{tmp_path / f'{source}-state.db'}"),
                sources=[
                    SourceSettings(
                        name=source, connector=connector, options=validated, **source_settings
                    )
                ],
            )
            configured = ConfiguredRunner(settings, cls(validated, source=source))
            stack.callback(configured.close)
            return configured

        yield make
