"""Keras -> SavedModel -> TFLite / ONNX conversion for `tk export`.

Keras 3 breaks the older entry points (`TFLiteConverter.from_keras_model` trips on save specs,
tf2onnx's `from_keras` on Sequential models), so everything goes through `model.export()` to a
SavedModel with an explicit input signature, and converts from there.
"""

from __future__ import annotations

from pathlib import Path
from typing import Callable, Iterable, Optional

import numpy as np


def export_saved_model(model, directory: Path) -> None:
    """A SavedModel with one `serve` signature taking a float32 image batch of any size."""
    import tensorflow as tf

    shape = [None, *model.inputs[0].shape[1:]]
    model.export(
        str(directory),
        format="tf_saved_model",
        verbose=False,
        input_signature=[tf.TensorSpec(shape, tf.float32, name="image")],
    )


def tflite_from_saved_model(
    saved_model: Path,
    quantize: str = "none",
    representative: Optional[Callable[[], Iterable[list[np.ndarray]]]] = None,
    int8_io: str = "uint8",
) -> bytes:
    """Convert a SavedModel to a TFLite flatbuffer.

    quantize: none (float32), float16 (float16 weights, float compute), dynamic (int8 weights,
    float activations quantized on the fly) or int8 (full integer, calibrated on
    `representative`, with int8/uint8 input and output).
    """
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    if quantize == "float16":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16]
    elif quantize == "dynamic":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    elif quantize == "int8":
        if representative is None:
            raise ValueError("int8 quantization needs representative data")
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        io_type = tf.uint8 if int8_io == "uint8" else tf.int8
        converter.inference_input_type = io_type
        converter.inference_output_type = io_type
    elif quantize != "none":
        raise ValueError(f"unknown quantization {quantize!r}")
    from ..core.quiet import silenced_stderr

    with silenced_stderr():  # the quantizer prints its settings to fd 2
        return converter.convert()


def onnx_from_saved_model(saved_model: Path, opset: int, signature: str = "serving_default"):
    """Convert a SavedModel signature to an ONNX ModelProto with a dynamic batch dimension.

    This is the path `python -m tf2onnx.convert --saved-model` takes (tf2onnx has no public
    Python entry point for SavedModels); tf2onnx's `from_keras` breaks on Keras 3 Sequential models.
    """
    from tf2onnx import tf_loader
    from tf2onnx.convert import _convert_common

    graph_def, inputs, outputs, tables, renames = tf_loader.from_saved_model(
        str(saved_model),
        None,
        None,
        tag="serve",
        signatures=[signature],
        return_initialized_tables=True,
        return_tensors_to_rename=True,
    )
    proto, _ = _convert_common(
        graph_def,
        name=Path(saved_model).name,
        opset=opset,
        input_names=inputs,
        output_names=outputs,
        tensors_to_rename=renames,
        initialized_tables=tables,
    )
    for value in (*proto.graph.input, *proto.graph.output):
        batch = value.type.tensor_type.shape.dim[0]
        if not batch.HasField("dim_value"):  # tf2onnx names it unk__N; say what it is
            batch.dim_param = "batch"
    return proto


def onnx_io(proto) -> dict[str, dict]:
    """{"input": {name, shape, dtype}, "output": {...}} of an ONNX model's first input and output,
    read from the graph (batch as None): the one place tk reads an ONNX model's I/O."""
    import onnx

    def describe(value) -> dict:
        tensor = value.type.tensor_type
        return {
            "name": value.name,
            "shape": [d.dim_value if d.HasField("dim_value") else None for d in tensor.shape.dim],
            "dtype": np.dtype(onnx.helper.tensor_dtype_to_np_dtype(tensor.elem_type)).name,
        }

    return {"input": describe(proto.graph.input[0]), "output": describe(proto.graph.output[0])}
