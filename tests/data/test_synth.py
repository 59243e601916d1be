"""Synthetic data: the right counts and sizes, object boxes inside the image, same seed same data."""

from __future__ import annotations

import hashlib

import numpy as np
import pytest
from PIL import Image

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
