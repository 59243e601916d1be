"""One exception type for everything the user can fix, and the one "did you mean" hint.

Domain code raises TkError with a message that says what failed, what was received and how to fix
it; the CLI prints it as one line and exits 1. Any other exception is a bug and keeps its traceback.
"""

from __future__ import annotations

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
    import difflib  # only when a typo is met: every tk command imports this module

    close = difflib.get_close_matches(str(word), [str(c) for c in choices], n=n)
    if not close:
        return ""
    return f" (did you mean {close[0]!r}?)" if n == 1 else f" (did you mean {', '.join(close)}?)"


_FAULT_FIXES = {
    errno.ENOSPC: "the disk is full: free space there and run the command again (train: --resume)",
    errno.EDQUOT: "the disk quota is used up: free space there and run the command again (train: --resume)",
    errno.EROFS: "the folder is read-only: pass a writable one (e.g. --runs-dir) or remount it",
}
# Faults of a path, whether it was being read or written: the line names the path, not "could not write".
_PATH_FAULTS = {
    errno.EACCES: "no permission: fix the permissions of it (or its folder), or pass a path you can use",
    errno.EPERM: "no permission: fix the permissions of it (or its folder), or pass a path you can use",
    errno.ENAMETOOLONG: "a name in it is too long for this filesystem: use a shorter path (or recipe name)",
    errno.ELOOP: "too many levels of symbolic links: fix or remove the link",
}


def fault_line(exc: OSError) -> str | None:
    """One line for a disk-full, read-only, permission or path-too-long fault, naming the folder or
    the path; None otherwise (any other OSError is a bug or a damaged file, and keeps its traceback)."""
    where = exc.filename
    if exc.errno in _PATH_FAULTS:
        return f"{_short(os.fspath(where)) if where else 'a path'}: {exc.strerror or exc}; {_PATH_FAULTS[exc.errno]}"
    fix = _FAULT_FIXES.get(exc.errno)
    if fix is None:
        return None
    folder = os.path.dirname(os.fspath(where)) or "." if where else "the output folder"
    return f"could not write in {folder} ({exc.strerror or exc}); {fix}"


def _short(path: str | bytes, keep: int = 120) -> str:
    """A path for a message: a path too long for the filesystem is too long for a line as well."""
    path = os.fsdecode(path)
    return path if len(path) <= keep else f"{path[: keep // 2]}...{path[-keep // 2 :]} ({len(path)} characters)"
