"""What travels through Temporal's workflow history: names, ids, counts and cursors.

Records never do: activities read the source and write the Tasks API and the state store
directly, and hand the workflow only these small values (each well under a kilobyte), so
a source of any size keeps a history of the same few events. Standard library only: the
workflow sandbox imports this module.
"""

from __future__ import annotations

from dataclasses import dataclass, field

#: Workflow type, task queue default and the prefix of every id fleet mode makes.
WORKFLOW_NAME = "FragmentSyncSource"
ID_PREFIX = "fragment-sync"

#: Error types (the class names of :mod:`fragment_core.errors`) never retried.
NON_RETRYABLE = (
    "ConfigurationError",
    "AuthenticationError",
    "PluginError",
    "LeaseHeldError",
    "StateError",
    "DestinationMismatchError",
)

#: Write-backs per activity, and activities per workflow run before continue-as-new.
WRITE_BACK_BATCH = 50
BATCHES_PER_RUN = 200


def workflow_id(source: str) -> str:
    """The id of a run started by hand (``fragment sync --on-temporal``): one per source."""
    return f"{ID_PREFIX}:{source}"


def schedule_id(source: str) -> str:
    """The id of a source's Schedule (its runs' ids are this plus a timestamp)."""
    return f"{ID_PREFIX}:{source}:schedule"


@dataclass
class RunInput:
    """The input of one run of one source (a workflow), and of its continuations."""

    source: str
    full: bool = False
    force_close: bool = False
    remap: bool = False
    verify: bool = False
    rebind: bool = False
    heartbeat_seconds: float = 30.0
    """Heartbeat timeout of the activities: a worker lost mid-activity is noticed after
    this, and the activity retried on another worker."""
    owner: str = ""
    """The lease owner: the first workflow run's id, kept across continue-as-new."""
    run_row: int | None = None
    """The run's row in the state's run history, once started."""
    batches: int = 0
    """Write-back activities done by earlier workflow runs of this run."""
    write_back_batch: int = WRITE_BACK_BATCH
    """Write-backs per activity."""
    batches_per_run: int = BATCHES_PER_RUN
    """Write-back activities per workflow run before it continues as new."""


@dataclass
class RunRef:
    """What every activity after the first is given: which run of which source."""

    source: str
    owner: str
    run_row: int
    full: bool = False
    force_close: bool = False
    remap: bool = False
    verify: bool = False
    rebind: bool = False
    write_back_batch: int = WRITE_BACK_BATCH


@dataclass
class Started:
    """The first activity's answer."""

    run_row: int | None = None
    busy: str | None = None
    """Set when another run holds the source's lease: this run did nothing."""


@dataclass
class Applied:
    """The fetch-and-apply activity's answer (counts and the cursor, no record)."""

    fetched: int = 0
    created: int = 0
    updated: int = 0
    closed: int = 0
    reopened: int = 0
    complete: bool = False
    cursor: str | None = None


@dataclass
class WroteBack:
    """One write-back activity's answer."""

    written_back: int = 0
    failed: int = 0
    more: bool = False


@dataclass
class RunSummary:
    """The workflow's result: how the run ended, its counts, its first messages."""

    source: str
    outcome: str
    run_row: int | None = None
    counts: dict[str, int] = field(default_factory=dict)
    messages: list[str] = field(default_factory=list)
    """At most :data:`MESSAGES` of them; the whole report is in the run history."""


#: Messages a summary carries at most.
MESSAGES = 10
