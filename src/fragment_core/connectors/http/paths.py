"""Dotted paths into decoded JSON (``data.items``, ``customer.name``, ``tags.0``) and
``{placeholder}`` templates filled from them."""

from __future__ import annotations

import string
from collections.abc import Callable, Mapping, Sequence
from typing import Any
from urllib.parse import quote

__all__ = ["MISSING", "lookup", "placeholders", "quote_segment", "render", "set_path"]


class _Missing:
    """Marker for "no value at this path" (distinct from a JSON ``null``)."""

    def __repr__(self) -> str:
        return "MISSING"


MISSING: Any = _Missing()

_FORMATTER = string.Formatter()


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


def placeholders(template: str) -> list[str]:
    """The placeholder paths of a template (``"{a.b} #{id}"`` -> ``["a.b", "id"]``).

    Raises ``ValueError`` for unbalanced braces; ``{{`` and ``}}`` are literal braces.
    """
    names = []
    for _literal, name, _spec, _conversion in _FORMATTER.parse(template):
        if name is None:
            continue
        if name == "":
            raise ValueError("empty placeholder {} (write {{ and }} for literal braces)")
        names.append(name)
    return names


def render(
    template: str,
    resolve: Callable[[str], Any],
    *,
    quote: Callable[[str], str] | None = None,
) -> str:
    """Fill a template; ``resolve(path)`` gives each placeholder's value.

    ``resolve`` raises (with its own message) when a value is missing; ``quote`` escapes
    each value (e.g. percent-encoding for URL paths).
    """
    out = []
    for literal, name, spec, _conversion in _FORMATTER.parse(template):
        out.append(literal)
        if name is None:
            continue
        value = resolve(name)
        text = format(value, spec) if spec else _text(value)
        out.append(quote(text) if quote else text)
    return "".join(out)


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def quote_segment(text: str) -> str:
    """Percent-encode ``text`` as (part of) one URL path segment: no value can change
    the path it is put in.

    Every character but letters, digits, ``-``, ``_`` and ``~`` is encoded, so ``/``,
    ``?``, ``#`` and ``%`` stay inside the segment, and ``.`` too (``%2E``): an id of
    ``..`` or ``.`` is never read as a dot-segment by the client or the server.
    """
    return quote(text, safe="").replace(".", "%2E")
