"""Synthetic data: the right counts and sizes, object boxes inside the image, same seed same data."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

from toolkit.core.caps import SYNTH_MAX_PER_CLASS, SYNTH_MAX_SIZE
from toolkit.core.errors import TkError
from toolkit.data.synth import SHAPES, load_boxes, make_synthetic_dataset


def digests(root) -> dict[str, str]:
    return {str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(root.rglob("*.jpg"))}


def test_counts_and_sizes(tmp_path):
    root = make_synthetic_dataset(tmp_path / "s", classes=4, per_class=7, size=40, seed=0)
    folders = sorted(p.name for p in root.iterdir() if p.is_dir())
    assert folders == sorted(SHAPES[:4])
    for folder in folders:
        files = sorted((root / folder).glob("*.jpg"))
        assert len(files) == 7
        for path in files:
            with Image.open(path) as img:
                assert img.size == (40, 40) and img.mode == "RGB"


def test_every_file_has_a_box_inside_the_image(tmp_path):
    size = 48
    root = make_synthetic_dataset(tmp_path / "s", classes=8, per_class=5, size=size, seed=2)
    boxes = load_boxes(root)
    files = {str(p.relative_to(root)) for p in root.rglob("*.jpg")}
    assert set(boxes) == files and len(files) == 40
    for rel, (x0, y0, x1, y1) in boxes.items():
        assert 0 <= x0 < x1 <= size and 0 <= y0 < y1 <= size, rel
        assert (x1 - x0) >= size * 0.25  # an object, not a speck


def test_object_is_drawn_inside_its_box(tmp_path):
    # The Grad-CAM tests rely on the box: the class colour must sit inside it, not elsewhere.
    root = make_synthetic_dataset(tmp_path / "s", classes=2, per_class=6, size=64, seed=5)
    for rel, (x0, y0, x1, y1) in load_boxes(root).items():
        if not rel.startswith("square/"):
            continue
        x = np.asarray(Image.open(root / rel), dtype=np.float32)
        saturation = x.max(axis=2) - x.min(axis=2)  # the background is grey, the object coloured
        inside = saturation[y0 + 2 : y1 - 2, x0 + 2 : x1 - 2].mean()
        mask = np.ones_like(saturation, dtype=bool)
        mask[max(y0 - 2, 0) : y1 + 2, max(x0 - 2, 0) : x1 + 2] = False
        assert inside > 3 * saturation[mask].mean(), rel


def test_deterministic_by_seed(tmp_path):
    a = make_synthetic_dataset(tmp_path / "a", classes=3, per_class=4, size=32, seed=11)
    b = make_synthetic_dataset(tmp_path / "b", classes=3, per_class=4, size=32, seed=11)
    c = make_synthetic_dataset(tmp_path / "c", classes=3, per_class=4, size=32, seed=12)
    assert digests(a) == digests(b)
    assert load_boxes(a) == load_boxes(b)
    assert digests(a) != digests(c)


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"classes": 1}, "--classes"),
        ({"classes": len(SHAPES) + 1}, "--classes"),
        ({"per_class": 0}, "--per-class"),
        ({"size": 8}, "--size"),
    ],
)
def test_bad_arguments_are_user_errors(tmp_path, kwargs, key):
    with pytest.raises(TkError, match=key):
        make_synthetic_dataset(tmp_path / "s", **kwargs)
    assert not (tmp_path / "s").exists()


@pytest.mark.parametrize(
    "kwargs, key",
    [
        ({"size": SYNTH_MAX_SIZE + 1, "per_class": 1}, f"--size: must be between 16 and {SYNTH_MAX_SIZE}"),
        ({"per_class": SYNTH_MAX_PER_CLASS + 1, "size": 16}, "--per-class"),
    ],
)
def test_sizes_and_counts_are_capped(tmp_path, kwargs, key):
    """Issue 20: --size 100000 ran unbounded. Just over each cap: without the cap this test fails
    in seconds instead of drawing 30 GB of pixels."""
    with pytest.raises(TkError, match=key):
        make_synthetic_dataset(tmp_path / "s", classes=2, **kwargs)
    assert not (tmp_path / "s").exists()


def test_an_existing_dataset_is_never_overwritten(tmp_path):
    """Issue 20: synth overwrote the images in its target folder, exit 0."""
    root = make_synthetic_dataset(tmp_path / "s", classes=2, per_class=3, size=16, seed=0)
    before = digests(root)
    with pytest.raises(TkError, match="not an empty folder; tk data synth writes a new dataset only"):
        make_synthetic_dataset(root, classes=2, per_class=3, size=16, seed=1)
    assert digests(root) == before
    assert [p.name for p in tmp_path.iterdir()] == ["s"]  # no temporary left beside it


def test_nothing_is_written_through_links(tmp_path):
    """Issue 20: synth wrote through a symlinked objects.json to a file outside."""
    outside = tmp_path / "outside.txt"
    outside.write_text("original\n")
    target = tmp_path / "s"
    target.mkdir()
    (target / "objects.json").symlink_to(outside)
    with pytest.raises(TkError, match="not an empty folder"):
        make_synthetic_dataset(target, classes=2, per_class=2, size=16)
    (tmp_path / "linked").symlink_to(tmp_path / "empty", target_is_directory=True)
    (tmp_path / "empty").mkdir()
    with pytest.raises(TkError, match="a symbolic link"):
        make_synthetic_dataset(tmp_path / "linked", classes=2, per_class=2, size=16)
    assert outside.read_text() == "original\n" and not any((tmp_path / "empty").iterdir())


def test_an_empty_folder_is_filled(tmp_path):
    (tmp_path / "s").mkdir()
    root = make_synthetic_dataset(tmp_path / "s", classes=2, per_class=2, size=16)
    assert len(digests(root)) == 4 and (root / "objects.json").is_file()
