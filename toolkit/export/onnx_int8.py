"""Static int8 quantization of tk's float32 ONNX export (onnxruntime QDQ), calibrated on training images.

The float model takes float32 0..255 NHWC images with a dynamic 'batch' dimension; the quantized
model keeps float32 input and output (QuantizeLinear/DequantizeLinear at the edges), so the same
predictor code runs both. QDQ is the format onnxruntime's CPU kernels are optimized for, and any
onnxruntime build (x86, aarch64, mobile) loads it: it uses only standard ONNX ops.
"""

from __future__ import annotations

import contextlib
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..core.errors import TkError
from ..core.quiet import prints_dropped_on_this_thread
from .converters import onnx_io

# Most images per calibration inference: small batches bound the activations held per call
# without paying a call per image.
CALIBRATION_BATCH = 8
# Most images whose activations the calibrator holds at once. onnxruntime's calibrators keep every
# intermediate tensor of every image they are given before reducing them to ranges (MobileNetV2 224:
# ~30 MB an image, copied once more to merge: 200 images took over 13 GB and were OOM-killed), so
# tk hands them the images in strides (quantize_static's CalibStridedMinMax, which every calibrator
# honours: each stride's histograms or ranges are merged into the last's).
CALIBRATION_STRIDE_IMAGES = 32


def quantize_onnx_int8(
    float_model: Path,
    calibration: np.ndarray,
    out: Path,
    per_channel: bool = True,
    activations: str = "uint8",
    method: str = "Percentile",
    nodes_to_exclude: Sequence[str] = (),
    work: Optional[Path] = None,
) -> dict[str, Any]:
    """Write `out`, an int8 QDQ copy of `float_model` calibrated on `calibration` (N,H,W,C float32 0..255).

    activations: "uint8" (default: asymmetric, so ReLU6 outputs use all 256 levels; fastest on x86
    with VNNI: VNNI multiplies unsigned x signed bytes, so int8 activations take a slower path;
    1.7x slower here) or "int8" (symmetric, the usual choice for ARM).
    method: "Percentile" (default: clips the 0.001% tails of each activation range, so one outlier
    image does not waste int8 steps; better parity than MinMax on both models measured in
    benchmarks/BENCHMARKS.md, at ~10x calibration time), "MinMax" or "Entropy".
    nodes_to_exclude: nodes of the prepared model (prepared_model()) left float, their inputs
    dequantized (the int8 budget's search, export/int8_budget.py).
    work: a folder kept between calls: the prepared model and the calibrated ranges are made once
    there and reused, so each try of a search costs one quantization, not one calibration.
    Returns the manifest fields (quantization, input, output).
    """
    import onnx
    from onnxruntime.quantization import CalibrationMethod, QuantFormat, QuantType, quantize_static

    _check_calibration(calibration)
    act_type = {"uint8": QuantType.QUInt8, "int8": QuantType.QInt8}.get(activations)
    if act_type is None:
        raise TkError(f"onnx int8: activations must be 'uint8' or 'int8' (got {activations!r})")
    if method not in ("MinMax", "Percentile", "Entropy"):
        raise TkError(f"onnx int8: calibration method must be MinMax, Percentile or Entropy (got {method!r})")
    proto = onnx.load(str(float_model))
    input_name = proto.graph.input[0].name
    with contextlib.ExitStack() as stack:
        folder = Path(work) if work else Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="tk-onnx-int8-")))
        folder.mkdir(parents=True, exist_ok=True)
        prepared = prepared_model(float_model, folder)
        # The Percentile/Entropy calibrators print their progress; only tk's CLI talks to the user.
        with prints_dropped_on_this_thread():  # it may run beside the CLI's output (ExportJob)
            reader = _Reader(input_name, calibration)
            quantize_static(
                str(prepared),
                str(out),
                reader,
                quant_format=QuantFormat.QDQ,
                per_channel=per_channel,
                reduce_range=False,
                activation_type=act_type,
                weight_type=QuantType.QInt8,
                calibrate_method=getattr(CalibrationMethod, method),
                nodes_to_exclude=list(nodes_to_exclude),
                calibration_cache_path=str(folder / f"ranges-{method}.json") if work else None,
                extra_options={"CalibStridedMinMax": reader.stride},
            )
    quantized = onnx.load(str(out))
    # quant_pre_process saves through onnxruntime, which declares all its private op domains
    # (com.microsoft.nchwc, ...); no node uses them. Drop them so other runtimes see plain ONNX.
    used = {node.domain for node in quantized.graph.node} | {""}
    kept = [o for o in quantized.opset_import if o.domain in used]
    del quantized.opset_import[:]
    quantized.opset_import.extend(kept)
    onnx.checker.check_model(quantized)
    onnx.save(quantized, str(out))
    return {
        "quantization": {
            "format": "QDQ",
            "weights": "int8 per-channel" if per_channel else "int8 per-tensor",
            "activations": activations,
            "calibration_method": method,
            "calibration_samples": int(len(calibration)),
        },
        **onnx_io(quantized),
    }


def prepared_model(float_model: Path, folder: Path) -> Path:
    """The float model as the quantizer sees it (its node names are the ones nodes_to_exclude takes).

    Shape inference + graph optimization (BatchNorm folding etc.) first, as onnxruntime recommends:
    the quantizer needs shapes on every tensor to place Q/DQ pairs correctly. ONNX's own shape
    inference suffices for an image classifier (only the batch is dynamic); the symbolic pass would
    need sympy, which tk does not depend on. Made once per folder.
    """
    from onnxruntime.quantization.shape_inference import quant_pre_process

    prepared = Path(folder) / "prepared.onnx"
    if not prepared.is_file():
        quant_pre_process(str(float_model), str(prepared), skip_symbolic_shape=True)
    return prepared


def _check_calibration(calibration: Any) -> None:
    ok = isinstance(calibration, np.ndarray) and calibration.ndim == 4 and len(calibration) > 0
    if not ok or not np.issubdtype(calibration.dtype, np.floating):
        shape = getattr(calibration, "shape", None)
        raise TkError(
            f"onnx int8: calibration must be a non-empty (N, H, W, C) float array of images "
            f"(got {type(calibration).__name__} {shape})"
        )


class _Reader:  # duck-typed: CalibrationDataReader accepts any object with get_next()
    """Calibration data reader over an image array, CALIBRATION_BATCH images per inference."""

    def __init__(self, input_name: str, images: np.ndarray):
        self.input_name, self.images = input_name, images.astype(np.float32, copy=False)
        # Equal batches only: the Percentile/Entropy collectors np.asarray() the per-batch outputs
        # and fail on a short last batch (onnxruntime 1.32, "inhomogeneous shape").
        self.batch = max(b for b in range(1, CALIBRATION_BATCH + 1) if len(images) % b == 0)
        # Batches per stride: a divisor of the batch count (quantize_static requires it).
        batches = len(images) // self.batch
        most = max(1, CALIBRATION_STRIDE_IMAGES // self.batch)
        self.stride = max(s for s in range(1, most + 1) if batches % s == 0)
        self.start, self.end = 0, len(images)

    def set_range(self, start_index: int, end_index: int) -> None:
        """The batches [start_index, end_index) next (quantize_static's strided calibration)."""
        self.start, self.end = start_index * self.batch, min(end_index * self.batch, len(self.images))

    def get_next(self) -> Optional[dict[str, np.ndarray]]:
        if self.start >= self.end:
            return None
        chunk = self.images[self.start : self.start + self.batch]
        self.start += self.batch
        return {self.input_name: chunk}

    def __len__(self) -> int:
        return -(-len(self.images) // self.batch)

    def __iter__(self):  # qdq_loss_debug.collect_activations iterates where quantize_static calls get_next
        return iter(self.get_next, None)
