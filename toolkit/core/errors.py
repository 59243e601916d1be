"""One exception type for everything the user can fix, and the one "did you mean" hint.

Domain code raises TkError with a message that says what failed, what was received and how to fix
it; the CLI prints it as one line and exits 1. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

import difflib
import errno
import os
from typing import Callable, Iterable

# How domain code reports progress: one line at a time, rendered (or dropped) by the caller.
Say = Callable[[str], None]


class TkError(Exception):
    """A mistake the user can fix (bad recipe, missing file, unknown name, ...)."""


class ParityError(TkError):
    """An artifact does not predict what the reference model predicts."""


class Interrupted(TkError):
    """Ctrl-C during a run: what it finished is kept, and the message says how to resume."""


def suggest(word: str, choices: Iterable[str], n: int = 1) -> str:
    """' (did you mean 'x'?)' for the closest choice (or the n closest), '' when nothing is close."""
    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=n)
    if not close:
        return ""
    return f" (did you mean {close[0]!r}?)" if n == 1 else f" (did you mean {', '.join(close)}?)"


_FAULT_FIXES = {
    errno.ENOSPC: "the disk is full: free space there and run the command again (train: --resume)",
    errno.EDQUOT: "the disk quota is used up: free space there and run the command again (train: --resume)",
    errno.EROFS: "the folder is read-only: pass a writable one (e.g. --runs-dir) or remount it",
    errno.EACCES: "no permission to write there: fix its permissions or pass a writable folder (e.g. --runs-dir)",
    errno.EPERM: "no permission to write there: fix its permissions or pass a writable folder (e.g. --runs-dir)",
}


def fault_line(exc: OSError) -> str | None:
    """One line for a disk-full or read-only/permission fault, naming the folder; None otherwise
    (any other OSError is a bug or a damaged file, and keeps its traceback)."""
    fix = _FAULT_FIXES.get(exc.errno)
    if fix is None:
        return None
    where = exc.filename
    folder = os.path.dirname(os.fspath(where)) or "." if where else "the output folder"
    return f"could not write in {folder} ({exc.strerror or exc}); {fix}"
