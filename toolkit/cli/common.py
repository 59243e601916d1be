"""What every `tk` command shares: the consoles, the one way to print, the domain's Context,
the one-line error wrapper and the options several commands take (each declared once, as
httpie's cli/definition.py does). Only cli/ prints, and within it only through these consoles.
"""

from __future__ import annotations

import contextlib
import functools
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer
from rich.console import Console

from ..core.context import Context, silent
from .argtable import DATA_ROOT, DEFAULT_RUNS, JSON, RUNS_DIR  # noqa: F401 (DEFAULT_RUNS: the commands')
from .helpfmt import show_metavars_not_types
from .lines import guarded
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
# --runs-dir, --data-root and --json: declared once in argtable.py, where the device commands'
# tables (read without Typer) take them too.
RunsDir = Annotated[Path, typer.Option(RUNS_DIR.flag, metavar=RUNS_DIR.metavar, help=RUNS_DIR.help)]
DataRoot = Annotated[Optional[Path], typer.Option(DATA_ROOT.flag, metavar=DATA_ROOT.metavar, help=DATA_ROOT.help)]
JsonOpt = Annotated[bool, typer.Option(JSON.flag, help=JSON.help)]
SetOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        help="Override a recipe value, e.g. --set train.epochs=3 (dotted key, YAML value); repeatable.",
    ),
]
