"""TFLite metadata: written in the official schema, read back, and the model still runs the same."""

from __future__ import annotations

import io
import zipfile

import numpy as np
import pytest

tf = pytest.importorskip("tensorflow")
keras = pytest.importorskip("keras")
litert = pytest.importorskip("ai_edge_litert.interpreter")

from toolkit.core.errors import TkError  # noqa: E402
from toolkit.edge.tflite_metadata import read_metadata  # noqa: E402
from toolkit.export.metadata import add_metadata  # noqa: E402

LABELS = ["cat", "dog", "bird"]
INFO = dict(name="tiny", description="a tiny test classifier", version="1.2.3", author="tk tests")


@pytest.fixture(scope="module")
def models() -> dict[str, bytes]:
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    out = {"float32": tf.lite.TFLiteConverter.from_keras_model(model).convert()}
    rng = np.random.default_rng(0)

    def representative():
        for _ in range(8):
            yield [rng.integers(0, 256, (1, 32, 32, 3)).astype(np.float32)]

    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = representative
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.uint8
    out["int8"] = conv.convert()
    return out


def _with_md(model: bytes, dtype: str, **kw) -> bytes:
    quant = {"scale": 1.0, "zero_point": 0} if dtype == "uint8" else None
    return add_metadata(model, **{**INFO, **kw}, labels=LABELS, input_dtype=dtype, input_quantization=quant)


def _run(model: bytes, x: np.ndarray) -> np.ndarray:
    interp = litert.Interpreter(model_content=model)
    interp.allocate_tensors()
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    interp.set_tensor(inp["index"], x.astype(inp["dtype"]))
    interp.invoke()
    return interp.get_tensor(out["index"]).copy()


@pytest.mark.parametrize("kind,dtype", [("float32", "float32"), ("int8", "uint8")])
def test_metadata_reads_back(models, kind, dtype):
    assert read_metadata(models[kind]) is None
    md = read_metadata(_with_md(models[kind], dtype, license="Apache-2.0"))
    assert {k: md[k] for k in INFO} == INFO
    assert md["license"] == "Apache-2.0" and md["min_parser_version"] == "1.0.0"
    assert md["output"]["labels"] == LABELS and md["output"]["name"] == "probability"
    assert md["output"]["stats"] == {"min": [0.0], "max": [1.0]}
    assert md["associated_files"] == [
        {"name": "labels.txt", "type": "TENSOR_AXIS_LABELS", "description": md["associated_files"][0]["description"]}
    ]
    assert md["packed_files"] == ["labels.txt"]
    assert md["input"]["color_space"] == "RGB"
    assert md["input"]["stats"] == {"min": [0.0], "max": [255.0]}
    if dtype == "float32":  # tk's models take 0..255: MediaPipe must feed the raw pixels
        assert md["input"]["normalization"] == {"mean": [0.0] * 3, "std": [1.0] * 3}
    else:
        assert md["input"]["normalization"] is None


@pytest.mark.parametrize("kind,dtype", [("float32", "float32"), ("int8", "uint8")])
def test_same_outputs_and_file_layout(models, kind, dtype):
    with_md = _with_md(models[kind], dtype)
    x = np.random.default_rng(1).integers(0, 256, (1, 32, 32, 3))
    np.testing.assert_array_equal(_run(with_md, x), _run(models[kind], x))
    assert with_md[4:8] == b"TFL3"
    with zipfile.ZipFile(io.BytesIO(with_md)) as zf:  # a zip appended to the flatbuffer
        assert zf.read("labels.txt").decode().splitlines() == LABELS
        first = zf.infolist()[0].header_offset
    assert with_md[first : first + 4] == b"PK\x03\x04"  # zip offsets count from the file start


def test_idempotent_and_replaces(models):
    once = _with_md(models["float32"], "float32")
    assert _with_md(once, "float32") == once
    again = _with_md(once, "float32", version="2.0")
    assert read_metadata(again)["version"] == "2.0"
    assert len(again) == len(once)  # replaced, not a second metadata buffer or zip
    assert again.count(b"TFLITE_METADATA") == 1
    assert again.count(b"PK\x05\x06") == 1


def test_refuses_wrong_inputs(models):
    with pytest.raises(TkError, match="labels"):
        add_metadata(models["float32"], **INFO, labels=["a", "b"], input_dtype="float32", input_quantization=None)
    with pytest.raises(TkError, match="input"):
        add_metadata(
            models["float32"],
            **INFO,
            labels=LABELS,
            input_dtype="uint8",
            input_quantization={"scale": 1.0, "zero_point": 0},
        )
    with pytest.raises(TkError, match="quantization"):
        add_metadata(models["int8"], **INFO, labels=LABELS, input_dtype="uint8", input_quantization=None)
    with pytest.raises(TkError, match="TFLite"):
        add_metadata(b"\0" * 64, **INFO, labels=LABELS, input_dtype="float32", input_quantization=None)


@pytest.mark.parametrize(
    "file", ["model_float32.tflite", "model_float16.tflite", "model_dynamic.tflite", "model_int8.tflite"]
)
def test_every_exported_tflite_carries_metadata(exported_run, file):
    from toolkit.core.runs import load_manifest

    manifest = load_manifest(exported_run)
    entry = manifest["artifacts"][file]
    md = read_metadata((exported_run / file).read_bytes())
    assert md["name"] == manifest["name"] == entry["metadata"]["name"]
    assert md["author"] == "tk" and md["version"] == manifest["created"][:10]
    assert manifest["backbone"] in md["description"] and entry["tolerance"] in md["description"]
    assert md["output"]["labels"] == manifest["classes"] and md["packed_files"] == ["labels.txt"]
    assert md["input"]["color_space"] == "RGB"
    if entry["input"]["dtype"] == "float32":
        assert (
            md["input"]["normalization"] == entry["metadata"]["normalization"] == {"mean": [0.0] * 3, "std": [1.0] * 3}
        )
    else:  # uint8 input: the raw pixel, no normalization, its quantization in the description
        assert md["input"]["normalization"] is entry["metadata"]["normalization"] is None
        assert (
            md["input"]["stats"] == {"min": [0.0], "max": [255.0]}
            and "pixel = 1 * (q - 0)" in md["input"]["description"]
        )
