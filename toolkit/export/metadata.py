"""TFLite Model Metadata for tk's image classifiers (the official metadata_schema.fbs).

Writes what tflite_support's MetadataPopulator / MediaPipe's metadata writer would write for an
image classifier, without either package (tflite-support pins protobuf < 4, which cannot live
beside TensorFlow 2.21; mediapipe is ~650 MB): the model is unpacked with the flatc-generated
object API, a "TFLITE_METADATA" entry points at a buffer holding the ModelMetadata flatbuffer
(identifier "M001"), the model is repacked (identifier "TFL3") and labels.txt is appended as a
zip archive, as the populator does (zip offsets count from the start of the file, so both the
flatbuffer parsers, which ignore trailing bytes, and zip readers, which read from the end, work).
MediaPipe Tasks' ImageClassifier then loads the file: float inputs need NormalizationOptions
(tk's models take 0..255 pixels, so mean 0 and std 1), uint8 inputs take the pixels as they are.
"""

from __future__ import annotations

import io
import zipfile

import flatbuffers
import numpy as np

from ..core.errors import TkError
from ..edge.tflite_metadata import LABEL_FILE, METADATA_IDENTIFIER, METADATA_NAME, MODEL_IDENTIFIER, text
from ..edge.vendor import metadata_schema_py_generated as _md

try:  # the TFLite model schema, as the runtime that runs tk's files ships it (the newest one)
    from ai_edge_litert import schema_py_generated as _fb
except ImportError:  # pragma: no cover - LiteRT has no wheel here; TensorFlow (export needs it) has a copy
    from tensorflow.lite.python import schema_py_generated as _fb

# GetMinimumMetadataParserVersion (tflite-support metadata_version.cc) gives 1.0.0 for what is
# written here: no subgraph-level process units, tensor groups, tokenizers, audio, vocabulary,
# associated-file versions or custom metadata (each of those would raise it to 1.1.0 .. 1.5.0).
MIN_PARSER_VERSION = "1.0.0"
_ZIP_TIME = (1980, 1, 1, 0, 0, 0)  # fixed, so that the same inputs give the same bytes
_TYPES = {
    _fb.TensorType.FLOAT32: "float32",
    _fb.TensorType.FLOAT16: "float16",
    _fb.TensorType.UINT8: "uint8",
    _fb.TensorType.INT8: "int8",
}


class _AlignedBuilder(flatbuffers.Builder):
    """Starts each large byte vector (the weights) on a 16-byte boundary, like the converter's
    force_align: 16 on Buffer.data; the generated Pack would align them to 1 byte only."""

    def CreateNumpyVector(self, x):
        if x.dtype == np.uint8 and x.size >= 16:
            self.Prep(16, x.size)
        return super().CreateNumpyVector(x)


def _tensor(model, subgraph, index: int):
    return model.subgraphs[0].tensors[subgraph[index]]


def _stats(lo: float, hi: float):
    stats = _md.StatsT()
    stats.min, stats.max = [float(lo)], [float(hi)]
    return stats


def _normalization_unit(mean: list[float], std: list[float]):
    norm = _md.ProcessUnitT()
    norm.optionsType = _md.ProcessUnitOptions.NormalizationOptions
    norm.options = _md.NormalizationOptionsT()
    norm.options.mean, norm.options.std = [float(v) for v in mean], [float(v) for v in std]
    return norm


def _input_md(input_dtype: str, quantization: dict | None, normalization: tuple | None = None):
    md = _md.TensorMetadataT()
    md.name = "image"
    md.content = _md.ContentT()
    md.content.contentPropertiesType = _md.ContentProperties.ImageProperties
    md.content.contentProperties = _md.ImagePropertiesT()
    md.content.contentProperties.colorSpace = _md.ColorSpaceType.RGB
    if normalization is not None:  # another writer's convention (MediaPipe Model Maker: 127.5, 127.5)
        md.description = "RGB image; float inputs take (pixel - mean) / std, uint8 inputs the pixel."
        md.processUnits = [_normalization_unit(*normalization)]
    elif input_dtype in ("float32", "float16"):
        md.description = "RGB image, pixel values 0..255 (the model rescales them itself)."
        md.processUnits = [_normalization_unit([0.0] * 3, [1.0] * 3)]
        md.stats = _stats(0, 255)
    else:
        if not quantization or "scale" not in quantization or "zero_point" not in quantization:
            raise TkError(f"a {input_dtype} input needs input_quantization {{scale, zero_point}}")
        scale, zero = float(quantization["scale"]), int(quantization["zero_point"])
        lim = np.iinfo(input_dtype)
        lo, hi = (float(np.clip(round(p / scale + zero), lim.min, lim.max)) for p in (0, 255))
        md.description = (
            f"RGB image, {input_dtype}: pixel = {scale:g} * (q - {zero}), "
            "pixel values 0..255 (the model rescales them itself)."
        )
        md.stats = _stats(lo, hi)
    return md


def _output_md():
    md = _md.TensorMetadataT()
    md.name, md.description = "probability", "Probabilities of the classes, in labels.txt order."
    md.content = _md.ContentT()
    md.content.contentPropertiesType = _md.ContentProperties.FeatureProperties
    md.content.contentProperties = _md.FeaturePropertiesT()
    md.stats = _stats(0, 1)
    labels = _md.AssociatedFileT()
    labels.name, labels.type = LABEL_FILE, _md.AssociatedFileType.TENSOR_AXIS_LABELS
    labels.description = "Class names, one a line, in the order of the output."
    md.associatedFiles = [labels]
    return md


def add_metadata(
    model: bytes,
    *,
    name: str,
    description: str,
    version: str,
    author: str,
    labels: list[str],
    input_dtype: str,
    input_quantization: dict | None,
    license: str | None = None,
    normalization: tuple[list[float], list[float]] | None = None,
) -> bytes:
    """`model` (a .tflite, with or without metadata) with tk's metadata and labels.txt packed.

    normalization: (mean, std) for a model that does not take 0..255 pixels (tk's own do; the
    tests write MediaPipe Model Maker's layout with it)."""
    model = bytes(model)
    if not _fb.Model.ModelBufferHasIdentifier(model, 0):
        raise TkError("not a TFLite model (no TFL3 identifier)")
    m = _fb.ModelT.InitFromObj(_fb.Model.GetRootAs(model, 0))
    if len(m.subgraphs or []) != 1:
        raise TkError(f"expected one subgraph, the model has {len(m.subgraphs or [])}")
    graph = m.subgraphs[0]
    if len(graph.inputs) != 1 or len(graph.outputs) != 1:
        raise TkError("expected one input (the image) and one output (the probabilities)")
    if any((b.offset or 0) > 1 for b in m.buffers or []):
        raise TkError("the model keeps its weights outside the flatbuffer (> 2 GB), not supported")
    image, probs = _tensor(m, graph.inputs, 0), _tensor(m, graph.outputs, 0)
    actual = _TYPES.get(image.type, str(image.type))
    if actual != input_dtype:
        raise TkError(f"input_dtype {input_dtype!r}, but the model's input is {actual}")
    if len(image.shape) != 4 or image.shape[-1] != 3:
        raise TkError(f"expected an NHWC RGB image input, the model's is {list(image.shape)}")
    labels = [str(x) for x in labels]
    if any(not x.strip() or "\n" in x or "\r" in x for x in labels):
        raise TkError("labels must be non-empty single lines")
    if not labels or probs.shape[-1] != len(labels):
        raise TkError(f"{len(labels)} labels for {probs.shape[-1]} model outputs")

    meta = _md.ModelMetadataT()
    meta.name, meta.description, meta.version, meta.author = name, description, version, author
    meta.license = license
    meta.minParserVersion = MIN_PARSER_VERSION
    sub = _md.SubGraphMetadataT()
    sub.name = "image_classifier"
    sub.inputTensorMetadata = [_input_md(input_dtype, input_quantization, normalization)]
    sub.outputTensorMetadata = [_output_md()]
    meta.subgraphMetadata = [sub]
    b = flatbuffers.Builder(1024)
    b.Finish(meta.Pack(b), METADATA_IDENTIFIER)
    buffer = _fb.BufferT()
    buffer.data = np.frombuffer(bytes(b.Output()), dtype=np.uint8)

    m.buffers = m.buffers or []
    m.metadata = m.metadata or []
    entry = next((e for e in m.metadata if text(e.name) == METADATA_NAME), None)
    if entry is None:  # as MetadataPopulator: a new buffer; otherwise reuse the old one's index
        m.buffers.append(buffer)
        entry = _fb.MetadataT()
        entry.name, entry.buffer = METADATA_NAME, len(m.buffers) - 1
        m.metadata.append(entry)
    else:
        m.buffers[entry.buffer] = buffer
    b = _AlignedBuilder(max(1024, len(model) + 4096))
    b.Finish(m.Pack(b), MODEL_IDENTIFIER)

    out = io.BytesIO()
    out.write(b.Output())  # the repacked flatbuffer ends before any zip the input had
    with zipfile.ZipFile(out, "a") as zf:  # appending to a non-zip: offsets from file start
        zf.writestr(zipfile.ZipInfo(LABEL_FILE, _ZIP_TIME), "\n".join(labels) + "\n")
    return out.getvalue()
