"""Dotted paths into decoded JSON (``data.items``, ``customer.name``, ``tags.0``) and
``{placeholder}`` templates filled from them."""

from __future__ import annotations

import string
from collections.abc import Callable
from typing import Any
from urllib.parse import quote

from fragment_core.dotted import MISSING, lookup, set_path

__all__ = ["MISSING", "lookup", "placeholders", "quote_segment", "render", "set_path"]


_FORMATTER = string.Formatter()


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
