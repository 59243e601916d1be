"""Read a bundle's device check set (written by tk pack): decoded pixels plus the reference's answers.

BUNDLE/checkset/checkset.json names pixels.u8 (uint8, shape (count, height, width, 3), C order:
what core.images.load_batch gives at the model's size), its sha256, the label of each image and
the reference model's probabilities. The browser gets exactly these pixels, so what is compared
is the runtime, not two JPEG decoders. A check set that does not add up is refused, by key.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import TkError

FOLDER = "checkset"
FILE = "checkset.json"


@dataclass(frozen=True)
class CheckSet:
    path: Path  # checkset.json
    meta: dict[str, Any]
    pixels: np.ndarray  # (count, height, width, 3) uint8
    labels: np.ndarray  # (count,)
    reference: np.ndarray  # (count, classes) float64

    @property
    def pixels_url(self) -> str:
        """Where the page fetches the pixels, relative to the bundle."""
        return f"{FOLDER}/{self.meta['pixels']}"


def _need(meta: dict[str, Any], key: str, kind: type, path: Path) -> Any:
    value = meta.get(key)
    if not isinstance(value, kind) or isinstance(value, bool):
        raise TkError(f"{path}: key {key!r} is missing or not a {kind.__name__}; re-pack the bundle with tk pack")
    return value


def load_checkset(bundle: Path) -> CheckSet:
    path = Path(bundle) / FOLDER / FILE
    if not path.is_file():
        raise TkError(
            f"{bundle}: no device check set ({FOLDER}/{FILE}); re-pack the run with tk pack, which writes "
            "the check set that tk verify BUNDLE and --web compare against"
        )
    try:
        meta = json.loads(path.read_bytes().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TkError(f"{path}: not valid JSON ({exc}); re-pack the bundle with tk pack") from None
    if not isinstance(meta, dict) or meta.get("format") != 1:
        raise TkError(f"{path}: not a format-1 check set; re-pack the bundle with this tk")
    count, height, width = (_need(meta, k, int, path) for k in ("count", "height", "width"))
    name = _need(meta, "pixels", str, path)
    if Path(name).name != name or name in ("", ".", ".."):
        raise TkError(f"{path}: key 'pixels' must be a file name inside {FOLDER}/ (got {name!r})")
    raw = (path.parent / name).read_bytes() if (path.parent / name).is_file() else b""
    if hashlib.sha256(raw).hexdigest() != _need(meta, "pixels_sha256", str, path):
        raise TkError(f"{path.parent / name}: missing, or its sha256 differs from {path}; re-pack the bundle")
    if count < 1 or len(raw) != count * height * width * 3:
        raise TkError(f"{path}: {count} images of {height}x{width}x3 do not make the {len(raw)} bytes of {name}")
    labels = np.asarray(_need(meta, "labels", list, path))
    reference = np.asarray(_need(meta, "probabilities", list, path), dtype=np.float64)
    classes = _need(meta, "classes", list, path)
    if labels.shape != (count,) or reference.shape != (count, len(classes)):
        raise TkError(f"{path}: 'labels' or 'probabilities' do not match count {count} and {len(classes)} classes")
    pixels = np.frombuffer(raw, dtype=np.uint8).reshape(count, height, width, 3)
    return CheckSet(path, meta, pixels, labels.astype(np.int64), reference)
