"""tk import: classifiers trained elsewhere become runs that export every format and pass verify.

The four models (tests/foreign_models.py) are built and trained in plain Keras, never by tk's
training code; bad inputs are each one line, and nothing is written for them.
"""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest

keras = pytest.importorskip("keras")
pytest.importorskip("tensorflow")

from foreign_models import CAFFE_MEAN, FOREIGN, SIZE, TORCH_MEAN, TORCH_STD  # noqa: E402
from helpers import assert_one_line_error  # noqa: E402
from typer.testing import CliRunner  # noqa: E402

from toolkit.cli.app import app  # noqa: E402
from toolkit.core.runs import load_manifest, load_split  # noqa: E402

runner = CliRunner()
pytestmark = pytest.mark.slow

# What each model was fed in training, from RGB 0..255 pixels (the check that tk wraps it right).
FEEDS = {
    "mobilenet_v2": lambda x: x / 127.5 - 1.0,
    "logits": lambda x: x / 255.0,
    "sequential_h5": lambda x: x[..., ::-1] - CAFFE_MEAN,
    "savedmodel": lambda x: (x / 255.0 - TORCH_MEAN) / TORCH_STD,
}


@pytest.mark.parametrize("name", list(FOREIGN))
def test_every_format_exports_and_passes_verify(imported_run, name):
    run, output, report = imported_run(name)
    assert report["passed"], {f: r["failures"] for f, r in report["artifacts"].items() if not r["passed"]}
    assert set(report["artifacts"]) == {
        "saved_model",
        "model_float32.tflite",
        "model_float16.tflite",
        "model_dynamic.tflite",
        "model_int8.tflite",
        "model.onnx",
        "model_int8.onnx",
    }
    # parity on outputs that mean something: right on held-out images, confident, not constant
    assert report["reference"]["accuracy"] >= 0.9 and report["reference"]["warnings"] == []
    assert f"test accuracy {report['reference']['accuracy']:.4f}" in output
    assert "warning" not in output


@pytest.mark.parametrize("name", list(FOREIGN))
def test_the_run_takes_0_255_pixels_and_gives_what_the_model_gives(imported_run, foreign_model, name):
    """model.keras == softmax-or-not(original model(its own preprocessing(pixels))) on the test images."""
    run, _, _ = imported_run(name)
    manifest = load_manifest(run)
    split = load_split(run / "split.json")
    from toolkit.core.images import load_batch
    from toolkit.export.reference import load_keras_model

    pixels = load_batch(split.paths("test"), (SIZE, SIZE))
    ours = np.asarray(load_keras_model(run / "model.keras")(pixels))
    if name == "savedmodel":
        original = keras.layers.TFSMLayer(str(foreign_model(name)), call_endpoint="serve")
    else:
        original = keras.saving.load_model(foreign_model(name), compile=False)
    theirs = np.asarray(original(FEEDS[name](pixels).astype(np.float32)))
    if manifest["imported"]["output"] == "logits":
        theirs = np.exp(theirs - theirs.max(1, keepdims=True))
        theirs /= theirs.sum(1, keepdims=True)
    np.testing.assert_allclose(ours, theirs, atol=1e-5)
    assert ours.sum(axis=1) == pytest.approx(1.0, abs=1e-5)


def test_manifest_recipe_and_files(imported_run, foreign_model, colour_root):
    run, _, _ = imported_run("logits")
    manifest = load_manifest(run)
    assert manifest["classes"] == ["blue", "green", "red"] and manifest["backbone"] == "imported"
    assert manifest["preprocessing"]["size"] == [SIZE, SIZE] and manifest["preprocessing"]["scaling"] == "unit"
    assert manifest["preprocessing"]["input_range"] == [0, 255] and manifest["preprocessing"]["scaling_in_graph"]
    imported = manifest["imported"]
    assert imported["output"] == "logits" and imported["softmax_added"] and "no activation" in imported["output_from"]
    assert imported["input_range"] == "0..1" and imported["format"] == "keras"
    from toolkit.core.io import sha256_file

    assert imported["sha256"] == sha256_file(foreign_model("logits"))
    assert manifest["artifacts"]["model.keras"]["sha256"] == sha256_file(run / "model.keras")
    assert (run / "labels.txt").read_text().split() == manifest["classes"]
    split = load_split(run / "split.json")  # the flat folder split by the fractions --set gave
    assert split.root == str((colour_root / "test").resolve()) and len(split.paths("test")) == 15
    from toolkit.core.runs import run_recipe

    recipe = run_recipe(run)
    assert recipe.model.backbone == "imported" and recipe.export.calibration_samples == 30
    metrics = json.loads((run / "metrics.json").read_text())
    assert metrics["test"]["accuracy"] == manifest["metrics"]["test_accuracy"] and metrics["phases"] == []


def test_output_kind_is_read_from_the_layer_or_the_scores(imported_run):
    assert load_manifest(imported_run("mobilenet_v2")[0])["imported"]["output"] == "probabilities"
    saved = load_manifest(imported_run("savedmodel")[0])["imported"]
    assert saved["output"] == "probabilities" and "sum to 1" in saved["output_from"]
    assert saved["format"] == "savedmodel"


def test_savedmodel_run_is_self_contained(imported_run, tmp_path):
    """model.keras carries the SavedModel graph in its assets: the run works after the original is gone."""
    run, _, _ = imported_run("savedmodel")
    moved = tmp_path / "moved"
    shutil.copytree(run, moved)
    from toolkit.export.verify import verify_run

    assert verify_run(moved, ["model.onnx"])["passed"]
    result = runner.invoke(
        app, ["explain", "maps", str(moved), "--image", str(load_split(run / "split.json").paths("test")[0])]
    )
    assert_one_line_error(result, "opaque graph", "import the model's .keras or .h5")


def test_explain_report_pack_bench_work_on_an_imported_run(imported_run, tmp_path):
    run, _, _ = imported_run("sequential_h5")
    image = load_split(run / "split.json").paths("test")[0]
    result = runner.invoke(app, ["explain", "gradcam", str(run), "--image", image])
    assert result.exit_code == 0 and "gradcam_" in result.output, result.output
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    assert "Not trained by tk: imported by `tk import`" in (run / "REPORT.md").read_text()
    bundle = tmp_path / "bundle"
    result = runner.invoke(app, ["pack", str(run), str(bundle), "--artifact", "model_int8.tflite", "--samples", "9"])
    assert result.exit_code == 0, result.output
    result = runner.invoke(app, ["bench", str(bundle), "--runs", "3", "--threads", "1", "--json"])
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["rows"][0]["accuracy"] >= 0.9


def test_labels_file_and_a_test_folder(foreign_model, colour_root, tmp_path):
    labels = tmp_path / "labels.txt"
    labels.write_text("blue\ngreen\nred\n")
    args = ["import", str(foreign_model("sequential_h5")), "--data", str(colour_root / "test")]
    args += ["--input-range", "caffe", "--labels", str(labels), "--runs-dir", str(tmp_path / "runs"), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    assert out["test"]["count"] == 36 and out["test"]["accuracy"] >= 0.9
    assert any("int8 calibration" in w for w in out["warnings"])  # the test images calibrate int8 too: said
    split = load_split(tmp_path / "runs" / "sequential" / "split.json")
    assert split.splits["test"] == split.splits["train"]


def test_a_wrong_input_range_warns_near_chance(foreign_model, colour_root, tmp_path):
    """The caffe-trained model told 0..255: no BGR flip, so it sees red as blue and blue as red."""
    args = ["import", str(foreign_model("sequential_h5")), "--data", str(colour_root), "--input-range", "0..255"]
    result = runner.invoke(app, [*args, "--runs-dir", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert "warning: test accuracy" in result.output and "near chance (0.333 for 3 classes)" in result.output
    assert "--input-range 0..255" in result.output


# --- bad input: one line each, nothing written ---------------------------------------------------


def _two_inputs():
    a, b = keras.Input((SIZE, SIZE, 3)), keras.Input((SIZE, SIZE, 3))
    x = keras.layers.GlobalAveragePooling2D()(keras.layers.Add()([a, b]))
    return keras.Model([a, b], keras.layers.Dense(3, activation="softmax")(x))


def _two_outputs():
    a = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.GlobalAveragePooling2D()(a)
    return keras.Model(a, [keras.layers.Dense(3)(x), keras.layers.Dense(2)(x)])


def _not_an_image():
    a = keras.Input((12,))
    return keras.Model(a, keras.layers.Dense(3, activation="softmax")(a))


def _four_classes():
    a = keras.Input((SIZE, SIZE, 3))
    return keras.Model(a, keras.layers.Dense(4)(keras.layers.GlobalAveragePooling2D()(a)))


def _lambda():
    return keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 3)),
            keras.layers.Lambda(lambda t: t / 255.0, name="scale_by_lambda"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3),
        ]
    )


def _custom():
    @keras.saving.register_keras_serializable(package="someone")
    class Doubler(keras.layers.Layer):
        def call(self, x):
            return x * 2

    a = keras.Input((SIZE, SIZE, 3))
    x = keras.layers.GlobalAveragePooling2D()(Doubler(name="doubler")(a))
    return keras.Model(a, keras.layers.Dense(3)(x))


BAD = {
    "two_inputs.keras": (_two_inputs, ["2 inputs", "one image input"]),
    "two_outputs.keras": (_two_outputs, ["2 outputs", "one output of class scores"]),
    "not_an_image.keras": (_not_an_image, ["not an RGB image batch", "(batch, height, width, 3)"]),
    "four_classes.keras": (_four_classes, ["outputs 4 classes", "class folders for 3", "--labels"]),
    "lambda.keras": (_lambda, ["Lambda 'scale_by_lambda'", "safe_mode"]),
    "lambda.h5": (_lambda, ["Lambda 'scale_by_lambda'", "safe_mode"]),
    "custom.keras": (_custom, ["Doubler 'doubler'", "safe_mode"]),
    "custom.h5": (_custom, ["Doubler 'doubler'", "safe_mode"]),
}


@pytest.mark.parametrize("file", list(BAD))
def test_bad_models_are_one_line_and_write_nothing(file, colour_root, tmp_path):
    build, fragments = BAD[file]
    build().save(tmp_path / file)
    if file.startswith("custom"):  # the user's code is gone when tk loads the file
        keras.saving.get_custom_objects().pop("someone>Doubler", None)
    runs = tmp_path / "runs"
    args = ["import", str(tmp_path / file), "--data", str(colour_root), "--input-range", "0..1"]
    assert_one_line_error(runner.invoke(app, [*args, "--runs-dir", str(runs)]), file, *fragments)
    assert not runs.exists() or not any(runs.iterdir())


def test_bad_options_are_one_line_and_write_nothing(foreign_model, colour_root, tmp_path):
    runs = tmp_path / "runs"
    model = str(foreign_model("logits"))
    base = ["import", model, "--data", str(colour_root), "--runs-dir", str(runs)]
    labels = tmp_path / "labels.txt"
    labels.write_text("blue\ngreen\nred\nyellow\n")
    cases = [
        ([*base, "--input-range", "0..2"], ["--input-range", "'0..2'", "-1..1", "torch"]),
        ([*base, "--input-range", "0..1", "--labels", str(labels)], ["outputs 3 classes", "lists 4"]),
        ([*base, "--input-range", "0..1", "--image-size", "64x64"], ["--image-size", "32x32"]),
        ([*base, "--input-range", "0..1", "--name", "a b"], ["name", "'a b'"]),
        (["import", model, "--data", str(tmp_path / "none"), "--input-range", "0..1"], ["folder not found"]),
        (["import", str(tmp_path / "x.onnx"), "--data", str(colour_root), "--input-range", "0..1"], [".onnx", ".h5"]),
        (["import", str(tmp_path / "gone.keras"), "--data", str(colour_root), "--input-range", "0..1"], ["no such"]),
    ]
    (tmp_path / "x.onnx").write_bytes(b"onnx")
    for args, fragments in cases:
        assert_one_line_error(runner.invoke(app, args), *fragments)
    assert not runs.exists() or not any(runs.iterdir())


def test_reimport_keeps_the_previous_run(foreign_model, colour_root, tmp_path):
    args = ["import", str(foreign_model("sequential_h5")), "--data", str(colour_root), "--input-range", "caffe"]
    args += ["--runs-dir", str(tmp_path), "--name", "again"]
    assert runner.invoke(app, args).exit_code == 0
    first = (tmp_path / "again" / "manifest.json").read_bytes()
    result = runner.invoke(app, args)
    assert result.exit_code == 0 and "kept the previous run as" in result.output
    archived = [p for p in tmp_path.iterdir() if p.name.startswith("again-")]
    assert len(archived) == 1 and (archived[0] / "manifest.json").read_bytes() == first
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".again.import-")]
