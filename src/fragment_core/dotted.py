"""Dotted paths into decoded JSON (``data.items``, ``customer.name``, ``tags.0``)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

__all__ = ["MISSING", "lookup", "set_path"]


class _Missing:
    """Marker for "no value at this path" (distinct from a JSON ``null``)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()

def lookup(data: Any, path: str) -> Any:
    """The value at a dotted ``path`` in ``data`` (``""`` is ``data`` itself), or MISSING.

    Segments are object keys; a numeric segment also indexes a list (``items.0.id``).
    """
    if path == "":
        return data
    current = data
    for part in path.split("."):
        if isinstance(current, Mapping):
            if part not in current:
                return MISSING
            current = current[part]
        elif isinstance(current, Sequence) and not isinstance(current, str) and part.isdigit():
            index = int(part)
            if index >= len(current):
                return MISSING
            current = current[index]
        else:
            return MISSING
    return current


def set_path(data: dict[str, Any], path: str, value: Any) -> None:
    """Set ``value`` at a dotted ``path`` in ``data``, creating objects on the way."""
    *parents, last = path.split(".")
    current = data
    for part in parents:
        child = current.get(part)
        if not isinstance(child, dict):
            child = {}
            current[part] = child
        current = child
    current[last] = value
