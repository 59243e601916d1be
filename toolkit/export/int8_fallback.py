"""int8 with float fallback: keep the most quantization-sensitive layers in float until a gate passes.

TFLite's QuantizationDebugger runs an instrumented int8 model (a NumericVerify op after every
quantized tensor, comparing it with the float value) over the calibration images and gives
per-layer error; its `denylisted_nodes` option re-quantizes the same calibrated model with those
layers left float (TFLite inserts DEQUANTIZE/QUANTIZE around them). Calibration runs once per
debugger, so a search over denylists costs one re-quantization per try, not one calibration.

The debugger's own quantizer ignores `inference_input_type`/`inference_output_type` (it calls
mlir_quantize without them), so its models have float32 I/O. tk's int8 has uint8/int8 I/O: the
I/O is converted afterwards with the same helper the TFLite converter uses for that
(tensorflow.lite.python.util.modify_model_io_type), which drops the edge QUANTIZE/DEQUANTIZE ops.
"""

from __future__ import annotations

import csv
import io
from pathlib import Path
from typing import Any, Callable, Iterable, Optional

import numpy as np

from ..core.errors import TkError
from ..edge.predictors import interpreter_class  # LiteRT: tf.lite.Interpreter is deprecated

Representative = Callable[[], Iterable[list[np.ndarray]]]


def _relative_error(float_value, quantized, scale, zero_point) -> float:
    """RMS int8 error over the float tensor's spread: how much of the signal the rounding is."""
    error = (quantized.astype(np.float64) - zero_point) * scale - float_value
    return float(np.sqrt(np.mean(error**2)) / (np.std(float_value.astype(np.float64)) + 1e-12))


def _debugger(saved_model: Path, representative: Representative, denylist: Optional[list[str]] = None):
    """A QuantizationDebugger on a converter set up as tk's int8 (converters.tflite_from_saved_model)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    converter.optimizations = [tf.lite.Optimize.DEFAULT]
    converter.representative_dataset = representative
    converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    # inference_input/output_type are not set: the debugger would ignore them (see the module doc).
    options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=denylist or None)
    return tf.lite.experimental.QuantizationDebugger(
        converter=converter, debug_dataset=representative, debug_options=options
    )


def _sensitivity(debugger, representative: Representative, metric: str = "relative") -> list[tuple[str, float]]:
    """(tensor name, score) per quantized layer, most sensitive first.

    "rmse/scale" (the TF quantization-debugger tutorial's measure) is the error in quantization
    steps: ~sqrt(1/12) = 0.29 for plain rounding, more where the range was clipped. It cannot rank
    layers whose error is plain rounding (all ~0.29), which is what a well-calibrated MobileNetV2
    shows. "relative" (default) is RMS error / the float tensor's std: the share of the signal
    lost, larger where a wide calibrated range leaves few steps for the typical value.
    """
    import tensorflow as tf

    if metric not in ("relative", "rmse/scale"):
        raise TkError(f"int8 fallback: sensitivity metric must be 'relative' or 'rmse/scale' (got {metric!r})")
    # The direct-compare metric needs every intermediate tensor kept: only a debugger built from
    # the debug model's bytes creates its interpreter with experimental_preserve_all_tensors (the
    # converter-built one reuses tensor memory, so float values read back would be garbage).
    instrumented = tf.lite.experimental.QuantizationDebugger(
        quant_debug_model_content=debugger.get_debug_quantized_model(),
        debug_dataset=representative,
        debug_options=tf.lite.experimental.QuantizationDebugOptions(
            layer_direct_compare_metrics={"relative_error": _relative_error}
        ),
    )
    instrumented.run()
    buffer = io.StringIO()
    instrumented.layer_statistics_dump(buffer)
    edges = _edge_tensors(debugger.get_nondebug_quantized_model())
    scores = {}
    for row in csv.DictReader(io.StringIO(buffer.getvalue())):
        if row["tensor_name"] in edges:
            continue
        scale = float(row["scale"])
        if metric == "relative":
            score = float(row["relative_error"])
        else:
            score = float(np.sqrt(float(row["mean_squared_error"])) / scale) if scale > 0 else float("inf")
        scores[row["tensor_name"]] = max(score, scores.get(row["tensor_name"], -1.0))
    return sorted(scores.items(), key=lambda item: -item[1])


def _edge_tensors(model: bytes) -> set[str]:
    """Outputs of the first quantized ops (fed by the input QUANTIZE) and the tensor the output
    DEQUANTIZE reads. They stay int8: left float, the edge QUANTIZE/DEQUANTIZE moves inside the
    graph and modify_model_io_type can no longer give uint8/int8 I/O (tk's int8 contract)."""
    interp = interpreter_class()(model_content=model)
    names = {t["index"]: t["name"] for t in interp.get_tensor_details()}
    inputs = {d["index"] for d in interp.get_input_details()}
    outputs = {d["index"] for d in interp.get_output_details()}
    ops = interp._get_ops_details()  # no public op-graph API; the debugger itself relies on it
    quantized_inputs = {
        t for op in ops if op["op_name"] == "QUANTIZE" and set(op["inputs"]) & inputs for t in op["outputs"]
    }
    edges = {t for op in ops if set(op["inputs"]) & quantized_inputs for t in op["outputs"]}
    edges |= {t for op in ops if op["op_name"] == "DEQUANTIZE" and set(op["outputs"]) & outputs for t in op["inputs"]}
    # The debug model names the last quantized tensor like the model output: exclude those names too.
    return {names[t] for t in edges | inputs | outputs if t in names}


def _quantized(debugger, denylist: list[str], int8_io: str) -> bytes:
    import tensorflow as tf
    from tensorflow.lite.python.util import modify_model_io_type

    if list(debugger.options.denylisted_nodes or []) != list(denylist):
        # the options setter re-quantizes the already calibrated model (no new calibration)
        debugger.options = tf.lite.experimental.QuantizationDebugOptions(denylisted_nodes=list(denylist))
    model = debugger.get_nondebug_quantized_model()
    io_type = {"uint8": tf.uint8, "int8": tf.int8}.get(int8_io)
    if io_type is None:
        raise TkError(f"int8 fallback: int8_io must be 'uint8' or 'int8' (got {int8_io!r})")
    model = bytes(modify_model_io_type(model, io_type, io_type))
    details = interpreter_class()(model_content=model)
    dtypes = {np.dtype(d["dtype"]).name for d in (*details.get_input_details(), *details.get_output_details())}
    if dtypes != {int8_io}:  # a denylisted input/output layer: the I/O would silently stay float
        raise TkError(
            f"int8 fallback: the model's input/output would be {', '.join(sorted(dtypes))}, not "
            f"{int8_io}; do not keep the first or last layer in float ({', '.join(denylist)})"
        )
    return model


def layer_sensitivity(
    saved_model: Path, representative: Representative, int8_io: str = "uint8", metric: str = "relative"
) -> list[tuple[str, float]]:
    """Per-layer int8 error as (tensor name usable in a denylist, score), worst first (see _sensitivity).

    int8_io does not change the ranking (the debugger runs float-I/O models); it is accepted so
    every function here takes tk's int8 settings the same way.
    """
    return _sensitivity(_debugger(saved_model, representative), representative, metric)


def int8_with_float_layers(
    saved_model: Path, representative: Representative, int8_io: str, denylist: list[str]
) -> bytes:
    """tk's int8 TFLite model with the layers producing the tensors in `denylist` kept in float."""
    return _quantized(_debugger(saved_model, representative, denylist), denylist, int8_io)


def search(
    saved_model: Path,
    representative: Representative,
    int8_io: str,
    passes: Callable[[bytes], tuple[bool, dict]],
    max_size_bytes: Optional[int] = None,
    max_float_layers: Optional[int] = None,
    metric: str = "relative",
) -> dict[str, Any]:
    """Keep the k most sensitive layers float, k = 0, 1, 2, 4, 8, ..., until `passes(model)` is True.

    Stops early when the next model would exceed max_size_bytes or max_float_layers (the last
    model within budget is returned, with passed False). Doubling k needs O(log layers) tries,
    each a re-quantization plus whatever `passes` costs (usually running the test split).
    `passes` returns (ok, details); details (e.g. {"agreement": 0.97}) go into each "tried" entry.
    """
    debugger = _debugger(saved_model, representative)
    ranked = [name for name, _ in _sensitivity(debugger, representative, metric)]
    limit = len(ranked) if max_float_layers is None else min(max_float_layers, len(ranked))
    tried: list[dict[str, Any]] = []
    best: Optional[dict[str, Any]] = None
    k = 0
    while True:
        denylist = ranked[:k]
        model = _quantized(debugger, denylist, int8_io)
        if max_size_bytes is not None and len(model) > max_size_bytes and best is not None:
            tried.append({"float_layers": k, "size_bytes": len(model), "over_size_budget": True})
            break
        ok, details = passes(model)
        tried.append({"float_layers": k, "size_bytes": len(model), "passed": bool(ok), **details})
        best = {"model": model, "float_layers": denylist, "passed": bool(ok)}
        if ok or k >= limit:
            break
        k = min(limit, max(1, 2 * k))
    return {**best, "ranked": ranked, "tried": tried}
