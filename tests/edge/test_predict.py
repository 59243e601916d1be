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


def plain_runtime_probs(artifact: Path, files: list[Path]) -> np.ndarray:
    """What tk predicted before feed.py: the runtime's own API, one image per call, load_image's
    pixels quantized by the old expression (np.round, np.clip, astype)."""
    from toolkit.core.images import load_image

    size = load_predictor(artifact).size
    rows = []
    if artifact.suffix == ".onnx":
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = 1
        session = ort.InferenceSession(str(artifact), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        return np.concatenate([session.run(None, {name: load_image(f, size)[None]})[0] for f in files])
    from toolkit.edge.predictors import interpreter_class

    interpreter = interpreter_class()(model_path=str(artifact), num_threads=1)
    interpreter.allocate_tensors()
    inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    for f in files:
        x = load_image(f, size)[None]
        if inp["dtype"] != np.float32:
            scale, zero = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(inp["dtype"])
        interpreter.set_tensor(inp["index"], x)
        interpreter.invoke()
        y = interpreter.get_tensor(out["index"])
        if out["dtype"] != np.float32:
            scale, zero = out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        rows.append(y)
    return np.concatenate(rows)


@pytest.mark.parametrize("file", ["model_float32.tflite", "model_int8.tflite", "model.onnx"])
def test_tk_predict_gives_what_the_runtime_gives_one_image_at_a_time(device_run, image_folder, file):
    """The whole `tk predict` path (its batch size, the reused decode buffer, in-place quantization,
    the padded last batch) changes no prediction: same ranking, same probabilities as the plain
    runtime loop (int8: the same integers out; float: XNNPACK/MLAS batch arithmetic, 1e-5)."""
    from toolkit.edge.predict import predict

    files = expand_inputs([image_folder])
    expected = plain_runtime_probs(device_run / file, files)
    labels = load_predictor(device_run / file).labels
    got = predict(device_run / file, [image_folder], k=len(labels), threads=1)
    assert [p.file for p in got] == [str(f) for f in files]
    for prediction, row in zip(got, expected, strict=True):
        probs = dict(prediction.top)
        assert [probs[label] for label in labels] == pytest.approx(row.tolist(), abs=1e-5)
        first, second = np.sort(row)[::-1][:2]
        if first - second > 1e-5:  # a clear winner is the same label
            assert prediction.top[0][0] == labels[int(np.argmax(row))]


@pytest.mark.parametrize("file", ["model_float32.tflite", "model_int8.tflite", "model.onnx"])
def test_a_last_partial_batch_is_padded_not_reallocated(device_run, image_folder, file):
    files = expand_inputs([image_folder])
    batch = 4 if len(files) % 4 else 3
    assert len(files) % batch, "the folder must end in a partial batch"
    single = list(predict_paths(load_predictor(device_run / file, num_threads=1), files, k=3, batch=1))
    predictor = load_predictor(device_run / file, num_threads=1)
    batched = list(predict_paths(predictor, files, k=3, batch=batch))
    if predictor.kind == "tflite":  # the input tensor kept the full batch: no resize for the tail
        assert predictor.model._batch == batch
        assert list(predictor.model.interpreter.get_input_details()[0]["shape"]) == [batch, *predictor.size, 3]
    assert [p.file for p in batched] == [p.file for p in single]
    for a, b in zip(batched, single, strict=True):
        assert [label for label, _ in a.top] == [label for label, _ in b.top]
        assert [p for _, p in a.top] == pytest.approx([p for _, p in b.top], abs=1e-5)


def test_a_bad_file_inside_a_batch_leaves_no_hole(device_run, image_folder, tmp_path):
    """The decode buffer is filled by good images only: a bad one skipped mid-batch shifts nothing."""
    files = expand_inputs([image_folder])[:7]
    bad = tmp_path / "broken.jpg"
    bad.write_bytes(b"not a jpeg")
    mixed = [*files[:2], bad, *files[2:5], bad, *files[5:]]
    predictor = load_predictor(device_run / "model_int8.tflite", num_threads=1)
    skipped: list[str] = []
    got = list(predict_paths(predictor, mixed, k=2, batch=4, on_bad=lambda f, why: skipped.append(f)))
    want = list(predict_paths(predictor, files, k=2, batch=1))
    assert skipped == [str(bad), str(bad)]
    assert [(p.file, [label for label, _ in p.top]) for p in got] == [
        (p.file, [label for label, _ in p.top]) for p in want
    ]


def test_tk_predict_runs_at_the_measured_batch_size_and_onnx_threads_sleep(device_run):
    from toolkit.edge.feed import predict_batch

    manifest = json.loads((device_run / "manifest.json").read_text())
    for file in ("model_float32.tflite", "model_int8.tflite", "model.onnx"):
        predictor = load_predictor(device_run / file)
        assert predictor.batch_size == predict_batch(predictor.kind, manifest["artifacts"][file]["quantization"])
    config = "session.intra_op.allow_spinning"
    sleeping = load_predictor(device_run / "model.onnx", spin=False).session.get_session_options()
    assert sleeping.get_session_config_entry(config) == "0"
    default = load_predictor(device_run / "model.onnx").session.get_session_options()
    with pytest.raises(RuntimeError, match="does not have configuration"):  # bench: the runtime's default
        default.get_session_config_entry(config)
