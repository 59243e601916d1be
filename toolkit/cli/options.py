"""Options shared by several commands, declared once, and how list options are read.

List options take one style everywhere: a comma-separated list (`--format tflite,onnx`), and
repeating the option still works (`--format tflite --format onnx`). `--set` and path options
repeat only: their values may hold commas.
"""

from __future__ import annotations

import typer

from ..core.recipe_keys import SHORTCUTS
from .argtable import check_choices, comma_list, thread_counts  # noqa: F401 (read without Typer there)

PANEL_SHORTCUTS = "Recipe shortcuts (each one is --set KEY=VALUE)"


def shortcut(option: str):
    """The typer.Option of a `tk train` shortcut: metavar and help (naming its key) from the table."""
    spec = next(s for s in SHORTCUTS if s.option == option)
    return typer.Option(option, metavar=spec.metavar, help=spec.help, rich_help_panel=PANEL_SHORTCUTS)
