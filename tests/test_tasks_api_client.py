"""TasksClient against the sandbox over real loopback HTTP."""

from __future__ import annotations

import threading
import time
import uuid
from datetime import UTC, datetime, timedelta

import pytest

from fragment_core import __version__
from fragment_core.errors import AuthenticationError, ConfigurationError, RateLimitedError
from fragment_core.task import Task, TaskStatus
from fragment_core.tasks_api import TaskNotFoundError, TasksApiError, TasksClient


def _task(n: int, source: str = "support", **custom) -> Task:
    return Task.new(
        external_id=str(n), title=f"Task {n}", url=f"https://example.com/{n}", custom=custom
    ).for_source(source)


@pytest.fixture
def client(sandbox):
    with sandbox.client() as client:
        yield client


def test_me_and_user_agent(sandbox, client):
    assert client.me()["role"] == "super_admin"
    assert sandbox.stats()["user_agents"] == {f"fragment-core/{__version__}": 1}


def test_single_task_routes(client):
    task = _task(1, priority=2)
    created = client.upsert_task(task)
    assert created.uid == task.uid
    assert created.external_id == "1"
    assert created.source == "support"
    assert created.fields["priority"] == 2
    assert client.get_task(task.uid) == created
    assert client.upsert_task(task) == created  # identical repeat changes nothing

    started = client.patch_task(task.uid, {"status": TaskStatus.STARTED, "fields": {"x": 1}})
    assert started.status is TaskStatus.STARTED
    assert started.started_at is not None
    assert started.fields["x"] == 1 and started.title == "Task 1"
    done = client.patch_task(task.uid, {"status": "DONE"})
    assert done.done_at is not None

    client.delete_task(task.uid)
    with pytest.raises(TaskNotFoundError) as info:
        client.get_task(task.uid)
    assert info.value.status == 404
    assert str(task.uid) in str(info.value)


def test_create_task_picks_a_uid_and_keeps_the_given_one(client):
    fresh = client.create_task(Task.new(external_id="a", title="A"))
    assert client.get_task(fresh.uid).title == "A"
    task = _task(2)
    assert client.create_task(task).uid == task.uid
    with pytest.raises(TasksApiError) as info:
        client.create_task(task)
    assert info.value.status == 409


def test_list_pages_through_everything(client):
    tasks = [_task(n) for n in range(25)]
    client.upsert_tasks(tasks)
    before = client.requests_made
    listed = list(client.list_tasks(page_size=10))
    assert client.requests_made - before == 3
    assert sorted(t.uid for t in listed) == sorted(t.uid for t in tasks)
    assert len({t.uid for t in listed}) == 25


def test_list_filters(client):
    client.upsert_tasks([_task(n, "support") for n in range(3)] + [_task(9, "billing")])
    support = {t.uid for t in client.list_tasks(fields={"sync_source": "support"})}
    assert support == {_task(n).uid for n in range(3)}
    done_uid = _task(1).uid
    client.patch_task(done_uid, {"status": "DONE"})
    assert [t.uid for t in client.list_tasks(status=TaskStatus.DONE)] == [done_uid]
    todo_or_done = list(client.list_tasks(status=[TaskStatus.TODO, TaskStatus.DONE]))
    assert len(todo_or_done) == 4
    mark = client.get_task(done_uid).updated_at
    time.sleep(0.002)
    client.patch_task(_task(9, "billing").uid, {"fields": {"note": "late"}})
    recent = list(client.list_tasks(updated_after=mark))
    assert [t.uid for t in recent] == [_task(9, "billing").uid]
    assert list(client.list_tasks(updated_after=datetime.now(UTC) + timedelta(hours=1))) == []


def test_batch_upsert_splits_into_chunks_and_reports_item_errors(sandbox):
    with sandbox.client(batch_size=4) as client:
        tasks = [_task(n) for n in range(10)]
        result = client.upsert_tasks(tasks)
        assert client.requests_made == 3
        assert [t.uid for t in result.items] == [t.uid for t in tasks]
        assert result.errors == []

        changes = [{"uid": t.uid, "status": "DONE"} for t in tasks[:5]]
        missing = uuid.uuid4()
        changes.insert(2, {"uid": missing, "status": "DONE"})
        patched = client.patch_tasks(changes)
        assert len(patched.items) == 5
        assert all(t.status is TaskStatus.DONE for t in patched.items)
        [error] = patched.errors
        assert (error.uid, error.status, error.index) == (missing, 404, 2)
        assert str(missing) in error.message

        created = client.create_tasks([Task.new(external_id="n", title="new"), tasks[0]])
        assert len(created.items) == 1 and created.errors[0].status == 409


def test_batch_item_validation_error_carries_the_server_message(client):
    result = client.patch_tasks([{"uid": _task(1).uid, "status": "CLOSED"}])
    assert result.items == []
    [error] = result.errors
    assert error.status == 422
    assert "status" in error.message


def test_upsert_without_uid_is_refused_before_sending(client):
    with pytest.raises(ValueError, match="has no uid"):
        client.upsert_task(Task.new(external_id="x", title="X"))
    assert client.requests_made == 0


def test_wrong_token_raises_authentication_error_without_the_token(sandbox):
    secret = "very-secret-wrong-token"
    client = TasksClient(sandbox.url, secret, rate_limit=None)
    with pytest.raises(AuthenticationError) as info:
        client.me()
    assert "401" in str(info.value)
    assert secret not in str(info.value) and secret not in repr(client)
    assert client.requests_made == 1  # not retried
    client.close()


def test_validation_errors_surface_the_server_message_and_are_not_retried(client):
    uid = _task(1).uid
    client.upsert_task(_task(1))
    cases = [
        ({"status": "CLOSED"}, "body.status"),
        ({"fields": {"title": ""}}, "fields.title"),
        ({"due_at": "soon"}, "body.due_at"),
        ({"colour": "red"}, "body.colour"),
    ]
    for changes, where in cases:
        before = client.requests_made
        with pytest.raises(TasksApiError) as info:
            client.patch_task(uid, changes)
        assert isinstance(info.value, ConfigurationError)
        assert info.value.status == 422
        assert where in info.value.detail, info.value.detail
        assert client.requests_made - before == 1


def test_429_retry_after_is_honoured(sandbox_factory):
    sandbox = sandbox_factory(rate_limit="2/s")
    with sandbox.client(retry_wait_initial=0.01) as client:
        start = time.monotonic()
        for _ in range(3):
            client.me()
        elapsed = time.monotonic() - start
    assert client.requests_made == 4  # one 429, retried after Retry-After: 1
    assert elapsed >= 0.95
    assert sandbox.stats()["statuses"]["429"] == 1


def test_429_gives_up_as_rate_limited_error_when_retries_run_out(sandbox_factory):
    sandbox = sandbox_factory(rate_limit="1/min")
    with sandbox.client(retry_attempts=1) as client:
        client.me()
        with pytest.raises(RateLimitedError) as info:
            client.me()
    assert info.value.retry_after and info.value.retry_after > 1


def test_client_rate_budget_is_shared_by_threads_and_avoids_429(sandbox_factory):
    sandbox = sandbox_factory(rate_limit="10/s")
    with sandbox.client(rate_limit=8, rate_period=1.0) as client:
        start = time.monotonic()
        threads = [threading.Thread(target=lambda: [client.me() for _ in range(6)])]
        threads += [threading.Thread(target=lambda: [client.me() for _ in range(6)])]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        elapsed = time.monotonic() - start
    assert client.requests_made == 12
    assert elapsed >= 0.95  # 12 requests at 8 per second need a second window
    assert "429" not in sandbox.stats()["statuses"]


def test_client_settings_are_validated(sandbox):
    with pytest.raises(ConfigurationError, match=r"tasks_api\.token"):
        TasksClient(sandbox.url, "")
    with pytest.raises(ValueError, match="batch_size"):
        TasksClient(sandbox.url, "t", batch_size=0)


def test_connection_refused_is_transient(sandbox_factory):
    from fragment_core.errors import TransientError

    sandbox = sandbox_factory()
    url = sandbox.url
    sandbox.stop()
    client = TasksClient(url, "t", rate_limit=None, retry_attempts=2, retry_wait_initial=0.01)
    with pytest.raises(TransientError):
        client.me()
    assert client.requests_made == 2
    client.close()


def test_rate_budget_counts_a_request_from_its_answer():
    from fragment_core.tasks_api import RateBudget

    budget = RateBudget(2, period=0.2)
    start = time.monotonic()
    first, second = budget.acquire(), budget.acquire()
    time.sleep(0.1)  # the first request takes 100 ms to answer
    budget.settle(first)
    budget.settle(second)
    budget.acquire()  # its window starts at the answer, not at the send
    assert time.monotonic() - start >= 0.1 + 0.2


def test_rate_budget_waits_while_every_place_is_in_flight():
    from fragment_core.tasks_api import RateBudget

    budget = RateBudget(1, period=0.05)
    slot = budget.acquire()
    start = time.monotonic()  # before the timer starts: the wait is measured from here
    threading.Timer(0.15, budget.settle, args=(slot,)).start()
    budget.acquire()  # the one place is held until the answer, then for the period
    assert time.monotonic() - start >= 0.15 + 0.05


def test_client_at_the_servers_own_budget_gets_no_429(sandbox_factory):
    sandbox = sandbox_factory(rate_limit="10/s", latency="20ms")
    with sandbox.client(rate_limit=10, rate_period=1.0, retry_attempts=1) as client:
        threads = [
            threading.Thread(target=lambda: [client.me() for _ in range(6)]) for _ in range(4)
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
    assert client.requests_made == 24
    assert "429" not in sandbox.stats()["statuses"]


@pytest.mark.parametrize("hostile", ["..", ".", "../accounts/me", "x/y", "a?b", "a#b", "50%"])
def test_no_uid_changes_a_task_path(fake_api, hostile):
    api = fake_api("tasks")
    uid = uuid.uuid4()

    @api.route("GET", "/api/v1/{rest:path}")
    def anything(req):
        return {"uid": str(uid), "fields": {"title": "t", "external_id": "1"}, "status": "TODO"}

    with TasksClient(f"{api.base_url}/api/v1", "token", rate_limit=None) as tasks:
        for call in (
            lambda: tasks.get_task(hostile),
            lambda: tasks.patch_task(hostile, {"status": "DONE"}),
            lambda: tasks.delete_task(hostile),
        ):
            with pytest.raises(ValueError, match="is not a task uid"):
                call()
        assert api.requests == []  # refused before sending: nothing reached a parent path
        tasks.get_task(uid)
    (sent,) = api.requests
    assert sent.raw_path == sent.path == f"/api/v1/tasks/{uid}"
