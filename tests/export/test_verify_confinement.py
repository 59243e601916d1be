"""Issue 20: tk verify runs only the artifacts inside the run and reads only images under the
data root (core/paths.confine); a hostile manifest or split.json is one line, nothing recorded."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import assert_one_line_error
from typer.testing import CliRunner

from toolkit.cli.app import app
from toolkit.core.runs import load_manifest, save_manifest

runner = CliRunner()


@pytest.fixture
def run_copy(exported_run, tmp_path) -> Path:
    keep = shutil.ignore_patterns("saved_model", "*.tflite", "model_int8.onnx")
    return Path(shutil.copytree(exported_run, tmp_path / "runs" / "run", ignore=keep))


def test_an_artifact_named_outside_the_run_is_refused_before_anything_runs(run_copy, tmp_path):
    outside = tmp_path / "model.onnx"
    shutil.copyfile(run_copy / "model.onnx", outside)
    manifest = load_manifest(run_copy)
    manifest["artifacts"]["../../model.onnx"] = {**manifest["artifacts"]["model.onnx"], "file": "../../model.onnx"}
    save_manifest(run_copy, manifest)
    before = (run_copy / "manifest.json").read_bytes()
    parity = run_copy / "parity.json"  # the session's run is verified once: its parity.json stays as it was
    parity_before = parity.read_bytes() if parity.exists() else None
    result = runner.invoke(app, ["verify", str(run_copy)])
    assert_one_line_error(result, "manifest.json", "'../../model.onnx'", "must be a plain file name")
    assert (run_copy / "manifest.json").read_bytes() == before
    assert (parity.read_bytes() if parity.exists() else None) == parity_before


def test_an_image_listed_outside_the_data_root_is_refused(run_copy):
    split = json.loads((run_copy / "split.json").read_text())
    split["splits"]["test"][0][0] = "../../../../../../../../../etc/hostname"
    (run_copy / "split.json").write_text(json.dumps(split))
    result = runner.invoke(app, ["verify", str(run_copy)])
    assert_one_line_error(result, "split.json", "etc/hostname", "outside", "--data-root")
