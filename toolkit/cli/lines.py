"""Plain lines for the commands that start without Typer (cli/launch.py), and what both front ends
share: the version line and the one mapping from an exception to its `error:` line and exit code
(common.user_errors uses it too), so `tk predict` fails the same way on either path.

No rich, Typer, click or pydantic here: importing them costs more than a whole device prediction
(benchmarks/BENCHMARKS.md, "Device CLI start"). Colour follows rich's rules for the same lines:
only on a terminal, never under NO_COLOR or TERM=dumb, always under FORCE_COLOR.
"""

from __future__ import annotations

import os
import sys
from typing import Callable, Optional, TextIO

from ..core.errors import TkError, fault_line
from ..core.interrupts import Terminated, sigterm_as_interrupt

_COLOURS = {"red": "31", "yellow": "33"}


def version_line() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        shown = version("tk-edge")
    except PackageNotFoundError:  # run from a source tree without `pip install -e .`
        from .. import __version__ as shown
    return f"tk {shown}"


def _coloured(stream: TextIO) -> bool:
    if os.environ.get("FORCE_COLOR"):
        return True
    if os.environ.get("NO_COLOR") or os.environ.get("TERM") in ("dumb", "unknown"):
        return False
    return stream.isatty()


def say(line: str) -> None:
    """One line on stdout (the predictions, or the JSON document)."""
    sys.stdout.write(line + "\n")


def tell(line: str, colour: str = "yellow") -> None:
    """One line on stderr: notes, warnings and skipped files in yellow, errors in red."""
    if _coloured(sys.stderr):
        line = f"\x1b[{_COLOURS[colour]}m{line}\x1b[0m"
    sys.stderr.write(line + "\n")


def failure(exc: BaseException) -> Optional[tuple[int, str]]:
    """(exit code, error line) for what the user can fix or stop; None for a bug (keep its traceback)."""
    if isinstance(exc, Terminated):
        return 143, "stopped by SIGTERM (its temporary files removed)"
    if isinstance(exc, TkError):
        return 1, str(exc)
    if isinstance(exc, OSError):  # only disk full / read-only / permission: anything else is a bug
        line = fault_line(exc)
        return None if line is None else (1, line)
    return None


def guarded(call: Callable[[], None], error: Callable[[str], None]) -> int:
    """Run `call` with SIGTERM unwinding like Ctrl-C; a failure the user can act on becomes one
    `error: ...` line through `error` and its exit code; anything else propagates."""
    try:
        with sigterm_as_interrupt():
            call()
    except (Terminated, TkError, OSError) as exc:
        failed = failure(exc)
        if failed is None:
            raise
        error(f"error: {failed[1]}")
        return failed[0]
    return 0
