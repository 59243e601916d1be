"""Reading TFLite Model Metadata (the official metadata_schema.fbs) on the device path.

A .tflite that carries metadata (tk's own, or MediaPipe Model Maker's) says what its classes are
(an associated TENSOR_AXIS_LABELS file packed in a zip appended to the flatbuffer) and how its
input wants pixels (NormalizationOptions). `tk predict` and `tk bench` read it for a bare model
file, with no manifest.json beside it. numpy, flatbuffers (a dependency of both runtimes) and the
model schema that LiteRT ships: no TensorFlow. export/metadata.py writes what this reads.
"""

from __future__ import annotations

import io
import zipfile

from ..core.errors import TkError
from .vendor import metadata_schema_py_generated as _md

try:  # the TFLite model schema, as the runtime that runs tk's files ships it
    from ai_edge_litert import schema_py_generated as _fb
except ImportError:  # tflite-runtime (32-bit Pi OS) ships no schema: metadata cannot be read there
    _fb = None

METADATA_NAME = "TFLITE_METADATA"
MODEL_IDENTIFIER = b"TFL3"
METADATA_IDENTIFIER = b"M001"
LABEL_FILE = "labels.txt"
_FILE_TYPES = {v: k for k, v in vars(_md.AssociatedFileType).items() if not k.startswith("_")}
_COLOR_SPACES = {v: k for k, v in vars(_md.ColorSpaceType).items() if not k.startswith("_")}


def schema_available() -> bool:
    """False where no model schema is installed (tflite-runtime only): metadata is then unreadable."""
    return _fb is not None


def text(value) -> str | None:
    return value.decode("utf-8") if isinstance(value, bytes) else value


def _stats_dict(stats) -> dict | None:
    if stats is None:
        return None
    return {"min": [float(x) for x in stats.min], "max": [float(x) for x in stats.max]}


def _tensor_dict(t) -> dict:
    out = {"name": text(t.name), "description": text(t.description), "stats": _stats_dict(t.stats)}
    props = t.content.contentProperties if t.content else None
    if isinstance(props, _md.ImagePropertiesT):
        out["color_space"] = _COLOR_SPACES.get(props.colorSpace, str(props.colorSpace))
    out["normalization"] = None
    for unit in t.processUnits or []:
        if isinstance(unit.options, _md.NormalizationOptionsT):
            out["normalization"] = {
                "mean": [float(x) for x in unit.options.mean],
                "std": [float(x) for x in unit.options.std],
            }
    out["associated_files"] = [
        {"name": text(f.name), "type": _FILE_TYPES.get(f.type, str(f.type)), "description": text(f.description)}
        for f in t.associatedFiles or []
    ]
    return out


def read_metadata(model: bytes) -> dict | None:
    """The metadata written by add_metadata (or any TFLite metadata), read back from the model's
    flatbuffer and its packed zip; None when the model has none. TkError when it cannot be read."""
    if _fb is None:
        raise TkError("no TFLite model schema installed to read its metadata: pip install ai-edge-litert")
    model = bytes(model)
    if len(model) < 8 or not _fb.Model.ModelBufferHasIdentifier(model, 0):
        raise TkError("not a TFLite model (no TFL3 identifier)")
    try:
        raw = _metadata_buffer(model)
    except Exception as exc:  # flatbuffers raises struct/index errors on a damaged file
        raise TkError(f"damaged TFLite flatbuffer ({type(exc).__name__}: {exc})") from None
    if raw is None:
        return None
    if len(raw) < 8 or not _md.ModelMetadata.ModelMetadataBufferHasIdentifier(raw, 0):
        raise TkError("the TFLITE_METADATA buffer is not a metadata flatbuffer (no M001)")
    meta = _md.ModelMetadataT.InitFromObj(_md.ModelMetadata.GetRootAs(raw, 0))
    try:
        with zipfile.ZipFile(io.BytesIO(model)) as zf:
            packed = {n: zf.read(n) for n in zf.namelist()}
    except zipfile.BadZipFile:
        packed = {}
    sub = (meta.subgraphMetadata or [None])[0]
    inputs = [_tensor_dict(t) for t in (sub.inputTensorMetadata or [])] if sub else []
    outputs = [_tensor_dict(t) for t in (sub.outputTensorMetadata or [])] if sub else []
    for out in outputs:
        names = [f["name"] for f in out["associated_files"] if f["type"] == "TENSOR_AXIS_LABELS"]
        if names and names[0] not in packed:
            raise TkError(f"the metadata names {names[0]}, but the model has no such packed file")
        out["labels"] = _label_lines(packed[names[0]]) if names else None
    recorded = [f for t in inputs + outputs for f in t["associated_files"]]
    recorded += [
        {"name": text(f.name), "type": _FILE_TYPES.get(f.type, str(f.type)), "description": text(f.description)}
        for f in meta.associatedFiles or []
    ]
    return {
        "name": text(meta.name),
        "description": text(meta.description),
        "version": text(meta.version),
        "author": text(meta.author),
        "license": text(meta.license),
        "min_parser_version": text(meta.minParserVersion),
        "input": inputs[0] if inputs else None,
        "output": outputs[0] if outputs else None,
        "associated_files": recorded,
        "packed_files": sorted(packed),
    }


def _metadata_buffer(model: bytes) -> bytes | None:
    root = _fb.Model.GetRootAs(model, 0)
    for i in range(root.MetadataLength()):
        if text(root.Metadata(i).Name()) == METADATA_NAME:
            data = root.Buffers(root.Metadata(i).Buffer()).DataAsNumpy()
            return data.tobytes() if hasattr(data, "tobytes") else b""
    return None


def _label_lines(data: bytes) -> list[str]:
    """A label file's lines (one class a line, in output order); trailing blank lines dropped."""
    lines = data.decode("utf-8", errors="replace").splitlines()
    while lines and not lines[-1].strip():
        lines.pop()
    return [line.strip() for line in lines]
