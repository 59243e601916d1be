"""tk export: every format from one SavedModel, recorded in the manifest, failures isolated."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from toolkit.cli.app import app
from toolkit.core.formats import FORMATS, tolerance_kind
from toolkit.core.io import sha256_file, size_bytes
from toolkit.core.runs import load_manifest

EXPECTED = {
    "saved_model": ("savedmodel", "none"),
    "model_float32.tflite": ("tflite", "none"),
    "model_float16.tflite": ("tflite", "float16"),
    "model_dynamic.tflite": ("tflite", "dynamic"),
    "model_int8.tflite": ("tflite", "int8"),
    "model.onnx": ("onnx", "none"),
    "model_int8.onnx": ("onnx", "int8"),
}


def _error_lines(output: str) -> list[str]:
    return [line for line in output.splitlines() if line.startswith("error:")]


def test_every_format_is_exported_and_recorded(exported_run):
    manifest = load_manifest(exported_run)
    artifacts = manifest["artifacts"]
    assert set(EXPECTED) <= set(artifacts)
    size = manifest["preprocessing"]["size"]
    classes = len(manifest["classes"])
    for file, (fmt, quantization) in EXPECTED.items():
        entry = artifacts[file]
        path = exported_run / file
        assert path.exists()
        assert (entry["format"], entry["quantization"]) == (fmt, quantization)
        assert entry["sha256"] == sha256_file(path)
        assert entry["size_bytes"] == size_bytes(path) > 0
        assert entry["input"]["shape"] == [None, *size, 3]  # dynamic batch everywhere
        assert entry["output"]["shape"] == [None, classes]
        assert {"tensorflow", "tf2onnx", "onnx"} <= set(entry["versions"])
        assert entry["tolerance"] == tolerance_kind(quantization)
    assert (exported_run / "labels.txt").read_text().split() == manifest["classes"]
    # Nothing temporary left beside the artifacts.
    assert not [p.name for p in exported_run.iterdir() if p.name.startswith(".") or ".tmp" in p.name]


def test_int8_records_the_interpreters_scale_and_zero_point(exported_run):
    from ai_edge_litert.interpreter import Interpreter

    entry = load_manifest(exported_run)["artifacts"]["model_int8.tflite"]
    interpreter = Interpreter(model_path=str(exported_run / "model_int8.tflite"))
    for side, detail in (
        ("input", interpreter.get_input_details()[0]),
        ("output", interpreter.get_output_details()[0]),
    ):
        assert entry[side]["dtype"] == "uint8" == np.dtype(detail["dtype"]).name
        scale, zero_point = detail["quantization"]
        assert entry[side]["quantization"] == {"scale": pytest.approx(scale), "zero_point": zero_point}
    # The scaling is in the graph, so the uint8 input is the raw pixel value.
    assert entry["input"]["quantization"] == {"scale": 1.0, "zero_point": 0}
    assert entry["calibration"]["split"] == "train" and entry["calibration"]["samples"] > 0


def test_onnx_is_valid_with_dynamic_batch(exported_run):
    import onnx

    model = onnx.load(str(exported_run / "model.onnx"))
    onnx.checker.check_model(model)
    assert model.graph.input[0].type.tensor_type.shape.dim[0].dim_param == "batch"
    assert load_manifest(exported_run)["artifacts"]["model.onnx"]["opset"] == model.opset_import[0].version


@pytest.mark.parametrize("kind", ["sequential", "functional"])
def test_keras3_models_convert_through_saved_model(kind, synth_root, tmp_path):
    """Keras 3 breaks from_keras_model / tf2onnx.from_keras on Sequential models: our path works on both."""
    import keras
    import onnxruntime as ort
    from ai_edge_litert.interpreter import Interpreter

    from toolkit.core.images import load_batch
    from toolkit.export.converters import export_saved_model, onnx_from_saved_model, tflite_from_saved_model

    keras.utils.set_random_seed(0)
    layers = [
        keras.layers.Rescaling(1 / 255.0),
        keras.layers.Conv2D(4, 3, activation="relu"),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Dense(3, activation="softmax"),
    ]
    if kind == "sequential":
        model = keras.Sequential([keras.Input((24, 24, 3)), *layers])
    else:
        inputs = keras.Input((24, 24, 3))
        x = inputs
        for layer in layers:
            x = layer(x)
        model = keras.Model(inputs, x)
    export_saved_model(model, tmp_path / "sm")
    (tmp_path / "m.tflite").write_bytes(tflite_from_saved_model(tmp_path / "sm"))
    import onnx

    onnx.save(onnx_from_saved_model(tmp_path / "sm", opset=17), str(tmp_path / "m.onnx"))

    images = load_batch(sorted(str(p) for p in synth_root.rglob("*.jpg"))[:5], (24, 24))
    session = ort.InferenceSession(str(tmp_path / "m.onnx"), providers=["CPUExecutionProvider"])
    interpreter = Interpreter(model_path=str(tmp_path / "m.tflite"))
    detail_in = interpreter.get_input_details()[0]
    for batch in (1, 5):  # two batch sizes: the batch dimension is dynamic in both formats
        x = images[:batch]
        expected = np.asarray(model(x))
        onnx_out = session.run(None, {session.get_inputs()[0].name: x})[0]
        interpreter.resize_tensor_input(detail_in["index"], list(x.shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(detail_in["index"], x)
        interpreter.invoke()
        tflite_out = interpreter.get_tensor(interpreter.get_output_details()[0]["index"])
        np.testing.assert_allclose(onnx_out, expected, atol=1e-5)
        np.testing.assert_allclose(tflite_out, expected, atol=1e-5)


def _copy_run(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / run.name
    shutil.copytree(run, copy)
    return copy


def test_failed_conversion_is_reported_and_the_others_export(trained_run, tmp_path):
    """No calibration data: int8 fails with one clear error; float32 and ONNX still export."""
    run = _copy_run(trained_run, tmp_path)
    split = json.loads((run / "split.json").read_text())
    split["splits"]["train"] = []
    (run / "split.json").write_text(json.dumps(split))

    result = CliRunner().invoke(
        app,
        ["export", str(run), "--format", "tflite,onnx", "--quantize", "none", "--quantize", "int8", "--opset", "13"],
    )
    assert result.exit_code == 1
    assert "export success: model_float32.tflite" in result.output
    assert "export success: model.onnx" in result.output
    errors = _error_lines(result.output)
    assert len(errors) == 1 and "model_int8.tflite" in errors[0] and "calibration" in errors[0]
    assert "Traceback" not in result.output
    assert not (run / "model_int8.tflite").exists()
    assert not [p.name for p in run.iterdir() if p.name.startswith(".") or ".tmp" in p.name]
    artifacts = load_manifest(run)["artifacts"]
    assert "model_int8.tflite" not in artifacts
    assert artifacts["model.onnx"]["opset"] == 13


def test_few_calibration_images_warn_and_int8_io_is_honoured(trained_run, tmp_path):
    """More samples asked than the train split has: a warning with the count. int8_io: int8 gives
    int8 I/O, where the raw pixel p is stored as p - 128 (scale 1, zero-point -128)."""
    run = _copy_run(trained_run, tmp_path)
    train_count = len(json.loads((run / "split.json").read_text())["splits"]["train"])
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    recipe["export"].update(calibration_samples=5000, int8_io="int8")
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    result = CliRunner().invoke(app, ["export", str(run), "--format", "tflite", "--quantize", "int8"])
    assert result.exit_code == 0, result.output
    assert f"int8 calibration uses {train_count} training images" in result.output
    entry = load_manifest(run)["artifacts"]["model_int8.tflite"]
    assert entry["calibration"]["samples"] == train_count
    assert entry["input"]["dtype"] == entry["output"]["dtype"] == "int8"
    assert entry["input"]["quantization"] == {"scale": 1.0, "zero_point": -128}
    result = CliRunner().invoke(app, ["verify", str(run), "--artifact", "model_int8.tflite"])
    assert result.exit_code == 0, result.output


def test_export_of_a_missing_run_is_a_clear_error(tmp_path):
    result = CliRunner().invoke(app, ["export", "no-such-run", "--runs-dir", str(tmp_path)])
    assert result.exit_code == 1
    assert _error_lines(result.output) == [
        f"error: no-such-run: no trained run at {tmp_path / 'no-such-run'} (train it first: tk train RECIPE)"
    ]
    result = CliRunner().invoke(app, ["export", "--runs-dir", str(tmp_path)])
    assert result.exit_code == 1 and "no runs under" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "onnx", "--quantize", "float16"], "--format onnx: exports quantization none, int8 only"),
        (["--format", "tflit"], "did you mean 'tflite'"),
        (["--quantize", "int4"], "--quantize: unknown value 'int4'"),
        (["--opset", "99"], "--opset: must be between 9 and 21"),
    ],
)
def test_impossible_requests_fail_before_any_work(trained_run, args, message):
    before = sorted(p.name for p in trained_run.iterdir())
    result = CliRunner().invoke(app, ["export", str(trained_run), *args])
    assert result.exit_code == 1
    assert message in result.output and "Traceback" not in result.output
    assert sorted(p.name for p in trained_run.iterdir()) == before


def test_a_damaged_model_is_one_error_and_writes_nothing(trained_run, tmp_path):
    run = _copy_run(trained_run, tmp_path)
    (run / "model.keras").write_bytes(b"not a zip file")
    before = sorted(p.name for p in run.iterdir())
    result = CliRunner().invoke(app, ["export", str(run)])
    assert result.exit_code == 1 and "model.keras: sha256 differs from the one tk train recorded" in result.output
    _record_reference(run)  # the manifest copied along with the damaged file: opening it is the one line
    result = CliRunner().invoke(app, ["export", str(run)])
    assert result.exit_code == 1
    errors = _error_lines(result.output)
    assert len(errors) == 1 and "model.keras: not a .keras archive (damaged or truncated)" in errors[0]
    assert "Traceback" not in result.output
    assert sorted(p.name for p in run.iterdir()) == before


def test_export_refuses_a_model_with_nan_weights(trained_run, tmp_path):
    """A diverged model used to segfault the converter (exit 139) and leave .export-*."""
    import keras

    run = tmp_path / trained_run.name
    shutil.copytree(trained_run, run)
    model = keras.saving.load_model(run / "model.keras", compile=False)
    weight = model.weights[-1]
    weight.assign(np.full(weight.shape, np.nan, dtype=weight.dtype))
    model.save(run / "model.keras")
    _record_reference(run)  # as a diverged tk train would have recorded it
    result = CliRunner().invoke(app, ["export", str(run), "--format", "tflite"])
    assert result.exit_code == 1, result.output
    assert "NaN/Inf" in result.output and "learning_rate" in result.output
    assert not list(run.glob(".tk-export-*")) and not list(run.glob("model_*.tflite"))


def test_one_writer_per_exported_format_of_the_table():
    from toolkit.core.formats import EXPORT_FORMATS
    from toolkit.export.exporter import WRITERS

    assert set(WRITERS) == set(EXPORT_FORMATS)


def test_help_texts_name_every_format_of_the_table():
    from typer.testing import CliRunner

    from toolkit.cli.app import app
    from toolkit.core.formats import DEVICE_FORMATS, EXPORT_FORMATS

    runner = CliRunner()
    export_help = " ".join(runner.invoke(app, ["export", "--help"], env={"COLUMNS": "300"}).output.split())
    pack_help = " ".join(runner.invoke(app, ["pack", "--help"], env={"COLUMNS": "300"}).output.split())
    predict_help = " ".join(runner.invoke(app, ["predict", "--help"], env={"COLUMNS": "300"}).output.split())
    assert all(name in export_help for name in EXPORT_FORMATS)
    assert all(name in pack_help for name in DEVICE_FORMATS)
    assert all(f.suffix in predict_help for f in FORMATS.values() if f.suffix)


def _record_reference(run: Path) -> None:
    from toolkit.core.runs import save_manifest

    manifest = load_manifest(run)
    manifest["artifacts"]["model.keras"]["sha256"] = sha256_file(run / "model.keras")
    save_manifest(run, manifest)
