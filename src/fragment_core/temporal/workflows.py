"""The workflow of one run of one source: the engine's phases as activities.

``begin`` (lease, completions) -> ``fetch_and_apply`` (one long activity, heartbeating
per chunk) -> ``write_backs`` (batches, until none is due) -> ``finish``. The history
holds these few events whatever the source's size; a run with many write-back batches
continues as new before its history grows long. A run that cannot go on (retries spent,
or an error that no retry fixes) is ``abandon``-ed: its row says why, its lease is freed.
"""

from __future__ import annotations

from datetime import timedelta

from temporalio import workflow
from temporalio.common import RetryPolicy
from temporalio.exceptions import ActivityError, ApplicationError

with workflow.unsafe.imports_passed_through():
    from fragment_core.temporal.types import (
        NON_RETRYABLE,
        WORKFLOW_NAME,
        Applied,
        RunInput,
        RunRef,
        RunSummary,
        Started,
        WroteBack,
    )

#: Retries of an activity: quick at first, then every few minutes (a database or Tasks
#: API that is away for a while); a rate limit waits for the vendor's reset instead.
RETRY = RetryPolicy(
    initial_interval=timedelta(seconds=1),
    backoff_coefficient=2.0,
    maximum_interval=timedelta(minutes=5),
    maximum_attempts=12,
    non_retryable_error_types=list(NON_RETRYABLE),
)


@workflow.defn(name=WORKFLOW_NAME)
class SyncSourceWorkflow:
    """One run of one source."""

    @workflow.run
    async def run(self, inp: RunInput) -> RunSummary:
        """Run the phases; return how the run ended (counts, never records)."""
        info = workflow.info()
        owner = inp.owner or info.run_id  # the first run's id, kept across continue-as-new
        heartbeat = timedelta(seconds=inp.heartbeat_seconds)
        ref = RunRef(
            inp.source,
            owner,
            inp.run_row or 0,
            full=inp.full,
            force_close=inp.force_close,
            remap=inp.remap,
            verify=inp.verify,
            rebind=inp.rebind,
            write_back_batch=inp.write_back_batch,
        )
        try:
            if inp.run_row is None:
                started = await workflow.execute_activity(
                    "fragment.begin",
                    ref,
                    result_type=Started,
                    start_to_close_timeout=timedelta(minutes=30),
                    heartbeat_timeout=heartbeat,
                    retry_policy=RETRY,
                )
                if started.busy is not None or started.run_row is None:
                    return RunSummary(inp.source, "busy", messages=[started.busy or ""])
                ref.run_row = started.run_row
                await workflow.execute_activity(
                    "fragment.fetch_and_apply",
                    ref,
                    result_type=Applied,
                    start_to_close_timeout=timedelta(hours=24),
                    heartbeat_timeout=heartbeat,
                    retry_policy=RETRY,
                )
            batches = inp.batches
            while True:
                wrote = await workflow.execute_activity(
                    "fragment.write_backs",
                    ref,
                    result_type=WroteBack,
                    start_to_close_timeout=timedelta(hours=1),
                    heartbeat_timeout=heartbeat,
                    retry_policy=RETRY,
                )
                batches += 1
                if not wrote.more:
                    break
                if (batches - inp.batches) >= inp.batches_per_run or (
                    workflow.info().is_continue_as_new_suggested()
                ):
                    workflow.continue_as_new(
                        RunInput(
                            inp.source,
                            full=inp.full,
                            force_close=inp.force_close,
                            remap=inp.remap,
                            verify=inp.verify,
                            rebind=inp.rebind,
                            heartbeat_seconds=inp.heartbeat_seconds,
                            owner=owner,
                            run_row=ref.run_row,
                            batches=batches,
                            write_back_batch=inp.write_back_batch,
                            batches_per_run=inp.batches_per_run,
                        )
                    )
            return await workflow.execute_activity(
                "fragment.finish",
                ref,
                result_type=RunSummary,
                start_to_close_timeout=timedelta(minutes=30),
                retry_policy=RETRY,
            )
        except ActivityError as exc:
            reason = _reason(exc)
            workflow.logger.warning("fleet run of %s failed: %s", inp.source, reason)
            return await workflow.execute_activity(
                "fragment.abandon",
                args=[ref, reason],
                result_type=RunSummary,
                start_to_close_timeout=timedelta(minutes=5),
                retry_policy=RETRY,
            )


def _reason(exc: ActivityError) -> str:
    cause = exc.cause
    if isinstance(cause, ApplicationError):
        return f"{cause.type or 'error'}: {cause.message}"
    return str(cause or exc)
