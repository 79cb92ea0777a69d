"""Hypothesis fuzzing of configuration files: whatever a fragment.toml holds, loading it
either gives settings or raises :class:`ConfigurationError` naming the file (and, for a
wrong value, the key) - never another exception, and never a secret from the file."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from fragment_core.config import Settings, load_settings
from fragment_core.errors import ConfigurationError
from fragment_core.plugins import get_registry

SECRET = "fuzz-secret-6a1f-never-shown"
ENV = {"FRAGMENT_TOKEN": SECRET, "DESK_TOKEN": SECRET, "EMPTY": ""}

BASE: dict[str, Any] = {
    "tasks_api": {"url": "http://127.0.0.1:9/api/v1", "token": "${FRAGMENT_TOKEN}"},
    "state": {"url": "sqlite:///state.db"},
    "sources": [
        {
            "name": "sheet",
            "connector": "file",
            "every": "5m",
            "options": {"path": "backlog.csv", "due_column": "due"},
        },
        {
            "name": "backoffice",
            "connector": "http",
            "close": {"max_share": 0.5, "debounce": 2},
            "options": {
                "base_url": "http://127.0.0.1:9",
                "auth": {"type": "bearer", "token": "${DESK_TOKEN}"},
                "backlog": {"path": "/tickets", "records_path": "items"},
                "pagination": {"type": "offset", "limit": 100, "total_path": "total"},
                "mapping": {"external_id": "id", "title": "subject"},
                "write_back": {"method": "PATCH", "path": "/tickets/{external_id}"},
            },
        },
    ],
}

FUZZ = settings(
    max_examples=150,
    deadline=None,
    suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow],
)


def toml_value(value: Any) -> str:
    """A TOML literal for a JSON-like value (inline tables and arrays)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if math.isnan(value):
            return "nan"
        if math.isinf(value):
            return "inf" if value > 0 else "-inf"
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, list):
        return "[" + ", ".join(toml_value(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()) + "}"
    raise TypeError(type(value))


def to_toml(document: dict[str, Any]) -> str:
    """Top-level tables as ``[name]`` and ``[[name]]`` blocks, the rest inline."""
    lines = []
    for key, value in document.items():
        if isinstance(value, dict):
            lines.append(f"[{json.dumps(key)}]")
            lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in value.items()]
        elif isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            for item in value:
                lines.append(f"[[{json.dumps(key)}]]")
                lines += [f"{json.dumps(k)} = {toml_value(v)}" for k, v in item.items()]
        else:
            lines.insert(0, f"{json.dumps(key)} = {toml_value(value)}")
    return "\n".join(lines) + "\n"


scalars = (
    st.none()
    | st.booleans()
    | st.integers(min_value=-(2**63), max_value=2**63 - 1)
    | st.floats(allow_nan=True)
    | st.text(max_size=30)
    | st.sampled_from(["${NOPE}", "${EMPTY}", "${EMPTY:-x}", "$${x}", "${bad name}", "5m", ""])
)
json_values = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=10), inner),
    max_leaves=10,
)


def _paths(value: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(value, dict):
        for key, item in value.items():
            found += _paths(item, (*prefix, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found += _paths(item, (*prefix, index))
    return found


def _strip_none(value: Any) -> Any:
    """TOML has no null: drop None values (a None replacement means "delete the key")."""
    if isinstance(value, dict):
        return {k: _strip_none(v) for k, v in value.items() if v is not None}
    if isinstance(value, list):
        return [_strip_none(v) for v in value if v is not None]
    return value


@st.composite
def mutated_configs(draw: st.DrawFn) -> dict[str, Any]:
    """The base config with one to three values replaced, deleted or added."""
    document = json.loads(json.dumps(BASE))
    for _ in range(draw(st.integers(1, 3))):
        paths = _paths(document)
        path = draw(st.sampled_from(paths))
        parent = document
        for part in path[:-1]:
            parent = parent[part]
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        last = path[-1]
        if action == "delete" and isinstance(parent, dict):
            del parent[last]
        elif action == "add" and isinstance(parent, dict):
            parent[draw(st.text(min_size=1, max_size=12))] = draw(json_values)
        else:
            parent[last] = draw(json_values)
    return _strip_none(document)


def _load(path: Path) -> Settings:
    settings_ = load_settings(path, registry=get_registry(), env=ENV)
    for source in settings_.sources:  # options are validated: the connectors can be built
        get_registry().build(source).close()
    return settings_


@FUZZ
@given(document=mutated_configs())
def test_mutated_config_loads_or_names_where(tmp_path: Path, document: dict[str, Any]) -> None:
    path = tmp_path / "fragment.toml"
    path.write_text(to_toml(document), encoding="utf-8")
    try:
        loaded = _load(path)
    except ConfigurationError as exc:
        text = str(exc)
        assert str(path) in text, text  # the file is named, every line with its key
        assert SECRET not in text
        assert "Traceback" not in text
    else:
        assert SECRET not in repr(loaded)
        assert all(SECRET not in repr(s) for s in loaded.sources)


@FUZZ
@given(
    cut=st.integers(0, 2000),
    insert=st.text(max_size=8),
    garbage=st.binary(max_size=8),
)
def test_damaged_config_text_loads_or_names_the_file(
    tmp_path: Path, cut: int, insert: str, garbage: bytes
) -> None:
    text = to_toml(BASE).encode()
    cut = cut % (len(text) + 1)
    damaged = text[:cut] + insert.encode("utf-8", "surrogatepass") + garbage + text[cut:]
    path = tmp_path / "fragment.toml"
    path.write_bytes(damaged)
    try:
        _load(path)
    except ConfigurationError as exc:
        assert str(path) in str(exc) and SECRET not in str(exc)


def test_a_wrong_value_names_its_source_and_key(tmp_path: Path) -> None:
    """The deterministic core of the fuzz: one wrong value, its exact place."""
    document = json.loads(json.dumps(BASE))
    document["sources"][1]["options"]["pagination"]["limit"] = "many"
    path = tmp_path / "fragment.toml"
    path.write_text(to_toml(document))
    try:
        _load(path)
    except ConfigurationError as exc:
        text = str(exc)
    else:
        raise AssertionError("a wrong value was accepted")
    assert str(path) in text and '"backoffice"' in text and "options.pagination.limit" in text
