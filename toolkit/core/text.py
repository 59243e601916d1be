"""Text from run files stays text: class names, artifact names, host names and notes come from files
anyone can edit, so before they reach Markdown, a plot or a file name they are escaped or sanitised.
Unicode is kept (a class may be called "café" or "猫"); what would change the structure around it
(a `|` in a table, a newline, `<script>`, `![](http://...)`, matplotlib's `$math$`, a `/` or `..`
in a file name) is not. Standard library only.
"""

from __future__ import annotations

_MD_SPECIAL = set("\\`*[]<>|$&")
_FILE_KEEP = set(" -_.+,()")


def _flat(text: object, cap: int) -> str:
    """One line: control characters (newlines, tabs, NUL, escapes) become spaces; capped with '…'."""
    flat = "".join(" " if ord(c) < 32 or 127 <= ord(c) < 160 else c for c in str(text))
    return flat if len(flat) <= cap else flat[: cap - 1] + "…"


def md(text: object, cap: int = 300) -> str:
    """Text for a Markdown line or table cell: literal, one line, at most cap characters."""
    return "".join("\\" + c if c in _MD_SPECIAL else c for c in _flat(text, cap))


def plot_text(text: object, cap: int = 80) -> str:
    """Text for a matplotlib label or title: one line, `$` literal (not mathtext), capped."""
    return _flat(text, cap).replace("$", r"\$")


def file_part(text: object, max_bytes: int = 96) -> str:
    """A piece of a file name: letters and digits of any script, space and -_.+,() kept, anything
    else (separators, '..', control and shell characters) as '_', no leading/trailing dot or space,
    at most max_bytes of UTF-8 (file systems allow 255 for the whole name)."""
    out = "".join(c if c.isalnum() or c in _FILE_KEEP else "_" for c in _flat(text, 1000)).strip(" .")
    while len(out.encode("utf-8")) > max_bytes:
        out = out[:-1]
    return out.rstrip(" .") or "_"
