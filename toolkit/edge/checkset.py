"""The check set: held-out images as decoded pixels, with the reference model's probabilities for them,
so a device (or a browser) can re-run the parity gate with its own runtime and CPU.

    checkset/pixels.u8       uint8 (N, H, W, 3), C order: exactly core.images.load_batch's pixels
                             at the model's input size (decoded once, on the workstation, so the
                             device check is about the runtime, not about JPEG decoders)
    checkset/checkset.json   {"format": 1, "count": N, "height", "width", "channels": 3,
                             "pixels": "pixels.u8", "pixels_sha256", "labels", "classes",
                             "reference_sha256", "probabilities": [[...] per image], ...}

`tk verify` writes it into the run (it runs the Keras reference anyway); `tk pack` (and
`tk pack --web`) copy it into the bundle with copy_checkset, after checking it belongs to the
model packed. load_checkset refuses one that does not match its own bytes or the manifest.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..core import schemas
from ..core.errors import TkError
from ..core.io import atomic_path, now, output_folder, write_json_atomic

CHECKSET_DIR = "checkset"
CHECKSET_JSON = "checkset.json"
PIXELS = "pixels.u8"
DEFAULT_COUNT = 32
FORMAT = 1


def pick(labels: Sequence[int], count: int = DEFAULT_COUNT) -> list[int]:
    """Up to `count` indices, round-robin over classes, spread over each class's images (deterministic)."""
    by_class: dict[int, list[int]] = {}
    for i, y in enumerate(labels):
        by_class.setdefault(int(y), []).append(i)
    quota = dict.fromkeys(by_class, 0)
    left = min(count, len(labels))
    while left > 0:
        for k in sorted(by_class):
            if left and quota[k] < len(by_class[k]):
                quota[k] += 1
                left -= 1
    chosen = [by_class[k][(i * len(by_class[k])) // quota[k]] for k in sorted(by_class) for i in range(quota[k])]
    return sorted(chosen)


def write_checkset(
    root: Path,
    pixels: np.ndarray,
    labels: Sequence[int],
    classes: Sequence[str],
    probabilities: np.ndarray,
    reference_sha256: str,
    extra: Optional[dict[str, Any]] = None,
) -> dict[str, Any]:
    """root/checkset/ from decoded pixels (N, H, W, 3; 0..255) and the reference's probabilities (N, C)."""
    pixels = np.ascontiguousarray(np.clip(np.round(pixels), 0, 255).astype(np.uint8))
    probabilities = np.asarray(probabilities, dtype=np.float64)
    if pixels.ndim != 4 or pixels.shape[3] != 3 or probabilities.shape != (len(pixels), len(classes)):
        raise TkError(f"check set: pixels {pixels.shape} and probabilities {probabilities.shape} do not match")
    folder = output_folder(root, CHECKSET_DIR)
    data = pixels.tobytes()
    with atomic_path(folder / PIXELS) as tmp:
        tmp.write_bytes(data)
    meta = {
        "format": FORMAT,
        "count": int(len(pixels)),
        "height": int(pixels.shape[1]),
        "width": int(pixels.shape[2]),
        "channels": 3,
        "pixels": PIXELS,
        "pixels_sha256": hashlib.sha256(data).hexdigest(),
        "labels": [int(y) for y in labels],
        "classes": list(classes),
        "reference_sha256": reference_sha256,
        "probabilities": [[float(p) for p in row] for row in np.clip(probabilities, 0.0, 1.0)],
        "created": now(),
        **(extra or {}),
    }
    write_json_atomic(folder / CHECKSET_JSON, meta)
    return meta


def load_checkset(folder: Path, manifest: Optional[dict[str, Any]] = None) -> tuple[dict[str, Any], np.ndarray]:
    """(checkset.json, pixels as float32 (N, H, W, 3)) from folder, checked against its own digest and,
    given a manifest, against the model's input size and classes."""
    folder = Path(folder)
    meta = schemas.load_checkset(folder / CHECKSET_JSON)
    path = folder / meta["pixels"]
    shape = (meta["count"], meta["height"], meta["width"], 3)
    fix = schemas.FIX["checkset"]
    if path.is_symlink() or not path.is_file():
        raise TkError(f"{path}: missing (or not a regular file); {fix}")
    if path.stat().st_size != int(np.prod(shape)):
        raise TkError(f"{path}: {path.stat().st_size} bytes, but checkset.json says {shape} uint8; {fix}")
    data = path.read_bytes()
    if hashlib.sha256(data).hexdigest() != meta["pixels_sha256"]:
        raise TkError(f"{path}: sha256 differs from {folder / CHECKSET_JSON}; the pixels changed: {fix}")
    if manifest is not None:
        size, classes = list(manifest["preprocessing"]["size"]), list(manifest["classes"])
        if [meta["height"], meta["width"]] != size or meta["classes"] != classes:
            raise TkError(
                f"{folder / CHECKSET_JSON}: images {meta['height']}x{meta['width']} of {len(meta['classes'])} "
                f"classes, but the manifest's model takes {size[0]}x{size[1]} of {len(classes)}; {fix}"
            )
    return meta, np.frombuffer(data, np.uint8).reshape(shape).astype(np.float32)


def copy_checkset(run_dir: Path, target: Path, manifest: dict[str, Any], reference_sha256: Optional[str]) -> dict:
    """Copy run_dir/checkset/ into target/checkset/ once it is shown to be of this model; its checkset.json."""
    source = Path(run_dir) / CHECKSET_DIR
    meta, _ = load_checkset(source, manifest)
    if meta["reference_sha256"] != reference_sha256:
        raise TkError(
            f"{source / CHECKSET_JSON}: made with another model.keras than the one packed; "
            f"re-run tk verify {run_dir}, then tk pack again"
        )
    folder = output_folder(target, CHECKSET_DIR)
    for name in (meta["pixels"], CHECKSET_JSON):
        shutil.copyfile(source / name, folder / name)
    return meta
