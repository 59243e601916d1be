"""Atomic writes and file facts: how every tk command writes, so a failure never leaves a file
that looks valid. A temporary sibling is written, then renamed over the target (same filesystem,
so the rename is atomic). Standard library only.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import math
import os
import re
import shutil
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator

# Names tk's own temporaries take, and the only names remove_leftovers deletes: a user's .env.tmpl or
# .notes.old beside them is not tk's to remove.
TMP_PREFIX = ".tk-tmp-"  # atomic_path: .tk-tmp-<random>.tmp<suffix>
WORK_PREFIX = ".tk-export-"  # export's work folder
OLD_PREFIX = ".tk-old-"  # a folder being replaced: .tk-old-<name>
_LEFTOVER = re.compile(r"\.tk-tmp-[a-z0-9_]+\.tmp.*|\.tk-export-[a-z0-9_]+|\.tk-old-.+")


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=TMP_PREFIX, suffix=".tmp" + suffix, dir=path.parent)
    os.close(fd)
    os.unlink(tmp)  # writers (Keras, converters) want to create the file themselves
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path) if not tmp_path.is_dir() else _replace_dir(tmp_path, path)
    finally:
        if tmp_path.is_dir():
            shutil.rmtree(tmp_path, ignore_errors=True)
        elif tmp_path.exists():
            tmp_path.unlink()


def _replace_dir(tmp: Path, path: Path) -> None:
    old = path.with_name(OLD_PREFIX + path.name)
    if path.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def json_text(obj: Any) -> str:
    """Strict JSON (RFC 8259 has no NaN/Infinity): non-finite numbers become null, so every
    tk --json output and every run file parses in any JSON reader, not only Python's."""
    return json.dumps(finite_or_null(obj), indent=2, sort_keys=False, allow_nan=False)


def finite_or_null(obj: Any) -> Any:
    if isinstance(obj, float):
        return obj if math.isfinite(obj) else None
    if isinstance(obj, dict):
        return {k: finite_or_null(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [finite_or_null(v) for v in obj]
    return obj


def write_json_atomic(path: Path, obj: Any) -> None:
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(json_text(obj) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(text)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            digest.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def size_bytes(path: Path) -> int:
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def format_size(size: float, binary: bool = False) -> str:
    """'1.23 MB', '312 kB', '512 bytes': the one way tk writes a size. binary: '10 MiB', for caps
    and memory that are set in powers of two (data.source.max_bytes, decoded image caches)."""
    base, units = (1024, ("bytes", "KiB", "MiB", "GiB", "TiB")) if binary else (1000, ("bytes", "kB", "MB", "GB", "TB"))
    for unit in units:
        if abs(size) < base or unit == units[-1]:
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.3g} {unit}"
        size /= base
    raise AssertionError("unreachable: the last unit returns")


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def tool_versions(*packages: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in packages:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def remove_leftovers(folder: Path, recursive: bool = False) -> list[Path]:
    """Remove what a killed writer left in folder, by tk's own names only (TMP_PREFIX, WORK_PREFIX,
    OLD_PREFIX). A .tk-old-<name> whose <name> is gone (killed between the two renames of a folder
    replace) is moved back; one whose <name> exists is removed. Call it only while holding the
    folder's lock (core/lock.py): a live writer's temporaries look the same."""
    folder = Path(folder)
    if not folder.is_dir():
        return []
    removed = []
    found = folder.rglob(".tk-*") if recursive else folder.glob(".tk-*")
    for path in sorted(found, key=lambda p: len(p.parts)):
        name = path.name
        if not _LEFTOVER.fullmatch(name) or not os.path.lexists(path):  # or inside one removed already
            continue
        if name.startswith(OLD_PREFIX):
            target = path.with_name(name[len(OLD_PREFIX) :])
            if not os.path.lexists(target):
                os.replace(path, target)
                continue
        shutil.rmtree(path) if path.is_dir() and not path.is_symlink() else path.unlink()
        removed.append(path)
    return removed


def output_folder(root: Path, name: str) -> Path:
    """root/name as a real folder, made if missing. A symbolic link there (to anywhere) or a file is
    refused: tk's writes into a run's output folders (explain/, checkset/) never follow a link out."""
    from .errors import TkError

    folder = Path(root) / name
    if folder.is_symlink():
        raise TkError(
            f"{folder}: a symbolic link; tk writes only inside the folder itself: remove the link (tk makes the folder)"
        )
    if folder.exists() and not folder.is_dir():
        raise TkError(f"{folder}: a file where tk writes a folder; move it aside")
    folder.mkdir(exist_ok=True)
    return folder


def check_writable(folder: Path) -> None:
    """Raise the OSError (EROFS, EACCES, ...) writing in folder would give, before the work that
    would be lost to it (training, conversions, minutes of benchmarking) rather than after."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=".tk-write-check.", suffix=".tmp", dir=folder)
    os.close(fd)
    os.unlink(tmp)
