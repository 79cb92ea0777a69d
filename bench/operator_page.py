"""How long the sandbox's operator page takes to serve a page of a large backlog.

    python bench/operator_page.py [--tasks 50000]

Seeds an in-thread sandbox with ``--tasks`` open tasks, then times the first page, the
last page and a search past the last page (each a real HTTP request) and prints them as
JSON. The operator page pages server-side (``tests/test_sandbox_operator_page.py``
proves what it shows); this measures how fast, which a test must not assert.
"""

from __future__ import annotations

import argparse
import json
import time
import uuid
from datetime import UTC, datetime, timedelta

import httpx

from fragment_core.sandbox import run_sandbox, tasks
from fragment_core.sandbox.schemas import TaskWrite
from fragment_core.sandbox.store import TaskStore
from fragment_core.task import SOURCE_FIELD

DUE = datetime(2026, 1, 1, tzinfo=UTC)


def seed(store: TaskStore, count: int) -> None:
    """``count`` open tasks of the source ``bulk``, written in batches of 5,000."""
    now, batch = tasks.now_text(), []
    for n in range(count):
        body = TaskWrite(
            fields={"title": f"Review {n:06d}", "external_id": f"R-{n:06d}", SOURCE_FIELD: "bulk"},
            due_at=DUE + timedelta(minutes=n),
        )
        batch.append(tasks.create(body, uuid.uuid4(), now))
        if len(batch) == 5000:
            store.save_many(batch)
            batch = []
    store.save_many(batch)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tasks", type=int, default=50_000)
    args = parser.parse_args()
    last = max(1, -(-args.tasks // 50))
    queries = {"first": "", "last": f"?page={last}", "search": f"?page={last + 1}&q=review"}
    with run_sandbox() as sandbox:
        seed(sandbox.app.state.store, args.tasks)
        headers = {"Authorization": f"Bearer {sandbox.token}"}
        timings = {}
        with httpx.Client(base_url=sandbox.base_url, headers=headers, timeout=60) as client:
            for name, query in queries.items():
                started = time.perf_counter()
                client.get("/" + query).raise_for_status()
                timings[f"{name}_page_s"] = round(time.perf_counter() - started, 4)
    print(json.dumps({"tasks": args.tasks, **timings}))


if __name__ == "__main__":
    main()
