"""A fleet worker of the benchmark's synthetic sources: ``fragment worker`` with the
``bench`` connector registered (it is no installed plugin). Runs until SIGTERM.

    python bench/fleet_worker.py '{"url": ..., "state_url": ..., "address": ...,
                                   "task_queue": ..., "sources": {"s00": 5000}, ...}'
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import TOKEN_ENV
from connector import BenchConfig, plugin_manager

from fragment_core.config import (
    FleetSettings,
    Settings,
    SourceSettings,
    StateSettings,
    TasksApiSettings,
)
from fragment_core.plugins import get_registry
from fragment_core.temporal.client import resolve
from fragment_core.temporal.worker import run_worker


def main(spec: dict) -> None:
    settings = Settings(
        tasks_api=TasksApiSettings(
            url=spec["url"],
            token=os.environ[TOKEN_ENV],
            rate_limit=spec.get("rate_limit"),
            batch_size=spec["batch_size"],
        ),
        state=StateSettings(url=spec["state_url"]),
        fleet=FleetSettings(address=spec["address"], task_queue=spec["task_queue"]),
        sources=[
            SourceSettings(name=name, connector="bench", options=BenchConfig(count=count))
            for name, count in spec["sources"].items()
        ],
    )
    pm = plugin_manager()
    connection = resolve(settings.fleet, env={})
    asyncio.run(run_worker(settings, connection, registry=get_registry(pm), pm=pm))
    sys.stdout.flush()
    os._exit(0)  # the Temporal runtime's threads must not meet interpreter teardown


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
