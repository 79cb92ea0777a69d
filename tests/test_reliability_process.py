"""Process faults: ``fragment sync`` SIGKILLed at seeded random points, 10 times, during
the sync (writes and closes) and during the write-backs. After restarts the state
converges: one task per record, exact closes, and every operator completion has exactly
one write-back effect at the vendor (the fake counts effects by idempotency key, the
way Stripe or any API with idempotency keys would apply them).
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

from fragment_core.sandbox.runner import run_sandbox
from fragment_core.state import StateStore
from fragment_core.task import SOURCE_FIELD, TaskStatus, task_uid
from fragment_core.testing.backoffice import FakeBackoffice

SEED = 4242
SOURCE = "killed"
TOKEN = "backoffice-token-0c3e-secret"
KILLS_DURING_SYNC = 5
KILLS_DURING_WRITE_BACK = 5


def _config(tmp_path: Path, sandbox: Any, office: FakeBackoffice) -> Path:
    config = tmp_path / "fragment.toml"
    (tmp_path / "token").write_text(sandbox.token)
    config.write_text(
        f'[tasks_api]\nurl = "{sandbox.url}"\ntoken_file = "token"\nrate_limit = 0\n'
        "batch_size = 20\n"
        f'[state]\nurl = "sqlite:///{(tmp_path / "state.db").as_posix()}"\n'
        f'[[sources]]\nname = "{SOURCE}"\nconnector = "http"\n'
        "[sources.close]\nmax_share = 0.9\n" + office.source_options("BACKOFFICE_TOKEN")
    )
    return config


def test_ten_sigkills_during_sync_and_write_back_converge(tmp_path: Path) -> None:
    rng = random.Random(SEED)
    office = FakeBackoffice(400, token=TOKEN, effect_delay=0.02)  # kills land mid-way
    kills: list[str] = []
    with office.api, run_sandbox(latency="4ms") as sandbox:
        config = _config(tmp_path, sandbox, office)
        command = [sys.executable, "-m", "fragment_core", "--config", str(config)]
        command += ["sync", SOURCE, "--json"]
        env = {**os.environ, "BACKOFFICE_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}
        client = sandbox.client()

        def start() -> subprocess.Popen[bytes]:
            return subprocess.Popen(
                command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
            )

        def kill_when(reached: Callable[[], bool], phase: str) -> bool:
            """Start a sync; SIGKILL it once ``reached()``; False if it ended first."""
            process = start()
            deadline = time.monotonic() + 60
            while not reached():
                if process.poll() is not None:
                    return False
                assert time.monotonic() < deadline, "the sync made no progress"
                time.sleep(0.002)
            process.send_signal(signal.SIGKILL)
            process.wait(timeout=10)
            assert process.returncode == -signal.SIGKILL
            kills.append(phase)
            return True

        def run_to_end() -> dict[str, Any]:
            done = subprocess.run(command, env=env, capture_output=True, timeout=120)
            assert TOKEN not in (done.stdout + done.stderr).decode()
            assert b"Traceback" not in done.stderr, done.stderr.decode()
            return {"code": done.returncode, **json.loads(done.stdout)}

        # -- SIGKILL during the sync: creates, updates and closes in flight ---------------
        attempts = 0
        while kills.count("sync") < KILLS_DURING_SYNC:
            attempts += 1
            assert attempts <= 3 * KILLS_DURING_SYNC, f"could not kill in time: {kills}"
            for ticket in rng.sample(
                sorted(k for k, v in office.tickets.items() if v == "open"), 15
            ):
                office.tickets[ticket] = "resolved"  # resolved in the source: to close
            office.add(rng.randint(40, 80))
            baseline = sandbox.stats()["requests"]
            target = rng.randint(2, 12)
            kill_when(lambda b=baseline, t=target: sandbox.stats()["requests"] - b >= t, "sync")

        # -- operators complete tasks; SIGKILL during the write-backs ---------------------
        synced = run_to_end()
        assert synced["code"] == 0, synced
        open_tasks = sorted(k for k, v in office.tickets.items() if v == "open")
        completed = rng.sample(open_tasks, 60)
        client.patch_tasks(
            [{"uid": str(task_uid(SOURCE, eid)), "status": "DONE"} for eid in completed]
        )
        attempts = 0
        while kills.count("write-back") < KILLS_DURING_WRITE_BACK:
            attempts += 1
            assert attempts <= 3 * KILLS_DURING_WRITE_BACK, f"could not kill in time: {kills}"
            baseline = office.write_backs()
            target = rng.randint(1, 8)
            kill_when(lambda b=baseline, t=target: office.write_backs() - b >= t, "write-back")

        # -- restart until clean; then a quiet run ----------------------------------------
        for _ in range(3):
            final = run_to_end()
            if final["code"] == 0:
                break
        assert final["code"] == 0, final
        quiet = run_to_end()
        assert quiet["code"] == 0 and quiet["created"] == quiet["closed"] == 0, quiet
        assert quiet["written_back"] == 0

        tasks = list(client.list_tasks(fields={SOURCE_FIELD: SOURCE}, page_size=1000))
        client.close()

    assert kills.count("sync") == KILLS_DURING_SYNC
    assert kills.count("write-back") == KILLS_DURING_WRITE_BACK
    by_id = Counter(t.external_id for t in tasks)
    assert max(by_id.values()) == 1  # no duplicate
    still_open = {k for k, v in office.tickets.items() if v == "open"}
    assert still_open <= set(by_id) <= set(office.tickets)  # every open record has its task
    done = {t.external_id for t in tasks if t.status == TaskStatus.DONE}
    resolved = {k for k, v in office.tickets.items() if v == "resolved"}
    assert resolved & set(by_id), "no close was exercised"
    assert done == (resolved & set(by_id)) | set(completed)  # exact closes, no resurrection
    # one effect per operator completion, none for what the sync closed (no echo)
    assert office.effects == Counter({eid: 1 for eid in completed})
    assert all(len(keys) == 1 for keys in office.keys.values())
    assert office.write_backs() >= len(completed)  # (a killed call is sent again)
    state = StateStore(f"sqlite:///{(tmp_path / 'state.db').as_posix()}")
    counts = state.write_back_counts(SOURCE)
    assert counts == {"pending": 0, "failed": 0, "done": len(completed)}
    state.close()
