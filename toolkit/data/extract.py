"""Unpack a dataset archive (.zip, .tar, .tar.gz/.tgz, .tar.bz2, .tar.xz) into a folder, safely.

tarfile's `data` filter is not used at all: it resolved links with os.path.realpath, which stops
checking past PATH_MAX, so a chain of long symlinks walked out of the folder (CVE-2025-4517, fixed
only in 3.11.13 / 3.12.11; 3.10 has no filter). Instead every member is written here, by this code,
the same way on 3.10..3.13: links and devices are refused, names are checked as text and then
resolved against the real destination, regular files are streamed into files opened with O_EXCL |
O_NOFOLLOW, and the bytes actually written and the member count are capped (archive bombs).
On failure the caller deletes dest (it unpacks into a temp folder); nothing is written outside dest.
"""

from __future__ import annotations

import os
import stat
import tarfile
import zipfile
import zlib
from functools import partial
from pathlib import Path
from typing import Callable, Iterator, Tuple

from ..core.errors import TkError
from ..core.io import format_size

try:  # Pythons built without liblzma exist (pyenv on a bare board); tarfile copes, so must we
    from lzma import LZMAError
except ImportError:  # pragma: no cover
    LZMAError = tarfile.CompressionError

# 20 GiB: tf_flowers is 218 MB and tk does not fetch ImageNet-scale sets, so a real dataset is far
# below this, while a bomb (2 MB -> 2 GB and up) is stopped before it fills an edge device's disk.
DEFAULT_MAX_BYTES = 20 * 2**30
# 2 million members: a large image-folder dataset has ~10^5 files; millions of tiny or empty
# members only exhaust inodes and time.
DEFAULT_MAX_MEMBERS = 2_000_000
CHUNK = 1 << 20
KINDS = ".zip, .tar, .tar.gz/.tgz, .tar.bz2, .tar.xz"
_NAME_MAX, _PATH_MAX = 255, 4096
_ZIP_MAGIC = (b"PK\x03\x04", b"PK\x05\x06")
_PACKED_MAGIC = (b"\x1f\x8b", b"BZh", b"\xfd7zXZ\x00")  # gzip, bzip2, xz
_CORRUPT = (
    tarfile.ReadError,
    tarfile.CompressionError,
    zipfile.BadZipFile,
    EOFError,
    zlib.error,
    LZMAError,
    NotImplementedError,
)
# O_NOFOLLOW: never write through a link, even one that appeared behind our back (absent on Windows).
_WRITE_FLAGS = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0) | getattr(os, "O_BINARY", 0)

Member = Tuple[str, str, int, Callable]  # name, kind ("file", "dir" or why refused), declared size, opener


def extract(
    archive: Path, dest: Path, max_bytes: int = DEFAULT_MAX_BYTES, max_members: int = DEFAULT_MAX_MEMBERS
) -> int:
    """Unpack archive into dest (created; expected empty); returns the number of files written."""
    dest.mkdir(parents=True, exist_ok=True)
    root = os.path.realpath(dest)  # once: every member is resolved against the real folder
    files = written = 0
    with _open(archive) as handle:
        if isinstance(handle, zipfile.ZipFile):  # a zip lists everything up front: refuse before writing
            infos = handle.infolist()
            _check_caps(
                archive,
                infos[-1].filename if infos else "",
                len(infos),
                sum(i.file_size for i in infos),
                max_bytes,
                max_members,
            )
            members: Iterator[Member] = (
                (i.filename, _zip_kind(i), i.file_size, partial(handle.open, i)) for i in infos
            )
        else:
            members = _tar_members(archive, handle)
        for count, (name, kind, size, opener) in enumerate(members, start=1):
            _check_caps(archive, name, count, written + size, max_bytes, max_members)
            parts = _parts(archive, name)
            if kind not in ("file", "dir"):
                raise _reject(archive, name, kind)
            target = _inside(archive, name, root, parts)
            if kind == "dir":  # "./" (no parts) is the root itself
                _make_dirs(archive, name, root, parts)
                continue
            if not parts:
                raise _reject(archive, name, "a file with no name")
            _make_dirs(archive, name, root, parts[:-1])
            written = _write(archive, name, target, opener, written, max_bytes)
            files += 1
    return files


def _open(archive: Path):
    """A ZipFile or TarFile, chosen by the file's first bytes (the download's name may have no suffix)."""
    head = _read(archive, "", _head, archive)
    if head[:4] in _ZIP_MAGIC:
        return _read(archive, "", zipfile.ZipFile, archive)
    try:
        return tarfile.open(archive, "r:*")
    except (tarfile.ReadError, tarfile.CompressionError) as exc:
        if head.startswith(_PACKED_MAGIC) or head[257:262] == b"ustar":
            raise _unreadable(archive, "", exc) from None
        raise TkError(
            f"{archive.name}: not an archive tk can unpack (supported: {KINDS}); check "
            "data.source.url points at the dataset archive, not a web page"
        ) from None


def _head(archive: Path) -> bytes:
    with archive.open("rb") as f:
        return f.read(512)


def _zip_kind(info: zipfile.ZipInfo) -> str:
    mode = info.external_attr >> 16 if info.create_system == 3 else 0  # Unix mode bits only from Unix zips
    if info.flag_bits & 0x1:
        return "encrypted; tk cannot unpack password-protected archives"
    if stat.S_ISLNK(mode):
        return "symlink; links are not extracted"
    if info.is_dir() or stat.S_ISDIR(mode):
        return "dir"
    return "file" if stat.S_IFMT(mode) in (0, stat.S_IFREG) else "device file, fifo or socket"


def _tar_members(archive: Path, tf: tarfile.TarFile) -> Iterator[Member]:
    name = ""
    while (member := _read(archive, name, tf.next)) is not None:
        # TarFile keeps every header it has read; 2 million of them would cost ~1 GB for nothing
        # (we never look back: links, the only reason tarfile does, are refused).
        tf.members.clear()
        name = member.name
        yield name, _tar_kind(member), member.size, partial(tf.extractfile, member)


def _tar_kind(member: tarfile.TarInfo) -> str:
    # Links are refused, not skipped: class folders never need them, skipping would silently drop
    # files a dataset relies on, and every link-following escape (this CVE and its ancestors) needs
    # a link on disk first. With no link ever created, a path checked as text stays inside.
    if member.isreg():
        return "file"
    if member.isdir():
        return "dir"
    if member.issym():
        return f"symlink to {member.linkname!r}; links are not extracted"
    if member.islnk():
        return f"hard link to {member.linkname!r}; links are not extracted"
    if member.ischr() or member.isblk() or member.isfifo():
        return "device file or fifo"
    return f"not a regular file or folder (tar type {member.type!r})"


def _parts(archive: Path, name: str) -> list:
    """The member's path components, after refusing every name that could point outside dest."""
    parts = [p for p in name.split("/") if p not in ("", ".")]
    why = None
    if "\x00" in name:
        why = "NUL byte in the name"
    elif "\\" in name:
        why = "backslash in the name (a path separator on Windows)"
    elif name.startswith("/"):
        why = "absolute path"
    elif name[1:2] == ":" and name[:1].isalpha():
        why = "drive letter"
    elif ".." in parts:
        why = "'..' in the path"
    elif len(os.fsencode(name)) > _PATH_MAX:
        why = f"name longer than {_PATH_MAX} bytes"
    elif any(len(os.fsencode(p)) > _NAME_MAX for p in parts):
        why = f"a path component longer than {_NAME_MAX} bytes"
    if why:
        raise _reject(archive, name, why)
    return parts


def _inside(archive: Path, name: str, root: str, parts: list) -> str:
    """The member's target path; refused unless its real path stays inside root."""
    target = os.path.join(root, *parts)
    real = os.path.realpath(target)
    try:
        inside = os.path.commonpath([root, real]) == root
    except ValueError:  # different drives on Windows
        inside = False
    if not inside:
        raise _reject(archive, name, f"resolves to {real}, outside the extraction folder")
    return target


def _make_dirs(archive: Path, name: str, root: str, parts: list) -> None:
    """mkdir each component, checking with lstat that it is a real folder before going into it."""
    path = root
    for i, part in enumerate(parts):
        path = os.path.join(path, part)
        try:
            os.mkdir(path, 0o755)  # mode from us, not the archive (umask still applies)
        except FileExistsError:
            pass
        except OSError as exc:
            raise _unwritable(archive, name, exc) from None
        if not stat.S_ISDIR(os.lstat(path).st_mode):
            raise _reject(archive, name, f"{'/'.join(parts[: i + 1])!r} is a file in the archive, not a folder")


def _write(archive: Path, name: str, target: str, opener: Callable, written: int, max_bytes: int) -> int:
    """Stream one member into a new file (0o644: no setuid or exec bits from the archive); returns
    the running total of bytes written, counted from the data itself (headers can lie)."""
    try:
        fd = os.open(target, _WRITE_FLAGS, 0o644)
    except FileExistsError:
        raise _reject(
            archive,
            name,
            "the path appears twice (or as a file and a folder); the second copy would overwrite the first",
        ) from None
    except OSError as exc:
        raise _unwritable(archive, name, exc) from None
    with os.fdopen(fd, "wb") as out, _read(archive, name, opener) as src:
        while chunk := _read(archive, name, src.read, CHUNK):
            written += len(chunk)
            _check_caps(archive, name, 0, written, max_bytes, max_members=0)
            try:
                out.write(chunk)
            except OSError as exc:
                raise _unwritable(archive, name, exc) from None
    return written


def _check_caps(archive: Path, name: str, members: int, size: int, max_bytes: int, max_members: int) -> None:
    if members > max_members:
        raise TkError(
            f"{archive.name}: holds more than {max_members} members (stopped at {name!r}); raise "
            "data.source.max_members if the dataset really has that many files"
        )
    if size > max_bytes:
        raise TkError(
            f"{archive.name}: unpacks to more than {format_size(max_bytes, binary=True)} (stopped at {name!r}); raise "
            "data.source.max_bytes if the dataset really is that big"
        )


def _read(archive: Path, name: str, call: Callable, *args):
    """call(*args), turning a damaged archive's errors (bz2 raises plain OSError) into one TkError."""
    try:
        return call(*args)
    except (*_CORRUPT, OSError) as exc:
        raise _unreadable(archive, name, exc) from None


def _reject(archive: Path, name: str, why: str) -> TkError:
    return TkError(
        f"{archive.name}: unsafe archive member {name!r} ({why}); check where the archive came "
        "from, or unpack it yourself into data.root"
    )


def _unreadable(archive: Path, name: str, exc: BaseException) -> TkError:
    where, detail = f" near member {name!r}" if name else "", " ".join(str(exc).split()) or type(exc).__name__
    return TkError(
        f"{archive.name}: not a readable archive{where} ({detail}); delete it and fetch "
        "again (pin data.source.sha256 to catch a bad download before unpacking)"
    )


def _unwritable(archive: Path, name: str, exc: OSError) -> TkError:
    return TkError(
        f"{archive.name}: member {name!r} could not be written ({exc.strerror or exc}); "
        "check free disk space and that the path of data.root is not too long"
    )
