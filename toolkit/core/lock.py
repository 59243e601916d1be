"""One writer per run: a lock file beside the run folder, held for a whole `tk train`/`tk export`.

exported/.<name>.lock holds {pid, host, started, command}. It appears complete (written to a
temporary file, then hard-linked into place, so a reader never sees it half written) and, where
fcntl exists, already flock-ed by its holder: the kernel drops that flock when the holder dies,
however it dies, so a later run can tell a killed holder (lock takeable: taken over) from a live
one (refused, naming it) even if the pid was reused. Without fcntl (Windows) a lock of this host
whose pid is gone is taken over. A lock from another host is never taken over (its pid means
nothing here): the message says to delete it if that run is gone. Standard library only.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import stat
import tempfile
from pathlib import Path
from typing import Any, Iterator, Optional

from .context import SILENT, Context
from .errors import TkError
from .io import now

try:
    import fcntl
except ImportError:  # Windows: the pid check alone
    fcntl = None  # type: ignore[assignment]


def lock_path(run_dir: Path) -> Path:
    """The lock of a run folder: exported/.<name>.lock (train's <name>.partial shares it)."""
    run_dir = Path(os.path.abspath(run_dir))  # `tk export .` inside the run: its real name
    return run_dir.parent / f".{run_dir.name}.lock"


@contextlib.contextmanager
def run_lock(run_dir: Path, command: str, ctx: Context = SILENT) -> Iterator[Path]:
    """Hold the run's lock for the block; TkError naming the holder if another live process has it."""
    path = lock_path(run_dir)
    fd = _acquire(path, command, ctx)
    try:
        yield path
    finally:
        with contextlib.suppress(OSError):
            if _same_file(fd, path):
                os.unlink(path)
        os.close(fd)


def _acquire(path: Path, command: str, ctx: Context) -> int:
    path.parent.mkdir(parents=True, exist_ok=True)
    info = {"pid": os.getpid(), "host": socket.gethostname(), "started": now(), "command": command}
    for _ in range(5):  # a takeover races with at most a few others: each round one wins
        fd = _publish(path, info)
        if fd is not None:
            return fd
        odd = _not_a_lock_file(path)  # before reading it: opening a FIFO would block forever
        if odd:
            raise TkError(
                f"{path}: the lock of {path.parent / path.name[1 : -len('.lock')]} is {odd}, not a lock "
                f"file tk wrote; remove it (rm -r {path}) and run the command again"
            )
        holder = _read(path)
        stale = _stale(path, holder)
        if stale is None:  # vanished between the two looks: try again
            continue
        if not stale:
            raise TkError(_refusal(path, holder))
        ctx.say(f"taking over {path}: {_describe(holder)} is no longer running")
    raise TkError(_refusal(path, _read(path)))


def _publish(path: Path, info: dict[str, Any]) -> Optional[int]:
    """Create the lock complete and (where possible) flock-ed; None if one exists already."""
    fd, tmp = tempfile.mkstemp(prefix=f"{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.write(fd, (json.dumps(info) + "\n").encode())
        os.fsync(fd)
        if fcntl is not None:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)  # our own new file: never contended
        try:
            os.link(tmp, path)
        except FileExistsError:
            os.close(fd)
            return None
        except OSError:  # no hard links on this filesystem: exclusive create, then write
            os.close(fd)
            return _publish_exclusive(path, info)
        return fd
    finally:
        os.unlink(tmp)


def _publish_exclusive(path: Path, info: dict[str, Any]) -> Optional[int]:
    try:
        fd = os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
    except FileExistsError:
        return None
    if fcntl is not None:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    os.write(fd, (json.dumps(info) + "\n").encode())
    os.fsync(fd)
    return fd


def _not_a_lock_file(path: Path) -> Optional[str]:
    """What the lock path is when it is not a regular file (a folder, a FIFO, a link), else None."""
    try:
        mode = os.lstat(path).st_mode
    except FileNotFoundError:
        return None  # released meanwhile: the caller tries again
    if stat.S_ISREG(mode):
        return None
    if stat.S_ISLNK(mode):
        return "a symbolic link" + ("" if os.path.exists(path) else " to nothing")
    return {stat.S_IFDIR: "a folder", stat.S_IFIFO: "a named pipe (FIFO)", stat.S_IFSOCK: "a socket"}.get(
        stat.S_IFMT(mode), "not a regular file"
    )


def _read(path: Path) -> dict[str, Any]:
    try:
        holder = json.loads(path.read_text(encoding="utf-8"))
        return holder if isinstance(holder, dict) else {}
    except (OSError, ValueError):
        return {}


def _stale(path: Path, holder: dict[str, Any]) -> Optional[bool]:
    """True (and the stale lock removed) if its holder is dead; False if alive; None if gone."""
    if holder.get("host") not in (None, socket.gethostname()):
        return False
    try:  # never through a link, never blocking (a FIFO put there after the check above)
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_NONBLOCK", 0))
    except OSError:  # gone, or replaced by a link meanwhile: look again
        return None
    try:
        if fcntl is not None:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                return False  # its holder still has it
        elif _pid_alive(holder.get("pid")):
            return False
        if not _same_file(fd, path):  # released and re-taken meanwhile: look again
            return None
        os.unlink(path)
        return True
    finally:
        os.close(fd)


def _same_file(fd: int, path: Path) -> bool:
    try:
        return os.path.samestat(os.fstat(fd), os.stat(path))
    except OSError:
        return False


def _pid_alive(pid: Any) -> bool:
    if not isinstance(pid, int) or pid <= 0:
        return False
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except OSError:  # exists, another user's
        return True
    return True


def _describe(holder: dict[str, Any]) -> str:
    if not holder:
        return "an unreadable lock"
    return (
        f"{holder.get('command', 'tk')} (pid {holder.get('pid', '?')} on {holder.get('host', '?')}, "
        f"started {holder.get('started', '?')})"
    )


def _refusal(path: Path, holder: dict[str, Any]) -> str:
    here = holder.get("host") in (None, socket.gethostname())
    gone = (
        ""
        if here
        else f"; if that run is gone (host {holder.get('host')} cannot be checked from here), delete the lock"
    )
    return (
        f"{path.parent / path.name[1 : -len('.lock')]} is in use by {_describe(holder)}, lock file {path}: "
        f"wait for it to finish or stop it{gone}"
    )
