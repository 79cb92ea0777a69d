"""Helpers for ``to_task``: what the vendors' mappings have in common.

- :func:`html_to_text`: a rich-text body (HubSpot task bodies, Zendesk comments,
  Intercom conversation parts) as plain text, paragraphs kept as single newlines;
- :func:`truncate`: a text cut to a length, an ellipsis marking the cut;
- :func:`parse_datetime`: ISO 8601 or epoch seconds / milliseconds, as the vendors send
  times, to an aware UTC datetime (``ValueError`` for anything else).
"""

from __future__ import annotations

import re
from datetime import UTC, datetime
from html.parser import HTMLParser
from typing import Any, Literal

__all__ = ["html_to_text", "parse_datetime", "truncate"]

_BLOCKS = {"p", "div", "br", "li", "tr", "h1", "h2", "h3", "h4", "h5", "h6", "ul", "ol"}


class _TextCollector(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.parts: list[str] = []

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        if tag in _BLOCKS:
            self.parts.append("\n")

    def handle_endtag(self, tag: str) -> None:
        if tag in _BLOCKS:
            self.parts.append("\n")

    def handle_data(self, data: str) -> None:
        self.parts.append(data)


def html_to_text(html: str) -> str:
    """Strip tags, decode entities, keep paragraph breaks as single newlines."""
    if "<" not in html and "&" not in html:
        return html.strip()
    collector = _TextCollector()
    collector.feed(html)
    collector.close()
    text = "".join(collector.parts)
    lines = [re.sub(r"[ \t\u00a0]+", " ", line).strip() for line in text.splitlines()]
    return "\n".join(line for line in lines if line)


def truncate(text: str, max_chars: int) -> str:
    """``text`` if it fits in ``max_chars``, else cut to ``max_chars`` ending in ``…``."""
    if len(text) <= max_chars:
        return text
    return text[: max(max_chars - 1, 0)].rstrip() + "…"


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
