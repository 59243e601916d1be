"""Bare artifacts: a .tflite or .onnx with no manifest.json beside it, run with what it carries.

A tk run or bundle has a manifest (classes, preprocessing, sha256). A model file handed over
alone still says a lot about itself: a .tflite with TFLite metadata (tk's, or MediaPipe Model
Maker's) packs its labels and its input normalization; tk's .onnx files carry the labels and the
preprocessing contract in `metadata_props` (written by export, read here). A Contract is that
description; the predictors apply it (edge/predictors.py). What is missing is said in one note:
without labels, classes are shown as indices; without a contract, pixels go in as RGB 0..255,
tk's own convention. numpy only (the readers: tflite_metadata, onnxruntime's model meta).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from ..core.errors import TkError
from ..core.formats import BARE_FORMATS, format_of_path
from ..core.images import is_image_name
from ..core.io import sha256_file, size_bytes

# The keys tk's ONNX export writes into the model's metadata_props (JSON values).
ONNX_LABELS = "tk.labels"  # ["class", ...] in output order
ONNX_PREPROCESSING = "tk.preprocessing"  # the manifest's preprocessing: size, input_range, scaling, ...
ONNX_NAME = "tk.name"


@dataclass(frozen=True)
class Contract:
    """How to feed a bare model and name its outputs, from what the file carries."""

    labels: Optional[tuple[str, ...]] = None  # None: class indices
    size: Optional[tuple[int, int]] = None  # (height, width) when the graph's own is symbolic
    mean: Optional[tuple[float, ...]] = None  # float inputs get (pixel - mean) / std
    std: Optional[tuple[float, ...]] = None
    # TFLite metadata semantics (MediaPipe, the Task Library): a uint8 input takes the pixel as it
    # is; its quantization describes the normalized value the graph sees. Without normalization
    # metadata (tk's own files) the pixel is quantized with the input's scale and zero-point.
    raw_uint8: bool = False
    source: str = ""  # where it came from, for messages
    notes: tuple[str, ...] = field(default_factory=tuple)


def tflite_contract(path: Path) -> Contract:
    """The labels and input normalization a .tflite's metadata gives; a note for what it lacks."""
    from .tflite_metadata import read_metadata

    try:
        meta = read_metadata(Path(path).read_bytes())
    except TkError as exc:
        return Contract(notes=(f"{path.name}: its TFLite metadata cannot be read ({exc}); {_FALLBACK}",))
    if meta is None:
        return Contract(notes=(f"{path.name}: no manifest.json beside it and no TFLite metadata in it; {_FALLBACK}",))
    labels = (meta.get("output") or {}).get("labels")
    norm = (meta.get("input") or {}).get("normalization")
    mean, std = _normalization(norm, path, "TFLite metadata")
    notes = () if labels else (f"{path.name}: its TFLite metadata has no label file; classes shown as indices",)
    return Contract(
        labels=tuple(labels) if labels else None,
        mean=mean,
        std=std,
        raw_uint8=norm is not None,
        source="TFLite metadata",
        notes=notes,
    )


def onnx_contract(props: dict[str, str], path: Path) -> Contract:
    """The labels and preprocessing tk's export wrote into an .onnx's metadata_props."""
    path = Path(path)
    if ONNX_LABELS not in props and ONNX_PREPROCESSING not in props:
        return Contract(notes=(f"{path.name}: no manifest.json beside it and no tk metadata_props in it; {_FALLBACK}",))
    labels = _json_value(props, ONNX_LABELS, list, path)
    if labels is not None and not all(isinstance(x, str) and x.strip() for x in labels):
        raise TkError(
            f"{path}: metadata_props {ONNX_LABELS} must list class names (got {labels!r:.80}); re-run tk export"
        )
    pre = _json_value(props, ONNX_PREPROCESSING, dict, path) or {}
    size = pre.get("size")
    if size is not None and not (isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) for v in size)):
        raise TkError(f"{path}: metadata_props {ONNX_PREPROCESSING}.size must be [height, width] (got {size!r})")
    mean, std = _normalization(pre.get("normalization"), path, f"metadata_props {ONNX_PREPROCESSING}")
    notes = () if labels else (f"{path.name}: its metadata_props hold no labels; classes shown as indices",)
    return Contract(
        labels=tuple(labels) if labels else None,
        size=(int(size[0]), int(size[1])) if size else None,
        mean=mean,
        std=std,
        source="ONNX metadata_props",
        notes=notes,
    )


def onnx_metadata_props(name: str, classes: list[str], preprocessing: dict[str, Any]) -> dict[str, str]:
    """What tk's ONNX export writes into metadata_props, so that a bare .onnx names its classes."""
    return {
        ONNX_NAME: name,
        ONNX_LABELS: json.dumps(list(classes)),
        ONNX_PREPROCESSING: json.dumps(preprocessing, sort_keys=True),
    }


_FALLBACK = "classes shown as indices, pixels fed as RGB 0..255 (tk's convention)"


def _json_value(props: dict[str, str], key: str, kind: type, path: Path) -> Any:
    if key not in props:
        return None
    try:
        value = json.loads(props[key])
    except json.JSONDecodeError:
        value = None
    if not isinstance(value, kind):
        raise TkError(f"{path}: metadata_props {key} is not a JSON {kind.__name__}; re-run tk export to rewrite it")
    return value


def _normalization(norm: Any, path: Path, where: str) -> tuple[Optional[tuple], Optional[tuple]]:
    """(mean, std) per channel (one value stands for all three), or (None, None)."""
    if not norm:
        return None, None
    try:
        mean = tuple(float(v) for v in norm["mean"])
        std = tuple(float(v) for v in norm["std"])
    except (KeyError, TypeError, ValueError):
        raise TkError(f"{path}: {where}: normalization needs mean and std lists (got {norm!r:.80})") from None
    if len(mean) not in (1, 3) or len(std) not in (1, 3) or any(s == 0 for s in std):
        raise TkError(f"{path}: {where}: normalization mean/std need 1 or 3 values, std non-zero (got {norm!r:.80})")
    return mean, std


def bare_manifest(folder: Path, files: list[str]) -> dict[str, Any]:
    """A manifest-shaped record of the bare model files in a folder (`files` and every other
    .tflite/.onnx beside them), for bench: format, sha256 and size each. Listing the others keeps
    their rows of an earlier bench.json, as long as their bytes did not change."""
    folder = Path(folder)
    others = sorted(p.name for p in folder.iterdir() if p.is_file() and p.suffix.lstrip(".") in BARE_FORMATS)
    artifacts = {}
    for file in dict.fromkeys([*files, *others]):
        path = folder / file
        artifacts[file] = {
            "file": file,
            "format": format_of_path(path).name,
            "quantization": None,
            "sha256": sha256_file(path),
            "size_bytes": size_bytes(path),
        }
    return {"name": folder.resolve().name, "bare": True, "artifacts": artifacts}


def labelled_images(root: Path) -> tuple[list[str], list[str]]:
    """(image paths, class folder names) under root's class folders (root/test/ if it has one),
    for the accuracy of a bare model: each folder is named by one of its labels (or its index)."""
    root = Path(root)
    top = root / "test" if (root / "test").is_dir() else root
    if not top.is_dir():
        raise TkError(f"--data-root: folder not found: {root} (pass a folder of class folders named by the labels)")
    paths, names = [], []
    for folder in sorted(p for p in top.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for image in sorted(p for p in folder.rglob("*") if p.is_file() and is_image_name(p)):
            paths.append(str(image))
            names.append(folder.name)
    if not paths:
        raise TkError(
            f"--data-root: no images in class folders under {top} (one folder per class, named by the "
            "model's labels, with JPEG/PNG/BMP/GIF images)"
        )
    return paths, names


def label_indices(names: list[str], labels: list[str], model: str, root: Optional[str]) -> list[int]:
    """Class folder names (labelled_images) as the model's output indices: its labels, or the
    indices themselves for a model without labels. A folder that is no class is one line."""
    index = {label: i for i, label in enumerate(labels)}
    unknown = sorted({n for n in names if n not in index})
    if unknown:
        shown = ", ".join(list(index)[:20]) + (", ..." if len(index) > 20 else "")
        raise TkError(
            f"--data-root {root}: folder {unknown[0]!r} is not a class of {model} "
            f"(its classes: {shown}); name each class folder by one of them, or remove it"
        )
    return [index[n] for n in names]
