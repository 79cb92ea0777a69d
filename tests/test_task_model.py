"""The Task write model: uid derivation, normalization and the content hash."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta, timezone

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import ValidationError

from fragment_core.task import (
    SOURCE_FIELD,
    UID_NAMESPACE,
    RemoteTask,
    Task,
    TaskStatus,
    format_datetime,
    normalize_value,
    task_uid,
)


def test_uid_is_uuid5_of_the_fixed_namespace_and_source_colon_id() -> None:
    assert task_uid("support", "42") == uuid.uuid5(UID_NAMESPACE, "support:42")
    assert task_uid("support", "42").version == 5
    assert task_uid("support", "42") != task_uid("billing", "42")
    assert task_uid("support", "42") != task_uid("support", "43")


def test_for_source_sets_derived_uid_and_source_field() -> None:
    task = Task.new(external_id=7, title="Refund").for_source("support")
    assert task.uid == task_uid("support", "7")
    assert task.fields.external_id == "7"
    assert task.to_api()["fields"][SOURCE_FIELD] == "support"


@given(
    custom=st.dictionaries(
        st.text(min_size=1, max_size=8).filter(lambda k: k not in {"title", "url", "external_id"}),
        st.one_of(st.integers(-(10**6), 10**6), st.text(max_size=10), st.booleans()),
        max_size=6,
    )
)
def test_hash_ignores_key_order(custom: dict) -> None:
    forward = Task.new(external_id="1", title="t", custom=custom)
    backward = Task.new(external_id="1", title="t", custom=dict(reversed(list(custom.items()))))
    assert forward.content_hash() == backward.content_hash()


def test_hash_ignores_float_formatting_and_time_zone_of_equal_instants() -> None:
    due = datetime(2025, 9, 11, 12, 0, tzinfo=UTC)
    paris = due.astimezone(timezone(timedelta(hours=2)))
    a = Task.new(external_id="1", title="t", due_at=due, custom={"amount": 10.0})
    b = Task.new(external_id="1", title="t", due_at=paris, custom={"amount": 10})
    assert a.content_hash() == b.content_hash()


def test_hash_changes_with_content_but_not_uid_or_status() -> None:
    base = Task.new(external_id="1", title="t", custom={"priority": "high"})
    assert base.content_hash() != Task.new(external_id="1", title="t2").content_hash()
    assert (
        base.content_hash()
        != Task.new(external_id="1", title="t", custom={"priority": "low"}).content_hash()
    )
    moved = base.model_copy(update={"status": TaskStatus.DONE, "uid": uuid.uuid4()})
    assert moved.content_hash() == base.content_hash()


def test_to_api_leaves_out_none_and_formats_dates() -> None:
    task = Task.new(
        external_id="9", title="t", due_at=datetime(2025, 1, 2, 3, 4, 5, 678000, tzinfo=UTC)
    )
    body = task.to_api()
    assert body == {
        "fields": {"title": "t", "external_id": "9"},
        "due_at": "2025-01-02T03:04:05.678Z",
    }


def test_naive_due_date_is_taken_as_utc() -> None:
    task = Task.new(external_id="1", title="t", due_at=datetime(2025, 1, 1))
    assert task.to_api()["due_at"] == "2025-01-01T00:00:00.000Z"


def test_format_datetime_pads_early_years() -> None:
    assert format_datetime(datetime(684, 2, 1, tzinfo=UTC)) == "0684-02-01T00:00:00.000Z"


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"external_id": "1", "title": ""}, "title"),
        ({"external_id": "", "title": "t"}, "external_id"),
    ],
)
def test_invalid_tasks_name_the_field(kwargs: dict, field: str) -> None:
    with pytest.raises(ValidationError) as info:
        Task.new(**kwargs)
    assert field in str(info.value)


def test_non_finite_numbers_are_refused() -> None:
    with pytest.raises(ValueError, match="non-finite"):
        normalize_value(float("nan"))


def test_remote_task_reads_api_json_and_keeps_unknown_keys() -> None:
    uid = uuid.uuid4()
    remote = RemoteTask.model_validate(
        {
            "uid": str(uid),
            "status": "DONE",
            "fields": {"title": "t", "external_id": 5, SOURCE_FIELD: "support"},
            "done_at": "2025-09-11T12:00:00.000Z",
            "review_status": "x",
        }
    )
    assert remote.uid == uid
    assert remote.status is TaskStatus.DONE
    assert remote.external_id == "5"
    assert remote.source == "support"
    assert remote.model_extra == {"review_status": "x"}


def test_api_body_equals_the_sourced_tasks_body() -> None:
    task = Task.new(external_id="7", title="t", custom={"amount": 2.0, "tags": ["a"]})
    assert task.api_body("support") == task.for_source("support").to_api()
    assert task.to_api()["fields"].get(SOURCE_FIELD) is None  # the task is not changed
