"""Retried writes never duplicate: the client against a sandbox injecting faults."""

from __future__ import annotations

from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from fragment_core.task import Task


def _task(n: int) -> Task:
    return Task.new(external_id=str(n), title=f"Task {n}").for_source("faulty")


def test_a_thousand_upserts_through_faults_make_exactly_a_thousand_tasks(sandbox_factory):
    sandbox = sandbox_factory(faults=0.2, seed=20240601, fault_retry_after=0)
    tasks = [_task(n) for n in range(1000)]
    with _clean_reader(sandbox) as client, ThreadPoolExecutor(max_workers=4) as pool:
        written = list(pool.map(client.upsert_task, tasks))
    assert [t.uid for t in written] == [t.uid for t in tasks]
    stats = sandbox.stats()
    assert stats["faults"].get("drop_after", 0) > 10  # writes applied, then the line cut
    assert stats["faults"].get("drop_before", 0) > 10
    assert client.requests_made > 1100  # the faults really forced retries

    clean = _clean_reader(sandbox)
    listed = list(clean.list_tasks(page_size=1000))
    clean.close()
    uids = Counter(t.uid for t in listed)
    assert len(listed) == 1000
    assert set(uids) == {t.uid for t in tasks}
    assert max(uids.values()) == 1
    assert stats["tasks"] == 1000


def _clean_reader(sandbox):
    # Reads go through faults too; retries make them succeed.
    return sandbox.client(retry_attempts=12, retry_wait_initial=0.001, retry_wait_max=0.01)


def test_batch_upserts_and_creates_through_faults_never_duplicate(sandbox_factory):
    sandbox = sandbox_factory(faults=0.3, seed=7, fault_retry_after=0)
    with _clean_reader(sandbox) as client:
        client.batch_size = 25
        upserted = client.upsert_tasks([_task(n) for n in range(300)])
        created = client.create_tasks(
            [Task.new(external_id=f"c{n}", title="created") for n in range(200)]
        )
        assert upserted.errors == [] and created.errors == []
        assert len(upserted.items) == 300 and len(created.items) == 200
        listed = list(client.list_tasks(page_size=200))
    assert len(listed) == 500
    assert len({t.uid for t in listed}) == 500
    assert sandbox.stats()["faults"].get("drop_after", 0) > 0


def test_single_creates_through_faults_never_duplicate(sandbox_factory):
    sandbox = sandbox_factory(faults=0.4, seed=11, fault_retry_after=0)
    with _clean_reader(sandbox) as client:
        made = [client.create_task(Task.new(external_id=str(n), title="c")) for n in range(60)]
        listed = list(client.list_tasks())
    assert len({t.uid for t in made}) == 60
    assert sorted(t.uid for t in listed) == sorted(t.uid for t in made)
    assert sandbox.stats()["faults"].get("drop_after", 0) > 0
