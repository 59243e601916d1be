"""core/paths.confine: a path read from a run file or a bundle stays inside its root, or is one
line naming the file it came from. Tiny folders and links built here; standard library only."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from toolkit.core.errors import TkError
from toolkit.core.paths import confine

pytestmark = pytest.mark.edge


@pytest.fixture
def tree(tmp_path) -> Path:
    """root/{a/x.jpg, inner -> a (link inside), out -> ../elsewhere (link outside)}, elsewhere/secret."""
    root = tmp_path / "root"
    (root / "a").mkdir(parents=True)
    (root / "a" / "x.jpg").write_bytes(b"x")
    (tmp_path / "elsewhere").mkdir()
    (tmp_path / "elsewhere" / "secret.jpg").write_bytes(b"s")
    os.symlink("a", root / "inner")
    os.symlink("../elsewhere", root / "out")
    return root


@pytest.mark.parametrize("links", ["resolved", "followed"])
@pytest.mark.parametrize("recorded", ["a/x.jpg", "a/../a/x.jpg", "./a/x.jpg", "inner/x.jpg", "ABS/a/x.jpg"])
def test_paths_that_stay_inside_are_given_back(tree, recorded, links):
    recorded = recorded.replace("ABS", str(tree))
    path = confine(tree, recorded, "split.json", "fix it", links=links)
    assert path.is_file() and path.read_bytes() == b"x"


@pytest.mark.parametrize("links", ["resolved", "followed"])
@pytest.mark.parametrize("recorded", ["../elsewhere/secret.jpg", "a/../../elsewhere/secret.jpg", "/etc/passwd", ".."])
def test_paths_that_leave_are_one_line_naming_the_source(tree, recorded, links):
    with pytest.raises(TkError) as err:
        confine(tree, recorded, "run/split.json", "re-run tk train", links=links)
    message = str(err.value)
    assert message.startswith("run/split.json: ") and repr(recorded) in message and "re-run tk train" in message
    assert "\n" not in message


def test_a_link_out_is_refused_in_a_run_or_bundle_and_followed_in_the_data_root(tree):
    with pytest.raises(TkError, match="through a symbolic link"):
        confine(tree, "out/secret.jpg", "bundle/split.json", "copy the bundle again")
    # The data root's links are the dataset's own (class folders on another disk).
    assert confine(tree, "out/secret.jpg", "split.json", "-", links="followed").read_bytes() == b"s"


def test_a_root_reached_through_a_link_is_still_its_inside(tree, tmp_path):
    os.symlink(tree, tmp_path / "alias")
    assert confine(tmp_path / "alias", "a/x.jpg", "manifest.json", "-").read_bytes() == b"x"


@pytest.mark.parametrize("recorded", [None, 3, "", "a/\0x.jpg", ["a"]])
def test_what_is_not_a_path_is_refused(tree, recorded):
    with pytest.raises(TkError, match="not a usable path"):
        confine(tree, recorded, "manifest.json", "re-run tk export")


def test_a_sibling_with_the_root_as_prefix_is_outside(tmp_path):
    (tmp_path / "run").mkdir()
    (tmp_path / "run-old").mkdir()
    for links in ("resolved", "followed"):
        with pytest.raises(TkError):
            confine(tmp_path / "run", "../run-old/x", "m.json", "-", links=links)
        with pytest.raises(TkError):
            confine(tmp_path / "run", str(tmp_path / "run-old" / "x"), "m.json", "-", links=links)
