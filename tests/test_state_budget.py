"""The Tasks API rate budget shared through the state store (design invariant 9).

Two processes are modelled by two StateStores on one database, each with its own
TasksClient, sending at once over real HTTP to a sandbox whose own rate limit equals the
budget: the sandbox (a sliding window counted on the server side) answers 429 to any
request past it, so zero 429s means no window ever held more than the budget.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import sqlalchemy as sa

from fragment_core.config import TasksApiSettings
from fragment_core.retries import RateBudget
from fragment_core.sandbox.runner import run_sandbox
from fragment_core.sandbox.settings import RateLimit
from fragment_core.state import SCHEMA_VERSION, StateStore, schema
from fragment_core.state.budget import SharedRateBudget
from fragment_core.tasks_api import TasksClient

#: The budget and the sandbox's own limit: 4 requests in any second.
BUDGET = 4
PERIOD = 1.0
#: Requests each client sends: three windows' worth between the two.
EACH = 6


def _send_together(clients: list[TasksClient], each: int) -> None:
    """Every client sends ``each`` requests, all clients at once (one thread each)."""
    errors: list[BaseException] = []
    start = threading.Barrier(len(clients))

    def work(client: TasksClient) -> None:
        try:
            start.wait()
            for _ in range(each):
                client.me()
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(c,)) for c in clients]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not errors, errors


def _shared_clients(url: str, sandbox: Any, n: int = 2) -> tuple[list[StateStore], list[Any]]:
    stores = [StateStore(url) for _ in range(n)]
    clients = [
        TasksClient(
            sandbox.url,
            sandbox.token,
            budget=store.rate_budget(sandbox.url, BUDGET, PERIOD),
            retry_wait_initial=0.05,
        )
        for store in stores
    ]
    return stores, clients


def _assert_within_budget(url: str) -> None:
    limit = RateLimit(BUDGET, PERIOD)
    with run_sandbox(rate_limit=limit) as sandbox:
        stores, clients = _shared_clients(url, sandbox)
        try:
            _send_together(clients, EACH)
        finally:
            for c in clients:
                c.close()
            for s in stores:
                s.close()
        stats = sandbox.stats()
    assert stats["rate_limited"] == 0, stats
    assert stats["requests"] == 2 * EACH  # every request arrived once: none was retried
    assert stats["statuses"] == {"200": 2 * EACH}


def test_two_stores_on_one_sqlite_file_share_the_budget(tmp_path: Path) -> None:
    _assert_within_budget(f"sqlite:///{tmp_path / 'state.db'}")


def test_two_stores_on_one_postgres_share_the_budget(postgres_url: str) -> None:
    _assert_within_budget(postgres_url)


def test_budgets_of_their_own_overrun_the_server() -> None:
    """The control: two clients each with its own in-memory budget send twice the
    budget into the first window, and the server refuses the excess (so the tests above
    can fail)."""
    with run_sandbox(rate_limit=RateLimit(BUDGET, 5.0)) as sandbox:
        clients = [
            TasksClient(sandbox.url, sandbox.token, rate_limit=BUDGET, rate_period=5.0)
            for _ in range(2)
        ]
        try:
            _send_together(clients, BUDGET // 2 + 1)  # each stays within its own budget
        finally:
            for c in clients:
                c.close()
        stats = sandbox.stats()
    assert stats["rate_limited"] > 0, stats


def test_a_full_shared_window_makes_the_next_request_wait(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'state.db'}"
    first, second = StateStore(url), StateStore(url)
    try:
        a = first.rate_budget("http://tasks.test", 2, 30.0)
        b = second.rate_budget("http://tasks.test/", 2, 30.0)  # the same destination
        other = second.rate_budget("http://other.test", 2, 30.0)
        a.wait()
        a.wait()
        taken: list[bool] = []
        t = threading.Thread(target=lambda: taken.append(bool(b.acquire())), daemon=True)
        t.start()
        t.join(0.5)
        assert taken == []  # held: both places of the window are taken, by the other store
        other.wait()  # another destination has a budget of its own
    finally:
        first.close()
        second.close()


def test_a_place_in_flight_counts_until_answered(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        budget = store.rate_budget("http://tasks.test", 1, 0.2)
        slot = budget.acquire()
        waited = threading.Event()
        t = threading.Thread(target=lambda: (budget.wait(), waited.set()), daemon=True)
        t.start()
        assert not waited.wait(0.5)  # longer than the period: in flight still counts
        budget.settle(slot)
        assert waited.wait(5)
    finally:
        store.close()


def _client_budget(make: Callable[[], Any]) -> Any:
    client = make()
    try:
        return client.budget
    finally:
        client.close()


def test_clients_from_settings_share_the_store_budget(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    settings = TasksApiSettings(url="http://127.0.0.1:9/v1", token="t0k", rate_limit=30)
    try:
        shared = _client_budget(lambda: TasksClient.from_settings(settings, store=store))
        assert isinstance(shared, SharedRateBudget) and shared.limit == 30
        alone = _client_budget(lambda: TasksClient.from_settings(settings))
        assert type(alone) is RateBudget  # without a store: the in-memory budget
    finally:
        store.close()


def test_schema_4_is_upgraded_with_the_budget_table(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    StateStore(url).close()
    engine = sa.create_engine(url)
    with engine.begin() as conn:
        conn.exec_driver_sql("DROP TABLE fragment_rate_slots")
        conn.execute(schema.schema_version.update().values(version=4))
    engine.dispose()
    store = StateStore(url)
    try:
        assert store.schema_version == SCHEMA_VERSION == 5
        assert "fragment_rate_slots" in sa.inspect(store.engine).get_table_names()
        store.rate_budget("http://tasks.test", 1).wait()
    finally:
        store.close()


@pytest.mark.parametrize("limit", [1, 3])
def test_slots_are_made_once_per_destination(tmp_path: Path, limit: int) -> None:
    url = f"sqlite:///{tmp_path / 's.db'}"
    stores = [StateStore(url) for _ in range(2)]
    try:
        for s in stores:
            s.rate_budget("http://tasks.test", limit)
        with stores[0].engine.connect() as conn:
            count = conn.execute(
                sa.select(sa.func.count()).select_from(schema.rate_slots)
            ).scalar()
        assert count == limit
    finally:
        for s in stores:
            s.close()


def test_threads_of_one_process_share_an_in_memory_store_budget() -> None:
    """An in-memory SQLite store is one connection for every thread: the budget's
    transactions take turns on it rather than failing mid-request."""
    store = StateStore("sqlite://")
    budget = store.rate_budget("http://tasks.test", 60, 0.001)
    errors: list[BaseException] = []

    def work() -> None:
        try:
            for _ in range(100):
                with budget.place():
                    pass
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=work) for _ in range(4)]
    try:
        for t in threads:
            t.start()
        for t in threads:
            t.join(60)
    finally:
        store.close()
    assert errors == []
