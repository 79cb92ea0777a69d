"""The engine calls fragment_sync_finished and fragment_task_written_back on plugins."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from fragment_core import hookimpl
from fragment_core.config import SourceSettings
from fragment_core.connectors.file import FileConfig, FileConnector, write_sample
from fragment_core.plugins import new_plugin_manager
from fragment_core.reports import RunOutcome, SyncReport, WriteBackOutcome
from fragment_core.sandbox.runner import run_sandbox
from fragment_core.state import StateStore
from fragment_core.sync.engine import sync_source
from fragment_core.task import RemoteTask, task_uid


class Recorder:
    def __init__(self) -> None:
        self.reports: list[SyncReport] = []
        self.written: list[tuple[RemoteTask, WriteBackOutcome]] = []

    @hookimpl
    def fragment_sync_finished(self, report: SyncReport) -> None:
        self.reports.append(report)

    @hookimpl
    def fragment_task_written_back(self, task: RemoteTask, outcome: WriteBackOutcome) -> None:
        self.written.append((task, outcome))


def _run(tmp_path: Path) -> tuple[Recorder, Any]:
    recorder = Recorder()
    pm = new_plugin_manager(entrypoints=False)
    pm.register(recorder, name="recorder")
    path = write_sample(tmp_path / "backlog.csv", 4)
    source = SourceSettings(name="hooks", connector="file", options=FileConfig(path=path))
    connector = FileConnector(source.options, source="hooks")
    store = StateStore("sqlite://")
    with run_sandbox() as sandbox, sandbox.client() as client:
        sync_source(source, connector, client, store, pm=pm)
        client.patch_task(task_uid("hooks", "C-0002"), {"status": "DONE"})
        sync_source(source, connector, client, store, pm=pm)
        sync_source(source, connector, client, store, pm=pm, dry_run=True)
    return recorder, store


def test_hook_fragment_sync_finished(tmp_path: Path) -> None:
    recorder, _ = _run(tmp_path)
    assert [r.outcome for r in recorder.reports] == [
        RunOutcome.OK,
        RunOutcome.OK,
        RunOutcome.DRY_RUN,
    ]
    first, second, _ = recorder.reports
    assert (first.source, first.connector, first.created) == ("hooks", "file", 4)
    assert second.written_back == 1 and second.unchanged == 4
    assert first.finished_at is not None and first.requests >= 2


def test_hook_fragment_task_written_back(tmp_path: Path) -> None:
    recorder, _ = _run(tmp_path)
    ((task, outcome),) = recorder.written
    assert task.uid == task_uid("hooks", "C-0002") and task.external_id == "C-0002"
    assert outcome.ok and outcome.external_id == "C-0002" and outcome.source == "hooks"
    assert outcome.uid == task.uid and outcome.attempts == 1
    assert "C-0002" in outcome.message


def test_transform_wrapper_runs_in_a_sync(tmp_path: Path) -> None:
    """A plugin with only a wrapper=True transform changes what the engine writes."""

    class Tag:
        @hookimpl(wrapper=True)
        def fragment_transform_task(self):  # type: ignore[no-untyped-def]
            task = yield
            if task is False:
                return task
            return task.model_copy(update={"fields": task.fields.model_copy(
                update={"title": "[w] " + task.fields.title})})  # fmt: skip

    pm = new_plugin_manager(entrypoints=False)
    pm.register(Tag(), name="tag")
    path = write_sample(tmp_path / "backlog.csv", 3)
    source = SourceSettings(name="wrap", connector="file", options=FileConfig(path=path))
    connector = FileConnector(source.options, source="wrap")
    with run_sandbox() as sandbox, sandbox.client() as client:
        report = sync_source(source, connector, client, StateStore("sqlite://"), pm=pm)
        titles = [t.fields["title"] for t in client.list_tasks()]
    assert report.outcome is RunOutcome.OK, report
    assert len(titles) == 3 and all(title.startswith("[w] ") for title in titles)
