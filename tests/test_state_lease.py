"""One run per source across processes: the state store's lease, atomic write-back
claims and race-safe schema creation, on SQLite and on Postgres.

The process tests run real ``fragment sync`` subprocesses against the sandbox and the
fake back office (the ``http`` connector's vendor), sharing one state.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from fragment_core.sandbox.runner import run_sandbox
from fragment_core.state import LeaseHeldError, OutboxState, StateStore
from fragment_core.state.schema import leases
from fragment_core.state.store import utcnow
from fragment_core.task import task_uid
from fragment_core.testing.backoffice import FakeBackoffice

TOKEN = "backoffice-token-lease-7f1d-secret"
SOURCE = "shared"
EXIT_BUSY = 5


@pytest.fixture(params=["sqlite", "postgres"])
def state_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """A fresh, empty state database URL on each backend."""
    if request.param == "sqlite":
        yield f"sqlite:///{(tmp_path / 'state.db').as_posix()}"
        return
    server = request.getfixturevalue("postgres_url")
    name = f"lease_{uuid.uuid4().hex[:12]}"
    admin = sa.create_engine(server, isolation_level="AUTOCOMMIT")
    with admin.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name}")
    yield sa.make_url(server).set(database=name).render_as_string(hide_password=False)
    with admin.connect() as conn:
        conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
    admin.dispose()


# -- the lease -------------------------------------------------------------------------------
def test_second_taker_is_refused_naming_the_holder(state_url: str) -> None:
    one, two = StateStore(state_url), StateStore(state_url)
    try:
        with one.lease(SOURCE) as held:
            with pytest.raises(LeaseHeldError) as refused, two.lease(SOURCE):
                pass
            text = str(refused.value)
            assert f"source {SOURCE!r} is being synced by PID {os.getpid()} on " in text
            assert held.host in text and " since " in text
            assert two.lease_holder(SOURCE).run_id == held.run_id  # type: ignore[union-attr]
            with two.lease("another-source"):  # per source
                pass
        with two.lease(SOURCE):  # released: free again
            assert one.lease_holder(SOURCE) is not None
        assert one.lease_holder(SOURCE) is None
    finally:
        one.close()
        two.close()


def test_heartbeat_keeps_a_long_run_s_lease(state_url: str) -> None:
    one, two = StateStore(state_url), StateStore(state_url)
    try:
        with one.lease(SOURCE, ttl=timedelta(seconds=0.3)):
            time.sleep(1.2)  # four TTLs: only the heartbeat keeps it
            with pytest.raises(LeaseHeldError), two.lease(SOURCE):
                pass
    finally:
        one.close()
        two.close()


def _plant_lease(store: StateStore, *, host: str, pid: int, expires_in: float) -> None:
    now = utcnow()
    with store.engine.begin() as conn:
        conn.execute(
            leases.insert().values(
                source=SOURCE,
                run_id=str(uuid.uuid4()),
                host=host,
                pid=pid,
                since=now - timedelta(minutes=5),
                heartbeat_at=now - timedelta(minutes=1),
                expires_at=now + timedelta(seconds=expires_in),
            )
        )


def test_an_expired_lease_of_another_machine_is_taken_over(state_url: str) -> None:
    store = StateStore(state_url)
    try:
        _plant_lease(store, host="other-machine", pid=1, expires_in=-1)
        with store.lease(SOURCE) as held:
            assert store.lease_holder(SOURCE).run_id == held.run_id  # type: ignore[union-attr]
    finally:
        store.close()


def test_a_live_lease_of_another_machine_is_respected(state_url: str) -> None:
    store = StateStore(state_url)
    try:
        _plant_lease(store, host="other-machine", pid=1, expires_in=60)
        with (
            pytest.raises(LeaseHeldError, match="PID 1 on other-machine since"),
            store.lease(SOURCE),
        ):
            pass
    finally:
        store.close()


def test_a_killed_process_s_lease_on_this_host_is_free_at_once(state_url: str) -> None:
    store = StateStore(state_url)
    try:
        dead = subprocess.run(
            [sys.executable, "-c", "import os; print(os.getpid())"],
            capture_output=True,
            text=True,
            check=True,
        )
        import socket

        _plant_lease(store, host=socket.gethostname(), pid=int(dead.stdout), expires_in=60)
        with store.lease(SOURCE):
            pass
    finally:
        store.close()


def test_wait_waits_for_the_holder(state_url: str) -> None:
    one, two = StateStore(state_url), StateStore(state_url)
    released = threading.Event()
    try:
        held = one.lease(SOURCE)
        held.__enter__()

        def release_later() -> None:
            time.sleep(0.8)
            released.set()
            held.__exit__(None, None, None)

        thread = threading.Thread(target=release_later)
        thread.start()
        with two.lease(SOURCE, wait=True, ttl=timedelta(seconds=1)):
            assert released.is_set()
        thread.join()
        with (  # a bounded wait gives up
            one.lease(SOURCE),
            pytest.raises(LeaseHeldError),
            two.lease(SOURCE, wait=0.3),
        ):
            pass
    finally:
        one.close()
        two.close()


# -- write-back claims ---------------------------------------------------------------------
def test_each_write_back_is_claimed_by_exactly_one_store(state_url: str) -> None:
    stores = [StateStore(state_url) for _ in range(4)]
    try:
        _add_outbox(stores[0], 60)
        claimed: Counter[int] = Counter()
        by_store: Counter[int] = Counter()
        lock = threading.Lock()
        start = threading.Barrier(len(stores))

        def claim_all(store: StateStore) -> None:
            start.wait()
            for entry in store.due_write_backs(SOURCE):
                if store.claim_write_back(entry):
                    with lock:
                        claimed[entry.id] += 1
                        by_store[id(store)] += 1

        threads = [threading.Thread(target=claim_all, args=(s,)) for s in stores]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        assert len(claimed) == 60 and set(claimed.values()) == {1}
        assert stores[0].due_write_backs(SOURCE) == []  # claimed: not due for anyone
        # the claimant is gone: whoever takes the lease next makes them due again
        with stores[1].lease(SOURCE):
            due = stores[1].due_write_backs(SOURCE)
        assert len(due) == 60 - by_store[id(stores[1])]
    finally:
        for s in stores:
            s.close()


def _add_outbox(store: StateStore, count: int) -> None:
    from fragment_core.state.schema import outbox

    now = utcnow()
    with store.engine.begin() as conn:
        conn.execute(
            outbox.insert(),
            [
                {
                    "source": SOURCE,
                    "uid": str(uuid.uuid4()),
                    "external_id": f"E{i}",
                    "idempotency_key": f"key-{i}",
                    "task_json": "{}",
                    "state": str(OutboxState.PENDING),
                    "attempts": 0,
                    "created_at": now,
                    "updated_at": now,
                }
                for i in range(count)
            ],
        )


# -- schema creation -----------------------------------------------------------------------
CREATE = "import sys; from fragment_core.state import StateStore; StateStore(sys.argv[1]).close()"


def test_concurrent_schema_creation_does_not_crash(state_url: str) -> None:
    processes = [
        subprocess.Popen(
            [sys.executable, "-c", CREATE, state_url],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for _ in range(6)
    ]
    results = [(p.wait(timeout=120), p.stderr.read().decode()) for p in processes]  # type: ignore[union-attr]
    assert [code for code, _ in results] == [0] * 6, [err for _, err in results if err]
    store = StateStore(state_url)
    assert store.write_back_counts(SOURCE) == {"pending": 0, "done": 0, "failed": 0}
    store.close()


# -- two `fragment sync` processes on one state ----------------------------------------------
def _config(tmp_path: Path, sandbox: Any, office: FakeBackoffice, state_url: str) -> Path:
    config = tmp_path / "fragment.toml"
    (tmp_path / "token").write_text(sandbox.token)
    config.write_text(
        f'[tasks_api]\nurl = "{sandbox.url}"\ntoken_file = "token"\nrate_limit = 0\n'
        f'[state]\nurl = "{state_url}"\nlease_ttl = "5s"\n'
        f'[[sources]]\nname = "{SOURCE}"\nconnector = "http"\n'
        + office.source_options("BACKOFFICE_TOKEN")
    )
    return config


class _Cli:
    def __init__(self, config: Path) -> None:
        self.command = [sys.executable, "-m", "fragment_core", "--config", str(config)]
        self.env = {**os.environ, "BACKOFFICE_TOKEN": TOKEN, "PYTHONUNBUFFERED": "1"}

    def start(self, *args: str) -> subprocess.Popen[bytes]:
        return subprocess.Popen(
            [*self.command, "sync", SOURCE, "--json", *args],
            env=self.env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )


def _finish(process: subprocess.Popen[bytes]) -> tuple[int, str, str]:
    out, err = process.communicate(timeout=180)
    assert b"Traceback" not in err, err.decode()
    assert TOKEN not in (out + err).decode()
    return process.returncode, out.decode(), err.decode()


def test_a_second_sync_is_refused_or_waits(tmp_path: Path, state_url: str) -> None:
    office = FakeBackoffice(30, token=TOKEN)
    with office.api, run_sandbox() as sandbox:
        cli = _Cli(_config(tmp_path, sandbox, office, state_url))
        holder = StateStore(state_url)
        try:
            with holder.lease(SOURCE) as held:  # "another run" in progress
                code, out, err = _finish(cli.start())
                assert code == EXIT_BUSY and out == ""
                line = err.strip()
                assert "\n" not in line
                assert line.startswith(
                    f"source {SOURCE!r} is being synced by PID {os.getpid()} on {held.host} since"
                )
                waiting = cli.start("--wait")
                time.sleep(3)
                assert waiting.poll() is None  # waits while the lease is held
            code, out, _ = _finish(waiting)
            assert code == 0 and json.loads(out)["created"] == 30
        finally:
            holder.close()


@pytest.mark.parametrize("wait", [True, False], ids=["wait", "no-wait"])
def test_two_syncs_call_each_write_back_exactly_once(
    tmp_path: Path, state_url: str, wait: bool
) -> None:
    office = FakeBackoffice(120, token=TOKEN, effect_delay=0.01)
    with office.api, run_sandbox() as sandbox:
        cli = _Cli(_config(tmp_path, sandbox, office, state_url))
        code, _, _ = _finish(cli.start())
        assert code == 0
        completed = sorted(office.open_ids())[:40]
        client = sandbox.client()
        client.patch_tasks(
            [{"uid": str(task_uid(SOURCE, eid)), "status": "DONE"} for eid in completed]
        )
        client.close()
        extra = ("--wait",) if wait else ()
        codes = [r[0] for r in map(_finish, [cli.start(*extra), cli.start(*extra)])]
        if wait:
            assert codes == [0, 0]
        else:
            assert sorted(codes) in ([0, 0], [0, EXIT_BUSY])
            if codes != [0, 0]:  # make sure the refused side had nothing left to do
                assert _finish(cli.start())[0] == 0
    assert office.calls == Counter({eid: 1 for eid in completed})  # one call each, ever
    store = StateStore(state_url)
    assert store.write_back_counts(SOURCE) == {"pending": 0, "failed": 0, "done": 40}
    store.close()


def test_a_run_that_lost_its_lease_is_told_to_stop(state_url: str) -> None:
    store = StateStore(state_url)
    stop = threading.Event()
    try:
        with store.lease(SOURCE, ttl=timedelta(seconds=0.3), on_lost=stop.set) as held:
            with store.engine.begin() as conn:  # another run took it over meanwhile
                conn.execute(leases.update().values(run_id=str(uuid.uuid4())))
            assert stop.wait(5) and held.lost.is_set()
        assert store.lease_holder(SOURCE) is not None  # the other run's lease is kept
    finally:
        store.close()


def test_a_wait_ends_when_the_run_is_stopped(state_url: str) -> None:
    one, two = StateStore(state_url), StateStore(state_url)
    cancel = threading.Event()
    try:
        with one.lease(SOURCE):
            threading.Timer(0.5, cancel.set).start()
            with pytest.raises(LeaseHeldError), two.lease(SOURCE, wait=True, cancel=cancel):
                pass
            assert cancel.is_set()  # it ended because the run was stopped
    finally:
        one.close()
        two.close()
