"""Hostile inputs to the device path (issue 10's edge probes): damaged manifests, foreign ONNX
files, a bad image among many, bad options, a truncated split.json, TensorFlow formats on the
base install. Each is one clear line or correct behaviour; the hostile files are built here."""

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
from toolkit.core.io import sha256_file
from toolkit.core.runs import load_manifest, load_split, save_manifest
from toolkit.edge.predictors import load_predictor

runner = CliRunner()
NO_TF = "import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"


@pytest.fixture
def run_copy(device_run, tmp_path) -> Path:
    return Path(shutil.copytree(device_run, tmp_path / "run", ignore=shutil.ignore_patterns("saved_model")))


@pytest.fixture(scope="module")
def image(device_run) -> str:
    return load_split(device_run / "split.json").paths("test")[0]


def _edit_manifest(run: Path, edit) -> None:
    """Edit manifest.json as a person would: as JSON, whatever the schema says of it now."""
    manifest = json.loads((run / "manifest.json").read_text())
    edit(manifest)
    save_manifest(run, manifest)


@pytest.mark.edge
def test_artifacts_as_a_list_or_empty(run_copy, image):
    _edit_manifest(run_copy, lambda m: m.update(artifacts=[]))
    assert_one_line_error(
        runner.invoke(app, ["predict", str(run_copy / "model.onnx"), image]), "artifacts: must map file names"
    )
    assert_one_line_error(runner.invoke(app, ["bench", str(run_copy / "model.onnx")]), "artifacts: must map")
    assert_one_line_error(runner.invoke(app, ["bench", str(run_copy)]), "artifacts: must map")
    _edit_manifest(run_copy, lambda m: m.update(artifacts={}))
    assert_one_line_error(runner.invoke(app, ["predict", str(run_copy / "model.onnx"), image]), "not listed in")
    assert_one_line_error(runner.invoke(app, ["bench", str(run_copy)]), "nothing to bench")


@pytest.mark.edge
@pytest.mark.parametrize("file", ["model_int8.tflite", "model.onnx"])
def test_fewer_classes_than_the_model_outputs(run_copy, image, file):
    _edit_manifest(run_copy, lambda m: m.update(classes=m["classes"][:2]))
    assert_one_line_error(
        runner.invoke(app, ["predict", str(run_copy / file), image]), file, "outputs 3 classes but the manifest lists 2"
    )


@pytest.mark.edge
def test_a_latin1_manifest(run_copy, image):
    manifest = load_manifest(run_copy)
    manifest["description"] = "café"
    (run_copy / "manifest.json").write_bytes(json.dumps(manifest, ensure_ascii=False).encode("latin-1"))
    assert_one_line_error(
        runner.invoke(app, ["predict", str(run_copy / "model.onnx"), image]), "manifest.json: not UTF-8"
    )
    assert_one_line_error(runner.invoke(app, ["bench", str(run_copy)]), "manifest.json: not UTF-8")


@pytest.mark.edge
def test_a_deleted_sha256_is_refused_not_skipped(run_copy, image):
    _edit_manifest(run_copy, lambda m: m["artifacts"]["model.onnx"].pop("sha256"))
    assert_one_line_error(
        runner.invoke(app, ["predict", str(run_copy / "model.onnx"), image]), "no sha256 recorded for model.onnx"
    )


@pytest.mark.edge
@pytest.mark.parametrize("threads", ["-4", "0"])
def test_bad_thread_count_is_a_usage_error(run_copy, image, threads):
    assert_one_line_error(
        runner.invoke(app, ["predict", str(run_copy / "model_int8.tflite"), image, "--threads", threads]),
        f"--threads: must be >= 1 (got {threads})",
    )


@pytest.mark.edge
def test_one_html_file_among_many_images(run_copy, device_run, tmp_path):
    folder = tmp_path / "photos"
    folder.mkdir()
    paths = load_split(device_run / "split.json").paths("test")
    for i in range(70):
        shutil.copy(paths[i % len(paths)], folder / f"{i:03d}.jpg")
    (folder / "040.jpg").write_text("<!doctype html><html><body>Not Found</body></html>")
    (folder / "066.jpg").write_bytes(b"")
    result = runner.invoke(app, ["predict", str(run_copy / "model.onnx"), str(folder), "--json"])
    assert result.exit_code == 1
    predicted = json.loads(result.stdout)
    assert len(predicted) == 68 and str(folder / "069.jpg") in {p["file"] for p in predicted}
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith("skipped: ") and "066.jpg" in lines[0]
    assert lines[-1].startswith("error: 2 of 70 files are not readable images (first: ") and "040.jpg" in lines[-1]
    assert "the other 68 were predicted" in lines[-1] and "Traceback" not in result.output


@pytest.mark.edge
def test_a_truncated_split_in_bench(run_copy):
    text = (run_copy / "split.json").read_text()
    (run_copy / "split.json").write_text(text[: len(text) // 2])
    assert_one_line_error(
        runner.invoke(app, ["bench", str(run_copy / "model_int8.tflite"), "--runs", "1"]),
        "split.json: not valid JSON",
        "re-run tk train",
    )


def test_a_truncated_split_in_verify(exported_run, tmp_path):
    run = Path(shutil.copytree(exported_run, tmp_path / "run"))
    (run / "split.json").write_text('{"root": "x", "classes": ["a", "b"], "splits": {"test": [["a.jpg", 0]')
    assert_one_line_error(runner.invoke(app, ["verify", str(run)]), "split.json: not valid JSON")
    (run / "split.json").write_text('{"root": "x"}')
    assert_one_line_error(runner.invoke(app, ["verify", str(run)]), "split.json: classes: missing")


@pytest.mark.edge
@pytest.mark.parametrize(
    "args",
    [
        ["predict", "{run}/model.keras", "{image}"],
        ["predict", "{run}/saved_model", "{image}"],
        ["bench", "{run}/model.keras"],
        ["bench", "{run}/saved_model"],
    ],
)
def test_tensorflow_formats_on_the_base_install(device_run, image, tmp_path, args):
    run = tmp_path / "run"
    run.mkdir()
    shutil.copy(device_run / "manifest.json", run)
    (run / "model.keras").write_bytes(b"PK")  # what matters is the format: it is not opened
    (run / "saved_model").mkdir()
    (run / "saved_model" / "saved_model.pb").write_bytes(b"")
    code = NO_TF + "from toolkit.cli.app import app\napp(sys.argv[1:])\n"
    proc = subprocess.run(
        [sys.executable, "-c", code, *(a.format(run=run, image=image) for a in args)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 1 and len(lines) == 1, proc.stderr
    assert (
        lines[0].startswith("error: ") and "needs TensorFlow" in lines[0] and "pip install 'tk-edge[train]'" in lines[0]
    )


# --------------------------------------------------------------------------- foreign ONNX files

CLASSES = ["a", "b", "c"]


def _onnx_model(tmp_path: Path, shape, dtype="float", outputs=1, name="model.onnx") -> Path:
    """A tiny ONNX classifier: mean over the pixels of each channel -> softmax (3 classes from
    3 channels), with the input's shape and type and the number of outputs chosen."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper

    elem = {"float": TensorProto.FLOAT, "uint8": TensorProto.UINT8}[dtype]
    nodes, x = [], "x"
    if dtype != "float":
        nodes.append(helper.make_node("Cast", ["x"], ["xf"], to=TensorProto.FLOAT))
        x = "xf"
    nodes += [
        helper.make_node("ReduceMean", [x], ["m"], axes=[1, 2], keepdims=0),
        helper.make_node("Mul", ["m", "k"], ["s"]),
        helper.make_node("Softmax", ["s"], ["p"], axis=1),
    ]
    outs = [helper.make_tensor_value_info("p", TensorProto.FLOAT, ["n", shape[-1]])]
    for i in range(1, outputs):
        nodes.append(helper.make_node("Identity", ["p"], [f"p{i}"]))
        outs.append(helper.make_tensor_value_info(f"p{i}", TensorProto.FLOAT, ["n", shape[-1]]))
    graph = helper.make_graph(
        nodes,
        "tiny",
        [helper.make_tensor_value_info("x", elem, shape)],
        outs,
        [helper.make_tensor("k", TensorProto.FLOAT, [], [0.05])],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 13)])
    model.ir_version = 8
    path = tmp_path / name
    onnx.save(model, path)
    manifest_path = tmp_path / "manifest.json"
    manifest = (
        json.loads(manifest_path.read_text())
        if manifest_path.is_file()
        else {"classes": CLASSES, "preprocessing": {"size": [8, 8]}, "artifacts": {}}
    )
    manifest["artifacts"][name] = {"file": name, "format": "onnx", "sha256": sha256_file(path)}
    manifest_path.write_text(json.dumps(manifest))
    return path


@pytest.fixture
def pixels():
    return np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3)).astype(np.float32)


@pytest.mark.edge
def test_onnx_uint8_input_and_fixed_batch_predict_what_the_float_model_does(tmp_path, pixels):
    reference = load_predictor(_onnx_model(tmp_path, ["n", 8, 8, 3])).predict_batched(pixels)
    assert reference.shape == (5, 3) and not np.allclose(reference, reference[0])
    uint8 = load_predictor(_onnx_model(tmp_path, ["n", 8, 8, 3], "uint8", name="u8.onnx"))
    np.testing.assert_allclose(uint8.predict_batched(pixels), reference, atol=1e-6)
    fixed = load_predictor(_onnx_model(tmp_path, [1, 8, 8, 3], name="b1.onnx"))
    np.testing.assert_allclose(fixed.predict_batched(pixels), reference, atol=1e-6)
    np.testing.assert_allclose(fixed.predict(pixels[:3]), reference[:3], atol=1e-6)
    fixed4 = load_predictor(_onnx_model(tmp_path, [4, 8, 8, 3], name="b4.onnx"))  # 5 = 4 + 1 padded
    np.testing.assert_allclose(fixed4.predict(pixels), reference, atol=1e-6)


@pytest.mark.edge
@pytest.mark.parametrize(
    "shape, outputs, message",
    [
        (["n", 8, 8, 1], 1, "model input has 1 channel(s)"),
        (["n", 3, 8, 8], 1, "channels-first"),
        (["n", 8, 8, 3], 5, "model has 5 outputs"),
    ],
)
def test_onnx_models_tk_cannot_label_are_refused(tmp_path, image, shape, outputs, message):
    path = _onnx_model(tmp_path, shape, outputs=outputs)
    assert_one_line_error(runner.invoke(app, ["predict", str(path), image]), "model.onnx", message)


@pytest.mark.edge
@pytest.mark.parametrize(
    "args, message",
    [
        (["bench", "RUN", "--threads", "5"], "--threads: at most 4 threads on this machine"),  # 50000 hung
        (["predict", "RUN/model.onnx", "IMAGE", "--threads", "5"], "--threads: at most 4"),  # 100000 aborted
        (["bench", "RUN", "--threads", "1", "--batch", "2000"], "--batch: 2000 images of"),  # MemoryError
    ],
)
def test_numbers_beyond_the_machine_are_capped_with_a_message(run_copy, image, args, message, monkeypatch):
    """Issue 20: thread counts relative to the cores here, a batch against the memory available.
    On a machine of 1 core and 64 MiB free, so that without the caps these numbers still run
    harmlessly (and the test fails) instead of hanging or exhausting the machine."""
    monkeypatch.setattr("toolkit.core.caps.cores", lambda: 1)
    monkeypatch.setattr("toolkit.core.caps.available_memory", lambda: 64 << 20)
    args = [a.replace("RUN", str(run_copy)).replace("IMAGE", image) for a in args]
    assert_one_line_error(runner.invoke(app, args), message)
    assert not (run_copy / "bench.json").exists()


@pytest.mark.edge
@pytest.mark.parametrize(
    "limits, message",
    [
        (["--max-latency-ms", "nan"], "--max-latency-ms: must be a number of milliseconds > 0 (got nan)"),
        (["--max-latency-ms", "-inf"], "--max-latency-ms: must be"),
        (["--min-accuracy", "-inf"], "--min-accuracy: must be a fraction between 0 and 1"),
        (["--min-accuracy", "nan"], "--min-accuracy: must be"),
        (["--min-accuracy", "90"], "--min-accuracy: must be"),
    ],
)
def test_ship_limits_that_no_row_can_meet_honestly_are_refused_first(run_copy, limits, message):
    """Issue 20: `--max-latency-ms nan --min-accuracy -inf` was accepted, exit 0."""
    result = runner.invoke(app, ["bench", str(run_copy), "--runs", "1", "--threads", "1", *limits])
    assert_one_line_error(result, message)
    assert not (run_copy / "bench.json").exists()


@pytest.mark.edge
@pytest.mark.parametrize(
    "content, fragment",
    [
        (None, "a folder where a JSON file belongs"),
        ({"machine": {}, "rows": ["model.onnx 1 ms"]}, "rows[0]: must be an object"),
        ({"machine": {}, "rows": [], "other_rows": "none"}, "other_rows: must be a list"),
        ({"machine": {}, "rows": [], "machines": ["pi"]}, "machines: must map machine labels"),
        ({"machine": [], "rows": []}, "machine: must be an object"),
    ],
    ids=["directory", "rows-as-strings", "other-rows-not-a-list", "machines-a-list", "machine-a-list"],
)
def test_a_hand_edited_bench_json_is_one_line_before_any_measuring_and_kept(run_copy, content, fragment):
    path = run_copy / "bench.json"
    if content is None:
        path.mkdir()
    else:
        path.write_text(json.dumps(content))
    before = None if content is None else path.read_bytes()
    result = runner.invoke(app, ["bench", str(run_copy / "model.onnx"), "--runs", "1", "--warmup", "0"])
    assert_one_line_error(result, "bench.json", fragment, "move it aside or delete it")
    assert "threads 1" not in result.output  # refused before the first measurement
    assert path.is_dir() if content is None else path.read_bytes() == before


@pytest.mark.edge
@pytest.mark.parametrize(
    "edit, fragment",
    [
        (lambda m: m["preprocessing"].update(size=[100_000, 100_000]), "size[0]: must be between 1 and 4096"),
        (lambda m: m.update(classes="circle,square,triangle"), "classes: must be a list"),
        (lambda m: m.update(classes=[1, 2, 3]), "classes[0]: must be text"),
        (lambda m: m["artifacts"]["model.onnx"].update(sha256=None, file="other.onnx"), "names 'other.onnx'"),
    ],
)
def test_hand_edited_manifests_are_one_line_on_the_device(run_copy, image, edit, fragment):
    manifest = json.loads((run_copy / "manifest.json").read_text())
    edit(manifest)
    (run_copy / "manifest.json").write_text(json.dumps(manifest))
    assert_one_line_error(runner.invoke(app, ["predict", str(run_copy / "model.onnx"), image]), fragment)
    assert_one_line_error(runner.invoke(app, ["bench", str(run_copy), "--runs", "1"]), fragment)
