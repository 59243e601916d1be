"""Paths read from run files and bundles stay inside the folder they belong to.

A manifest names its artifacts, split.json its images, a bundle its samples: text anyone can edit,
in folders that travel between machines. Every such path goes through `confine` before anything
is read or written there, so `../../victim.txt`, `/etc/passwd` or a link to a file elsewhere is
one line naming the file the path came from, never a read or a write outside. Standard library only.

Two kinds of root, because they are trusted differently:

- a run folder or a bundle (the default): written by tk, then copied, unpacked, edited. Nothing
  in it needs a link, so links are resolved and the real path must stay inside the real root.
- the data root (`links="followed"`): the user's own dataset on this machine, whose class folders
  may be links to another disk (`data/flowers/roses -> /mnt/photos/roses`). Its links are its
  content, not something a run file can plant; what split.json records is only text, so the text
  must stay under the root: no `..` out of it, an absolute path only below it.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Literal

from .errors import TkError

Links = Literal["resolved", "followed"]


def confine(root: str | Path, recorded: Any, source: str | Path, fix: str, links: Links = "resolved") -> Path:
    """The path `recorded` (relative to root, or absolute) as something inside root, or TkError.

    source: the file the path was read from (named in the message); fix: how to repair it.
    Returns the real path (links="resolved": what was checked is what gets opened) or the
    normalized path under root (links="followed").
    """
    if not isinstance(recorded, str) or not recorded or "\0" in recorded:
        raise TkError(f"{source}: {recorded!r} is not a usable path; {fix}")
    root_text = os.path.abspath(root)
    joined = os.path.normpath(os.path.join(root_text, recorded))  # an absolute `recorded` stays as it is
    if links == "followed":
        if _within(joined, root_text):
            return Path(joined)
        raise TkError(f"{source}: path {recorded!r} is outside {root_text}; {fix}")
    real_root, real = os.path.realpath(root_text), os.path.realpath(joined)
    if _within(real, real_root):
        return Path(real)
    how = " through a symbolic link" if _within(joined, root_text) else ""
    raise TkError(f"{source}: path {recorded!r} leads outside {root_text}{how} (to {real}); {fix}")


def _within(path: str, root: str) -> bool:
    """path is root or below it (both absolute and normalized; compared by whole components)."""
    try:
        return os.path.commonpath([path, root]) == root
    except ValueError:  # different drives (Windows)
        return False
