"""tk data fetch, offline: local archives via file:// URLs and paths; checksum, safe extraction, skip."""

from __future__ import annotations

import dataclasses
import hashlib
import io
import tarfile
import zipfile
from pathlib import Path

import pytest

from toolkit.core.context import Context
from toolkit.core.errors import TkError
from toolkit.core.recipe import recipe_from_dict
from toolkit.data.fetch import fetch
from toolkit.data.splits import discover
from toolkit.data.synth import make_synthetic_dataset


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def recipe_for(root: Path, url: str, **source):
    return recipe_from_dict({"name": "fetched", "data": {"root": str(root), "source": {"url": url, **source}}})


@pytest.fixture(scope="module")
def images(tmp_path_factory) -> Path:
    """flower_photos/{circle,square}/*.jpg plus a LICENSE.txt, as in TensorFlow's flowers archive."""
    top = make_synthetic_dataset(
        tmp_path_factory.mktemp("src") / "flower_photos", classes=2, per_class=6, size=24, seed=0
    )
    (top / "LICENSE.txt").write_text("CC-BY\n")
    return top


@pytest.fixture(scope="module")
def archive(images, tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("archives") / "flower_photos.tgz"
    with tarfile.open(path, "w:gz") as tf:
        tf.add(images, arcname="flower_photos")
    return path


def tar_with(path: Path, members: list[tuple[tarfile.TarInfo, bytes | None]]) -> Path:
    """A .tar.gz holding one good image folder plus the given (possibly hostile) members."""
    with tarfile.open(path, "w:gz") as tf:
        for info, payload in [(_file_info("data/circle/a.jpg", 3), b"jpg")] + members:
            tf.addfile(info, io.BytesIO(payload) if payload is not None else None)
    return path


def _file_info(name: str, size: int) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.size = size
    return info


def _link_info(name: str, target: str, kind: bytes) -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, target
    return info


def leftovers(parent: Path) -> list[str]:
    return sorted(p.name for p in parent.iterdir()) if parent.exists() else []


def test_fetch_tgz_with_sha256(archive, tmp_path):
    root = tmp_path / "data" / "flowers"
    lines = []
    recipe = recipe_for(root, archive.as_uri(), sha256=sha256(archive), subdir="flower_photos")
    assert fetch(recipe, Context(say=lines.append)) == root
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["circle", "square"]
    assert len(list(root.rglob("*.jpg"))) == 12 and (root / "LICENSE.txt").is_file()
    assert leftovers(root.parent) == ["flowers"]  # no temp folder, no archive left beside it
    assert any("sha256 ok" in line for line in lines)
    dataset = discover(recipe.data, seed=0)
    assert dataset.classes == ["circle", "square"] and not dataset.skipped


def test_the_download_reports_through_the_progress_interface_and_prints_nothing(archive, tmp_path, capfd):
    from fake_progress import RecordingProgress

    progress = RecordingProgress()
    fetch(recipe_for(tmp_path / "flowers", archive.as_uri()), Context(progress=progress))
    (task,) = progress.tasks
    assert task.description == "download flower_photos.tgz (MB)" and task.closed
    assert task.total == pytest.approx(archive.stat().st_size / 1e6) and task.done == pytest.approx(task.total)
    assert task.notes and task.notes[-1].endswith("MB/s")
    assert capfd.readouterr() == ("", "")  # no bar of its own: the CLI draws core.progress tasks


def test_fetch_local_path_and_single_top_folder(archive, tmp_path):
    root = tmp_path / "flowers"
    lines = []
    fetch(recipe_for(root, str(archive)), Context(say=lines.append))  # a plain path, no subdir: the top folder is used
    assert sorted(p.name for p in root.iterdir() if p.is_dir()) == ["circle", "square"]
    assert any("flower_photos/" in line for line in lines)
    assert any(sha256(archive) in line and "not checked" in line for line in lines)


def test_fetch_zip(images, tmp_path):
    path = tmp_path / "flowers.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for file in images.rglob("*"):
            zf.write(file, Path("flower_photos") / file.relative_to(images))
    root = tmp_path / "out"
    fetch(recipe_for(root, path.as_uri(), subdir="flower_photos"))
    assert len(list((root / "square").glob("*.jpg"))) == 6


def test_wrong_sha256_fails_and_leaves_nothing(archive, tmp_path):
    root = tmp_path / "data" / "flowers"
    wrong = "0" * 64
    with pytest.raises(TkError) as info:
        fetch(recipe_for(root, archive.as_uri(), sha256=wrong))
    message = str(info.value)
    assert "sha256 mismatch" in message and f"expected {wrong}" in message and f"got {sha256(archive)}" in message
    assert not root.exists() and leftovers(root.parent) == []


def test_malformed_sha256_is_rejected_before_download(archive, tmp_path):
    with pytest.raises(TkError, match="data.source.sha256: not a sha256 digest"):
        fetch(recipe_for(tmp_path / "x", archive.as_uri(), sha256="abc"))


@pytest.mark.parametrize(
    "member, payload, why",
    [
        (_file_info("../evil.txt", 4), b"evil", "'..' in the path"),
        (_file_info("data/../../evil.txt", 4), b"evil", "'..' in the path"),
        (_file_info("/tmp/evil.txt", 4), b"evil", "absolute path"),
        (_link_info("data/circle/link.jpg", "../../../evil.txt", tarfile.SYMTYPE), None, "symlink"),
        (_link_info("data/circle/abs.jpg", "/etc/passwd", tarfile.SYMTYPE), None, "symlink"),
        (_link_info("data/circle/hard.jpg", "../evil.txt", tarfile.LNKTYPE), None, "hard link"),
        (_link_info("data/circle/dev", "", tarfile.CHRTYPE), None, "device"),
    ],
    ids=["dotdot", "nested-dotdot", "absolute", "symlink-out", "symlink-abs", "hardlink-out", "device"],
)
def test_unsafe_members_are_rejected(tmp_path, member, payload, why):
    bad = tar_with(tmp_path / "bad.tgz", [(member, payload)])
    root = tmp_path / "deep" / "data" / "out"
    with pytest.raises(TkError) as info:
        fetch(recipe_for(root, bad.as_uri()))
    message = str(info.value)
    assert f"unsafe archive member {member.name!r}" in message and why in message
    assert not root.exists() and leftovers(root.parent) == []
    assert not list(tmp_path.rglob("evil.txt"))  # nothing was written outside


def test_even_an_internal_symlink_is_refused(tmp_path):
    # Links are never extracted: a class-folder dataset needs none, and a link that stays inside
    # by its text can still leave through another link (CVE-2025-4517). See data/extract.py.
    good = tar_with(
        tmp_path / "ok.tgz",
        [
            (_file_info("data/square/b.jpg", 3), b"jpg"),
            (_link_info("data/square/c.jpg", "b.jpg", tarfile.SYMTYPE), None),
        ],
    )
    root = tmp_path / "out"
    with pytest.raises(TkError, match="unsafe archive member 'data/square/c.jpg'"):
        fetch(recipe_for(root, good.as_uri(), subdir="data"))
    assert not root.exists()


def test_the_archive_caps_come_from_the_recipe(images, tmp_path):
    archive = tar_with(tmp_path / "many.tgz", [(_file_info(f"data/c/{i}.jpg", 3), b"jpg") for i in range(12)])
    recipe = recipe_for(tmp_path / "out", archive.as_uri(), subdir="data")
    source = dataclasses.replace(recipe.data.source, max_members=10)
    recipe = dataclasses.replace(recipe, data=dataclasses.replace(recipe.data, source=source))
    with pytest.raises(TkError, match="more than 10 members"):
        fetch(recipe)
    assert not (tmp_path / "out").exists()


def test_zip_with_dotdot_is_rejected(tmp_path):
    path = tmp_path / "bad.zip"
    with zipfile.ZipFile(path, "w") as zf:
        zf.writestr("data/circle/a.jpg", b"jpg")
        zf.writestr("../evil.txt", b"evil")
    root = tmp_path / "sub" / "out"
    with pytest.raises(TkError, match="unsafe archive member '../evil.txt'"):
        fetch(recipe_for(root, path.as_uri()))
    assert not root.exists() and not (tmp_path / "evil.txt").exists()


def test_second_fetch_skips(archive, tmp_path):
    root = tmp_path / "flowers"
    recipe = recipe_for(root, archive.as_uri(), subdir="flower_photos")
    fetch(recipe)
    marker = root / "circle" / "mine.txt"
    marker.write_text("kept")
    lines = []
    fetch(recipe, Context(say=lines.append))
    assert any("skipping" in line for line in lines)
    assert not any("downloading" in line for line in lines)
    assert marker.read_text() == "kept"


def test_empty_root_folder_is_filled(archive, tmp_path):
    root = tmp_path / "flowers"
    root.mkdir()
    fetch(recipe_for(root, archive.as_uri(), subdir="flower_photos"))
    assert (root / "circle").is_dir()


@pytest.mark.parametrize("make_url", [lambda p: p.as_uri(), str], ids=["file-url", "path"])
def test_missing_file_is_a_clear_error(tmp_path, make_url):
    missing = tmp_path / "nowhere.tgz"
    with pytest.raises(TkError) as info:
        fetch(recipe_for(tmp_path / "out", make_url(missing)))
    assert "file not found" in str(info.value) and "nowhere.tgz" in str(info.value)
    assert not (tmp_path / "out").exists()


def test_unreachable_url_says_offline_and_how_to_fix(tmp_path):
    url = "http://127.0.0.1:9/flower_photos.tgz"  # the discard port: nothing listens, refused at once
    with pytest.raises(TkError) as info:
        fetch(recipe_for(tmp_path / "out", url))
    message = str(info.value)
    assert url in message and "offline" in message and "local path" in message
    assert f"data.root ({tmp_path / 'out'})" in message
    assert leftovers(tmp_path) == []


def test_not_an_archive(tmp_path):
    path = tmp_path / "page.tgz"
    path.write_text("<html>not found</html>")
    with pytest.raises(TkError, match="not an archive"):
        fetch(recipe_for(tmp_path / "out", path.as_uri()))
    assert leftovers(tmp_path) == ["page.tgz"]


def test_wrong_subdir_lists_what_is_there(archive, tmp_path):
    with pytest.raises(TkError) as info:
        fetch(recipe_for(tmp_path / "out", archive.as_uri(), subdir="flowers"))
    assert "data.source.subdir" in str(info.value) and "flower_photos/" in str(info.value)
    assert not (tmp_path / "out").exists()


def test_recipe_without_source(tmp_path):
    recipe = recipe_from_dict({"name": "nosrc", "data": {"root": str(tmp_path / "out")}})
    with pytest.raises(TkError, match="data.source.url: not set"):
        fetch(recipe)


def test_truncated_archive_is_a_clear_error(archive, tmp_path):
    cut = tmp_path / "cut.tgz"
    cut.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(TkError, match="not a readable archive"):
        fetch(recipe_for(tmp_path / "out", cut.as_uri()))
    assert leftovers(tmp_path) == ["cut.tgz"]


def test_present_data_needs_no_source(images, tmp_path):
    # `tk data fetch` on a recipe whose data is already in place is a no-op, source or not.
    recipe = recipe_from_dict({"name": "here", "data": {"root": str(images)}})
    lines = []
    assert fetch(recipe, Context(say=lines.append)) == images
    assert "skipping" in lines[0]


def test_macos_zip_junk_is_dropped(images, tmp_path):
    path = tmp_path / "mac.zip"
    with zipfile.ZipFile(path, "w") as zf:
        for file in images.rglob("*.jpg"):
            zf.write(file, file.relative_to(images))
        zf.writestr("__MACOSX/circle/._a.jpg", b"\x00\x05\x16\x07")
    root = tmp_path / "out"
    fetch(recipe_for(root, path.as_uri()))
    assert sorted(p.name for p in root.iterdir()) == ["circle", "square"]
