"""The Predictor interface: the device path without TensorFlow, int8 I/O, and bad input."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_one_line_error
from typer.testing import CliRunner

from toolkit.cli.app import app
from toolkit.core.images import load_batch
from toolkit.core.io import sha256_file
from toolkit.core.runs import load_manifest, load_split, save_manifest
from toolkit.edge.feed import dequantize, quantize
from toolkit.edge.predictors import TFLiteModel, load_predictor

DEVICE_FORMATS = [
    "model_float32.tflite",
    "model_float16.tflite",
    "model_dynamic.tflite",
    "model_int8.tflite",
    "model.onnx",
]
# Importing tensorflow or keras raises ImportError in this process: what the edge install is like.
NO_TF = "import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None; "
runner = CliRunner()


@pytest.fixture(scope="module")
def held_out(device_run):
    split = load_split(device_run / "split.json")
    return split.paths("test"), np.asarray(split.labels("test"))


@pytest.fixture(scope="module")
def reference_top1(exported_run, held_out):
    probs = load_predictor(exported_run / "model.keras").predict_files(held_out[0])
    return probs.argmax(axis=1)


@pytest.fixture
def run_copy(device_run, tmp_path) -> Path:
    """A copy of the exported run that a test may damage."""
    return Path(shutil.copytree(device_run, tmp_path / "run", ignore=shutil.ignore_patterns("saved_model")))


def test_device_formats_predict_without_tensorflow(exported_run, held_out, reference_top1):
    child = (
        NO_TF
        + """
import json
from toolkit.edge.predictors import load_predictor
run, files, paths = sys.argv[1], sys.argv[2].split(","), json.loads(sys.argv[3])
out = {f: load_predictor(f"{run}/{f}", num_threads=1).predict_files(paths).argmax(1).tolist() for f in files}
loaded = sorted(m for m, mod in sys.modules.items() if mod is not None and m.split(".")[0] in ("tensorflow", "keras"))
print(json.dumps({"top1": out, "loaded": loaded}))
"""
    )
    proc = subprocess.run(
        [sys.executable, "-c", child, str(exported_run), ",".join(DEVICE_FORMATS), json.dumps(held_out[0])],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["loaded"] == []
    for file, top1 in result["top1"].items():
        agreement = float(np.mean(np.asarray(top1) == reference_top1))
        # float formats compute what Keras computes; int8 may flip a borderline image
        assert agreement >= (0.9 if "int8" in file else 1.0), (file, agreement)


@pytest.mark.edge
def test_the_tensorflow_guard_really_blocks_tensorflow():
    proc = subprocess.run([sys.executable, "-c", NO_TF + "import tensorflow"], capture_output=True, text=True)
    assert proc.returncode != 0 and "import of tensorflow halted" in proc.stderr


@pytest.mark.edge
def test_int8_quantize_dequantize_round_trip():
    x = np.linspace(0, 255, 97, dtype=np.float32)
    for dtype, zero_point in ((np.uint8, 0), (np.int8, -128)):
        detail = {"dtype": dtype, "quantization": (255.0 / 254.0, zero_point)}
        q = quantize(x, detail)
        assert q.dtype == dtype
        back = dequantize(q, detail)
        assert back.dtype == np.float32
        assert np.abs(back - x).max() <= detail["quantization"][0] / 2 + 1e-4
    clipped = quantize(np.array([-50.0, 1e6], np.float32), {"dtype": np.uint8, "quantization": (1.0, 0)})
    assert clipped.tolist() == [0, 255]
    floats = np.ones(3, np.float32)
    assert dequantize(floats, {"dtype": np.float32, "quantization": (0.0, 0)}) is not floats


@pytest.mark.edge
def test_int8_model_uses_integer_io_and_any_batch_size(device_run, held_out):
    model = TFLiteModel(device_run / "model_int8.tflite", num_threads=1)
    assert model._in["dtype"] in (np.uint8, np.int8) and model._out["dtype"] in (np.uint8, np.int8)
    images = load_batch(held_out[0][:5], model.input_shape[1:3])
    together = model.run(images)
    one_by_one = np.concatenate([model.run(images[i : i + 1]) for i in range(5)])
    assert together.dtype == np.float32 and together.shape == one_by_one.shape
    np.testing.assert_allclose(together, one_by_one, atol=1e-6)
    # Shrinking to a tail and growing back reuse the feed buffers of the largest batch.
    feed = model._buffers[0]
    tail, again = model.run(images[:2]), model.run(images)
    assert model._capacity == 5 and model._buffers[0] is feed
    np.testing.assert_allclose(tail, together[:2], atol=1e-6)
    np.testing.assert_allclose(again, together, atol=1e-6)
    assert np.all(together >= 0) and np.all(together <= 1.0 + 1e-6)


@pytest.mark.edge
def test_missing_model_file(run_copy, held_out):
    assert_one_line_error(
        runner.invoke(app, ["predict", str(run_copy / "nope.tflite"), held_out[0][0]]), "nope.tflite", "not found"
    )


@pytest.mark.edge
@pytest.mark.parametrize("file", ["model_int8.tflite", "model.onnx"])
def test_truncated_model_file(run_copy, held_out, file):
    path = run_copy / file
    path.write_bytes(path.read_bytes()[: path.stat().st_size // 3])
    assert_one_line_error(runner.invoke(app, ["predict", str(path), held_out[0][0]]), file, "sha256")
    # With a manifest that matches the damaged file, the runtime itself must refuse it clearly.
    manifest = load_manifest(run_copy)
    manifest["artifacts"][file]["sha256"] = sha256_file(path)
    save_manifest(run_copy, manifest)
    assert_one_line_error(runner.invoke(app, ["predict", str(path), held_out[0][0]]), file, "not a valid")


@pytest.mark.edge
def test_non_image_input(run_copy, tmp_path):
    bogus = tmp_path / "notes.jpg"
    bogus.write_text("this is not a picture")
    assert_one_line_error(
        runner.invoke(app, ["predict", str(run_copy / "model.onnx"), str(bogus)]), "notes.jpg", "not a readable image"
    )


@pytest.mark.edge
@pytest.mark.parametrize("file", ["model_float32.tflite", "model.onnx"])
def test_input_size_differs_from_manifest(run_copy, held_out, file):
    manifest = load_manifest(run_copy)
    height, width = manifest["preprocessing"]["size"]
    manifest["preprocessing"]["size"] = [height + 8, width + 8]
    save_manifest(run_copy, manifest)
    assert_one_line_error(
        runner.invoke(app, ["predict", str(run_copy / file), held_out[0][0]]),
        file,
        f"model input is {height}x{width}",
        f"says {height + 8}x{width + 8}",
    )


@pytest.mark.edge
def test_manifest_that_is_not_a_tk_manifest(run_copy, held_out):
    (run_copy / "manifest.json").write_text(json.dumps({"artifacts": {}}))
    assert_one_line_error(
        runner.invoke(app, ["predict", str(run_copy / "model.onnx"), held_out[0][0]]), "classes: missing"
    )


@pytest.mark.edge
def test_sha256_mismatch(run_copy, held_out):
    with open(run_copy / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    assert_one_line_error(
        runner.invoke(app, ["predict", str(run_copy / "model.onnx"), held_out[0][0]]),
        "model.onnx",
        "sha256 differs",
        "re-run tk export",
    )


@pytest.mark.edge
def test_unknown_format(run_copy, held_out):
    other = run_copy / "model.pt"
    other.write_bytes(b"\0" * 10)
    assert_one_line_error(
        runner.invoke(app, ["predict", str(other), held_out[0][0]]), "unknown model format .pt", ".tflite, .onnx"
    )


@pytest.mark.edge
def test_missing_tflite_runtime_names_the_package(monkeypatch):
    import builtins

    from toolkit.core.errors import TkError
    from toolkit.edge import predictors as runtime

    real_import = builtins.__import__

    def no_tflite(name, *args, **kwargs):
        if name.startswith(("ai_edge_litert", "tflite_runtime")):
            raise ImportError(name)
        return real_import(name, *args, **kwargs)

    monkeypatch.setattr(builtins, "__import__", no_tflite)
    for machine, package in (("armv7l", "tflite-runtime"), ("aarch64", "ai-edge-litert")):
        monkeypatch.setattr(runtime.platform, "machine", lambda m=machine: m)
        with pytest.raises(TkError, match=f"pip install {package}"):
            runtime.interpreter_class()
