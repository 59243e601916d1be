"""toolkit.data.extract: every hostile archive is built here, in tmp_path, with tarfile/zipfile."""

from __future__ import annotations

import io
import os
import stat
import tarfile
import zipfile
from pathlib import Path

import pytest

from toolkit.core.errors import TkError
from toolkit.data import extract as ex
from toolkit.data.extract import CHUNK, extract


def file_info(name: str, size: int = 3, mode: int = 0o644) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size, info.mode = size, mode
    return info


def link_info(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def make_tar(path: Path, members: list, mode: str = "w:gz", fmt: int = tarfile.PAX_FORMAT) -> Path:
    """members: (TarInfo, payload or None); a good class file comes first, as in a real dataset."""
    with tarfile.open(path, mode, format=fmt) as tf:
        for info, payload in [(file_info("data/circle/a.jpg"), b"jpg")] + members:
            tf.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return path


def make_zip(path: Path, entries: dict, compression: int = zipfile.ZIP_DEFLATED) -> Path:
    with zipfile.ZipFile(path, "w", compression) as zf:
        for name, data in entries.items():
            zf.writestr(name, data)
    return path


def tree(root: Path) -> dict:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def links_under(root: Path) -> list:
    return [p for p in root.rglob("*") if p.is_symlink()]


@pytest.fixture
def dataset(tmp_path) -> Path:
    src = tmp_path / "src" / "flower_photos"
    for cls in ("circle", "square", "triangle"):
        for i in range(4):
            path = src / cls / f"{i}.jpg"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(os.urandom(1000 + 997 * i))
    (src / "LICENSE.txt").write_text("CC-BY\n")
    return src


# 1. normal archives ------------------------------------------------------------------------------


@pytest.mark.parametrize("mode", ["w:gz", "w:bz2", "w:xz", "w"])
def test_tar_of_class_folders(dataset, tmp_path, mode):
    archive = tmp_path / "flowers.tar"
    with tarfile.open(archive, mode) as tf:
        tf.add(dataset, arcname="flower_photos")
        exe = file_info("flower_photos/circle/run.sh", 3, mode=0o4755)  # setuid + exec bits in the archive
        tf.addfile(exe, io.BytesIO(b"#!x"))
    dest = tmp_path / "out"
    assert extract(archive, dest) == 14
    got = tree(dest / "flower_photos")
    assert {k: v for k, v in got.items() if k != "circle/run.sh"} == tree(dataset)
    for path in dest.rglob("*"):
        mode_bits = path.stat().st_mode
        assert mode_bits & (stat.S_ISUID | stat.S_ISGID | (0o111 if path.is_file() else 0)) == 0, path


def test_zip_of_class_folders_and_dot_prefixed_tar(dataset, tmp_path):
    archive = tmp_path / "flowers.zip"
    with zipfile.ZipFile(archive, "w", zipfile.ZIP_DEFLATED) as zf:
        for file in sorted(dataset.rglob("*")):
            zf.write(file, Path("flower_photos") / file.relative_to(dataset))  # folders too ("x/" entries)
    assert extract(archive, tmp_path / "z") == 13
    assert tree(tmp_path / "z" / "flower_photos") == tree(dataset)
    dotted = tmp_path / "dotted"  # `tar -C src -czf x.tgz .` names members "./circle/0.jpg" and has "./"
    with tarfile.open(dotted, "w:gz") as tf:  # no suffix: the kind is read from the first bytes
        tf.add(dataset, arcname=".")
    assert extract(dotted, tmp_path / "t") == 13 and tree(tmp_path / "t") == tree(dataset)


def test_unknown_kind_names_the_file_and_the_kinds(tmp_path):
    page = tmp_path / "page.tgz"
    page.write_text("<html>not found</html>")
    with pytest.raises(TkError) as info:
        extract(page, tmp_path / "out")
    message = str(info.value)
    assert message.startswith("page.tgz: not an archive tk can unpack") and ".tar.xz" in message
    assert "\n" not in message


# 2. CVE-2025-4517 ---------------------------------------------------------------------------------


def pathmax_poc(path: Path) -> Path:
    """The public PoC: 16 nested 247-char folders, each reached through a one-letter symlink, so the
    link chain resolves past PATH_MAX (where realpath stops checking); `escape` then climbs four
    folders above the extraction folder and `escape/target` is written through it."""
    comp, steps, chain = "d" * 247, "abcdefghijklmnop", ""
    with tarfile.open(path, "w") as tar:
        for step in steps:
            tar.addfile(link_info(os.path.join(chain, comp), "", tarfile.DIRTYPE))
            tar.addfile(link_info(os.path.join(chain, step), comp, tarfile.SYMTYPE))
            chain = os.path.join(chain, comp)
        linkpath = os.path.join(*steps, "l" * 254)
        tar.addfile(link_info(linkpath, "../" * len(steps), tarfile.SYMTYPE))
        tar.addfile(link_info("escape", linkpath + "/../../../..", tarfile.SYMTYPE))
        tar.addfile(file_info("escape/target", 6), io.BytesIO(b"pwned\n"))
    return path


def test_pathmax_symlink_chain_cannot_escape(tmp_path):
    archive = pathmax_poc(tmp_path / "poc.tar")
    dest = tmp_path / "w1" / "w2" / "w3" / "w4" / "dest"
    sentinels = [tmp_path / "target"] + [
        tmp_path.joinpath(*[f"w{j}" for j in range(1, i + 1)], "target") for i in range(1, 5)
    ]
    for sentinel in sentinels:
        sentinel.parent.mkdir(parents=True, exist_ok=True)
        sentinel.write_text("original\n")
    with pytest.raises(TkError) as info:
        extract(archive, dest)
    assert "member 'a'" in str(info.value) and "links are not extracted" in str(info.value)
    assert all(s.read_text() == "original\n" for s in sentinels)
    assert links_under(tmp_path) == []
    assert sorted(p.name for p in tmp_path.rglob("target")) == ["target"] * len(sentinels)
    assert not any(b"pwned" in data for name, data in tree(tmp_path).items() if name != "poc.tar")


# 3. hostile members -------------------------------------------------------------------------------


def _nul_member() -> tarfile.TarInfo:
    info = file_info("data/nul.jpg")
    info.pax_headers = {"path": "data/a\x00b.jpg"}  # a ustar name cannot hold NUL; a pax path can
    return info


@pytest.mark.parametrize(
    "member, payload, why",
    [
        (link_info("data/circle/passwd", "/etc/passwd", tarfile.SYMTYPE), None, "links are not extracted"),
        (link_info("data/circle/out", "../outside", tarfile.SYMTYPE), None, "links are not extracted"),
        (link_info("data/circle/hard", "../outside", tarfile.LNKTYPE), None, "links are not extracted"),
        (link_info("data/circle/inner", "a.jpg", tarfile.SYMTYPE), None, "links are not extracted"),
        (file_info("/tmp/x"), b"bad", "absolute path"),
        (file_info("../x"), b"bad", "'..' in the path"),
        (file_info("a/../../x"), b"bad", "'..' in the path"),
        (file_info("C:/x"), b"bad", "drive letter"),
        (file_info("data\\..\\..\\x"), b"bad", "backslash"),
        (_nul_member(), b"bad", "NUL byte"),
        (file_info("data/" + "n" * 256), b"bad", "longer than 255 bytes"),
        (file_info("/".join(["d" * 200] * 21)), b"bad", "longer than 4096 bytes"),
        (link_info("data/circle/tty", "", tarfile.CHRTYPE), None, "device file or fifo"),
        (link_info("data/circle/disk", "", tarfile.BLKTYPE), None, "device file or fifo"),
        (link_info("data/circle/pipe", "", tarfile.FIFOTYPE), None, "device file or fifo"),
    ],
    ids=[
        "symlink-abs",
        "symlink-up",
        "hardlink-up",
        "symlink-inside",
        "absolute",
        "dotdot",
        "nested-dotdot",
        "drive",
        "backslash",
        "nul",
        "long-component",
        "long-name",
        "chardev",
        "blockdev",
        "fifo",
    ],
)
def test_hostile_tar_members_are_refused(tmp_path, member, payload, why):
    archive = make_tar(tmp_path / "bad.tgz", [(member, payload)])
    outside = tmp_path / "outside"
    outside.write_text("original\n")
    dest = tmp_path / "deep" / "out"
    with pytest.raises(TkError) as info:
        extract(archive, dest)
    message = str(info.value)
    name = member.pax_headers.get("path", member.name)
    assert message.startswith("bad.tgz: ") and f"member {name!r}" in message and why in message
    assert "\n" not in message
    assert outside.read_text() == "original\n" and links_under(tmp_path) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["bad.tgz", "deep", "outside"]
    assert not (Path("/tmp/x").exists() and Path("/tmp/x").read_bytes() == b"bad")


@pytest.mark.parametrize("mode, why", [(0o120777, "symlink"), (0o020644, "device"), (0o010644, "fifo")])
def test_hostile_zip_entries_are_refused(tmp_path, mode, why):
    archive = tmp_path / "bad.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("data/circle/a.jpg", b"jpg")
        info = zipfile.ZipInfo("data/circle/x")
        info.create_system, info.external_attr = 3, mode << 16
        zf.writestr(info, b"/etc/passwd")
    with pytest.raises(TkError, match=rf"bad.zip: unsafe archive member 'data/circle/x' \(.*{why}"):
        extract(archive, tmp_path / "out")


def test_zip_dotdot_is_refused(tmp_path):
    archive = make_zip(tmp_path / "bad.zip", {"data/a.jpg": b"jpg", "../evil.txt": b"evil"})
    with pytest.raises(TkError, match=r"bad.zip: unsafe archive member '../evil.txt' \('..' in the path\)"):
        extract(archive, tmp_path / "sub" / "out")
    assert not (tmp_path / "sub" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()


# 4, 5. bombs and caps -----------------------------------------------------------------------------


def test_zip_bomb_is_refused_before_writing(tmp_path):
    archive = make_zip(tmp_path / "bomb.zip", {"data/zeros.bin": bytes(50 * 2**20)})
    assert archive.stat().st_size < 200_000  # ~50 kB on disk, 50 MiB unpacked
    dest = tmp_path / "out"
    with pytest.raises(TkError) as info:
        extract(archive, dest, max_bytes=10 * 2**20)
    assert str(info.value) == (
        "bomb.zip: unpacks to more than 10 MiB (stopped at 'data/zeros.bin'); "
        "raise data.source.max_bytes if the dataset really is that big"
    )
    assert sum(p.stat().st_size for p in dest.rglob("*") if p.is_file()) <= 10 * 2**20 + CHUNK


def test_tar_bomb_stops_at_the_cap(tmp_path):
    archive = make_tar(tmp_path / "bomb.tgz", [(file_info(f"data/{i}.bin", 2**20), bytes(2**20)) for i in range(12)])
    dest = tmp_path / "out"
    with pytest.raises(TkError, match=r"bomb.tgz: unpacks to more than 10 MiB \(stopped at 'data/9.bin'\)"):
        extract(archive, dest, max_bytes=10 * 2**20)
    assert sum(p.stat().st_size for p in dest.rglob("*") if p.is_file()) <= 10 * 2**20


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_member_count_cap(tmp_path, kind):
    names = [f"data/{i}.jpg" for i in range(10)]  # plus data/circle/a.jpg (tar) or data/extra (zip): 11
    if kind == "tar":
        archive = make_tar(tmp_path / "many.tar", [(file_info(n), b"jpg") for n in names], mode="w")
    else:
        archive = make_zip(tmp_path / "many.zip", {**{n: b"jpg" for n in names}, "data/extra": b"x"})
    with pytest.raises(TkError) as info:
        extract(archive, tmp_path / "out", max_members=10)
    assert f"{archive.name}: holds more than 10 members" in str(info.value)
    assert "data.source.max_members" in str(info.value)
    assert extract(archive, tmp_path / "ok", max_members=11) == 11


def test_zip_lying_about_its_size_writes_no_more_than_declared(tmp_path):
    """Patch the sizes in both headers down to 1000 bytes: zipfile stops there and the CRC check fails."""
    archive = make_zip(tmp_path / "liar.zip", {"data/zeros.bin": bytes(20 * 2**20)})
    raw = bytearray(archive.read_bytes())
    raw[22:26] = (1000).to_bytes(4, "little")  # local header: uncompressed size
    central = raw.rindex(b"PK\x01\x02")
    raw[central + 24 : central + 28] = (1000).to_bytes(4, "little")  # central directory: uncompressed size
    archive.write_bytes(bytes(raw))
    dest = tmp_path / "out"
    with pytest.raises(TkError, match=r"liar.zip: not a readable archive near member 'data/zeros.bin' \(Bad CRC"):
        extract(archive, dest, max_bytes=10 * 2**20)
    assert (dest / "data" / "zeros.bin").stat().st_size <= 1000


@pytest.mark.parametrize("kind", ["tar", "zip"])
def test_bytes_are_counted_from_the_stream_not_the_header(tmp_path, monkeypatch, kind):
    """A member whose data runs past its header's size (as a buggy or hostile reader could hand us)."""
    if kind == "tar":
        archive = make_tar(tmp_path / "small.tgz", [])
        monkeypatch.setattr(tarfile.TarFile, "extractfile", lambda self, m: io.BytesIO(bytes(30 * 2**20)))
    else:
        archive = make_zip(tmp_path / "small.zip", {"data/circle/a.jpg": b"jpg"})
        monkeypatch.setattr(zipfile.ZipFile, "open", lambda self, info: io.BytesIO(bytes(30 * 2**20)))
    dest = tmp_path / "out"
    with pytest.raises(
        TkError, match=rf"{archive.name}: unpacks to more than 10 MiB \(stopped at 'data/circle/a.jpg'\)"
    ):
        extract(archive, dest, max_bytes=10 * 2**20)
    assert (dest / "data" / "circle" / "a.jpg").stat().st_size <= 10 * 2**20


def test_defaults_are_sane():
    assert ex.DEFAULT_MAX_BYTES == 20 * 2**30 and ex.DEFAULT_MAX_MEMBERS == 2_000_000


# 6. duplicates, file-as-folder ----------------------------------------------------------------------


@pytest.mark.parametrize(
    "second",
    [
        file_info("data/circle/a.jpg"),  # same name twice
        link_info("data/circle/a.jpg", "", tarfile.DIRTYPE),
    ],
)  # file, then folder
def test_duplicate_names_are_refused(tmp_path, second):
    archive = make_tar(tmp_path / "dup.tgz", [(second, b"new" if second.isfile() else None)])
    dest = tmp_path / "out"
    with pytest.raises(TkError, match=r"dup.tgz: unsafe archive member 'data/circle/a.jpg'"):
        extract(archive, dest)
    assert (dest / "data" / "circle" / "a.jpg").read_bytes() == b"jpg"  # the first copy, untouched


def test_zip_duplicate_names_are_refused(tmp_path):
    archive = tmp_path / "dup.zip"
    with pytest.warns(UserWarning), zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("data/a.jpg", b"one")
        zf.writestr("data/a.jpg", b"two")
    with pytest.raises(TkError, match=r"dup.zip: unsafe archive member 'data/a.jpg' \(the path appears twice"):
        extract(archive, tmp_path / "out")


def test_member_under_a_file_is_refused_cleanly(tmp_path):
    archive = make_tar(tmp_path / "under.tgz", [(file_info("data/circle/a.jpg/b.jpg"), b"jpg")])
    with pytest.raises(TkError) as info:
        extract(archive, tmp_path / "out")
    assert str(info.value).startswith(
        "under.tgz: unsafe archive member 'data/circle/a.jpg/b.jpg' "
        "('data/circle/a.jpg' is a file in the archive, not a folder)"
    )


# 7. damaged archives ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "suffix, mode", [(".tar.gz", "w:gz"), (".tar.bz2", "w:bz2"), (".tar.xz", "w:xz"), (".zip", None)]
)
def test_truncated_archive_is_not_readable(dataset, tmp_path, suffix, mode):
    archive = tmp_path / f"cut{suffix}"
    if mode:
        with tarfile.open(archive, mode) as tf:
            tf.add(dataset, arcname="flower_photos")
    else:
        with zipfile.ZipFile(archive, "w") as zf:
            for file in dataset.rglob("*.jpg"):
                zf.write(file, file.relative_to(dataset))
    archive.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(TkError) as info:
        extract(archive, tmp_path / "out")
    message = str(info.value)
    assert message.startswith(f"cut{suffix}: not a readable archive") and "delete it and fetch again" in message
    assert "\n" not in message
