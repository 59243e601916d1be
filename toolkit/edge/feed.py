"""What a runtime is fed: the batch size per runtime and quantization, and integer input made in place.

PREDICT_BATCH is measured, not guessed (benchmarks/BENCHMARKS.md, "Throughput over many images";
benchmarks/predict_throughput.py). MobileNetV2 at 224 px, 200 JPEGs, whole `tk predict` processes
on the 2-core AVX-512 VM, batch B against batch 1 (CPU seconds, peak RSS): int8 TFLite at 4 cost
0.91x the CPU for +9 MiB (at 8: 0.87x but +21 MiB); fp32 TFLite at 4 0.96x for +24 MiB; ONNX
Runtime at 4 1.08x (fp32, +39 MiB) and 0.96x (int8, +16 MiB); OpenVINO at 4 0.83x (fp32, +30
MiB; a workstation runtime, not a Pi's) and 0.83x (int8, +12 MiB). Batch 32 cost more per image than
batch 1 in every runtime (1.09x fp32 TFLite, in one process) and TFLite took 0.5-1 s to re-plan
for it. A batch holds every image's activations at once, and a device has little memory: batch 1
unless a larger one saves real CPU for a few MiB. A runtime or quantization the table does not
name runs at batch 1.

quantize_into is the TFLite input's quantization with no temporaries (the old expression made four
full-size float arrays per batch): divide, add, round and clip in one float32 scratch buffer, then
one cast into the input buffer. It gives the values of `quantize` exactly (tests/edge/test_feed.py).
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

# (predictor kind, the manifest's quantization or "any") -> images per runtime call when predicting many.
PREDICT_BATCH: dict[tuple[str, str], int] = {
    ("tflite", "none"): 1,
    ("tflite", "int8"): 4,
    ("onnx", "none"): 1,
    ("onnx", "int8"): 1,
    ("openvino", "none"): 4,
    ("openvino", "int8"): 4,
    # TensorFlow's references on the workstation (verify's Keras and SavedModel): batched, as before.
    ("keras", "any"): 32,
    ("savedmodel", "any"): 32,
}
DEFAULT_BATCH = 1

# A raw uint8 input takes the pixel itself: quantization with scale 1 and zero-point 0.
PIXELS = {"dtype": np.uint8, "quantization": (1.0, 0)}


def predict_batch(kind: str, quantization: Optional[str]) -> int:
    """Images per call for this runtime and quantization (PREDICT_BATCH; DEFAULT_BATCH otherwise)."""
    exact = PREDICT_BATCH.get((kind, quantization or "none"))
    return exact or PREDICT_BATCH.get((kind, "any"), DEFAULT_BATCH)


def quantize_into(
    x: np.ndarray, detail: dict[str, Any], out: np.ndarray, scratch: Optional[np.ndarray] = None
) -> np.ndarray:
    """`x` (float32 pixels) as the input `detail` describes, written into `out` (same shape);
    `scratch` (float32, same shape) is the one work buffer, allocated here when not given."""
    dtype = np.dtype(detail["dtype"])
    if dtype == np.float32:
        np.copyto(out, x, casting="same_kind")
        return out
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    work = np.empty(x.shape, np.float32) if scratch is None else scratch
    np.divide(x, scale, out=work)  # faster than a copy even when scale is 1
    if zero_point != 0:
        np.add(work, zero_point, out=work)
    np.rint(work, out=work)  # np.round's rounding: half to even
    np.clip(work, info.min, info.max, out=work)
    np.copyto(out, work, casting="unsafe")  # what astype(dtype) does, into the buffer
    return out


def quantize(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    """quantize_into a new array (float32 input: `x` itself, no copy)."""
    if np.dtype(detail["dtype"]) == np.float32:
        return x.astype(np.float32, copy=False)
    return quantize_into(x, detail, np.empty(x.shape, detail["dtype"]))


def pixels_uint8(x: np.ndarray) -> np.ndarray:
    """0..255 pixels as uint8 (load_image decoded them from uint8, so rounding restores them exactly)."""
    return quantize(x, PIXELS)


def dequantize(q: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return q.astype(np.float32, copy=True)
    scale, zero_point = detail["quantization"]
    return ((q.astype(np.float32) - zero_point) * scale).astype(np.float32)
