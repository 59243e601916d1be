"""A batch-1 copy of a .tflite file, for LiteRT.js.

tk's .tflite files have a dynamic batch dimension (shape_signature [-1, H, W, 3]); LiteRT.js refuses
to compile those. The copy is the same file with every tensor's leading -1 in shape_signature set
to 1, patched in place in the flatbuffer (same length, same metadata, same weights): nothing is
re-converted, so the copy computes what the original computes at batch 1. The model schema is the
one the LiteRT runtime ships (the base install's TFLite runtime), read through flatbuffers.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..core.errors import TkError

SUFFIX = ".b1.tflite"


def batch1_name(file: str) -> str:
    """model_int8.tflite -> model_int8.b1.tflite"""
    return file[: -len(".tflite")] + SUFFIX


def _schema():
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        raise TkError(
            "a batch-1 .tflite for LiteRT.js needs the TFLite model schema from ai-edge-litert: "
            "pip install ai-edge-litert (the base install has it on x86_64 and aarch64)"
        ) from None
    return schema


def batch1_bytes(data: bytes, name: str = "model") -> bytes:
    """The model with its dynamic batch dimension fixed to 1 (unchanged if it had none)."""
    schema = _schema()
    buf = bytearray(data)
    try:
        model = schema.Model.GetRootAs(buf, 0)
        patched = 0
        for s in range(model.SubgraphsLength()):
            graph = model.Subgraphs(s)
            for t in range(graph.TensorsLength()):
                # A writable view into buf: numpy.frombuffer over a bytearray.
                signature = graph.Tensors(t).ShapeSignatureAsNumpy()
                if isinstance(signature, np.ndarray) and signature.size and signature[0] == -1:
                    signature[0] = 1
                    patched += 1
    except (IndexError, ValueError, TypeError) as exc:
        raise TkError(f"{name}: not a readable .tflite flatbuffer ({exc}); re-run tk export") from None
    if bytes(buf[4:8]) != b"TFL3":
        raise TkError(f"{name}: not a .tflite file (no TFL3 identifier); re-run tk export")
    return bytes(buf)


def write_batch1(source: Path, target: Path) -> Path:
    target.write_bytes(batch1_bytes(Path(source).read_bytes(), str(source)))
    return target
