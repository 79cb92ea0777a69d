"""Fleet operations from the command line: Schedules per source, one run now, listing.

- :func:`apply_schedules`: one Temporal Schedule per enabled source, every ``every`` with
  jitter (a tenth of the interval), overlap policy *skip*; a changed one is updated, the
  Schedule of a source no longer configured (or disabled) is deleted.
- :func:`list_schedules`: the Schedules with their next and last run, and the last run's
  result from the state store (the same run history ``fragment status`` reads).
- :func:`start_run`: one run of a source now (workflow id per source: a second start
  while one runs follows that one), waiting for its result.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from temporalio.client import (
    Client,
    Schedule,
    ScheduleActionExecutionStartWorkflow,
    ScheduleActionStartWorkflow,
    ScheduleAlreadyRunningError,
    ScheduleIntervalSpec,
    ScheduleOverlapPolicy,
    SchedulePolicy,
    ScheduleSpec,
    ScheduleUpdate,
    ScheduleUpdateInput,
)
from temporalio.common import WorkflowIDConflictPolicy, WorkflowIDReusePolicy

from fragment_core.config import Settings, SourceSettings
from fragment_core.state import StateStore
from fragment_core.temporal.types import (
    ID_PREFIX,
    WORKFLOW_NAME,
    RunInput,
    RunSummary,
    schedule_id,
    workflow_id,
)

#: Jitter of a Schedule, as a share of its interval (``fragment run`` uses the same).
JITTER = 0.1
_SCHEDULE_SUFFIX = ":schedule"


@dataclass
class Change:
    """What :func:`apply_schedules` did to one Schedule."""

    source: str
    action: str  # created | updated | unchanged | deleted
    schedule_id: str


def _schedule(source: SourceSettings, task_queue: str, heartbeat_seconds: float) -> Schedule:
    every = source.every
    return Schedule(
        action=ScheduleActionStartWorkflow(
            WORKFLOW_NAME,
            RunInput(source.name, heartbeat_seconds=heartbeat_seconds),
            id=f"{ID_PREFIX}:{source.name}:scheduled",
            task_queue=task_queue,
        ),
        spec=ScheduleSpec(
            intervals=[ScheduleIntervalSpec(every=every)],
            jitter=timedelta(seconds=every.total_seconds() * JITTER),
        ),
        policy=SchedulePolicy(overlap=ScheduleOverlapPolicy.SKIP),
    )


def _same(current: Schedule, wanted: Schedule) -> bool:
    """Whether a Schedule as described already is the one wanted (interval, jitter,
    overlap policy, task queue, workflow type)."""
    action = current.action
    if not isinstance(action, ScheduleActionStartWorkflow):
        return False
    assert isinstance(wanted.action, ScheduleActionStartWorkflow)
    every = [i.every for i in current.spec.intervals]
    return (
        every == [i.every for i in wanted.spec.intervals]
        and current.spec.jitter == wanted.spec.jitter
        and current.policy.overlap == wanted.policy.overlap
        and action.task_queue == wanted.action.task_queue
        and action.workflow == wanted.action.workflow
    )


async def _ours(client: Client) -> dict[str, Any]:
    """Our Schedules on the namespace, by id."""
    found = {}
    async for entry in await client.list_schedules():
        if entry.id.startswith(f"{ID_PREFIX}:") and entry.id.endswith(_SCHEDULE_SUFFIX):
            found[entry.id] = entry
    return found


def _source_of(sid: str) -> str:
    return sid[len(ID_PREFIX) + 1 : -len(_SCHEDULE_SUFFIX)]


async def apply_schedules(
    client: Client,
    settings: Settings,
    task_queue: str,
    *,
    heartbeat_seconds: float = 30.0,
    dry_run: bool = False,
) -> list[Change]:
    """Make the namespace's Schedules match the enabled sources; return what changed."""
    wanted = {schedule_id(s.name): s for s in settings.sources if s.enabled}
    existing = await _ours(client)
    changes: list[Change] = []
    for sid, source in wanted.items():
        schedule = _schedule(source, task_queue, heartbeat_seconds)
        if sid not in existing:
            if not dry_run:
                try:
                    await client.create_schedule(sid, schedule)
                except ScheduleAlreadyRunningError:  # listed late (visibility lags)
                    existing[sid] = None
            if sid not in existing:
                changes.append(Change(source.name, "created", sid))
                continue
        handle = client.get_schedule_handle(sid)
        described = await handle.describe()
        if _same(described.schedule, schedule):
            changes.append(Change(source.name, "unchanged", sid))
            continue
        if not dry_run:

            def update(_: ScheduleUpdateInput, schedule: Schedule = schedule) -> ScheduleUpdate:
                return ScheduleUpdate(schedule=schedule)

            await handle.update(update)
        changes.append(Change(source.name, "updated", sid))
    for sid in sorted(set(existing) - set(wanted)):
        if not dry_run:
            await client.get_schedule_handle(sid).delete()
        changes.append(Change(_source_of(sid), "deleted", sid))
    return changes


async def list_schedules(client: Client, store: StateStore | None = None) -> list[dict[str, Any]]:
    """Our Schedules: source, interval, next run, last run started, its workflow's
    status, and the last result in the run history."""
    rows = []
    for sid, _entry in sorted((await _ours(client)).items()):
        described = await client.get_schedule_handle(sid).describe()
        info = described.info
        source = _source_of(sid)
        intervals = described.schedule.spec.intervals
        last = info.recent_actions[-1] if info.recent_actions else None
        started = last.action if last is not None else None
        status = last_id = None
        if isinstance(started, ScheduleActionExecutionStartWorkflow):
            last_id = started.workflow_id
            handle = client.get_workflow_handle(last_id, run_id=started.first_execution_run_id)
            status = (await handle.describe()).status
        history = store.last_runs(source, limit=1) if store is not None else []
        result = history[0] if history else None
        rows.append(
            {
                "source": source,
                "schedule_id": sid,
                "every": intervals[0].every.total_seconds() if intervals else None,
                "paused": described.schedule.state.paused,
                "next_run": _iso(info.next_action_times[0] if info.next_action_times else None),
                "last_started": _iso(last.started_at if last else None),
                "last_workflow_id": last_id,
                "last_status": status.name.lower() if status is not None else None,
                "last_result": (
                    {
                        "outcome": result.get("outcome"),
                        "finished_at": result.get("finished_at"),
                        "created": result.get("created"),
                        "updated": result.get("updated"),
                        "closed": result.get("closed"),
                        "written_back": result.get("written_back"),
                        "fleet": bool(result.get("fleet")),
                    }
                    if result
                    else None
                ),
                "skipped_overlap": info.num_actions_skipped_overlap,
            }
        )
    return rows


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


async def start_run(
    client: Client,
    source: str,
    task_queue: str,
    *,
    full: bool = False,
    force_close: bool = False,
    remap: bool = False,
    verify: bool = False,
    rebind: bool = False,
    heartbeat_seconds: float = 30.0,
) -> tuple[str, RunSummary]:
    """Start one run of ``source`` now (or join the one started by hand that is running:
    the workflow id is per source) and wait for its result; return the workflow id and
    the summary."""
    handle = await client.start_workflow(
        WORKFLOW_NAME,
        RunInput(
            source,
            full=full,
            force_close=force_close,
            remap=remap,
            verify=verify,
            rebind=rebind,
            heartbeat_seconds=heartbeat_seconds,
        ),
        id=workflow_id(source),
        task_queue=task_queue,
        id_conflict_policy=WorkflowIDConflictPolicy.USE_EXISTING,
        id_reuse_policy=WorkflowIDReusePolicy.ALLOW_DUPLICATE,
        result_type=RunSummary,
    )
    return handle.id, await handle.result()
