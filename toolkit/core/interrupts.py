"""Signals: SIGTERM stops tk the way Ctrl-C does, and a measuring child never outlives its parent.

Every temporary tk writes (atomic_path's siblings, pack's and synth's work folders, export's
.export-* folders, the run lock) is removed in a `finally:` block, which runs for an exception but
not for a signal's default action. `sigterm_as_interrupt` turns SIGTERM (what `kill`, systemd,
docker stop and CI timeouts send) into `Terminated`, a KeyboardInterrupt, so the same blocks run
and train keeps its checkpoints for --resume. A SIGKILL cannot be caught: what it leaves is
cleaned by the next command that takes the same lock. Standard library only.
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import sys
import threading
import time
from typing import Iterator

PR_SET_PDEATHSIG = 1  # linux/prctl.h


class Terminated(KeyboardInterrupt):
    """SIGTERM arrived: raised wherever the main thread was, unwinding like Ctrl-C."""


@contextlib.contextmanager
def sigterm_as_interrupt() -> Iterator[None]:
    """Within the block, SIGTERM raises Terminated in the main thread (elsewhere: a no-op)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def terminate(signum, frame):
        raise Terminated()

    previous = signal.signal(signal.SIGTERM, terminate)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def die_with_parent(parent: int) -> None:
    """Make this process end when `parent` does, however it ends (SIGKILL included).

    Linux: the kernel sends SIGKILL when the parent dies (PR_SET_PDEATHSIG). Elsewhere, or if
    prctl is unavailable: a daemon thread checks every half second that the parent is still there.
    Either way, a parent that died before this call is noticed now."""
    armed = False
    if sys.platform.startswith("linux"):
        try:
            armed = ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL) == 0
        except (OSError, AttributeError):
            armed = False
    if not _parent_alive(parent):
        os._exit(1)
    if not armed:
        threading.Thread(target=_watch, args=(parent,), daemon=True, name="tk-watch-parent").start()


def _watch(parent: int) -> None:
    while _parent_alive(parent):
        time.sleep(0.5)
    os._exit(1)


def _parent_alive(parent: int) -> bool:
    """POSIX re-parents an orphan (getppid changes); Windows does not, so ask whether it exists."""
    if os.name != "nt":
        return os.getppid() == parent
    try:
        import psutil

        return psutil.pid_exists(parent)
    except ImportError:
        return True
