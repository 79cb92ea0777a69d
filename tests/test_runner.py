"""``fragment run``: sources at their interval, concurrently, never one source twice at
once; SIGTERM finishes the chunk in flight, saves state and exits 0."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from datetime import timedelta
from pathlib import Path
from typing import ClassVar

from fragment_core.config import Settings, SourceSettings, TasksApiSettings
from fragment_core.connector import Connector, ConnectorConfig, Record
from fragment_core.connectors.file import FileConfig, write_sample
from fragment_core.hookspecs import hookimpl
from fragment_core.plugins import get_registry, new_plugin_manager
from fragment_core.runner import Runner
from fragment_core.sandbox.runner import run_sandbox
from fragment_core.state import StateStore
from fragment_core.task import Task


def test_sources_run_at_their_interval_and_never_overlap(tmp_path: Path) -> None:
    pm = new_plugin_manager(entrypoints=False)
    sources = [
        SourceSettings(
            name=name,
            connector="file",
            every=timedelta(seconds=0.3),
            options=FileConfig(path=write_sample(tmp_path / f"{name}.csv", 3)),
        )
        for name in ("a", "b")
    ]
    with run_sandbox() as sandbox:
        settings = Settings(
            tasks_api=TasksApiSettings(url=sandbox.url, token=sandbox.token, rate_limit=None),
            state={"url": f"sqlite:///{tmp_path / 'state.db'}"},
            sources=sources,
        )
        runner = Runner(settings, pm=pm, registry=get_registry(pm))
        thread = threading.Thread(target=runner.run)
        thread.start()
        time.sleep(1.5)
        runner.stop.set()
        thread.join(timeout=10)
        assert not thread.is_alive()
        runs = {name: [r for r in runner.reports if r.source == name] for name in ("a", "b")}
        assert all(len(r) >= 3 for r in runs.values()), runs
        for reports in runs.values():
            assert reports[0].created == 3 and all(r.unchanged == 3 for r in reports[1:])
            spans = sorted((r.started_at, r.finished_at) for r in reports)
            assert all(a[1] <= b[0] for a, b in itertools.pairwise(spans))
        assert sandbox.stats()["tasks"] == 6
        runner.client.close()


class ChangesConfig(ConnectorConfig):
    pass


class ChangesConnector(Connector[ChangesConfig]):
    """Shared records with a modification counter; fetch_changes serves those past the cursor."""

    name = "changes"
    cursor_field = "modified"
    records: ClassVar[list[dict[str, object]]] = []
    fetches: ClassVar[list[str | None]] = []  # "full" or the cursor asked for

    def fetch_backlog(self) -> Iterator[Record]:
        self.fetches.append("full")
        yield from list(self.records)

    def fetch_changes(self, cursor: str | None) -> Iterator[Record]:
        self.fetches.append(cursor)
        yield from [r for r in self.records if cursor is None or int(r["modified"]) > int(cursor)]

    def to_task(self, record: Record) -> Task:
        return Task.new(external_id=str(record["id"]), title=str(record["title"]))


class ChangesPlugin:
    @hookimpl
    def fragment_register_connectors(self, register: Callable[[type[Connector]], None]) -> None:
        register(ChangesConnector)


def test_run_fetches_incrementally_between_full_fetches(tmp_path: Path) -> None:
    ChangesConnector.records = [{"id": i, "title": f"t {i}", "modified": i} for i in range(1, 4)]
    ChangesConnector.fetches = []
    pm = new_plugin_manager(entrypoints=False)
    pm.register(ChangesPlugin())
    source = SourceSettings(
        name="inc", connector="changes", every=timedelta(seconds=0.2), full_every=timedelta(hours=1)
    )
    with run_sandbox() as sandbox:
        settings = Settings(
            tasks_api=TasksApiSettings(url=sandbox.url, token=sandbox.token, rate_limit=None),
            state={"url": f"sqlite:///{tmp_path / 'state.db'}"},
            sources=[source],
        )
        runner = Runner(settings, pm=pm, registry=get_registry(pm))
        thread = threading.Thread(target=runner.run)
        thread.start()
        deadline = time.monotonic() + 10
        while len(runner.reports) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        ChangesConnector.records[0] = {"id": 1, "title": "t 1 edited", "modified": 4}
        while not any(r.updated for r in runner.reports) and time.monotonic() < deadline:
            time.sleep(0.05)
        runner.stop.set()
        thread.join(timeout=10)
        runner.client.close()
        modes = [r.mode for r in runner.reports]
        assert modes[0] == "full" and modes[1:] and set(modes[1:]) == {"incremental"}, modes
        assert ChangesConnector.fetches[:2] == ["full", "3"]
        assert runner.store.source_state("inc").cursor == "4"
        runner.store.close()
        assert sum(r.updated for r in runner.reports) == 1
        assert sum(r.created for r in runner.reports) == 3
        with sandbox.client() as client:
            titles = sorted(t.title for t in client.list_tasks())
        assert titles == ["t 1 edited", "t 2", "t 3"]


def test_a_busy_source_is_skipped_not_run_twice(tmp_path: Path) -> None:
    pm = new_plugin_manager(entrypoints=False)
    source = SourceSettings(
        name="x", connector="file", options=FileConfig(path=write_sample(tmp_path / "x.csv"))
    )
    settings = Settings(
        tasks_api=TasksApiSettings(url="http://127.0.0.1:9/api/v1", token="t"),
        sources=[source],
    )
    runner = Runner(
        settings, pm=pm, registry=get_registry(pm), client=object(), store=StateStore("sqlite://")
    )
    runner._locks["x"] = lock = threading.Lock()
    lock.acquire()
    assert runner.run_once(source, None) is None  # type: ignore[arg-type]


def test_sigterm_finishes_the_chunk_saves_and_exits_zero(tmp_path: Path) -> None:
    backlog = write_sample(tmp_path / "backlog.csv", 400)
    with run_sandbox(latency="50ms") as sandbox:
        (tmp_path / "token").write_text(sandbox.token)
        config = tmp_path / "fragment.toml"
        config.write_text(
            f'[tasks_api]\nurl = "{sandbox.url}"\ntoken_file = "token"\nrate_limit = 0\n'
            f"batch_size = 20\n"
            f'[state]\nurl = "sqlite:///{(tmp_path / "state.db").as_posix()}"\n'
            f'[[sources]]\nname = "kyc"\nconnector = "file"\nevery = "1h"\n'
            f'[sources.options]\npath = "{backlog.as_posix()}"\n'
        )
        process = subprocess.Popen(
            [sys.executable, "-m", "fragment_core", "--config", str(config), "run"],
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        deadline = time.monotonic() + 30
        while sandbox.stats()["tasks"] < 60:
            assert process.poll() is None and time.monotonic() < deadline
            time.sleep(0.02)
        process.send_signal(signal.SIGTERM)
        output, _ = process.communicate(timeout=30)
        assert process.returncode == 0, output
        assert "finishing the current chunk" in output and "interrupted" in output
        written = sandbox.stats()["tasks"]
        assert written < 400
        state = StateStore(f"sqlite:///{(tmp_path / 'state.db').as_posix()}")
        assert len(state.record_map("kyc")) == written  # every applied chunk was saved
        assert state.last_runs("kyc")[0]["outcome"] == "partial"
        state.close()
