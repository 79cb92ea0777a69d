"""A verifying run: the source's tasks in the Tasks API are compared with the state.

The state remembers what the sync wrote; it cannot see what someone else did in the
Tasks API since. A verifying run (``fragment sync --verify``, or every ``verify_every``
of a source, 1 day by default) is a full run that first lists the source's tasks
(``fields.sync_source``, paged through the client's rate budget) and then:

* a task the state holds as open but the Tasks API no longer has (deleted) is
  forgotten by the state before the plan, so the plan creates it again when its record
  is still in the source (an idempotent PUT of the same uid), and closes nothing for it
  when it is not;
* an open task whose content differs from what the sync would write now (a title, a
  custom field, a due date changed by hand or by another program) is written again;
  custom fields someone else added are left alone, and so are tasks completed or
  archived in the Tasks API (completions go through write-back as always).

Every record is mapped in a verifying run (its raw fingerprint is not trusted), and the
report counts the tasks ``verified``, ``recreated`` and ``rewritten``.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from fragment_core.state import SourceState, StateStore
from fragment_core.sync.plan import ACTIVE, Known, KnownRecords, MappedRecord, Unchanged
from fragment_core.sync.ports import TasksApi
from fragment_core.task import SOURCE_FIELD, RemoteTask, TaskStatus, task_uid_text

log = logging.getLogger(__name__)

#: Tasks per page of the verifying listing.
PAGE_SIZE = 1000
#: Top-level keys of a task body compared as instants (their text form may differ).
_TIMES = ("due_at", "external_created_at", "external_updated_at")
#: Keys of a body that the Tasks API does not echo back (write-only), never compared.
_WRITE_ONLY = ("uid", "status", "assignee_email")


def verify_due(every: timedelta | None, state: SourceState, now: datetime) -> bool:
    """Whether a source verifying every ``every`` is due for it (never before the
    state was bound to its Tasks API: binding counts as verifying)."""
    if every is None or state.last_verified is None:
        return False
    return now - state.last_verified >= every


@dataclass
class Verification:
    """What the listing found, and what the run repairs (see the module docstring)."""

    source: str
    listed: int = 0
    """Tasks of the source the Tasks API listed."""
    missing: set[str] = field(default_factory=set)
    """External ids whose task the state holds as open and the Tasks API lacks."""
    remote: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)
    """The open tasks' content as the Tasks API holds it, by external id."""
    drifted: set[str] = field(default_factory=set)
    """External ids whose task differs from what the sync writes now."""
    recreated: int = 0
    rewritten: int = 0
    hide_missing: bool = False
    """Treat :attr:`missing` records as unknown to the state (a dry run: the state rows
    are not deleted)."""

    def watch(
        self, mapped: Iterable[MappedRecord | Unchanged]
    ) -> Iterator[MappedRecord | Unchanged]:
        """Pass the fetch's records on to the planner, marking the drifted ones first."""
        for item in mapped:
            if type(item) is MappedRecord and item.open and item.wire is not None:
                eid = item.external_id
                if eid in self.missing:
                    self.recreated += 1
                elif eid is not None and eid in self.remote:
                    difference = _difference(json.loads(item.wire), self.remote.pop(eid))
                    if difference is not None:
                        self.drifted.add(eid)
                        self.rewritten += 1
                        log.info(
                            "task changed in the Tasks API; written again",
                            extra={"source": self.source, "record": eid, "key": difference},
                        )
            yield item

    def known(self, inner: KnownRecords) -> KnownRecords:
        """``inner`` as the planner should see it: drifted records as changed."""
        return _VerifiedKnown(inner, self)

    def message(self) -> str:
        """One line for the run's report."""
        return (
            f"verified {self.listed} tasks in the Tasks API: {len(self.missing)} missing "
            f"({self.recreated} created again), {self.rewritten} changed by someone else "
            "(written again)"
        )


class _VerifiedKnown:
    """The planner's view of the state during a verifying run."""

    def __init__(self, inner: KnownRecords, verification: Verification) -> None:
        self.inner, self.v = inner, verification
        self.hidden = verification.missing if verification.hide_missing else set()

    def get(self, external_id: str) -> Known | None:
        if external_id in self.hidden:
            return None
        state = self.inner.get(external_id)
        if state is not None and external_id in self.v.drifted:
            # not what the Tasks API holds: write it
            return state._replace(content_hash="", record_hash=None)
        return state

    def open_count(self) -> int:
        return max(0, self.inner.open_count() - len(self.hidden))

    def active_count(self) -> int:
        return max(0, self.inner.active_count() - len(self.hidden))

    def candidates(self) -> Iterator[tuple[str, str, int]]:
        for candidate in self.inner.candidates():
            if candidate[0] not in self.hidden:
                yield candidate


def start_verification(
    source: str, client: TasksApi, store: StateStore, *, dry_run: bool = False
) -> Verification:
    """List the source's tasks and compare them with its open records; outside a dry
    run, forget the records whose task is gone (the plan then creates them again)."""
    verification = Verification(source, hide_missing=dry_run)
    listed: dict[str, dict[str, Any] | None] = {}
    for task in client.list_tasks(fields={SOURCE_FIELD: source}, page_size=PAGE_SIZE):
        remote: RemoteTask = task
        if remote.source != source:
            continue
        verification.listed += 1
        is_open = remote.status != TaskStatus.DONE and not remote.archived
        listed[str(remote.uid)] = _content(remote) if is_open else None
    for eid, _status, _missing in store.records_in(source, ACTIVE):
        uid = task_uid_text(source, eid)
        if uid not in listed:
            verification.missing.add(eid)
            continue
        content = listed.pop(uid)
        if content is not None:
            verification.remote[eid] = content
    if verification.missing and not dry_run:
        store.forget_records(source, verification.missing)
    if verification.missing:
        log.warning(
            "tasks deleted from the Tasks API; created again where their records remain",
            extra={"source": source, "count": len(verification.missing)},
        )
    return verification


def _content(task: RemoteTask) -> dict[str, Any]:
    """What a body may be compared with: the task's fields and top-level values."""
    data = task.model_dump(mode="json", exclude_none=True)
    keep = {"fields", "queue_uid", "skills", "external_status", *_TIMES}
    return {k: v for k, v in data.items() if k in keep}


def _difference(body: dict[str, Any], remote: dict[str, Any]) -> str | None:
    """The first key whose value in ``body`` the Tasks API does not hold, or ``None``."""
    fields = remote.get("fields") or {}
    for key, value in (body.get("fields") or {}).items():
        if fields.get(key) != value:
            return f"fields.{key}"
    for key, value in body.items():
        if key == "fields" or key in _WRITE_ONLY:
            continue
        theirs = remote.get(key)
        if key in _TIMES:
            if _instant(value) != _instant(theirs):
                return key
        elif key == "skills":
            if sorted(map(str, value or [])) != sorted(map(str, theirs or [])):
                return key
        elif str(value).lower() != str(theirs).lower():
            return key
    return None


def _instant(value: Any) -> datetime | None:
    if not isinstance(value, str):
        return None
    try:
        return datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
