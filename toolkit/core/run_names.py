"""What may name a run: the names tk gives its own files beside a run are not free.

Its own module so that the recipe (which checks `name:`) and the run folders (which create the
names) read one rule without importing each other.
"""

from __future__ import annotations

import re
from typing import Optional

# Folders beside the runs that are not runs: a run in progress, a swap leftover, temp folders.
NOT_RUN_SUFFIXES = (".partial", ".old")
# What tk itself names things beside a run: <name>.partial (train), .<name>.lock, .<name>.*.tmp
# and .<name>.pack-* (hidden), <name>-<trained time>[-N] (the archived previous run).
_OWN_SUFFIXES = (*NOT_RUN_SUFFIXES, ".lock", ".tmp")
ARCHIVED = re.compile(r"-\d{8}-\d{6}(-\d+)?$")
MAX_NAME = 100  # with tk's prefixes and suffixes still under every filesystem's 255-byte name limit


def run_name_problem(name: str) -> Optional[str]:
    """Why `name` cannot name a run (it would collide with a name tk gives its own files), or None."""
    if len(name) > MAX_NAME:
        return f"at most {MAX_NAME} characters (got {len(name)})"
    if name.startswith("."):
        return "must not start with '.' (tk's locks and temporary files beside the runs do)"
    own = next((s for s in _OWN_SUFFIXES if name.endswith(s)), None)
    if own:
        return f"must not end in {own!r} (tk names its temporary folders and files so)"
    if ARCHIVED.search(name):
        return "must not end in -YYYYMMDD-HHMMSS (tk names the archived previous run of a recipe so)"
    return None
