"""TFLite conversions of one export: the SavedModel loaded once, each graph conversion done once, int8
derived from the float32 flatbuffer (converters.TFLiteConversions, int8_from_float), and ONNX
Runtime's int8 prefetched beside them (ExportJob.prefetch_onnx_int8).

int8_from_float uses TensorFlow internals (the calibrator and the MLIR quantizer): the first test
compares its model with what a TFLiteConverter set up for int8 makes, so a TensorFlow upgrade that
changes them fails here, loudly, rather than in a device's parity check.
"""

from __future__ import annotations

import shutil

import numpy as np
import pytest

from toolkit.export.converters import TFLiteConversions


@pytest.fixture(scope="module")
def saved_model(tmp_path_factory):
    """A small conv net (BatchNorm, ReLU6, depthwise, a softmax head) taking 0..255 pixels."""
    import keras

    from toolkit.export.converters import export_saved_model

    keras.utils.set_random_seed(0)
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Rescaling(1 / 127.5, offset=-1)(inputs)
    x = keras.layers.Conv2D(8, 3, strides=2)(x)
    x = keras.layers.BatchNormalization()(x)
    x = keras.layers.ReLU(6.0)(x)
    x = keras.layers.DepthwiseConv2D(3, padding="same")(x)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)  # >= 1024 weights: dynamic quantizes it
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(3, activation="softmax")(x)
    path = tmp_path_factory.mktemp("tflite_once") / "saved_model"
    export_saved_model(keras.Model(inputs, outputs), path)
    return path


def _representative():
    images = np.random.default_rng(1).uniform(0, 255, (12, 32, 32, 3)).astype(np.float32)
    images[0], images[1] = 0.0, 255.0  # the calibration spans the pixel range: raw-pixel input

    def generate():
        for image in images:
            yield [image[None]]

    return generate


def _fresh(saved_model, quantize, representative=None, io="uint8") -> bytes:
    """What tk converted before: one new TFLiteConverter per quantization (the reference)."""
    import tensorflow as tf

    converter = tf.lite.TFLiteConverter.from_saved_model(str(saved_model))
    if quantize != "none":
        converter.optimizations = [tf.lite.Optimize.DEFAULT]
    if quantize == "float16":
        converter.target_spec.supported_types = [tf.float16]
    if quantize == "int8":
        converter.representative_dataset = representative
        converter.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        converter.inference_input_type = converter.inference_output_type = tf.uint8 if io == "uint8" else tf.int8
    return converter.convert()


def _graph(model: bytes) -> dict:
    """Operators, tensors (name, type, shape, quantization) and weight buffers; not the metadata."""
    from tensorflow.lite.tools import flatbuffer_utils

    obj = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    graph = obj.subgraphs[0]
    metadata_buffers = {m.buffer for m in obj.metadata or []}

    def quant(t):
        q = t.quantization
        if q is None or q.scale is None:
            return None
        return (np.asarray(q.scale).tolist(), np.asarray(q.zeroPoint).tolist(), q.quantizedDimension)

    return {
        "operators": [
            (obj.operatorCodes[op.opcodeIndex].builtinCode, list(op.inputs), list(op.outputs)) for op in graph.operators
        ],
        "tensors": [(t.name, t.type, np.asarray(t.shape).tolist(), quant(t)) for t in graph.tensors],
        "buffers": sorted(
            bytes(np.asarray(b.data, np.uint8))
            for i, b in enumerate(obj.buffers)
            if b.data is not None and i not in metadata_buffers
        ),
        "io": (list(graph.inputs), list(graph.outputs)),
    }


def _optimization_modes(model: bytes) -> list[int]:
    from tensorflow.lite.python import conversion_metadata_schema_py_generated as schema
    from tensorflow.lite.tools import flatbuffer_utils

    obj = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
    entry = next(m for m in obj.metadata if m.name == b"CONVERSION_METADATA")
    data = bytes(np.asarray(obj.buffers[entry.buffer].data, np.uint8))
    return list(schema.ConversionMetadataT.InitFromPackedBuf(data, 0).options.modelOptimizationModes or [])


@pytest.mark.parametrize("io", ["uint8", "int8"])
def test_int8_from_the_float_model_is_the_converters_int8(saved_model, io):
    """Pins the TF internals int8_from_float calls: same operators, tensors, scales, zero-points and
    weights as a TFLiteConverter's full-integer model, I/O of the requested type."""
    from tensorflow.lite.python import conversion_metadata_schema_py_generated as schema

    from toolkit.export.exporter import tflite_io

    ours = TFLiteConversions(saved_model).convert("int8", _representative(), io)
    theirs = _fresh(saved_model, "int8", _representative(), io)
    assert _graph(ours) == _graph(theirs)
    assert _optimization_modes(ours) == _optimization_modes(theirs) == [schema.ModelOptimizationMode.PTQ_FULL_INTEGER]

    import tempfile
    from pathlib import Path

    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "m.tflite"
        path.write_bytes(ours)
        described = tflite_io(path)
    assert described["input"]["dtype"] == described["output"]["dtype"] == io
    # Rescaling is in the graph and calibration spans 0..255: the input is the raw pixel.
    assert described["input"]["quantization"]["scale"] == pytest.approx(1.0, abs=1e-6)
    assert described["input"]["quantization"]["zero_point"] == (0 if io == "uint8" else -128)


def test_a_reused_converter_makes_what_fresh_ones_make(saved_model):
    """float16 and dynamic from the one converter, in an order that would leak options between
    them, are byte for byte a fresh converter's; float16 keeps float16 weights, dynamic int8 ones."""
    from tensorflow.lite.tools import flatbuffer_utils

    conversions = TFLiteConversions(saved_model)
    ours = {q: conversions.convert(q) for q in ("float16", "dynamic", "none")}
    for quantization, model in ours.items():
        assert model == _fresh(saved_model, quantization), quantization

    def weight_types(model):
        obj = flatbuffer_utils.convert_bytearray_to_object(bytearray(model))
        return {t.type for t in obj.subgraphs[0].tensors if obj.buffers[t.buffer].data is not None}

    float16, int8, float32 = 1, 9, 0  # tflite TensorType
    assert float16 in weight_types(ours["float16"]) and int8 not in weight_types(ours["float16"])
    assert int8 in weight_types(ours["dynamic"]) and float16 not in weight_types(ours["dynamic"])
    assert float32 in weight_types(ours["none"]) and not weight_types(ours["none"]) & {float16, int8}


def test_the_saved_model_is_loaded_once_and_each_graph_converted_once(saved_model, monkeypatch):
    import tensorflow as tf

    calls = {"from_saved_model": 0, "convert": 0, "calibrations": 0}
    real_from_saved_model = tf.lite.TFLiteConverter.from_saved_model

    def counting_from_saved_model(*args, **kwargs):
        calls["from_saved_model"] += 1
        converter = real_from_saved_model(*args, **kwargs)
        real_convert = converter.convert

        def counting_convert():
            calls["convert"] += 1
            return real_convert()

        converter.convert = counting_convert
        return converter

    monkeypatch.setattr(tf.lite.TFLiteConverter, "from_saved_model", counting_from_saved_model)
    representative = _representative()

    def counting_representative():
        calls["calibrations"] += 1
        return representative()

    conversions = TFLiteConversions(saved_model)
    models = {q: conversions.convert(q, counting_representative) for q in ("int8", "none", "float16", "dynamic")}
    again = {q: conversions.convert(q, counting_representative) for q in ("int8", "none", "float16", "dynamic")}
    assert calls == {"from_saved_model": 1, "convert": 3, "calibrations": 1}
    assert models == again
    assert len(set(models.values())) == 4


def test_one_export_converts_each_tflite_once_and_prefetches_onnx_int8(trained_run, tmp_path, monkeypatch):
    """The whole export: one SavedModel load for every TFLite file, the ONNX int8 made on the
    second thread, every artifact written and recorded."""
    import tensorflow as tf

    from toolkit.core.runs import load_manifest
    from toolkit.export import job as job_module
    from toolkit.export.exporter import export_run

    loads, prefetched = [], []
    real_from_saved_model = tf.lite.TFLiteConverter.from_saved_model
    monkeypatch.setattr(
        tf.lite.TFLiteConverter,
        "from_saved_model",
        lambda *a, **k: loads.append(a) or real_from_saved_model(*a, **k),
    )
    real_prefetch = job_module.ExportJob.prefetch_onnx_int8
    monkeypatch.setattr(
        job_module.ExportJob, "prefetch_onnx_int8", lambda self: prefetched.append(1) or real_prefetch(self)
    )
    run = tmp_path / "run"
    shutil.copytree(trained_run, run)
    said = []
    from toolkit.core.context import Context

    entries = export_run(run, ["tflite", "onnx"], ["all"], ctx=Context(say=said.append))
    assert [e["file"] for e in entries] == [
        "model_float32.tflite",
        "model_float16.tflite",
        "model_dynamic.tflite",
        "model_int8.tflite",
        "model.onnx",
        "model_int8.onnx",
    ]
    assert len(loads) == 1 and prefetched == [1]
    manifest = load_manifest(run)["artifacts"]
    assert manifest["model_int8.onnx"]["quantization_details"]["format"] == "QDQ"
    assert manifest["model_int8.tflite"]["input"]["dtype"] == "uint8"
    assert sum(line.startswith("export success:") for line in said) == 6
