"""Keras -> SavedModel -> TFLite / ONNX conversion for `tk export`.

Keras 3 breaks the older entry points (`TFLiteConverter.from_keras_model` trips on save specs,
tf2onnx's `from_keras` on Sequential models), so everything goes through `model.export()` to a
SavedModel with an explicit input signature, and converts from there. The four TFLite quantizations
share one converter and one float32 conversion (TFLiteConversions): nothing is loaded or converted
twice.
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
    """Convert a SavedModel to a TFLite flatbuffer (one quantization; TFLiteConversions for several).

    quantize: none (float32), float16 (float16 weights, float compute), dynamic (int8 weights,
    float activations quantized on the fly) or int8 (full integer, calibrated on
    `representative`, with int8/uint8 input and output).
    """
    return TFLiteConversions(saved_model).convert(quantize, representative, int8_io)


class TFLiteConversions:
    """Every TFLite quantization of one SavedModel, with no conversion done twice.

    A fresh TFLiteConverter per quantization loads the SavedModel and converts its graph each
    time. Here one converter loads it once; float16 and dynamic-range still convert the graph
    (their quantization happens inside the MLIR conversion), and int8 converts nothing: it
    calibrates and quantizes the float32 flatbuffer, which is what TFLiteConverter itself does
    after its float conversion (int8_from_float). Each result is kept, so the int8 fallback and
    budget searches reuse the writers' float32 and plain int8.
    """

    def __init__(self, saved_model: Path):
        self.saved_model = Path(saved_model)
        self._converter = None
        self._done: dict[str, bytes] = {}

    def convert(
        self,
        quantize: str,
        representative: Optional[Callable[[], Iterable[list[np.ndarray]]]] = None,
        int8_io: str = "uint8",
    ) -> bytes:
        if quantize not in ("none", "float16", "dynamic", "int8"):
            raise ValueError(f"unknown quantization {quantize!r}")
        key = f"int8-{int8_io}" if quantize == "int8" else quantize
        if key not in self._done:
            if quantize == "int8":
                if representative is None:
                    raise ValueError("int8 quantization needs representative data")
                self._done[key] = int8_from_float(self.convert("none"), representative, int8_io)
            else:
                self._done[key] = self._convert_graph(quantize)
        return self._done[key]

    def _convert_graph(self, quantize: str) -> bytes:
        import tensorflow as tf

        from ..core.quiet import silenced_stderr

        if self._converter is None:
            self._converter = tf.lite.TFLiteConverter.from_saved_model(str(self.saved_model))
        converter = self._converter
        # Every option a previous quantization set is reset: the converter is reused.
        converter.optimizations = [] if quantize == "none" else [tf.lite.Optimize.DEFAULT]
        converter.target_spec.supported_types = [tf.float16] if quantize == "float16" else []
        with silenced_stderr():  # the quantizer prints its settings to fd 2
            return converter.convert()


def int8_from_float(
    float_model: bytes, representative: Callable[[], Iterable[list[np.ndarray]]], int8_io: str = "uint8"
) -> bytes:
    """The full-integer model of a float32 flatbuffer: calibrated on `representative`, int8/uint8 I/O.

    TensorFlow-internal (TF 2.21 lite.py, TFLiteConverterBaseV2._quantize with the default MLIR
    quantizer, then _optimize_tflite_model): what `convert()` runs after converting the graph to
    float for int8, so the result has the same operators, tensors and quantization parameters as
    a converter's int8 without converting the graph again. tests/export/test_tflite_once.py
    compares the two and fails when TensorFlow changes these functions.
    """
    import tensorflow as tf
    from tensorflow.lite.python.convert import deduplicate_readonly_buffers, mlir_quantize
    from tensorflow.lite.python.optimize.calibrator import Calibrator, add_intermediate_tensors

    from ..core.quiet import silenced_stderr

    io_type = tf.uint8 if int8_io == "uint8" else tf.int8
    with silenced_stderr():  # the quantizer prints its settings to fd 2
        calibrated = Calibrator(add_intermediate_tensors(float_model)).calibrate(representative)
        quantized = mlir_quantize(calibrated, input_data_type=io_type, output_data_type=io_type)
    return _marked_full_integer(deduplicate_readonly_buffers(quantized))


def _marked_full_integer(model: bytes) -> bytes:
    """The model with its CONVERSION_METADATA naming full-integer quantization, as a converter's
    int8 does (it was copied from the float32 model it was quantized from)."""
    import flatbuffers
    from tensorflow.lite.python import conversion_metadata_schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    model_object = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    for entry in model_object.metadata or []:
        if entry.name == b"CONVERSION_METADATA":
            buffer = model_object.buffers[entry.buffer]
            metadata = schema.ConversionMetadataT.InitFromPackedBuf(bytes(buffer.data), 0)
            metadata.options.modelOptimizationModes = [schema.ModelOptimizationMode.PTQ_FULL_INTEGER]
            builder = flatbuffers.Builder(128)
            builder.Finish(metadata.Pack(builder))
            buffer.data = np.frombuffer(bytes(builder.Output()), dtype=np.uint8)
    return bytes(flatbuffer_utils.convert_object_to_bytearray(model_object))


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
