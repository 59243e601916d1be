"""The one table of model formats: every part of tk reads format facts from here.

A row says how a format's files are named per quantization, which predictor runs it (as a
"module:Class" path, imported only when a file of that format is opened, so the device path never
imports a TensorFlow predictor), whether running it needs TensorFlow, and where it sorts in tables.
The recipe's allowed values, export's plan, verify's tolerance kinds, bench's ordering and the
predictor registry all come from FORMATS: a new format is one row here plus its converter in
export/ (and its predictor, if a new runtime runs it). Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .errors import TkError

# Quantizations in table order; "none" is float32. The label names files and verify thresholds.
QUANTIZATIONS = ("none", "float16", "dynamic", "int8")
QUANT_LABEL = {"none": "float32", "float16": "float16", "dynamic": "dynamic", "int8": "int8"}


@dataclass(frozen=True)
class Format:
    name: str  # the --format value and the manifest's "format"
    suffix: str  # "" for a folder
    files: dict[str, str]  # quantization -> file name in the run folder
    predictor: str  # "module:Class" that runs a file of this format
    needs_tensorflow: bool  # to run it; the base (device) install has no TensorFlow
    exported: bool = True  # False for the trained model itself (the reference)
    folder_marker: Optional[str] = None  # a folder format is recognised by this file inside

    @property
    def quantizations(self) -> tuple[str, ...]:
        return tuple(self.files)

    def file_name(self, quantization: str) -> str:
        return self.files[quantization]


FORMATS: dict[str, Format] = {
    f.name: f
    for f in (
        Format(
            "keras",
            ".keras",
            {"none": "model.keras"},
            "toolkit.export.reference:KerasPredictor",
            needs_tensorflow=True,
            exported=False,
        ),
        Format(
            "savedmodel",
            "",
            {"none": "saved_model"},
            "toolkit.export.reference:SavedModelPredictor",
            needs_tensorflow=True,
            folder_marker="saved_model.pb",
        ),
        Format(
            "tflite",
            ".tflite",
            {q: f"model_{QUANT_LABEL[q]}.tflite" for q in QUANTIZATIONS},
            "toolkit.edge.predictors:TFLitePredictor",
            needs_tensorflow=False,
        ),
        # int8: onnxruntime static quantization (QDQ); float32 input and output, like model.onnx.
        Format(
            "onnx",
            ".onnx",
            {"none": "model.onnx", "int8": "model_int8.onnx"},
            "toolkit.edge.predictors:OnnxPredictor",
            needs_tensorflow=False,
        ),
    )
}

EXPORT_FORMATS = tuple(name for name, f in FORMATS.items() if f.exported)


def tolerance_kind(quantization: str) -> str:
    """Which verify.thresholds entry judges an artifact of this quantization."""
    return QUANT_LABEL.get(quantization, quantization)


def identify(file: str) -> Optional[tuple[Format, str]]:
    """(format, quantization) of an artifact from its file name, as tk's table names them; None for
    a name tk does not write. The name decides, not the manifest: verify judges a file by what it is
    called, and tk writes each (format, quantization) under one name only."""
    for fmt in FORMATS.values():
        for quantization, name in fmt.files.items():
            if name == file:
                return fmt, quantization
    return None


def sort_key(fmt: Optional[str], quantization: Optional[str], file: str = "") -> tuple:
    """Table order: the reference first, then formats in FORMATS order, float before quantized."""
    order = list(FORMATS)
    q = quantization or "none"
    return (
        order.index(fmt) if fmt in FORMATS else len(order),
        QUANTIZATIONS.index(q) if q in QUANTIZATIONS else len(QUANTIZATIONS),
        file,
    )


def format_of_path(path: Path) -> Format:
    """The format of a model file or folder, from its suffix (or, for a folder, its marker file)."""
    path = Path(path)
    if path.is_dir():
        for fmt in FORMATS.values():
            if fmt.folder_marker and (path / fmt.folder_marker).is_file():
                return fmt
        raise TkError(
            f"{path}: a folder but not a model (no {', '.join(f.folder_marker for f in FORMATS.values() if f.folder_marker)})"
        )
    for fmt in FORMATS.values():
        if fmt.suffix and path.suffix == fmt.suffix:
            return fmt
    known = ", ".join(f.suffix for f in FORMATS.values() if f.suffix)
    raise TkError(
        f"{path}: unknown model format {path.suffix or '(no suffix)'}; expected {known} or a SavedModel folder"
    )


def looks_like_model(path: Path) -> bool:
    """True when the path names a model file or folder (it may not exist yet)."""
    path = Path(path)
    return any(
        (f.suffix and path.suffix == f.suffix) or (f.folder_marker and (path / f.folder_marker).is_file())
        for f in FORMATS.values()
    )
