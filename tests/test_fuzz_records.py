"""Hypothesis fuzzing of records: whatever a vendor or a file serves, mapping raises only
:class:`BadRecordError` naming the record and field (or the file and line), and a sync
turns every bad record into a :class:`RecordError` of its source - never a crash."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from fragment_hubspot.config import HubSpotConfig
from fragment_hubspot.connector import HubSpotConnector
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from fragment_core.config import SourceSettings
from fragment_core.connector import Connector, ConnectorConfig, Record
from fragment_core.connectors.file import FileConfig, FileConnector
from fragment_core.connectors.http import HttpConnector
from fragment_core.errors import BadRecordError, ConfigurationError, FragmentError
from fragment_core.state import StateStore
from fragment_core.sync.engine import plan_source
from fragment_core.task import Task

FUZZ = settings(
    max_examples=200,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)

scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=20)
    | st.sampled_from(["2025-02-30T00:00:00Z", "1e400", "99999999999999", "-1", "", " ", "{x}"])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=8), inner),
    max_leaves=8,
)
KEYS = ["id", "subject", "due", "created", "updated", "customer", "amount", "status"]


@st.composite
def records(draw: st.DrawFn) -> Any:
    """Mostly record-shaped objects with wrong, missing or odd values; sometimes anything."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    record = draw(st.dictionaries(st.sampled_from(KEYS), json_values, max_size=len(KEYS)))
    if draw(st.booleans()):
        record["customer"] = {"name": draw(json_values)}
    return record


HTTP = HttpConnector(
    {
        "base_url": "http://127.0.0.1:9",
        "backlog": {"path": "/tickets"},
        "mapping": {
            "external_id": "id",
            "title": "subject",
            "url": "https://backoffice.example.com/tickets/{id}",
            "due_at": "due",
            "created_at": "created",
            "updated_at": "updated",
            "custom": {"customer": "customer.name", "amount": "amount"},
        },
    },
    source="fuzzed",
)
HUBSPOT = HubSpotConnector(
    HubSpotConfig(access_token="pat-fuzz", portal_id=1, app_host="app.hubspot.com"),
    source="fuzzed-hs",
)


def _mapped(connector: Connector, record: Any) -> None:
    try:
        task = connector.to_task(record)
    except BadRecordError as exc:
        # the engine names the source of a mapping error (the sync plan tests below); a
        # connector that names it itself must name the right one
        assert exc.where is None or connector.source in exc.where, exc
        assert exc.record_id is not None or exc.field is not None or exc.message, exc
        named = exc.attribute(connector.where, connector.record_id(record))
        assert connector.source in str(named), named
        return
    assert isinstance(task, Task)
    try:
        task.for_source(connector.source).content_hash()  # what the sync does next
    except BadRecordError as exc:  # a value the Tasks API cannot take, named
        assert exc.record_id == task.external_id and exc.field, exc


@FUZZ
@given(record=records())
@example(record={"id": "1", "subject": "s", "amount": float("inf")})  # issue 14: content_hash
@example(record={"id": "1", "subject": "s", "amount": float("nan")})
@example(record={"id": "1", "subject": "s", "due": "0001-01-01T00:00:00+01:00"})
@example(record={"id": "1", "subject": "s", "created": "9999-12-31T23:59:59-01:00"})
@example(record={"id": "1\x00", "subject": "s"})
@example(record={"id": "..", "subject": "s"})
@example(record={"id": "1", "subject": "s", "amount": 10**5000})
def test_http_mapping_raises_only_bad_record_errors(record: Any) -> None:
    _mapped(HTTP, record)


@st.composite
def hubspot_records(draw: st.DrawFn) -> Any:
    if draw(st.integers(0, 9)) == 0:
        return draw(json_values)
    names = [
        "hs_task_subject",
        "hs_task_body",
        "hs_timestamp",
        "hs_lastmodifieddate",
        "hs_createdate",
        "hs_task_status",
        "hs_task_priority",
    ]
    properties = draw(st.dictionaries(st.sampled_from(names), json_values))
    record: dict[str, Any] = {"properties": properties}
    if draw(st.integers(0, 4)):
        record["id"] = draw(st.integers(1, 10**12).map(str) | json_values)
    return record


@FUZZ
@given(record=hubspot_records())
def test_hubspot_mapping_raises_only_bad_record_errors(record: Any) -> None:
    _mapped(HUBSPOT, record)


# -- the same through the sync's mapping and planning -------------------------------------
class FuzzConfig(ConnectorConfig):
    pass


class Replay(Connector[FuzzConfig]):
    """Serves a list of records through another connector's mapping."""

    name = "replay"

    def __init__(self, inner: Connector, served: list[Any]) -> None:
        super().__init__(FuzzConfig(), source=inner.source)
        self.inner = inner
        self.served = served

    def fetch_backlog(self) -> Iterator[Record]:
        yield from self.served

    def to_task(self, record: Record) -> Task:
        return self.inner.to_task(record)

    def record_id(self, record: Record) -> str | None:
        return self.inner.record_id(record)


STORE = StateStore("sqlite://")


@FUZZ
@given(served=st.lists(records(), max_size=6))
@example(
    served=[
        {"id": "1", "subject": "s", "amount": float("inf")},
        {"id": "2\x00", "subject": "s"},
        {"id": "3", "subject": "s", "due": "0001-01-01T00:00:00+01:00"},
        {"id": "4", "subject": "s"},
    ]
)
def test_a_sync_plan_of_fuzzed_records_names_every_bad_one(served: list[Any]) -> None:
    _plan_names_every_bad_one(HTTP, served)


@FUZZ
@given(served=st.lists(hubspot_records(), max_size=6))
@example(served=[None, {"properties": {}}, {"id": "1", "properties": {"hs_timestamp": []}}])
def test_a_sync_plan_of_fuzzed_hubspot_records_names_every_bad_one(served: list[Any]) -> None:
    _plan_names_every_bad_one(HUBSPOT, served)


def _plan_names_every_bad_one(inner: Connector, served: list[Any]) -> None:
    """Every record is planned or a RecordError naming the source: the engine names it."""
    connector = Replay(inner, served)
    source = SourceSettings(name=inner.source, connector="replay")
    plan, _ = plan_source(source, connector, STORE)
    assert plan.complete and plan.fetched == len(served)
    for error in plan.record_errors:
        assert error.source == inner.source
        assert str(error).startswith(f"source {inner.source!r}")
    good = len(plan.create) + plan.dropped
    assert good + len(plan.record_errors) >= len(served)


# -- files --------------------------------------------------------------------------------
@FUZZ
@given(
    content=st.binary(max_size=300)
    | st.text(max_size=300).map(lambda t: t.encode("utf-8", "surrogatepass"))
    | st.lists(st.dictionaries(st.sampled_from([*KEYS[:3], "title"]), json_values), max_size=5).map(
        lambda rows: "\n".join(json.dumps(r) for r in rows).encode()
    ),
    fmt=st.sampled_from(["csv", "jsonl"]),
)
# issue 14: each stopped every run of its source
@example(content=b"id,title,due\n1,one,0001-01-01T00:00:00+01:00\n", fmt="csv")
@example(content=b'{"id":"1","title":"t","x":' + b"[" * 5000 + b"]" * 5000 + b"}", fmt="jsonl")
@example(content=b'{"id":"1","title":"t","n":' + b"9" * 5000 + b"}", fmt="jsonl")
@example(content=b'{"id":"1","title":"t","n":Infinity}', fmt="jsonl")
@example(content=b'{"id":"1","title":"t","n":NaN}', fmt="jsonl")
@example(content=b"id,title,status\n1,one,,surplus\n", fmt="csv")
@example(content=b'{"id":"1\\u0000","title":"t"}', fmt="jsonl")
@example(content="id,title\n1,one\n".encode("utf-8-sig"), fmt="csv")
@example(content=b"key,title\n1,one\n", fmt="csv")
def test_file_rows_raise_only_typed_errors_naming_the_file(
    tmp_path: Path, content: bytes, fmt: str
) -> None:
    path = tmp_path / f"backlog.{fmt}"
    path.write_bytes(content)
    connector = FileConnector(FileConfig(path=path, due_column="due"), source="fuzz-file")
    try:
        rows = list(connector.fetch_backlog())
    except ConfigurationError as exc:
        assert path.name in str(exc), exc
        return
    for row in rows:
        try:
            connector.to_task(row).for_source("fuzz-file").content_hash()
        except BadRecordError as exc:
            assert path.name in str(exc) and "line" in str(exc), exc
        except FragmentError as exc:  # pragma: no cover - would be a wrong error class
            raise AssertionError(f"unexpected {type(exc).__name__}: {exc}") from exc
