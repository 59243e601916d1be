"""Bare artifacts: a .tflite or .onnx with no manifest.json beside it runs with what it carries.

tk's .tflite files carry TFLite metadata (labels, normalization) and its .onnx files metadata_props
(labels, preprocessing): alone, they predict exactly as they do in their run. MediaPipe Model
Maker's layout (normalization 127.5/127.5, uint8 input fed the pixel) is honoured; a model with no
labels anywhere prints class indices, with one note.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_one_line_error
from typer.testing import CliRunner

from toolkit.cli.app import app
from toolkit.core.runs import load_manifest, load_split

runner = CliRunner()
FILES = ["model_float32.tflite", "model_int8.tflite", "model.onnx", "model_int8.onnx"]


@pytest.fixture
def bare(device_run, tmp_path):
    """The device run's .tflite/.onnx files alone in a folder (no manifest.json)."""
    folder = tmp_path / "bare"
    folder.mkdir()
    for file in FILES:
        shutil.copy(device_run / file, folder)
    return folder


@pytest.fixture(scope="module")
def test_images(device_run):
    return load_split(device_run / "split.json").paths("test")[:12]


def _predict(model, images, *extra):
    result = runner.invoke(app, ["predict", str(model), *images, "--json", "--top-k", "3", *extra])
    assert result.exit_code == 0, result.output
    return json.loads(result.stdout), result.stderr


@pytest.mark.edge
@pytest.mark.parametrize("file", FILES)
def test_a_bare_file_predicts_as_it_does_in_its_run(device_run, bare, test_images, file):
    with_manifest, _ = _predict(device_run / file, test_images)
    alone, notes = _predict(bare / file, test_images)
    assert notes == ""  # labels and preprocessing came from the file: nothing to say
    assert [p["label"] for p in alone] == [p["label"] for p in with_manifest]
    classes = load_manifest(device_run)["classes"]
    assert {t["label"] for p in alone for t in p["top"]} <= set(classes)
    np.testing.assert_allclose(
        [[t["probability"] for t in p["top"]] for p in alone],
        [[t["probability"] for t in p["top"]] for p in with_manifest],
        atol=1e-6,
    )


@pytest.mark.edge
@pytest.mark.parametrize("file", ["model.onnx", "model_int8.onnx"])
def test_onnx_export_writes_labels_and_preprocessing_into_metadata_props(device_run, file):
    ort = pytest.importorskip("onnxruntime")
    props = ort.InferenceSession(str(device_run / file)).get_modelmeta().custom_metadata_map
    manifest = load_manifest(device_run)
    assert json.loads(props["tk.labels"]) == manifest["classes"]
    assert json.loads(props["tk.preprocessing"]) == manifest["preprocessing"]
    assert props["tk.name"] == manifest["name"]
    assert manifest["artifacts"][file]["metadata_props"] == ["tk.labels", "tk.name", "tk.preprocessing"]


@pytest.mark.edge
def test_bench_a_bare_file_with_accuracy_on_labelled_folders(device_run, bare):
    root = load_split(device_run / "split.json").root  # one folder per class, named by the labels
    args = ["bench", str(bare / "model_int8.tflite"), str(bare / "model.onnx"), "--runs", "3", "--threads", "1"]
    result = runner.invoke(app, [*args, "--data-root", root, "--json"])
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    from toolkit.edge.bare import labelled_images

    paths, _ = labelled_images(Path(root))
    rows = {r["file"]: r for r in report["rows"]}
    assert set(rows) == {"model_int8.tflite", "model.onnx"}
    assert all(r["accuracy"] > 0.8 and r["test_count"] == len(paths) for r in rows.values()), rows
    assert (bare / "bench.json").is_file() and not (bare / "manifest.json").exists()


@pytest.mark.edge
def test_bench_a_bare_file_without_data_says_so(bare):
    result = runner.invoke(app, ["bench", str(bare / "model.onnx"), "--runs", "3", "--threads", "1"])
    assert result.exit_code == 0, result.output
    assert "accuracy not measured: pass --data-root DIR" in result.output


@pytest.mark.edge
def test_bench_refuses_a_folder_that_is_not_a_label(bare, tmp_path, test_images):
    (tmp_path / "photos" / "zebra").mkdir(parents=True)
    shutil.copy(test_images[0], tmp_path / "photos" / "zebra")
    args = ["bench", str(bare / "model.onnx"), "--runs", "3", "--threads", "1", "--data-root", str(tmp_path / "photos")]
    result = runner.invoke(app, args)  # after bench's progress line, one error line
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: ") and "folder 'zebra' is not a class of model.onnx" in last


# --- files that carry less: TensorFlow and onnx build them --------------------------------------


def test_no_labels_anywhere_prints_indices_with_one_note(device_run, test_images, tmp_path):
    onnx = pytest.importorskip("onnx")
    tf = pytest.importorskip("tensorflow")
    model = onnx.load(str(device_run / "model.onnx"))
    del model.metadata_props[:]
    onnx.save(model, str(tmp_path / "plain.onnx"))
    (tmp_path / "plain.tflite").write_bytes(
        tf.lite.TFLiteConverter.from_saved_model(str(device_run / "saved_model")).convert()
    )
    classes = load_manifest(device_run)["classes"]
    with_manifest, _ = _predict(device_run / "model.onnx", test_images)
    for file in ("plain.onnx", "plain.tflite"):
        alone, notes = _predict(tmp_path / file, test_images)
        assert [p["label"] for p in alone] == [str(classes.index(p["label"])) for p in with_manifest]
        lines = notes.strip().splitlines()
        assert len(lines) == 1 and "classes shown as indices" in lines[0] and file in lines[0], notes
        text = runner.invoke(app, ["predict", str(tmp_path / file), test_images[0]])
        assert text.stdout.split(": ")[1].split()[0] in {str(i) for i in range(len(classes))}


def test_labels_that_do_not_fit_the_outputs_are_one_line(device_run, test_images, tmp_path):
    onnx = pytest.importorskip("onnx")
    model = onnx.load(str(device_run / "model.onnx"))
    onnx.helper.set_model_props(model, {"tk.labels": json.dumps(["a", "b"])})
    onnx.save(model, str(tmp_path / "two.onnx"))
    result = runner.invoke(app, ["predict", str(tmp_path / "two.onnx"), test_images[0]])
    assert_one_line_error(result, "two.onnx", "ONNX metadata_props lists 2 labels")


@pytest.fixture(scope="module")
def mediapipe_like(tmp_path_factory):
    """A classifier in MediaPipe Model Maker's layout: trained on -1..1 pixels, normalization
    mean 127.5 / std 127.5 in its TFLite metadata, float32 and uint8-input (int8) variants."""
    tf = pytest.importorskip("tensorflow")
    keras = pytest.importorskip("keras")
    from toolkit.export.metadata import add_metadata

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((24, 24, 3)),
            keras.layers.Conv2D(4, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3, activation="softmax"),
        ]
    )
    rng = np.random.default_rng(0)
    pixels = rng.integers(0, 256, (16, 24, 24, 3)).astype(np.float32)
    folder = tmp_path_factory.mktemp("mediapipe")
    info = dict(name="mp", description="Model Maker layout", version="1", author="test", labels=["cat", "dog", "owl"])
    norm = ([127.5], [127.5])
    plain = tf.lite.TFLiteConverter.from_keras_model(model).convert()
    (folder / "float.tflite").write_bytes(
        add_metadata(plain, **info, input_dtype="float32", input_quantization=None, normalization=norm)
    )
    conv = tf.lite.TFLiteConverter.from_keras_model(model)
    conv.optimizations = [tf.lite.Optimize.DEFAULT]
    conv.representative_dataset = lambda: ([p[None] / 127.5 - 1] for p in pixels)
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
    conv.inference_input_type = conv.inference_output_type = tf.uint8
    q = conv.convert()
    (folder / "int8.tflite").write_bytes(
        add_metadata(
            q, **info, input_dtype="uint8", input_quantization={"scale": 1.0, "zero_point": 0}, normalization=norm
        )
    )
    return folder, model


def _images(folder, count=6):
    from PIL import Image

    rng = np.random.default_rng(3)
    paths = []
    for i in range(count):
        path = folder / f"img{i}.png"
        Image.fromarray(rng.integers(0, 256, (24, 24, 3), dtype=np.uint8)).save(path)
        paths.append(str(path))
    return paths


def test_mediapipe_layout_normalization_and_labels(mediapipe_like, tmp_path):
    folder, model = mediapipe_like
    images = _images(tmp_path)
    from toolkit.core.images import load_batch

    pixels = load_batch(images, (24, 24))
    expected = np.asarray(model(pixels / 127.5 - 1.0))
    out, notes = _predict(folder / "float.tflite", images)
    assert notes == "" and {p["label"] for p in out} <= {"cat", "dog", "owl"}
    got = [{t["label"]: t["probability"] for t in p["top"]} for p in out]
    np.testing.assert_allclose([[g[c] for c in ("cat", "dog", "owl")] for g in got], expected, atol=1e-5)


def test_mediapipe_uint8_input_takes_the_pixel(mediapipe_like, tmp_path):
    """A uint8 input with normalization metadata gets the raw pixel (as MediaPipe feeds it)."""
    from ai_edge_litert.interpreter import Interpreter

    from toolkit.core.images import load_batch
    from toolkit.edge.predictors import load_predictor

    folder, _ = mediapipe_like
    pixels = load_batch(_images(tmp_path), (24, 24))
    interpreter = Interpreter(model_path=str(folder / "int8.tflite"))
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    expected = []
    for image in pixels.astype(np.uint8):
        interpreter.set_tensor(inp["index"], image[None])
        interpreter.invoke()
        scale, zero = out["quantization"]
        expected.append((interpreter.get_tensor(out["index"])[0].astype(np.float32) - zero) * scale)
    predictor = load_predictor(folder / "int8.tflite")
    assert predictor.labels == ["cat", "dog", "owl"] and predictor.contract.raw_uint8
    np.testing.assert_allclose(predictor.predict(pixels), np.asarray(expected), atol=1e-6)


def test_a_bare_keras_file_still_needs_its_manifest(device_run, tmp_path, test_images):
    pytest.importorskip("tensorflow")
    shutil.copy(device_run / "model.keras", tmp_path)
    result = runner.invoke(app, ["predict", str(tmp_path / "model.keras"), test_images[0]])
    assert_one_line_error(result, "no manifest.json beside it")
