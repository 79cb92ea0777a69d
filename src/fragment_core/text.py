"""Vendor text to task text: HTML to plain text, and titles cut to a length.

Several vendors send rich text (HubSpot task bodies, Intercom messages); a task title or
custom field wants plain text of a bounded length::

    >>> html_to_text("<p>My invoice is <b>wrong</b> &amp; late</p><p>Help</p>")
    'My invoice is wrong & late\\nHelp'
    >>> shorten("a long title that goes on", 12)
    'a long titl…'
"""

from __future__ import annotations

import re
from html.parser import HTMLParser

__all__ = ["html_to_text", "one_line", "shorten"]

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
    """``text`` cut to at most ``limit`` characters, ending in ``ellipsis`` when cut."""
    if limit < 1:
        return ""
    if len(text) <= limit:
        return text
    return text[: max(limit - len(ellipsis), 0)].rstrip() + ellipsis[:limit]
