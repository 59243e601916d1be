"""The session's trained and exported runs, kept between local test runs (never stale, never in CI).

Training and exporting the session's reference run is the suite's largest fixed cost, and it
only changes when tk's code or the stack changes. So its result is kept in TK_TEST_CACHE
(default ~/.cache/tk-tests/) under a key that hashes everything it depends on: every toolkit/
source, tests/conftest.py, helpers.py and this file (the fixtures and the recipe), the versions
of Python, TensorFlow, Keras, numpy, Pillow and the converters and runtimes. Edit any of them
and the key changes: the next run trains again. The synthetic images live in the cache too, so
the run's split.json and recipe.yaml point at files that exist whenever the run is restored.

Off under CI=true (a fresh machine gains nothing, and CI must prove the fixtures build from
scratch) and with TK_TEST_CACHE=0. Entries are written to a temporary sibling and renamed into
place, so two sessions filling the same key never see half an entry; the newest KEEP keys stay.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import tempfile
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path
from typing import Callable, Optional

REPO = Path(__file__).resolve().parents[1]
PACKAGES = ("tensorflow", "keras", "numpy", "pillow", "onnx", "tf2onnx", "onnxruntime", "ai-edge-litert")
KEEP = 4  # keys kept: a few branches or edits back


def source_key() -> str:
    digest = hashlib.sha256(sys.version.encode())
    tests = [REPO / "tests" / name for name in ("conftest.py", "helpers.py", "run_cache.py")]
    sources = sorted((REPO / "toolkit").rglob("*.py")) + tests
    for path in sources:
        digest.update(str(path.relative_to(REPO)).encode() + b"\0" + path.read_bytes() + b"\0")
    for package in PACKAGES:
        try:
            digest.update(f"{package}={version(package)}\n".encode())
        except PackageNotFoundError:
            digest.update(f"{package}=none\n".encode())
    return digest.hexdigest()[:24]


def cache_dir() -> Optional[Path]:
    """This source tree's cache folder, or None when caching is off."""
    setting = os.environ.get("TK_TEST_CACHE", "")
    if os.environ.get("CI", "").lower() == "true" or setting == "0":
        return None
    root = Path(setting) if setting else Path.home() / ".cache" / "tk-tests"
    return root / source_key()


def cached(entry: Optional[Path], target: Path, make: Callable[[Path], None]) -> Path:
    """`target`, restored from the cache `entry` when it holds one, else made there by `make(target)`
    and then stored as `entry` (entry None: no cache, just make it)."""
    if entry is not None and entry.is_dir():
        shutil.copytree(entry, target)  # copy2: modification times too, as the run had them
        return target
    make(target)
    if entry is not None:
        store(target, entry)
    return target


def shared(entry: Optional[Path], fallback: Path, make: Callable[[Path], None]) -> Path:
    """A folder read in place from the cache (made there once), or made at `fallback` without a cache."""
    if entry is None:
        make(fallback)
        return fallback
    if not entry.is_dir():
        entry.parent.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryDirectory(prefix=f".{entry.name}.", dir=entry.parent) as tmp:
            make(Path(tmp) / entry.name)
            _publish(Path(tmp) / entry.name, entry)
    return entry


def store(folder: Path, entry: Path) -> None:
    entry.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(prefix=f".{entry.name}.", dir=entry.parent) as tmp:
        shutil.copytree(folder, Path(tmp) / entry.name)
        _publish(Path(tmp) / entry.name, entry)
    _prune(entry.parent.parent)


def _publish(made: Path, entry: Path) -> None:
    try:
        os.rename(made, entry)
    except OSError:  # another session published this key first: same sources, same content
        if not entry.is_dir():
            raise


def _prune(root: Path) -> None:
    keys = sorted((p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")), key=os.path.getmtime)
    for old in keys[:-KEEP]:
        shutil.rmtree(old, ignore_errors=True)
