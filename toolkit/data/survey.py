"""`tk data inspect`: what training would see, before any training starts.

Counts per class and split, the range of image sizes and colour modes, the files that will be
skipped (and why), the layout detected, and warnings about things that quietly spoil a run: class
imbalance, a class missing from a split, no test split. The report is a plain dict (for --json and
tests); cli/render.py turns it into rich tables. TensorFlow-free.
"""

from __future__ import annotations

import dataclasses
import statistics
from collections import Counter
from typing import Any

from PIL import Image

from ..core.recipe import Recipe
from .splits import discover

# A class with more than this many times the images of another is worth a warning.
IMBALANCE_RATIO = 3.0
_EXIF_ORIENTATION = 0x0112


def survey(recipe: Recipe) -> dict[str, Any]:
    """Discover the recipe's data (bad files listed, never fatal here) and summarise it."""
    data = recipe.data
    # Inspect lists bad files rather than failing on the first one, whatever data.strict says.
    # Lists classes missing from a split among the warnings rather than stopping at the first.
    dataset = discover(dataclasses.replace(data, strict=False), recipe.seed, complete=False)
    counts = {split: {c: 0 for c in dataset.classes} for split in dataset.splits}
    for split, items in dataset.splits.items():
        for _, label in items:
            counts[split][dataset.classes[label]] += 1
    unique = sorted({p for items in dataset.splits.values() for p, _ in items})
    report = {
        "root": dataset.root,
        "layout": dataset.layout,
        "layout_requested": data.layout,
        "classes": dataset.classes,
        "counts": counts,
        "totals": {split: len(items) for split, items in dataset.splits.items()},
        "images": len(unique),
        "test_is_validation": dataset.test_is_validation,
        "sizes": image_sizes(unique),
        "bad_files": [{"path": p, "reason": r} for p, r in dataset.skipped],
        "strict": data.strict,
    }
    report["warnings"] = _warnings(report)
    return report


def image_sizes(paths: list[str]) -> dict[str, Any]:
    """Width/height min, median, max (upright, EXIF orientation applied) and colour mode counts.

    Reads headers only: Pillow does not decode pixels until asked, so this is fast on big folders.
    """
    widths, heights, modes = [], [], Counter()
    for path in paths:
        with Image.open(path) as img:
            width, height = img.size
            if img.getexif().get(_EXIF_ORIENTATION, 1) in (5, 6, 7, 8):  # rotated a quarter turn
                width, height = height, width
            widths.append(width)
            heights.append(height)
            modes[img.mode] += 1
    if not paths:
        return {"count": 0, "width": None, "height": None, "modes": {}}

    def spread(values: list[int]) -> dict[str, float]:
        return {"min": min(values), "median": statistics.median(values), "max": max(values)}

    return {"count": len(paths), "width": spread(widths), "height": spread(heights), "modes": dict(modes.most_common())}


def _warnings(report: dict[str, Any]) -> list[str]:
    out = []
    counts = report["counts"]
    for split, per_class in counts.items():
        if split == "test" and report["test_is_validation"]:
            continue
        empty = [c for c, n in per_class.items() if n == 0]
        if empty:
            effect = (
                "test metrics will not cover them"
                if split == "test"
                else "training will FAIL: add images of them or remove the class"
            )
            out.append(f"the {split} split has 0 images of {', '.join(empty)}: {effect}")
    train = {c: n for c, n in counts["train"].items() if n > 0}
    if len(train) >= 2:
        most = max(train, key=train.get)
        least = min(train, key=train.get)
        ratio = train[most] / train[least]
        if ratio > IMBALANCE_RATIO:
            out.append(
                f"class imbalance in train: {most} has {train[most]} images, {least} {train[least]} "
                f"({ratio:.1f}x > {IMBALANCE_RATIO:.0f}x); accuracy will favour {most}: add images "
                f"of the small classes or drop some of the large ones"
            )
    if report["test_is_validation"]:
        why = "no test/ folder" if report["layout"] == "presplit" else "data.split.test is 0"
        out.append(
            f"no test split ({why}): test metrics will be computed on the validation split, "
            "which also chose the best checkpoint, so they will be optimistic"
        )
    if report["bad_files"]:
        action = "training will FAIL (data.strict is true)" if report["strict"] else "they will be skipped"
        out.append(f"{len(report['bad_files'])} file(s) are not usable images: {action}; see the list above")
    return out
