"""core/text.py: names from run files stay text in Markdown, plots and file names; unicode is kept."""

from __future__ import annotations

import pytest

from toolkit.core.text import file_part, md, plot_text


@pytest.mark.edge
def test_markdown_keeps_names_literal_and_on_one_line():
    assert md("cat") == "cat" and md("chat noir café 猫") == "chat noir café 猫"
    assert md("a|b") == "a\\|b" and "\n" not in md("two\nlines") and md("two\nlines") == "two lines"
    assert md("<script>alert(1)</script>") == "\\<script\\>alert(1)\\</script\\>"
    assert md("![x](http://evil/x.png)") == "!\\[x\\](http://evil/x.png)"
    assert md("`code` $x$ *b* \\") == "\\`code\\` \\$x\\$ \\*b\\* \\\\"
    assert len(md("x" * 10_000)) == 300 and md("x" * 10_000).endswith("…")


@pytest.mark.edge
def test_plot_text_is_never_mathtext():
    assert plot_text("cost $5 $\\frac{") == "cost \\$5 \\$\\frac{" and plot_text("a\tb\nc") == "a b c"
    assert len(plot_text("y" * 500)) == 80


@pytest.mark.edge
@pytest.mark.parametrize(
    "name, expected",
    [
        ("circle", "circle"),
        ("chat noir", "chat noir"),
        ("猫", "猫"),
        ("../../etc/passwd", "_.._etc_passwd"),
        ("/abs", "_abs"),
        ("..", "_"),
        (".hidden", "hidden"),
        ("a\nb", "a b"),
        ("c:\\x<y>|z?*", "c__x_y__z__"),
        ("", "_"),
    ],
)
def test_file_parts_cannot_leave_their_folder(name, expected):
    assert file_part(name) == expected
    assert "/" not in file_part(name) and not file_part(name).startswith(".")


@pytest.mark.edge
def test_file_parts_are_capped_in_utf8_bytes():
    assert len(file_part("猫" * 500).encode()) <= 96 and file_part("猫" * 500).startswith("猫猫")
    assert len(file_part("x" * 5000, max_bytes=80)) == 80
