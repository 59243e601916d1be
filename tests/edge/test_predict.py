"""`tk predict`: labels and probabilities per image, folders batched, the base install alone."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from typer.testing import CliRunner

from toolkit.cli.app import app
from toolkit.core.errors import TkError
from toolkit.core.runs import load_split
from toolkit.edge.predict import expand_inputs, predict_paths, top_k
from toolkit.edge.predictors import load_predictor

pytestmark = pytest.mark.edge  # every test here runs on the base install too
runner = CliRunner()


@pytest.fixture(scope="module")
def image_folder(device_run, tmp_path_factory) -> Path:
    """The run's test images copied into one folder (with a sub-folder and a non-image file)."""
    folder = tmp_path_factory.mktemp("photos")
    for i, path in enumerate(load_split(device_run / "split.json").paths("test")):
        target = folder / ("more" if i % 3 == 0 else "") / f"{i:03d}{Path(path).suffix}"
        target.parent.mkdir(exist_ok=True)
        shutil.copy(path, target)
    (folder / "README.txt").write_text("not an image, and not picked up")
    return folder


def test_folder_is_expanded_sorted_and_recursive(image_folder):
    files = expand_inputs([image_folder])
    assert files == sorted(files) and all(f.suffix == ".jpg" for f in files)
    assert len(files) == len(list(image_folder.rglob("*.jpg")))


@pytest.mark.parametrize("bad, message", [("missing.jpg", "no such file or folder"), ("empty", "no image files")])
def test_bad_inputs_are_named(tmp_path, bad, message):
    (tmp_path / "empty").mkdir()
    with pytest.raises(TkError, match=message):
        expand_inputs([tmp_path / bad])


def test_top_k_is_sorted_and_capped():
    probs = np.array([0.1, 0.7, 0.2], np.float32)
    assert [label for label, _ in top_k(probs, ["a", "b", "c"], 2)] == ["b", "c"]
    assert len(top_k(probs, ["a", "b", "c"], 10)) == 3


def test_batches_predict_what_single_images_predict(device_run, image_folder):
    predictor = load_predictor(device_run / "model_float32.tflite", num_threads=1)
    files = expand_inputs([image_folder])
    batched = list(predict_paths(predictor, files, k=3, batch=7))
    single = list(predict_paths(predictor, files, k=3, batch=1))
    assert [p.file for p in batched] == [str(f) for f in files]
    for a, b in zip(batched, single, strict=True):
        assert a.top[0][0] == b.top[0][0]
        assert abs(a.top[0][1] - b.top[0][1]) < 1e-5


def test_cli_json_on_a_folder(device_run, image_folder):
    result = runner.invoke(
        app,
        [
            "predict",
            str(device_run / "model_int8.tflite"),
            str(image_folder),
            "--top-k",
            "2",
            "--json",
            "--threads",
            "1",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output[result.output.index("[") :])
    classes = json.loads((device_run / "manifest.json").read_text())["classes"]
    assert len(out) == len(expand_inputs([image_folder]))
    for item in out:
        assert len(item["top"]) == 2 and item["label"] == item["top"][0]["label"] in classes
        assert item["top"][0]["probability"] >= item["top"][1]["probability"]


def test_cli_text_is_one_line_per_image(device_run, image_folder):
    files = expand_inputs([image_folder])[:3]
    result = runner.invoke(app, ["predict", str(device_run / "model.onnx"), *map(str, files)])
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert [line.split(": ")[0] for line in lines] == [str(f) for f in files]


def test_top_k_must_be_positive(device_run, image_folder):
    result = runner.invoke(app, ["predict", str(device_run / "model.onnx"), str(image_folder), "--top-k", "0"])
    assert result.exit_code == 1 and "--top-k: must be >= 1" in result.output


def test_cli_runs_with_the_base_install_alone(device_run, image_folder):
    """The whole `tk predict` command, in a process where TensorFlow and Keras cannot be imported."""
    code = (
        "import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
        "from toolkit.cli.app import app\n"
        "try:\n    app(sys.argv[1:])\nexcept SystemExit as e:\n"
        "    loaded = [m for m, mod in sys.modules.items()\n"
        "              if mod is not None and m.split('.')[0] in ('tensorflow', 'keras')]\n"
        "    print('LOADED', loaded)\n    raise\n"
    )
    for file in ("model_int8.tflite", "model.onnx"):
        proc = subprocess.run(
            [sys.executable, "-c", code, "predict", str(device_run / file), str(image_folder)],
            capture_output=True,
            text=True,
            timeout=300,
        )
        assert proc.returncode == 0, proc.stderr[-2000:]
        lines = proc.stdout.strip().splitlines()
        assert lines[-1] == "LOADED []"
        assert len(lines) - 1 == len(expand_inputs([image_folder]))
