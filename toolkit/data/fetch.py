"""`tk data fetch`: download a recipe's dataset archive, check it, unpack it safely, put it in place.

The archive goes to a temp folder beside data.root (same filesystem), its sha256 is checked when the
recipe pins one, every member is checked before anything is written (no absolute paths, no `..`, no
links leaving the archive, no device files), and the class folders are moved into data.root with
one rename: data.root is either complete or absent, and a failure leaves nothing behind.
Local paths and file:// URLs go through the same code (that is how the tests run offline).
TensorFlow-free.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import stat
import tarfile
import tempfile
import urllib.error
import urllib.parse
import urllib.request
import zipfile
import zlib
from pathlib import Path, PurePosixPath
from typing import Optional

from ..core.errors import Say, TkError
from ..core.recipe import Recipe

CHUNK = 1 << 20
TIMEOUT_S = 30
_SPLIT_NAMES = ("train", "validation", "val", "valid", "test")
_JUNK = ("__MACOSX",)  # folders archivers add that hold no data


def fetch(recipe: Recipe, say: Say) -> Path:
    """Make data.root hold the recipe's dataset; returns data.root."""
    data = recipe.data
    root = Path(data.root)
    if root.is_dir() and any(root.iterdir()):
        say(f"{root} already holds data: skipping the download (delete the folder to fetch again)")
        return root
    if data.source is None or not data.source.url:
        raise TkError(f"data.source.url: not set in {recipe.source_path or recipe.name}; add data.source.url "
                      f"(an archive URL or a local path), or put the class folders under {root} yourself")
    source = data.source
    if root.exists() and not root.is_dir():
        raise TkError(f"data.root: {root} is a file, not a folder; move it away or change data.root")
    url = _as_url(source.url)
    expected = _expected_sha256(source.sha256)
    root.parent.mkdir(parents=True, exist_ok=True)
    # Beside data.root so the final rename stays on one filesystem (atomic); removed on any failure.
    with tempfile.TemporaryDirectory(prefix=f".{root.name}.fetch-", dir=root.parent) as tmp:
        archive = Path(tmp) / (_file_name(url) or "download")
        digest = download(url, archive, say, root)
        if expected and digest != expected:
            archive.unlink()
            raise TkError(f"{source.url}: sha256 mismatch: expected {expected}, got {digest}; the download was "
                          "deleted. The file is corrupt or changed upstream: fetch again, or fix data.source.sha256")
        if expected:
            say(f"sha256 ok ({digest})")
        else:
            say(f"sha256 {digest} (not checked: add it as data.source.sha256 to pin this download)")
        unpacked = Path(tmp) / "unpacked"
        count = extract(archive, unpacked)
        archive.unlink()  # free the space before the move
        folder = _data_folder(unpacked, source.subdir, source.url, say)
        for junk in _JUNK:  # macOS zips carry a __MACOSX/ of resource forks: not a class
            shutil.rmtree(folder / junk, ignore_errors=True)
        if root.is_dir():
            root.rmdir()  # empty (checked above); rename needs the name free on every OS
        os.replace(folder, root)
    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    say(f"extracted {count} files to {root} ({len(classes)} folders: {', '.join(classes)})")
    return root


def _as_url(location: str) -> str:
    """URLs stay as they are; a local path becomes a file:// URL (so one code path reads both)."""
    if urllib.parse.urlparse(location).scheme in ("http", "https", "ftp", "file"):
        return location
    path = Path(location).expanduser()
    if not path.is_file():
        raise TkError(f"data.source.url: file not found: {location} (give an http(s):// URL, a file:// URL "
                      "or the path of a downloaded archive)")
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


def download(url: str, target: Path, say: Say, root: Optional[Path] = None) -> str:
    """Stream url into target with a progress line; returns the sha256 of what was written."""
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TimeRemainingColumn, TransferSpeedColumn

    say(f"downloading {url}")
    sha = hashlib.sha256()
    try:
        with urllib.request.urlopen(url, timeout=TIMEOUT_S) as response, open(target, "wb") as out:
            total = int(response.headers.get("Content-Length") or 0) or None
            columns = ("{task.description}", BarColumn(), DownloadColumn(), TransferSpeedColumn(),
                       TimeRemainingColumn())
            with Progress(*columns, console=Console(stderr=True), transient=True) as progress:
                task = progress.add_task(target.name, total=total)
                while chunk := response.read(CHUNK):
                    out.write(chunk)
                    sha.update(chunk)
                    progress.advance(task, len(chunk))
    except urllib.error.HTTPError as exc:
        raise TkError(f"data.source.url: {url} answered HTTP {exc.code} {exc.reason}; check the URL, or download "
                      "the archive elsewhere and set data.source.url to its local path") from None
    except (urllib.error.URLError, socket.timeout, ConnectionError) as exc:
        reason = getattr(exc, "reason", exc)
        if url.startswith("file:") and isinstance(reason, (FileNotFoundError, NotADirectoryError)):
            raise TkError(f"data.source.url: file not found: {url}; fix the path") from None
        raise TkError(f"data.source.url: could not download {url} ({reason}); this machine may be offline. "
                      "Download the archive on a machine with internet and set data.source.url to its local "
                      f"path (or a file:// URL), or put the class folders under data.root ({root}) yourself") from None
    say(f"downloaded {_human(target.stat().st_size)}")
    return sha.hexdigest()


def _human(size: int) -> str:
    for unit in ("bytes", "kB", "MB"):
        if size < 1000:
            return f"{size:.0f} {unit}" if unit == "bytes" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} GB"


def extract(archive: Path, dest: Path) -> int:
    """Unpack a .tgz/.tar.gz/.tar(.bz2/.xz)/.zip into dest after checking every member; returns the file count."""
    dest.mkdir(parents=True)
    try:
        if zipfile.is_zipfile(archive):
            return _extract_zip(archive, dest)
        return _extract_tar(archive, dest)
    except (tarfile.ReadError, tarfile.CompressionError, zipfile.BadZipFile, EOFError, zlib.error) as exc:
        raise TkError(f"{archive.name}: the archive is damaged ({exc}); a truncated download? Fetch again, and "
                      "pin data.source.sha256 so a bad download is caught before unpacking") from None


def _extract_zip(archive: Path, dest: Path) -> int:
    with zipfile.ZipFile(archive) as zf:
        for info in zf.infolist():
            _check_zip_member(info, archive)
        zf.extractall(dest)
        return sum(1 for info in zf.infolist() if not info.is_dir())


def _extract_tar(archive: Path, dest: Path) -> int:
    try:
        tf = tarfile.open(archive)
    except tarfile.ReadError:
        raise TkError(f"{archive.name}: not an archive tk can unpack (expected .tgz, .tar.gz, .tar or .zip); "
                      "check data.source.url") from None
    with tf:
        members = tf.getmembers()
        for member in members:
            _check_tar_member(member, archive)
        # The checks above are tk's; the data filter (Python >= 3.11.4) is a second line of defence.
        if hasattr(tarfile, "data_filter"):
            try:
                tf.extractall(dest, filter="data")
            except tarfile.FilterError as exc:
                raise _reject(archive, exc.tarinfo.name, str(exc)) from None
        else:  # pragma: no cover - older Pythons
            tf.extractall(dest)
    return sum(1 for m in members if m.isfile())


def _unsafe_name(name: str) -> Optional[str]:
    """Why a member name could write outside the destination, or None."""
    posix = name.replace("\\", "/")
    if posix.startswith("/") or (len(posix) > 1 and posix[1] == ":"):
        return "absolute path"
    if ".." in PurePosixPath(posix).parts:
        return "'..' in the path"
    return None


def _link_leaves(member_name: str, target: str) -> bool:
    """Would a link at member_name pointing to target (relative to the member's folder) leave the archive?"""
    if target.startswith("/") or _unsafe_name(target) == "absolute path":
        return True
    depth = 0
    for part in (PurePosixPath(member_name).parent / target).parts:
        if part == "..":
            depth -= 1
            if depth < 0:
                return True
        elif part not in ("", "."):
            depth += 1
    return False


def _reject(archive: Path, name: str, why: str) -> TkError:
    return TkError(f"{archive.name}: unsafe archive member {name!r} ({why}); nothing was extracted. "
                   "Check where the archive came from, or unpack it yourself into data.root")


def _check_tar_member(member: tarfile.TarInfo, archive: Path) -> None:
    why = _unsafe_name(member.name)
    if why:
        raise _reject(archive, member.name, why)
    if member.issym() and _link_leaves(member.name, member.linkname):
        raise _reject(archive, member.name, f"symlink to {member.linkname!r} outside the archive")
    # Hard link targets are archive paths, relative to the archive root, not to the member's folder.
    if member.islnk() and (_unsafe_name(member.linkname) or _link_leaves("", member.linkname)):
        raise _reject(archive, member.name, f"hard link to {member.linkname!r} outside the archive")
    if member.ischr() or member.isblk() or member.isfifo() or member.isdev():
        raise _reject(archive, member.name, "device or fifo")
    if not (member.isfile() or member.isdir() or member.issym() or member.islnk()):
        raise _reject(archive, member.name, "not a regular file or folder")


def _check_zip_member(info: zipfile.ZipInfo, archive: Path) -> None:
    why = _unsafe_name(info.filename)
    if why:
        raise _reject(archive, info.filename, why)
    mode = info.external_attr >> 16
    if stat.S_ISLNK(mode) or stat.S_ISCHR(mode) or stat.S_ISBLK(mode) or stat.S_ISFIFO(mode):
        # zipfile would write a link as a small text file: not data either way.
        raise _reject(archive, info.filename, "symlink or device entry")


def _data_folder(unpacked: Path, subdir: Optional[str], url: str, say: Say) -> Path:
    """The folder holding the class (or split) folders inside the unpacked archive."""
    entries = sorted(p for p in unpacked.iterdir() if p.name not in _JUNK)
    if subdir:
        why = _unsafe_name(subdir)
        folder = unpacked / subdir
        if why or not folder.is_dir():
            found = ", ".join(p.name + ("/" if p.is_dir() else "") for p in entries) or "nothing"
            raise TkError(f"data.source.subdir: {subdir!r} is not a folder in {url} (it holds: {found}); "
                          "fix data.source.subdir")
        return folder
    # A single top-level folder (flower_photos/) holds the data: use what is inside it, unless it is
    # itself a split folder (train/ alone is not a dataset root).
    if len(entries) == 1 and entries[0].is_dir() and entries[0].name.lower() not in _SPLIT_NAMES:
        say(f"using {entries[0].name}/ inside the archive (set data.source.subdir to choose another folder)")
        return entries[0]
    if not any(p.is_dir() for p in entries):
        raise TkError(f"{url}: the archive holds no folders; tk expects one sub-folder of images per class")
    return unpacked
