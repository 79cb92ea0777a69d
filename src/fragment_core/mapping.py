"""Helpers for ``to_task``: what the vendors' mappings have in common.

- :func:`html_to_text`: a rich-text body (HubSpot task bodies, Zendesk comments,
  Intercom conversation parts) as plain text, paragraphs kept as single newlines,
  script/style content dropped;
- :func:`one_line`: a text with every run of whitespace made one space (titles);
- :func:`shorten`: a text cut to a length, an ellipsis marking the cut;
- :func:`parse_datetime`: ISO 8601 or epoch seconds / milliseconds, as the vendors send
  times, to an aware UTC datetime (``ValueError`` for anything else);
- :func:`record_time`: :func:`parse_datetime` for a record's field, a
  :class:`~fragment_core.errors.BadRecordError` naming the field when it is not a time;
- :func:`epoch_ms`: an aware datetime as epoch milliseconds (a filter value).

::

    >>> html_to_text("<p>My invoice is <b>wrong</b> &amp; late</p><p>Help</p>")
    'My invoice is wrong & late\\nHelp'
    >>> shorten("a long title that goes on", 12)
    'a long titl…'
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any, Literal

from fragment_core.errors import BadRecordError

__all__ = ["epoch_ms", "html_to_text", "one_line", "parse_datetime", "record_time", "shorten"]

_BLOCKS = {
    "p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol",
    "blockquote", "pre", "table", "hr",
}  # fmt: skip
_SKIPPED = {"script", "style", "head", "title"}
_SPACES = re.compile(r"[ \t\u00a0\u200b]+")


class _TextCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []
        self._skipping = 0

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _SKIPPED:
            self._skipping += 1
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _SKIPPED:
            self._skipping = max(0, self._skipping - 1)
        elif tag in _BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        if not self._skipping:
            self.parts.append(data)


def html_to_text(html: str) -> str:
    """Strip tags (and script/style content), decode entities, keep paragraph breaks as
    single newlines; plain text comes back trimmed."""
    if "<" not in html and "&" not in html:
        return html.strip()
    collector = _TextCollector()
    collector.feed(html)
    collector.close()
    lines = [_SPACES.sub(" ", line).strip() for line in "".join(collector.parts).splitlines()]
    return "\n".join(line for line in lines if line)


def one_line(text: str) -> str:
    """``text`` with every run of whitespace (newlines included) made one space."""
    return " ".join(text.split())


def shorten(text: str, limit: int, *, ellipsis: str = "…") -> str:
    """``text`` if it fits in ``limit`` characters, else cut to ``limit`` ending in
    ``ellipsis``; ``""`` for a limit below 1."""
    if limit < 1:
        return ""
    if len(text) <= limit:
        return text
    return text[: max(limit - len(ellipsis), 0)].rstrip() + ellipsis[:limit]


def parse_datetime(value: Any, *, epoch: Literal["s", "ms"] = "s") -> datetime | None:
    """An ISO 8601 text or an epoch number (seconds, or milliseconds with ``epoch="ms"``)
    as an aware datetime (naive ISO times are UTC); ``None`` for ``None`` or ``""``.

    Raises ``ValueError`` for anything else, out-of-range numbers included.
    """
    if value is None or value == "":
        return None
    text = str(value).strip()
    try:
        if text.lstrip("-").isdigit():
            return datetime.fromtimestamp(int(text) / (1000 if epoch == "ms" else 1), tz=UTC)
        parsed = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except (OverflowError, OSError) as exc:
        raise ValueError(f"{text[:40]!r} is out of range: {exc}") from None
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def epoch_ms(value: datetime) -> int:
    """An aware datetime as epoch milliseconds (how HubSpot, for one, filters on times)."""
    return int(value.timestamp() * 1000)


def record_time(value: Any, field: str, *, epoch: Literal["s", "ms"] = "s") -> datetime | None:
    """:func:`parse_datetime` of a record's ``field`` in ``to_task`` (``None`` when empty); a
    :class:`~fragment_core.errors.BadRecordError` naming ``field`` when it is not a time."""
    try:
        return parse_datetime(value, epoch=epoch)
    except ValueError:
        unit = "milliseconds" if epoch == "ms" else "seconds"
        raise BadRecordError(
            f"{value!r} is not a time (expected ISO 8601 or epoch {unit})", field=field
        ) from None
