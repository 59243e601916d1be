"""`tk pack`: the device bundle (artifacts, manifest, labels, a labelled test sample) and `tk bench`
on it with TensorFlow unimportable, from another folder, with no path juggling."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_one_line_error
from typer.testing import CliRunner

from toolkit.cli.app import app
from toolkit.core.errors import TkError
from toolkit.core.io import sha256_file
from toolkit.core.runs import load_manifest, load_split, save_manifest
from toolkit.edge.pack import pack
from toolkit.edge.predictors import load_predictor

runner = CliRunner()
NO_TF = "import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"


@pytest.fixture(scope="module")
def bundle(device_run, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("pack") / "bundle"
    pack(device_run, target, samples=12)
    return target


@pytest.mark.edge
def test_bundle_holds_device_artifacts_manifest_labels_and_a_stratified_sample(device_run, bundle):
    manifest = load_manifest(bundle)
    source = load_manifest(device_run)
    device = {f for f, e in source["artifacts"].items() if e["format"] in ("tflite", "onnx")}
    assert set(manifest["artifacts"]) == device and device
    for file, entry in manifest["artifacts"].items():
        assert sha256_file(bundle / file) == entry["sha256"] == source["artifacts"][file]["sha256"]
    assert not (bundle / "model.keras").exists() and not (bundle / "saved_model").exists()
    assert (bundle / "labels.txt").read_text().splitlines() == source["classes"]
    split = load_split(bundle / "split.json")
    assert list(split.splits) == ["test"] and split.classes == source["classes"]
    counts = Counter(split.labels("test"))
    assert sum(counts.values()) == 12 and max(counts.values()) - min(counts.values()) <= 1
    recorded = json.loads((bundle / "split.json").read_text())
    assert recorded["root"] == "."  # read relative to the bundle, wherever it is copied
    for (path, label), (full, _) in zip(recorded["splits"]["test"], split.splits["test"], strict=True):
        assert not Path(path).is_absolute() and Path(full) == bundle / path and Path(full).is_file()
        assert Path(path).parts[:2] == ("samples", source["classes"][label])  # the folder is the label
    assert manifest["bundle"]["samples"] == 12
    assert not [p.name for p in bundle.parent.iterdir() if p.name.startswith(".")]  # no temp left


@pytest.mark.edge
def test_bench_on_the_bundle_without_tensorflow_reports_accuracy_from_the_packed_labels(bundle, tmp_path):
    device = Path(shutil.copytree(bundle, tmp_path / "pi" / "flowers"))
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    code = NO_TF + "from toolkit.cli.app import app\napp(sys.argv[1:])\n"
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "bench",
            str(device),
            "--threads",
            "1",
            "--runs",
            "2",
            "--warmup",
            "0",
            "--batch",
            "4",
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=elsewhere,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    split = load_split(device / "split.json")
    paths, labels = [str(device / p) for p in split.paths("test")], np.asarray(split.labels("test"))
    assert {r["file"] for r in out["rows"]} == set(load_manifest(device)["artifacts"])
    for row in out["rows"]:
        assert row["test_count"] == len(labels) and not row["tensorflow_loaded"]
        probs = load_predictor(device / row["file"], num_threads=1).predict_files(paths)
        assert row["accuracy"] == pytest.approx(float((probs.argmax(1) == labels).mean()))
    assert not any("accuracy not measured" in n for n in out["notes"])


@pytest.mark.edge
def test_cli_pack_chooses_artifacts_and_predict_runs_on_the_samples(device_run, tmp_path):
    target = tmp_path / "int8"
    result = runner.invoke(
        app, ["pack", str(device_run), str(target), "--artifact", "model_int8.tflite", "--samples", "3"]
    )
    assert result.exit_code == 0, result.output
    assert "packed 1 artifact(s), 3 test images" in result.output
    assert set(load_manifest(target)["artifacts"]) == {"model_int8.tflite"}
    result = runner.invoke(app, ["predict", str(target / "model_int8.tflite"), str(target / "samples"), "--json"])
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.output)) == 3
    onnx = tmp_path / "onnx"
    assert runner.invoke(app, ["pack", str(device_run), str(onnx), "--format", "onnx", "--samples", "0"]).exit_code == 0
    assert {e["format"] for e in load_manifest(onnx)["artifacts"].values()} == {"onnx"}
    assert not (onnx / "samples").exists() and not (onnx / "split.json").exists()


@pytest.mark.edge
def test_an_existing_folder_is_refused_unless_force_and_a_bundle(device_run, bundle, tmp_path):
    other = tmp_path / "mine"
    other.mkdir()
    (other / "keep.txt").write_text("mine")
    args = ["--samples", "0", "--format", "onnx"]
    assert_one_line_error(runner.invoke(app, ["pack", str(device_run), str(other), *args]), "not empty", "--force")
    assert_one_line_error(
        runner.invoke(app, ["pack", str(device_run), str(other), *args, "--force"]), "not a tk bundle"
    )
    assert (other / "keep.txt").read_text() == "mine"
    assert_one_line_error(
        runner.invoke(app, ["pack", str(device_run), str(device_run.parent), *args, "--force"]),
        "(or holds) the run folder",
    )
    again = Path(shutil.copytree(bundle, tmp_path / "again"))
    assert runner.invoke(app, ["pack", str(device_run), str(again), *args, "--force"]).exit_code == 0
    assert {e["format"] for e in load_manifest(again)["artifacts"].values()} == {"onnx"}
    assert not (again / "samples").exists()


@pytest.mark.edge
def test_a_failed_pack_leaves_the_earlier_bundle_and_no_temp(device_run, bundle, tmp_path):
    run = Path(shutil.copytree(device_run, tmp_path / "run", ignore=shutil.ignore_patterns("saved_model", "*.keras")))
    with open(run / "model.onnx", "ab") as fh:
        fh.write(b"\0")
    target = Path(shutil.copytree(bundle, tmp_path / "out" / "bundle"))
    before = sorted(p.relative_to(target) for p in target.rglob("*"))
    with pytest.raises(TkError, match=r"model.onnx \(stale: the file changed since tk verify judged it"):
        pack(run, target, samples=2, force=True)  # the gate: verify judged other bytes
    with pytest.raises(TkError, match="model.onnx: sha256 differs"):  # and the copy's hash, gate or not
        pack(run, target, samples=2, force=True, allow_unverified=True)
    assert sorted(p.relative_to(target) for p in target.rglob("*")) == before
    assert [p.name for p in target.parent.iterdir()] == ["bundle"]
    manifest = load_manifest(run)
    del manifest["artifacts"]["model.onnx"]["sha256"]
    save_manifest(run, manifest)
    with pytest.raises(TkError, match="model.onnx has no sha256"):
        pack(run, tmp_path / "new", files=["model.onnx"], samples=0, allow_unverified=True)
    assert not (tmp_path / "new").exists()


@pytest.mark.edge
@pytest.mark.parametrize(
    "args, message",
    [
        (["--format", "keras"], "cannot be packed for a device"),
        (["--artifact", "model.keras"], "needs TensorFlow"),
        (["--artifact", "nope.tflite"], "not listed in"),
        (["--samples", "5000"], "--samples: must be between 0 and 1000"),
    ],
)
def test_bad_choices_are_one_line(device_run, tmp_path, args, message):
    assert_one_line_error(runner.invoke(app, ["pack", str(device_run), str(tmp_path / "b"), *args]), message)
    assert not (tmp_path / "b").exists()


@pytest.mark.edge
def test_pack_json_is_the_result_only(device_run, tmp_path):
    out = CliRunner().invoke(app, ["pack", str(device_run), str(tmp_path / "b"), "--samples", "3", "--json"])
    assert out.exit_code == 0, out.output
    result = json.loads(out.output)  # nothing but the JSON on stdout
    assert result["samples"] == 3 and set(result["artifacts"]) and (tmp_path / "b" / "manifest.json").is_file()
