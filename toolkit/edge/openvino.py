"""The OpenVINO IR predictor: model_*.xml (the graph) + model_*.bin (the weights) on OpenVINO's CPU plugin.

Imported only when an IR is opened (core/formats names it as a "module:Class" path), so the base
install needs no OpenVINO; the [openvino] extra adds it.

Precision: left to itself, OpenVINO runs the float ops of any IR in bf16 on CPUs with AVX512-BF16 or
AMX, which the float32 gate (max diff 1e-4) cannot pass: on the photo model of BENCHMARKS.md bf16
moved probabilities by 0.095 and agreed on 84% of the test images. So tk asks for f32
(INFERENCE_PRECISION_HINT), and the artifact that was verified is the computation that runs; int8 IRs
still run their quantized ops in int8. TK_OPENVINO_PRECISION=bf16 (or f16, or auto: OpenVINO's own
choice) measures the other precision; verify then judges that run by the artifact's own limits, so
it fails closed where bf16 drifts. What OpenVINO actually ran is read back from the compiled model,
with its thread count, and bench records both in every row.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..core.errors import TkError
from .feed import pixels_uint8
from .predictors import Predictor

EXTRA = "pip install 'tk-edge[openvino]'"
PRECISION_ENV = "TK_OPENVINO_PRECISION"
PRECISIONS = ("f32", "bf16", "f16", "auto")


def precision_hint() -> str:
    value = os.environ.get(PRECISION_ENV, "f32").strip().lower() or "f32"
    if value not in PRECISIONS:
        raise TkError(f"{PRECISION_ENV}: must be one of {', '.join(PRECISIONS)} (got {value!r})")
    return value


def import_openvino():
    """openvino, or one line naming the extra. Its telemetry is never loaded: openvino and NNCF fall
    back to their own no-op stubs when `openvino_telemetry` cannot be imported, and without a consent
    file the real one counts as consent (it would try to send usage events on every conversion)."""
    sys.modules.setdefault("openvino_telemetry", None)  # None in sys.modules: import raises ImportError
    try:
        import openvino
    except ImportError:
        raise TkError(f"OpenVINO is not installed, so .xml (OpenVINO IR) models cannot run here: {EXTRA}") from None
    return openvino


def read_ir(path: Path):
    """The IR's ov.Model, with a missing or truncated .bin (or a damaged .xml) as one line."""
    ov = import_openvino()
    path = Path(path)
    weights = path.with_suffix(".bin")
    if not weights.is_file():
        raise TkError(
            f"{weights}: missing; an OpenVINO IR is {path.name} + {weights.name} (the weights): copy both, "
            "or re-run tk export --format openvino"
        )
    try:
        return ov.Core().read_model(str(path), str(weights))
    except RuntimeError as exc:  # OpenVINO raises RuntimeError for a bad .xml or a short .bin alike
        first = next((line.strip() for line in str(exc).splitlines() if line.strip()), "")
        raise TkError(
            f"{path}: not a valid OpenVINO IR ({weights.name} truncated or from another export, or the .xml "
            f"damaged: {first[:200]}); re-run tk export --format openvino"
        ) from None


def compile_config(threads: int) -> dict[str, Any]:
    """LATENCY: one stream, every thread on one request (batch-1 inference, what a device does); the
    precision tk asks for (precision_hint)."""
    config: dict[str, Any] = {"PERFORMANCE_HINT": "LATENCY", "INFERENCE_NUM_THREADS": threads}
    if precision_hint() != "auto":
        config["INFERENCE_PRECISION_HINT"] = precision_hint()
    return config


class OpenVINOPredictor(Predictor):
    kind = "openvino"

    def __init__(self, path: Path, manifest: dict[str, Any], num_threads: Optional[int] = None):
        super().__init__(path, manifest)
        ov = import_openvino()
        model = read_ir(path)
        if len(model.inputs) != 1:
            raise TkError(f"{path}: model has {len(model.inputs)} inputs; tk runs classifiers with one image input")
        shape = model.inputs[0].get_partial_shape()
        self._check_input([d.get_length() if d.is_static else None for d in shape])
        outputs = model.outputs
        out_shape = [d.get_length() if d.is_static else None for d in outputs[0].get_partial_shape()]
        self._check_outputs(len(outputs), out_shape)
        self.threads = num_threads or os.cpu_count() or 1
        try:
            self.compiled = ov.Core().compile_model(model, "CPU", compile_config(self.threads))
        except RuntimeError as exc:
            raise TkError(
                f"{path}: OpenVINO cannot compile this IR for the CPU: {str(exc).splitlines()[0][:200]}"
            ) from None
        self.request = self.compiled.create_infer_request()
        self.input_type = model.inputs[0].get_element_type().get_type_name()  # "f32", or "u8" for raw pixels

    def runtime_info(self) -> dict[str, Any]:
        """What OpenVINO actually ran with: precision (f32, bf16, f16) and threads, read from the compiled model."""
        import openvino

        precision = self.compiled.get_property("INFERENCE_PRECISION_HINT")
        return {
            "runtime": "openvino",
            "version": openvino.get_version().split("-")[0],
            "device": "CPU",
            "inference_precision": getattr(precision, "get_type_name", lambda: str(precision))(),
            "threads": int(self.compiled.get_property("INFERENCE_NUM_THREADS")),
        }

    def predict(self, images: np.ndarray) -> np.ndarray:
        if self.input_type == "u8":
            pixels = pixels_uint8(images)
        else:
            pixels = images.astype(np.float32, copy=False)
        self.request.infer({0: pixels})
        probs = np.array(self.request.get_output_tensor(0).data, dtype=np.float32, copy=True)
        self._check_classes(probs.shape)
        return probs
