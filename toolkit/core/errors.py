"""One exception type for everything the user can fix, and the one "did you mean" hint.

Domain code raises TkError with a message that says what failed, what was received and how to fix
it; the CLI prints it as one line and exits 1. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
from typing import Callable, Iterable

# How domain code reports progress: one line at a time, rendered (or dropped) by the caller.
Say = Callable[[str], None]


class TkError(Exception):
    """A mistake the user can fix (bad recipe, missing file, unknown name, ...)."""


class ParityError(TkError):
    """An artifact does not predict what the reference model predicts."""


def suggest(word: str, choices: Iterable[str], n: int = 1) -> str:
    """' (did you mean 'x'?)' for the closest choice (or the n closest), '' when nothing is close."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=n)
    if not close:
        return ""
    return f" (did you mean {close[0]!r}?)" if n == 1 else f" (did you mean {', '.join(close)}?)"
