"""``fragment worker``: a Temporal worker running fleet runs of the configured sources.

Workflows run on the event loop; activities (the engine's phases, blocking code) on a
thread pool, one thread per concurrent activity. Every worker must have the same
configuration (sources, Tasks API, state URL): any of them may run any activity.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from concurrent.futures import ThreadPoolExecutor
from datetime import timedelta
from typing import Any

from temporalio.worker import Worker

from fragment_core.config import Settings
from fragment_core.temporal.activities import FleetActivities
from fragment_core.temporal.client import Connection
from fragment_core.temporal.workflows import SyncSourceWorkflow

log = logging.getLogger(__name__)

#: Activities one worker runs at once, by default.
CONCURRENCY = 8
#: How long activities in flight get to stop after their chunk at shutdown.
GRACE = timedelta(seconds=30)


async def run_worker(
    settings: Settings,
    connection: Connection,
    *,
    registry: Any,
    pm: Any = None,
    concurrency: int = CONCURRENCY,
    stop: asyncio.Event | None = None,
    client: Any = None,
) -> None:
    """Poll ``connection.task_queue`` until ``stop`` is set (or SIGINT/SIGTERM), then let
    the activities in flight stop after their chunk and shut down."""
    temporal = await connection.client()
    activities = FleetActivities(settings, registry=registry, pm=pm, client=client)
    stop = stop or asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):  # not the main thread
            loop.add_signal_handler(signum, stop.set)
    try:
        pool = ThreadPoolExecutor(max_workers=concurrency, thread_name_prefix="fragment-activity")
        with pool:
            worker = Worker(
                temporal,
                task_queue=connection.task_queue,
                workflows=[SyncSourceWorkflow],
                activities=activities.all(),
                activity_executor=pool,
                max_concurrent_activities=concurrency,
                graceful_shutdown_timeout=GRACE,
                # a lost worker's cached workflows move to another one quickly
                sticky_queue_schedule_to_start_timeout=timedelta(seconds=2),
            )
            async with worker:
                log.info(
                    "worker polling",
                    extra={"task_queue": connection.task_queue, "namespace": connection.namespace},
                )
                await stop.wait()
    finally:
        activities.close()

