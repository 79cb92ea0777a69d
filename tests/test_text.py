"""fragment_core.text: vendor rich text to plain task text."""

from __future__ import annotations

from fragment_core.text import html_to_text, one_line, shorten


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
