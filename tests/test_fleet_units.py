"""Fleet mode's pieces without a Temporal server: the planner fed chunk by chunk, a run
carried between phases, the lease of a run owner, error classes as Temporal retries
them, and where the connection settings come from."""

from __future__ import annotations

import itertools
import json
from datetime import timedelta
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr
from temporalio.exceptions import ApplicationError

from fragment_core.config import FleetSettings
from fragment_core.errors import (
    AuthenticationError,
    ConfigurationError,
    RateLimitedError,
    TransientError,
)
from fragment_core.reports import RecordError, RunOutcome, SyncReport
from fragment_core.state import LeaseHeldError, StateStore
from fragment_core.sync.engine import SyncRun
from fragment_core.sync.plan import Known, MappedRecord, Planner, map_task, plan_sync
from fragment_core.task import Task
from fragment_core.temporal.activities import to_application_error
from fragment_core.temporal.client import resolve

# -- the planner, chunk by chunk ---------------------------------------------------------------

STATUSES = ("open", "closing", "closed", "done", "reopening")


def _records(ids: list[int], version: int) -> list[MappedRecord]:
    return [
        map_task("s", Task.new(external_id=f"r{i}", title=f"Record {i} v{version}")) for i in ids
    ]


@given(
    fetched=st.lists(st.integers(0, 30), max_size=40),
    known=st.dictionaries(
        st.integers(0, 30), st.tuples(st.sampled_from(STATUSES), st.integers(0, 3)), max_size=30
    ),
    sizes=st.lists(st.integers(1, 7), min_size=1, max_size=5),
    complete=st.booleans(),
)
def test_a_planner_fed_in_chunks_plans_as_plan_sync(
    fetched: list[int], known: dict[int, tuple[str, int]], sizes: list[int], complete: bool
) -> None:
    records = _records(fetched, 2)
    old = {r.external_id: r.content_hash for r in _records(list(known), 1)}
    state = {f"r{i}": (old[f"r{i}"], status, missing) for i, (status, missing) in known.items()}
    whole = plan_sync("s", records, state, complete=complete)
    planner = Planner("s", state)
    rest = iter(records)
    for size in itertools.cycle(sizes):
        chunk = list(itertools.islice(rest, size))
        if not chunk:
            break
        planner.feed(chunk)
    chunked = planner.finish(complete)
    assert chunked == whole


def test_a_finished_planner_takes_no_more_chunks() -> None:
    planner = Planner("s", {})
    planner.feed(_records([1], 1))
    planner.finish(True)
    with pytest.raises(RuntimeError, match="finished"):
        planner.feed(_records([2], 1))


def test_known_is_a_named_tuple_read_by_name() -> None:
    state = Known("hash", "open", 2, None)
    assert (state.content_hash, state.status, state.times_missing) == ("hash", "open", 2)
    assert state == ("hash", "open", 2, None)


# -- a run between phases ----------------------------------------------------------------------


def test_a_report_survives_its_dict_as_stored_in_the_run_history() -> None:
    report = SyncReport(source="s", connector="file", created=3, outcome=RunOutcome.PARTIAL)
    report.record_errors.append(RecordError("s", "r1", "title", "missing"))
    report.messages.append("one message")
    again = SyncReport.from_dict(report.to_dict())
    assert again == report
    running = {**report.to_dict(), "outcome": "running"}  # a fleet run's row, mid-way
    assert SyncReport.from_dict(running).outcome == RunOutcome.OK


def test_a_run_survives_its_snapshot_between_activities() -> None:
    report = SyncReport(source="s", connector="file", fetched=7, written_back=2)
    run = SyncRun(None, None, None, None, report)  # type: ignore[arg-type]
    run.capped = run.fetched_done = run.completions_failed = True
    again = SyncRun.restore(json.loads(json.dumps(run.snapshot())), None, None, None, None)  # type: ignore[arg-type]
    assert again.report == report
    assert (again.capped, again.fetched_done, again.completions_failed) == (True, True, True)
    assert not (again.failed or again.blocked or again.interrupted or again.source_unreachable)


# -- the lease of a run owner ------------------------------------------------------------------


def test_a_kept_lease_is_taken_again_by_its_owner_only(tmp_path: Path) -> None:
    store = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
    try:
        with store.lease("s", run_id="run-1", keep=True):
            pass
        holder = store.lease_holder("s")
        assert holder is not None and holder.run_id == "run-1"  # kept between activities
        with store.lease("s", run_id="run-1", keep=True):  # the run's next activity
            pass
        other = StateStore(f"sqlite:///{tmp_path / 'state.db'}")
        other_lease = other.lease("s", run_id="run-2")
        # this process is alive, so the kept lease stands against another run
        with pytest.raises(LeaseHeldError, match="being synced"), other_lease:
            pass
        other.close()
        store.release_lease("s", "run-2")  # not its lease: nothing happens
        assert store.lease_holder("s") is not None
        store.release_lease("s", "run-1")
        assert store.lease_holder("s") is None
    finally:
        store.close()


# -- error classes as Temporal retries them ----------------------------------------------------


def test_error_classes_map_to_temporal_retries() -> None:
    config = to_application_error(ConfigurationError("bad option", where="fragment.toml"))
    auth = to_application_error(AuthenticationError("token refused"))
    limited = to_application_error(RateLimitedError("slow down", retry_after=42))
    unknown_reset = to_application_error(RateLimitedError("slow down"))
    transient = to_application_error(TransientError("502 from the vendor"))
    other = to_application_error(OSError("connection reset"))
    assert config.non_retryable and config.type == "ConfigurationError"
    assert auth.non_retryable and auth.type == "AuthenticationError"
    assert not limited.non_retryable and limited.next_retry_delay == timedelta(seconds=42)
    assert unknown_reset.next_retry_delay is None  # the policy's backoff then
    assert not transient.non_retryable and transient.type == "TransientError"
    assert not other.non_retryable and other.type == "OSError"
    assert isinstance(other, ApplicationError)


def test_error_messages_are_redacted_for_temporal() -> None:
    error = to_application_error(
        TransientError("GET https://user:hunter2-secret@vendor.test/x failed")
    )
    assert "hunter2-secret" not in error.message


# -- connection settings -----------------------------------------------------------------------


def test_connection_defaults_then_fleet_then_temporal_env_then_flags(tmp_path: Path) -> None:
    assert resolve(FleetSettings(), env={}).address == "localhost:7233"
    fleet = FleetSettings(address="temporal.internal:7233", namespace="ops", task_queue="q")
    conn = resolve(fleet, env={})
    assert (conn.address, conn.namespace, conn.task_queue) == ("temporal.internal:7233", "ops", "q")
    env = {"TEMPORAL_ADDRESS": "from-env:7233", "TEMPORAL_NAMESPACE": "env-ns"}
    conn = resolve(fleet, env=env)
    assert (conn.address, conn.namespace) == ("from-env:7233", "env-ns")
    conn = resolve(fleet, env=env, address="flag:7233", namespace=None)
    assert (conn.address, conn.namespace) == ("flag:7233", "env-ns")


def test_an_api_key_turns_tls_on_and_stays_out_of_repr() -> None:
    conn = resolve(FleetSettings(api_key=SecretStr("tk-secret-value")), env={})
    kwargs = conn.connect_kwargs()
    assert kwargs["api_key"] == "tk-secret-value" and kwargs["tls"] is True
    assert "tk-secret-value" not in repr(conn)
    conn = resolve(FleetSettings(), env={"TEMPORAL_API_KEY": "tk-env-secret"})
    assert conn.api_key == "tk-env-secret"


def test_mtls_needs_both_cert_and_key(tmp_path: Path) -> None:
    cert = tmp_path / "client.pem"
    cert.write_bytes(b"-----BEGIN CERTIFICATE-----\n")
    with pytest.raises(ConfigurationError, match="both a client certificate and its key"):
        resolve(FleetSettings(tls_cert=cert), env={}).connect_kwargs()
    key = tmp_path / "client.key"
    key.write_bytes(b"-----BEGIN PRIVATE KEY-----\n")
    tls = resolve(FleetSettings(tls_cert=cert, tls_key=key), env={}).connect_kwargs()["tls"]
    assert tls.client_cert.startswith(b"-----BEGIN CERT") and tls.client_private_key
    with pytest.raises(ConfigurationError, match="cannot read the TLS client key"):
        resolve(FleetSettings(tls_cert=cert, tls_key=tmp_path / "missing.key"), env={})
