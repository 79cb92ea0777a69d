"""Fleet mode against a real Temporal dev server, with a worker in this process: Schedules
applied and listed, one run per source (workflow id, then the lease), and a history
that does not grow with the source."""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
import uuid
from collections import Counter
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from temporalio.client import Client, WorkflowExecutionStatus

from fragment_core.config import Settings, load_settings
from fragment_core.plugins import get_registry
from fragment_core.sandbox.runner import run_sandbox
from fragment_core.state import StateStore
from fragment_core.task import SOURCE_FIELD, task_uid
from fragment_core.temporal.client import resolve
from fragment_core.temporal.fleet import apply_schedules, list_schedules, start_run
from fragment_core.temporal.types import WORKFLOW_NAME, RunInput, RunSummary, workflow_id
from fragment_core.temporal.worker import run_worker
from fragment_core.testing.backoffice import FakeBackoffice

TOKEN = "backoffice-token-fleet-temporal-31c4-secret"
ENV = {"BACKOFFICE_TOKEN": TOKEN}


def _settings(folder: Path, sandbox: Any, offices: dict[str, FakeBackoffice], address: str,
              every: dict[str, str] | None = None) -> Settings:
    (folder / "token").write_text(sandbox.token)
    queue = f"q-{uuid.uuid4().hex[:8]}"
    text = (
        f'[tasks_api]\nurl = "{sandbox.url}"\ntoken_file = "token"\nrate_limit = 0\n'
        f'[state]\nurl = "sqlite:///{(folder / "state.db").as_posix()}"\n'
        f'[fleet]\naddress = "{address}"\ntask_queue = "{queue}"\nheartbeat_timeout = "5s"\n'
    )
    for name, office in offices.items():
        text += f'[[sources]]\nname = "{name}"\nconnector = "http"\n'
        text += f'every = "{(every or {}).get(name, "1h")}"\n' + office.source_options(
            "BACKOFFICE_TOKEN"
        )
    config = folder / f"fragment-{uuid.uuid4().hex[:6]}.toml"
    config.write_text(text)
    return load_settings(config, registry=get_registry(), env=ENV)


@pytest.fixture
def offices() -> Iterator[dict[str, FakeBackoffice]]:
    made = {
        "small": FakeBackoffice(30, token=TOKEN, prefix="S"),
        "large": FakeBackoffice(1200, token=TOKEN, prefix="L"),
    }
    for office in made.values():
        office.api.__enter__()
    yield made
    for office in made.values():
        office.api.__exit__(None, None, None)


def _with_worker(
    settings: Settings, body: Callable[[Client], Awaitable[Any]]
) -> Any:
    """Run ``body(client)`` while a worker of ``settings`` polls, in this process."""
    connection = resolve(settings.fleet, env={})

    async def main() -> Any:
        stop = asyncio.Event()
        worker = asyncio.create_task(
            run_worker(settings, connection, registry=get_registry(), stop=stop)
        )
        try:
            client = await connection.client()
            return await asyncio.wait_for(body(client), timeout=60)
        finally:
            stop.set()
            await worker

    return asyncio.run(main())


def test_history_stays_small_whatever_the_source_size(
    tmp_path: Path, temporal_address: str, offices: dict[str, FakeBackoffice]
) -> None:
    with run_sandbox() as sandbox:
        settings = _settings(tmp_path, sandbox, offices, temporal_address)
        queue = settings.fleet.task_queue

        async def body(client: Client) -> dict[str, tuple[int, int]]:
            sizes = {}
            for name in offices:
                wid, summary = await start_run(client, name, queue, heartbeat_seconds=5)
                assert summary.outcome == "ok", summary
                history = await client.get_workflow_handle(wid).fetch_history()
                sizes[name] = (len(history.events), sum(e.ByteSize() for e in history.events))
            return sizes

        sizes = _with_worker(settings, body)
        client = sandbox.client()
        large = list(client.list_tasks(fields={SOURCE_FIELD: "large"}, page_size=1000))
        client.close()
    assert len(large) == 1200
    # the same events for 30 and 1,200 records: records never travel through the history
    assert sizes["small"][0] == sizes["large"][0]
    assert abs(sizes["small"][1] - sizes["large"][1]) < 200  # the counts' digits differ
    assert sizes["large"][1] < 16_000


def test_one_run_per_source_by_workflow_id_then_by_lease(
    tmp_path: Path, temporal_address: str, offices: dict[str, FakeBackoffice]
) -> None:
    with run_sandbox(latency="20ms") as sandbox:
        settings = _settings(tmp_path, sandbox, offices, temporal_address)
        queue = settings.fleet.task_queue
        store = StateStore(settings.state.url)

        async def body(client: Client) -> Any:
            # two starts by hand at once: the second follows the first (same workflow id)
            first, second = await asyncio.gather(
                start_run(client, "large", queue), start_run(client, "large", queue)
            )
            # a run that finds the lease held by another (a schedule's run, fragment run
            # on a machine...) does nothing and says who holds it
            with store.lease("small"):
                busy = await start_run(client, "small", queue)
            return first, second, busy

        first, second, busy = _with_worker(settings, body)
        runs = store.last_runs("large", limit=5)
        store.close()
    assert first[0] == second[0] == workflow_id("large")
    assert first[1].run_row == second[1].run_row and first[1].outcome == "ok"
    assert len(runs) == 1  # one run, not two
    assert busy[1].outcome == "busy" and "is being synced by PID" in busy[1].messages[0]
    assert offices["small"].calls == {}  # nothing ran for the busy source


def test_schedules_apply_creates_updates_deletes_and_lists_results(
    tmp_path: Path, temporal_address: str, offices: dict[str, FakeBackoffice]
) -> None:
    with run_sandbox() as sandbox:
        both = _settings(tmp_path, sandbox, offices, temporal_address)
        queue = both.fleet.task_queue
        changed = _settings(tmp_path, sandbox, offices, temporal_address, {"small": "10m"})
        changed.fleet.task_queue = queue
        only_small = _settings(tmp_path, sandbox, {"small": offices["small"]}, temporal_address)
        only_small.fleet.task_queue = queue
        store = StateStore(both.state.url)

        async def body(client: Client) -> Any:
            async def actions(settings: Settings) -> dict[str, str]:
                changes = await apply_schedules(client, settings, queue)
                return {c.source: c.action for c in changes}

            steps = [await actions(both), await actions(both), await actions(changed)]
            # a Schedule's run, triggered now: its result shows in the list
            handle = client.get_schedule_handle("fragment-sync:small:schedule")
            await handle.trigger()
            for _ in range(300):
                rows = {r["source"]: r for r in await list_schedules(client, store)}
                if rows["small"]["last_status"] == "completed":
                    break
                await asyncio.sleep(0.1)
            listed = rows
            steps.append(await actions(only_small))
            after = {r["source"] for r in await list_schedules(client, store)}
            for sid in ("fragment-sync:small:schedule",):
                await client.get_schedule_handle(sid).delete()
            return steps, listed, after

        steps, listed, after = _with_worker(both, body)
        store.close()
    assert steps[0] == {"small": "created", "large": "created"}
    assert steps[1] == {"small": "unchanged", "large": "unchanged"}
    assert steps[2] == {"small": "updated", "large": "unchanged"}
    assert steps[3] == {"small": "updated", "large": "deleted"}  # back to 1h, large gone
    assert listed["small"]["every"] == 600 and listed["large"]["every"] == 3600
    assert listed["small"]["last_status"] == WorkflowExecutionStatus.COMPLETED.name.lower()
    assert listed["small"]["last_result"]["outcome"] == "ok"
    assert listed["small"]["last_result"]["fleet"] is True
    assert after == {"small"}


def test_schedules_commands_apply_and_list(
    tmp_path: Path, temporal_address: str, offices: dict[str, FakeBackoffice]
) -> None:
    with run_sandbox() as sandbox:
        settings = _settings(tmp_path, sandbox, offices, temporal_address)
        assert settings.path is not None
        cli = [sys.executable, "-m", "fragment_core", "--config", str(settings.path)]
        env = {**os.environ, **ENV}

        def fragment(*args: str) -> Any:
            done = subprocess.run([*cli, *args], env=env, capture_output=True, timeout=60)
            assert done.returncode == 0, done.stderr.decode()
            return json.loads(done.stdout)

        planned = fragment("schedules", "apply", "--dry-run", "--json")
        applied = fragment("schedules", "apply", "--json")
        listed = []
        for _ in range(50):  # the list is eventually consistent
            listed = fragment("schedules", "list", "--json")
            if len(listed) == 2:
                break
            time.sleep(0.2)

        async def cleanup() -> None:
            client = await resolve(settings.fleet, env={}).client()
            for source in offices:
                await client.get_schedule_handle(f"fragment-sync:{source}:schedule").delete()

        asyncio.run(cleanup())
    assert {c["source"]: c["action"] for c in planned} == {"small": "created", "large": "created"}
    assert [c["action"] for c in applied] == ["created", "created"]
    assert {row["source"]: row["every"] for row in listed} == {"small": 3600, "large": 3600}
    assert all(row["last_result"] is None and row["next_run"] for row in listed)


def test_many_write_backs_continue_as_new_and_each_runs_once(
    tmp_path: Path, temporal_address: str, offices: dict[str, FakeBackoffice]
) -> None:
    with run_sandbox() as sandbox:
        settings = _settings(tmp_path, sandbox, offices, temporal_address)
        queue = settings.fleet.task_queue
        office = offices["small"]
        api = sandbox.client()

        async def body(client: Client) -> Any:
            first = await start_run(client, "small", queue)
            assert first[1].outcome == "ok"
            done = office.open_ids()[:21]
            api.patch_tasks([{"uid": str(task_uid("small", e)), "status": "DONE"} for e in done])
            handle = await client.start_workflow(
                WORKFLOW_NAME,
                RunInput("small", write_back_batch=4, batches_per_run=2),
                id=workflow_id("small"),
                task_queue=queue,
                result_type=RunSummary,
            )
            summary = await handle.result()  # follows the runs continued as new
            run = client.get_workflow_handle(handle.id, run_id=handle.first_execution_run_id)
            return done, summary, (await run.describe()).status

        done, summary, first_status = _with_worker(settings, body)
        api.close()
    assert first_status == WorkflowExecutionStatus.CONTINUED_AS_NEW
    assert summary.outcome == "ok" and summary.counts["written_back"] == 21
    assert office.effects == Counter({eid: 1 for eid in done})
