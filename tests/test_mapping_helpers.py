"""fragment_core.mapping: vendor rich text to plain task text, shortening, vendor times."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fragment_core.mapping import html_to_text, one_line, parse_datetime, shorten


def test_html_to_text_keeps_paragraphs_and_decodes_entities() -> None:
    html = "<p>Ask about <b>seat&nbsp;count</b></p><ul><li>one</li><li>two</li></ul>"
    assert html_to_text(html) == "Ask about seat count\none\ntwo"
    assert html_to_text("  plain  ") == "plain"


def test_shorten_marks_the_cut() -> None:
    assert shorten("abcdef", 6) == "abcdef"
    assert shorten("abc def", 5) == "abc…" and len(shorten("x" * 50, 10)) == 10


def test_parse_datetime_reads_iso_and_epoch_seconds_or_ms() -> None:
    moment = datetime(2025, 5, 6, 15, 0, tzinfo=UTC)
    assert parse_datetime("2025-05-06T15:00:00Z") == moment
    assert parse_datetime("2025-05-06T15:00:00") == moment  # naive: UTC
    assert parse_datetime(1746543600) == moment
    assert parse_datetime("1746543600000", epoch="ms") == moment
    assert parse_datetime("") is None and parse_datetime(None) is None
    for bad in ("next tuesday", "9" * 30):
        with pytest.raises(ValueError):
            parse_datetime(bad)


def test_html_to_text_strips_tags_decodes_entities_and_keeps_paragraphs() -> None:
    html = "<p>My invoice is <b>wrong</b>&nbsp;&amp; late</p><div>Help<br>please</div>"
    assert html_to_text(html) == "My invoice is wrong & late\nHelp\nplease"


def test_html_to_text_drops_script_and_style_content() -> None:
    html = "<style>p{color:red}</style><p>Hi</p><script>alert(1)</script>"
    assert html_to_text(html) == "Hi"


def test_plain_text_comes_back_trimmed() -> None:
    assert html_to_text("  a < b is fine  ") == "a < b is fine"
    assert html_to_text("  no markup  ") == "no markup"


def test_one_line_and_shorten() -> None:
    assert one_line("a\n  b\tc ") == "a b c"
    assert shorten("short", 10) == "short"
    assert shorten("a long title that goes on", 12) == "a long titl…"
    assert len(shorten("x" * 50, 10)) == 10
    assert shorten("abc", 0) == ""
