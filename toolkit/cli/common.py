"""What every `tk` command shares: the consoles, the one way to print, the domain's Context,
the one-line error wrapper and the options several commands take (each declared once, as
httpie's cli/definition.py does). Only cli/ prints, and within it only through these consoles.
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer
from rich.console import Console

from ..core.context import Context, silent
from .helpfmt import show_metavars_not_types
from .lines import JSON_HELP, guarded
from .progress import live_console, progress_for

# TensorFlow's C++ logs (cuInit probes, graph attributes) are noise for a CLI user: importing
# toolkit sets TF_CPP_MIN_LOG_LEVEL=3 unless it is set (core/quiet.py); TK_TF_LOGS=1 shows them.

show_metavars_not_types()

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def say(message: str) -> None:
    """One line on stdout: the only way a command prints a line."""
    # While progress bars are live on stderr, print through their console: rich keeps the line
    # above the bars (both streams are the same terminal then, or there would be no bars).
    (live_console() or console).print(message, markup=False, soft_wrap=True)


@contextlib.contextmanager
def context(as_json: bool = False, data_root: Optional[Path] = None) -> Iterator[Context]:
    """The domain's Context for one command: lines through `say` (none under --json, where stdout
    holds the JSON document only), progress bars on stderr when it is a terminal, --data-root."""
    with progress_for(console, err_console, as_json) as bars:
        yield Context(say=silent if as_json else say, progress=bars, data_root=data_root)


def user_errors(fn):
    """Turn TkError into one line on stderr and exit 1; SIGTERM unwinds like Ctrl-C (temporaries
    removed, the run lock released) and exits 143."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        result = None

        def call() -> None:
            nonlocal result
            result = fn(*args, **kwargs)

        code = guarded(call, lambda line: err_console.print(line, style="red", markup=False, soft_wrap=True))
        if code:
            raise typer.Exit(code)
        return result

    return wrapper


RunArg = Annotated[
    Optional[str],
    typer.Argument(metavar="[RUN]", help="Run folder, recipe file or run name (default: the latest run)."),
]
RunsDir = Annotated[Path, typer.Option("--runs-dir", metavar="DIR", help="Where run folders live.")]
DEFAULT_RUNS = Path(os.environ.get("TK_RUNS_DIR", "exported"))
DataRoot = Annotated[
    Optional[Path],
    typer.Option(
        "--data-root",
        metavar="DIR",
        help="The dataset folder on this machine, if it moved since training (default: the root split.json records).",
    ),
]
# One --json for every command: strict JSON on stdout and nothing else; the exit code is what it
# would be without it (a failed check still exits 1, after printing the JSON that says why).
JsonOpt = Annotated[bool, typer.Option("--json", help=JSON_HELP)]
SetOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        help="Override a recipe value, e.g. --set train.epochs=3 (dotted key, YAML value); repeatable.",
    ),
]
