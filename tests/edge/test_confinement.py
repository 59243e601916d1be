"""Issue 20: paths read from a run's manifest or split.json, or from a bundle, stay inside the run,
the bundle or the data root (core/paths.confine). Each hostile case is one line, exit 1, nothing
read or written outside; the hostile files are built here from the session's exported run."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest
from helpers import assert_one_line_error
from typer.testing import CliRunner

from toolkit.cli.app import app
from toolkit.core.io import sha256_file
from toolkit.core.runs import load_manifest, save_manifest
from toolkit.edge.pack import pack

runner = CliRunner()
pytestmark = pytest.mark.edge


@pytest.fixture
def run_copy(device_run, tmp_path) -> Path:
    """The exported run in tmp_path/runs/run: tmp_path holds what lies 'outside' it."""
    ignore = shutil.ignore_patterns("saved_model", "model.keras", "*.tflite", "model_int8.onnx")
    return Path(shutil.copytree(device_run, tmp_path / "runs" / "run", ignore=ignore))


@pytest.fixture
def bundle(device_run, tmp_path) -> Path:
    target = tmp_path / "models" / "bundle"
    pack(device_run, target, files=["model.onnx"], samples=6)
    return target


def _edit_json(path: Path, edit) -> None:
    obj = json.loads(path.read_text())
    edit(obj)
    path.write_text(json.dumps(obj))


@pytest.mark.parametrize("name", ["../../victim.txt", "ABSOLUTE"])
def test_pack_refuses_artifact_names_that_leave_the_run(run_copy, tmp_path, name):
    victim = tmp_path / "victim.txt"
    victim.write_text("original\n")
    name = str(victim) if name == "ABSOLUTE" else name
    manifest = load_manifest(run_copy)
    entry = {**manifest["artifacts"]["model.onnx"], "file": name, "sha256": sha256_file(victim)}
    manifest["artifacts"][name] = entry
    save_manifest(run_copy, manifest)
    out = tmp_path / "out" / "bundle"
    for args in (["--artifact", name], ["--format", "onnx"]):
        result = runner.invoke(app, ["pack", str(run_copy), str(out), *args])
        assert_one_line_error(result, "manifest.json", repr(name), "plain file name")
        assert victim.read_text() == "original\n"
        assert not (tmp_path / "out").exists() or not any((tmp_path / "out").iterdir())


@pytest.mark.parametrize("recorded", ["/etc/passwd", "../../../../../../../../etc/hostname", "cat/../../../x.jpg"])
def test_pack_refuses_test_images_listed_outside_the_data_root(run_copy, tmp_path, recorded):
    _edit_json(run_copy / "split.json", lambda s: s["splits"]["test"].insert(0, [recorded, 0]))
    # --allow-unverified: the gate calls the edited split stale first; confinement is what is tested
    result = runner.invoke(app, ["pack", str(run_copy), str(tmp_path / "b"), "--allow-unverified"])
    assert_one_line_error(result, "split.json", repr(recorded), "outside")
    assert not (tmp_path / "b").exists()


def test_pack_copies_images_only_even_from_inside_a_hostile_root(run_copy, tmp_path):
    """A split.json can name any root; what pack copies into a bundle must still be an image."""
    secret = tmp_path / "home" / "notes.jpg"
    secret.parent.mkdir()
    secret.write_text("my private notes\n")
    _edit_json(
        run_copy / "split.json", lambda s: s.update(root=str(secret.parent), splits={"test": [["notes.jpg", 0]]})
    )
    # --allow-unverified: the gate calls the edited split stale first; confinement is what is tested
    result = runner.invoke(app, ["pack", str(run_copy), str(tmp_path / "b"), "--allow-unverified"])
    assert_one_line_error(result, "notes.jpg", "not an image")
    assert not (tmp_path / "b").exists()


@pytest.mark.parametrize("recorded", ["../secret/private.jpg", "/etc/passwd", "samples/../../secret/private.jpg"])
def test_bench_on_a_bundle_reads_no_image_outside_it(bundle, tmp_path, recorded):
    (bundle.parent / "secret").mkdir()
    shutil.copyfile(next(bundle.glob("samples/*/*")), bundle.parent / "secret" / "private.jpg")
    _edit_json(bundle / "split.json", lambda s: s["splits"]["test"].append([recorded, 0]))
    result = runner.invoke(app, ["bench", str(bundle), "--runs", "1", "--warmup", "0", "--threads", "1"])
    assert_one_line_error(result, "split.json", repr(recorded), "tk pack again")
    assert not (bundle / "bench.json").exists()


def test_bench_on_a_bundle_refuses_a_sample_linked_to_a_file_elsewhere(bundle, tmp_path):
    sample = next(bundle.glob("samples/*/*"))
    outside = tmp_path / "private.jpg"
    shutil.copyfile(sample, outside)
    sample.unlink()
    os.symlink(outside, sample)
    result = runner.invoke(app, ["bench", str(bundle), "--runs", "1", "--warmup", "0", "--threads", "1"])
    assert_one_line_error(result, "split.json", "through a symbolic link")


def test_bench_on_a_bundle_whose_split_points_at_a_dataset_is_refused(bundle, tmp_path):
    _edit_json(bundle / "split.json", lambda s: s.update(layout="folder", root=str(tmp_path)))
    result = runner.invoke(app, ["bench", str(bundle), "--runs", "1", "--warmup", "0", "--threads", "1"])
    assert_one_line_error(result, "split.json", "layout bundle", "tk pack again")


@pytest.mark.parametrize("name", ["../runs/run/model.onnx", "sub/model.onnx"])
def test_bench_refuses_manifest_artifacts_outside_the_bundle(bundle, device_run, name):
    manifest = load_manifest(bundle)
    manifest["artifacts"][name] = {**manifest["artifacts"]["model.onnx"], "file": name}
    save_manifest(bundle, manifest)
    result = runner.invoke(app, ["bench", str(bundle), "--runs", "1", "--warmup", "0", "--threads", "1"])
    assert_one_line_error(result, "manifest.json", repr(name), "must be a plain file name")


@pytest.mark.parametrize("label", [7, -1, "1", True])
def test_bench_refuses_labels_that_are_not_class_indices(bundle, label):
    _edit_json(bundle / "split.json", lambda s: s["splits"]["test"][0].__setitem__(1, label))
    result = runner.invoke(app, ["bench", str(bundle), "--runs", "1", "--warmup", "0", "--threads", "1"])
    assert_one_line_error(result, "split.json", f"got {label!r}", "must be a class index")


def test_bench_refuses_a_split_of_other_classes_than_the_manifest(bundle):
    _edit_json(bundle / "split.json", lambda s: s.update(classes=list(reversed(s["classes"]))))
    result = runner.invoke(app, ["bench", str(bundle), "--runs", "1", "--warmup", "0", "--threads", "1"])
    assert_one_line_error(result, "split.json", "differ from", "together")


def test_predict_and_bench_read_no_manifest_linked_from_elsewhere(bundle, tmp_path):
    elsewhere = tmp_path / "elsewhere.json"
    shutil.move(bundle / "manifest.json", elsewhere)
    os.symlink(elsewhere, bundle / "manifest.json")
    image = str(next(bundle.glob("samples/*/*")))
    assert_one_line_error(runner.invoke(app, ["predict", str(bundle / "model.onnx"), image]), "symbolic link")
    assert_one_line_error(runner.invoke(app, ["bench", str(bundle)]), "symbolic link")
