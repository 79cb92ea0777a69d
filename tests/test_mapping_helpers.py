"""fragment_core.mapping: HTML to text, truncation, vendor times."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from fragment_core.mapping import html_to_text, parse_datetime, truncate


def test_html_to_text_keeps_paragraphs_and_decodes_entities() -> None:
    html = "<p>Ask about <b>seat&nbsp;count</b></p><ul><li>one</li><li>two</li></ul>"
    assert html_to_text(html) == "Ask about seat count\none\ntwo"
    assert html_to_text("  plain  ") == "plain"


def test_truncate_marks_the_cut() -> None:
    assert truncate("abcdef", 6) == "abcdef"
    assert truncate("abc def", 5) == "abc…" and len(truncate("x" * 50, 10)) == 10


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
