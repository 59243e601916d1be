"""The one table of model formats: every part of tk reads format facts from here.

A row says how a format's files are named per quantization, which predictor runs it (as a
"module:Class" path, imported only when a file of that format is opened, so the device path never
imports a TensorFlow predictor), whether running it needs TensorFlow, which pip packages run it,
whether a plain `tk export` writes it, and where it sorts in tables. The recipe's allowed values
and defaults, export's plan, verify's tolerance kinds, bench's ordering, the predictor registry,
the machine facts bench records and the help texts and messages that name formats all come from
FORMATS: a new format is one row here plus its converter in export/ (and its predictor, if a new
runtime runs it). Standard library only.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional, Sequence

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
    packages: tuple[str, ...] = ()  # pip packages that run it, any one will do (bench records their versions)
    # False: exported only when a recipe's export.formats or --format names it (a runtime most
    # machines lack must not join every recipe's default export, nor --format all).
    default: bool = True
    # Files that belong to the named file (same stem, these suffixes): an OpenVINO IR is model.xml
    # (the graph, the file the manifest lists) plus model.bin (the weights). Each is hashed in the
    # manifest entry's "companions", checked wherever the file is, and packed with it.
    companions: tuple[str, ...] = ()

    @property
    def quantizations(self) -> tuple[str, ...]:
        return tuple(self.files)

    def file_name(self, quantization: str) -> str:
        return self.files[quantization]

    def companion_files(self, file: str) -> list[str]:
        """The names of the files that travel with `file` ("model_int8.xml" -> ["model_int8.bin"])."""
        return [str(Path(file).with_suffix(suffix)) for suffix in self.companions]


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
            packages=("tensorflow", "keras"),
        ),
        Format(
            "savedmodel",
            "",
            {"none": "saved_model"},
            "toolkit.export.reference:SavedModelPredictor",
            needs_tensorflow=True,
            folder_marker="saved_model.pb",
            packages=("tensorflow",),
        ),
        Format(
            "tflite",
            ".tflite",
            {q: f"model_{QUANT_LABEL[q]}.tflite" for q in QUANTIZATIONS},
            "toolkit.edge.predictors:TFLitePredictor",
            needs_tensorflow=False,
            # LiteRT where it has wheels; tflite-runtime on 32-bit Raspberry Pi OS (armv7l).
            packages=("ai-edge-litert", "tflite-runtime"),
        ),
        # int8: onnxruntime static quantization (QDQ); float32 input and output, like model.onnx.
        Format(
            "onnx",
            ".onnx",
            {"none": "model.onnx", "int8": "model_int8.onnx"},
            "toolkit.edge.predictors:OnnxPredictor",
            needs_tensorflow=False,
            packages=("onnxruntime",),
        ),
        # OpenVINO IR for Intel laptops: float32, float16-compressed weights, int8 (NNCF). Optional:
        # it needs the [openvino] extra on the device, so only recipes that name it export it.
        Format(
            "openvino",
            ".xml",
            {q: f"model_{QUANT_LABEL[q]}.xml" for q in ("none", "float16", "int8")},
            "toolkit.edge.openvino:OpenVINOPredictor",
            needs_tensorflow=False,
            packages=("openvino",),
            default=False,
            companions=(".bin",),
        ),
    )
}

EXPORT_FORMATS = tuple(name for name, f in FORMATS.items() if f.exported)
# What export writes when nothing names formats: the recipe's default and --format all.
DEFAULT_FORMATS = tuple(name for name in EXPORT_FORMATS if FORMATS[name].default)
# What a device runs: exported formats whose runtime needs no TensorFlow (pack, the edge install).
DEVICE_FORMATS = tuple(name for name in EXPORT_FORMATS if not FORMATS[name].needs_tensorflow)


def suffixes(names: Sequence[str], sep: str = "/") -> str:
    """'.tflite/.onnx': the file suffixes of these formats, for messages and help texts."""
    return sep.join(FORMATS[n].suffix for n in names if FORMATS[n].suffix)


def install_hint(fmt: Format) -> str:
    """'pip install onnxruntime': what to install to run a format (its first package)."""
    return f"pip install {fmt.packages[0]}" if fmt.packages else "pip install 'tk-edge[train]'"


def runtime_packages() -> tuple[str, ...]:
    """Every package a format runs on, in table order, then what every predictor uses."""
    names = [p for fmt in FORMATS.values() for p in fmt.packages] + ["numpy", "pillow"]
    return tuple(dict.fromkeys(names))


def companion_files(file: str) -> list[str]:
    """The companion files of an artifact file, by its suffix (none for a format without them)."""
    fmt = next((f for f in FORMATS.values() if f.suffix and Path(file).suffix == f.suffix), None)
    return fmt.companion_files(file) if fmt else []


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
            f"{path}: a folder but not a model "
            f"(no {', '.join(f.folder_marker for f in FORMATS.values() if f.folder_marker)})"
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
