"""`tk data fetch`: download a recipe's dataset archive, check it, unpack it safely, put it in place.

The archive goes to a temp folder beside data.root (same filesystem), its sha256 is checked when the
recipe pins one, it is unpacked by extract.py (every member resolved against the real extraction
folder, links and devices refused, total size and member count capped), and the class folders
are moved into data.root with one rename: data.root is either complete or absent, and a failure leaves nothing behind.
Local paths and file:// URLs go through the same code (that is how the tests run offline).
TensorFlow-free.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import tempfile
import time
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path, PurePosixPath
from typing import Optional

from ..core.context import SILENT, Context
from ..core.errors import TkError
from ..core.io import format_size
from ..core.recipe import Recipe
from .extract import extract

CHUNK = 1 << 20
TIMEOUT_S = 30
_SPLIT_NAMES = ("train", "validation", "val", "valid", "test")
_JUNK = ("__MACOSX",)  # folders archivers add that hold no data


def fetch(recipe: Recipe, ctx: Context = SILENT) -> Path:
    """Make data.root hold the recipe's dataset; returns data.root (`ctx.progress`: the download)."""
    data = recipe.data
    root = Path(data.root)
    if root.is_dir() and any(root.iterdir()):
        ctx.say(f"{root} already holds data: skipping the download (delete the folder to fetch again)")
        return root
    if data.source is None or not data.source.url:
        raise TkError(
            f"data.source.url: not set in {recipe.source_path or recipe.name}; add data.source.url "
            f"(an archive URL or a local path), or put the class folders under {root} yourself"
        )
    source = data.source
    if root.exists() and not root.is_dir():
        raise TkError(f"data.root: {root} is a file, not a folder; move it away or change data.root")
    url = _as_url(source.url)
    expected = _expected_sha256(source.sha256)
    root.parent.mkdir(parents=True, exist_ok=True)
    # Beside data.root so the final rename stays on one filesystem (atomic); removed on any failure.
    with tempfile.TemporaryDirectory(prefix=f".{root.name}.fetch-", dir=root.parent) as tmp:
        archive = Path(tmp) / (_file_name(url) or "download")
        digest = download(url, archive, ctx, root)
        if expected and digest != expected:
            archive.unlink()
            raise TkError(
                f"{source.url}: sha256 mismatch: expected {expected}, got {digest}; the download was "
                "deleted. The file is corrupt or changed upstream: fetch again, or fix data.source.sha256"
            )
        if expected:
            ctx.say(f"sha256 ok ({digest})")
        else:
            ctx.say(f"sha256 {digest} (not checked: add it as data.source.sha256 to pin this download)")
        unpacked = Path(tmp) / "unpacked"
        count = extract(archive, unpacked, max_bytes=source.max_bytes, max_members=source.max_members)
        archive.unlink()  # free the space before the move
        folder = _data_folder(unpacked, source.subdir, source.url, ctx)
        for junk in _JUNK:  # macOS zips carry a __MACOSX/ of resource forks: not a class
            shutil.rmtree(folder / junk, ignore_errors=True)
        if root.is_dir():
            root.rmdir()  # empty (checked above); rename needs the name free on every OS
        os.replace(folder, root)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    ctx.say(f"extracted {count} files to {root} ({len(classes)} folders: {', '.join(classes)})")
    return root


def _as_url(location: str) -> str:
    """URLs stay as they are; a local path becomes a file:// URL (so one code path reads both)."""
    if urllib.parse.urlparse(location).scheme in ("http", "https", "ftp", "file"):
        return location
    path = Path(location).expanduser()
    if not path.is_file():
        raise TkError(
            f"data.source.url: file not found: {location} (give an http(s):// URL, a file:// URL "
            "or the path of a downloaded archive)"
        )
    return path.resolve().as_uri()


def _expected_sha256(value: Optional[str]) -> Optional[str]:
    if not value:
        return None
    digest = value.strip().lower().removeprefix("sha256:")
    if len(digest) != 64 or any(c not in "0123456789abcdef" for c in digest):
        raise TkError(f"data.source.sha256: not a sha256 digest (got {value!r}); expected 64 hex characters")
    return digest


def _file_name(url: str) -> str:
    return PurePosixPath(urllib.parse.unquote(urllib.parse.urlparse(url).path)).name


def download(url: str, target: Path, ctx: Context = SILENT, root: Optional[Path] = None) -> str:
    """Stream url into target, one progress task over it (in MB); returns the sha256 of what was written."""
    ctx.say(f"downloading {url}")
    sha = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(target, "wb") as out:
            size = int(response.headers.get("Content-Length") or 0)
            start = time.perf_counter()
            with ctx.progress.task(f"download {target.name} (MB)", size / 1e6 if size else None) as task:
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    sha.update(chunk)
                    rate = out.tell() / 1e6 / max(time.perf_counter() - start, 1e-9)
                    task.advance(len(chunk) / 1e6, note=f"{rate:.1f} MB/s")
    except urllib.error.HTTPError as exc:
        raise TkError(
            f"data.source.url: {url} answered HTTP {exc.code} {exc.reason}; check the URL, or download "
            "the archive elsewhere and set data.source.url to its local path"
        ) from None
    except (urllib.error.URLError, socket.timeout, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        if url.startswith("file:") and isinstance(reason, (FileNotFoundError, NotADirectoryError)):
            raise TkError(f"data.source.url: file not found: {url}; fix the path") from None
        raise TkError(
            f"data.source.url: could not download {url} ({reason}); this machine may be offline. "
            "Download the archive on a machine with internet and set data.source.url to its local "
            f"path (or a file:// URL), or put the class folders under data.root ({root}) yourself"
        ) from None
    ctx.say(f"downloaded {format_size(target.stat().st_size)}")
    return sha.hexdigest()


def _unsafe_name(name: str) -> Optional[str]:
    """Why a folder name given in the recipe could point outside the unpacked archive, or None."""
    posix = name.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        return "absolute path"
    if ".." in PurePosixPath(posix).parts:
        return "'..' in the path"
    return None


def _data_folder(unpacked: Path, subdir: Optional[str], url: str, ctx: Context) -> Path:
    """The folder holding the class (or split) folders inside the unpacked archive."""
    entries = sorted(p for p in unpacked.iterdir() if p.name not in _JUNK)
    if subdir:
        why = _unsafe_name(subdir)
        folder = unpacked / subdir
        if why or not folder.is_dir():
            found = ", ".join(p.name + ("/" if p.is_dir() else "") for p in entries) or "nothing"
            raise TkError(
                f"data.source.subdir: {subdir!r} is not a folder in {url} (it holds: {found}); fix data.source.subdir"
            )
        return folder
    # A single top-level folder (flower_photos/) holds the data: use what is inside it, unless it is
    # itself a split folder (train/ alone is not a dataset root).
    if len(entries) == 1 and entries[0].is_dir() and entries[0].name.lower() not in _SPLIT_NAMES:
        ctx.say(f"using {entries[0].name}/ inside the archive (set data.source.subdir to choose another folder)")
        return entries[0]
    if not any(p.is_dir() for p in entries):
        raise TkError(f"{url}: the archive holds no folders; tk expects one sub-folder of images per class")
    return unpacked
