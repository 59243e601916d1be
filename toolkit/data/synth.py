"""A procedural, learnable image dataset for offline demos and tests.

Each class is a shape drawn in a colour family on a textured background, at a random position and
scale. The generator records where it drew every object (objects.json: relative path -> box
[x0, y0, x1, y1] in pixels), which the Grad-CAM tests use to check the heat sits on the object.
Deterministic by seed. Pillow and numpy only.
"""

from __future__ import annotations

import colorsys
import json
import math
import os
import shutil
import tempfile
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFilter

from ..core.caps import SYNTH_MAX_PER_CLASS, SYNTH_MAX_SIZE
from ..core.errors import TkError

SHAPES = ("circle", "square", "triangle", "cross", "ring", "diamond", "bars", "star")
OBJECTS_FILE = "objects.json"


def make_synthetic_dataset(root: Path, classes: int = 3, per_class: int = 60, size: int = 64, seed: int = 0) -> Path:
    """Write `classes` folders of `per_class` JPEG images each under root; returns root.

    root must be new (or an empty folder, not a link): an existing dataset is never overwritten.
    The images are drawn in a fresh temporary sibling and renamed into place when complete, so
    nothing is written through a link planted in root, and an interrupted run leaves no half set."""
    if not 2 <= classes <= len(SHAPES):
        raise TkError(f"--classes: must be between 2 and {len(SHAPES)} (got {classes})")
    if not 1 <= per_class <= SYNTH_MAX_PER_CLASS:
        raise TkError(f"--per-class: must be between 1 and {SYNTH_MAX_PER_CLASS} (got {per_class})")
    if not 16 <= size <= SYNTH_MAX_SIZE:
        raise TkError(f"--size: must be between 16 and {SYNTH_MAX_SIZE} pixels (got {size})")
    root = Path(root)
    if root.is_symlink() or (root.exists() and (not root.is_dir() or any(root.iterdir()))):
        what = "a symbolic link" if root.is_symlink() else "not an empty folder"
        raise TkError(f"{root}: {what}; tk data synth writes a new dataset only: pass a new or empty folder")
    root.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{root.name}.synth-", dir=root.parent))
    try:
        _draw_into(work, classes, per_class, size, seed)
        umask = os.umask(0)
        os.umask(umask)
        work.chmod(0o777 & ~umask)  # mkdtemp makes it 0700: the dataset gets a normal folder's mode
        if root.is_dir():
            root.rmdir()  # empty (checked above); fails, changing nothing, if something appeared since
        os.rename(work, root)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return root


def _draw_into(root: Path, classes: int, per_class: int, size: int, seed: int) -> None:
    rng = np.random.default_rng(seed)
    boxes: dict[str, list[int]] = {}
    for k in range(classes):
        name = SHAPES[k]
        (root / name).mkdir()
        hue = k / classes
        for i in range(per_class):
            img, box = draw_example(rng, name, hue, size)
            rel = f"{name}/{name}_{i:04d}.jpg"
            img.save(root / rel, quality=92)
            boxes[rel] = box
    (root / OBJECTS_FILE).write_text(json.dumps(boxes, indent=0))


def load_boxes(root: Path) -> dict[str, list[int]]:
    path = Path(root) / OBJECTS_FILE
    return json.loads(path.read_text()) if path.is_file() else {}


def _background(rng: np.random.Generator, size: int) -> Image.Image:
    # Low-saturation noise blobs: texture without colour, so the class is in the object.
    coarse = rng.uniform(60, 190, size=(max(size // 8, 2), max(size // 8, 2), 1))
    grey = np.repeat(coarse, 3, axis=2) + rng.normal(0, 12, size=(coarse.shape[0], coarse.shape[1], 3))
    img = Image.fromarray(np.clip(grey, 0, 255).astype(np.uint8)).resize((size, size), Image.Resampling.BICUBIC)
    fine = rng.normal(0, 10, size=(size, size, 3))
    return Image.fromarray(np.clip(np.asarray(img, dtype=np.float32) + fine, 0, 255).astype(np.uint8))


def _colour(rng: np.random.Generator, hue: float) -> tuple[int, int, int]:
    h = (hue + rng.uniform(-0.04, 0.04)) % 1.0
    r, g, b = colorsys.hsv_to_rgb(h, rng.uniform(0.7, 1.0), rng.uniform(0.75, 1.0))
    return int(r * 255), int(g * 255), int(b * 255)


def draw_example(rng: np.random.Generator, shape: str, hue: float, size: int) -> tuple[Image.Image, list[int]]:
    img = _background(rng, size)
    draw = ImageDraw.Draw(img)
    extent = int(size * rng.uniform(0.3, 0.5))
    x0 = int(rng.integers(1, size - extent - 1))
    y0 = int(rng.integers(1, size - extent - 1))
    x1, y1 = x0 + extent, y0 + extent
    fill = _colour(rng, hue)
    cx, cy, r = (x0 + x1) / 2, (y0 + y1) / 2, extent / 2
    width = max(extent // 6, 2)
    if shape == "circle":
        draw.ellipse([x0, y0, x1, y1], fill=fill)
    elif shape == "square":
        draw.rectangle([x0, y0, x1, y1], fill=fill)
    elif shape == "triangle":
        draw.polygon([(cx, y0), (x1, y1), (x0, y1)], fill=fill)
    elif shape == "cross":
        draw.rectangle([cx - width, y0, cx + width, y1], fill=fill)
        draw.rectangle([x0, cy - width, x1, cy + width], fill=fill)
    elif shape == "ring":
        draw.ellipse([x0, y0, x1, y1], outline=fill, width=width)
    elif shape == "diamond":
        draw.polygon([(cx, y0), (x1, cy), (cx, y1), (x0, cy)], fill=fill)
    elif shape == "bars":
        for j in range(3):
            top = y0 + j * extent / 3
            draw.rectangle([x0, top, x1, top + extent / 6], fill=fill)
    elif shape == "star":
        points = [
            (
                cx + (r if j % 2 == 0 else r / 2.5) * math.cos(math.pi * j / 5 - math.pi / 2),
                cy + (r if j % 2 == 0 else r / 2.5) * math.sin(math.pi * j / 5 - math.pi / 2),
            )
            for j in range(10)
        ]
        draw.polygon(points, fill=fill)
    img = img.filter(ImageFilter.GaussianBlur(radius=0.4))
    return img, [x0, y0, x1 + 1, y1 + 1]
