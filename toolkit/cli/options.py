"""Options shared by several commands, declared once, and how list options are read.

List options take one style everywhere: a comma-separated list (`--format tflite,onnx`), and
repeating the option still works (`--format tflite --format onnx`). `--set` and path options
repeat only: their values may hold commas.
"""

from __future__ import annotations

from typing import Iterable, Optional

import typer

from ..core.caps import check_threads
from ..core.errors import TkError, suggest
from ..core.recipe_keys import SHORTCUTS

PANEL_SHORTCUTS = "Recipe shortcuts (each one is --set KEY=VALUE)"


def comma_list(values: Optional[Iterable[str]]) -> Optional[list[str]]:
    """['tflite,onnx', 'int8'] -> ['tflite', 'onnx', 'int8']; None (not given) stays None."""
    if values is None:
        return None
    items = [part.strip() for value in values for part in str(value).split(",")]
    return [item for item in items if item] or None


def check_choices(option: str, values: Optional[list[str]], allowed: Iterable[str], every: str = "all"):
    """values, each one of allowed (or `every`), else one line naming the bad one; for usage errors
    that must come before a run is looked up (`tk export --quantize int4`)."""
    allowed = list(allowed)
    for value in values or []:
        if value != every and value not in allowed:
            options = ", ".join(allowed) + (f", {every}" if every else "")
            raise TkError(f"{option}: unknown value {value!r}{suggest(value, allowed)}; allowed: {options}")
    return values


def thread_counts(values: Optional[Iterable[str]], option: str = "--threads") -> Optional[tuple[int, ...]]:
    """--threads 1,2 (or repeated) as positive integers; None when not given."""
    items = comma_list(values)
    if items is None:
        return None
    try:
        counts = tuple(int(item) for item in items)
    except ValueError:
        raise TkError(f"{option}: expected comma-separated integers like 1,2,4 (got {','.join(items)!r})") from None
    check_threads(counts, option)  # before the run is looked up
    return counts


def shortcut(option: str):
    """The typer.Option of a `tk train` shortcut: metavar and help (naming its key) from the table."""
    spec = next(s for s in SHORTCUTS if s.option == option)
    return typer.Option(option, metavar=spec.metavar, help=spec.help, rich_help_panel=PANEL_SHORTCUTS)
