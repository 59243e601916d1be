"""Runs that travel: verify, bench and int8 export of a run from another folder, after the run
folder moved, after the dataset moved (--data-root), `tk verify .` inside the run; retraining keeps
the previous run, and "the latest run" is the one trained last even after verify touched another."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from helpers import assert_one_line_error
from typer.testing import CliRunner

from toolkit.cli.app import app
from toolkit.core.runs import load_manifest, load_split

runner = CliRunner()


@pytest.fixture(scope="module")
def travelled(exported_run, synth_root, tmp_path_factory):
    """exported_run and its dataset both moved: the run to another folder, the images to another
    root (split.json still records the old, now missing, root)."""
    base = tmp_path_factory.mktemp("travel")
    run = Path(shutil.copytree(exported_run, base / "moved_runs" / "scratch"))
    data = Path(shutil.copytree(synth_root, base / "moved_data"))
    raw = json.loads((run / "split.json").read_text())
    raw["root"] = str(base / "gone")  # where the data was when training ran
    (run / "split.json").write_text(json.dumps(raw))
    (base / "elsewhere").mkdir()
    return run, data, base / "elsewhere"


def test_verify_from_another_folder(exported_run, tmp_path, monkeypatch):
    run = Path(shutil.copytree(exported_run, tmp_path / "runs" / "scratch"))
    monkeypatch.chdir(tmp_path)  # neither the run nor where training ran
    result = runner.invoke(app, ["verify", str(run), "--artifact", "model.onnx"])
    assert result.exit_code == 0, result.output
    assert "✓ model.onnx" in result.output


def test_verify_dot_inside_the_run(exported_run, tmp_path, monkeypatch):
    run = Path(shutil.copytree(exported_run, tmp_path / "scratch"))
    monkeypatch.chdir(run)
    result = runner.invoke(app, ["verify", ".", "--artifact", "model_float32.tflite"])
    assert result.exit_code == 0, result.output
    assert json.loads((run / "parity.json").read_text())["artifacts"]["model_float32.tflite"]["passed"]


def test_moved_dataset_is_one_line_naming_file_root_and_fix(travelled, monkeypatch):
    run, _, elsewhere = travelled
    monkeypatch.chdir(elsewhere)
    result = runner.invoke(app, ["verify", str(run), "--artifact", "model.onnx"])
    gone = str(run.parent.parent / "gone")
    assert_one_line_error(result, "not found under the data root", gone, "--data-root")


def test_moved_run_and_dataset_verify_and_bench_with_data_root(travelled, monkeypatch):
    run, data, elsewhere = travelled
    monkeypatch.chdir(elsewhere)
    result = runner.invoke(app, ["verify", str(run), "--artifact", "model.onnx", "--data-root", str(data)])
    assert result.exit_code == 0, result.output
    result = runner.invoke(
        app,
        [
            "bench",
            str(run / "model.onnx"),
            "--runs",
            "3",
            "--warmup",
            "1",
            "--threads",
            "1",
            "--data-root",
            str(data),
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    row = json.loads(result.output)["rows"][0]
    assert row["file"] == "model.onnx" and row["test_count"] == len(load_split(run / "split.json").paths("test"))
    assert row["accuracy"] is not None


def test_int8_export_of_a_moved_run_with_data_root(trained_run, travelled, tmp_path, monkeypatch):
    _, data, elsewhere = travelled
    run = Path(shutil.copytree(trained_run, tmp_path / "far" / "scratch"))
    raw = json.loads((run / "split.json").read_text())
    raw["root"] = str(tmp_path / "gone")
    (run / "split.json").write_text(json.dumps(raw))
    monkeypatch.chdir(elsewhere)
    from toolkit.core.errors import TkError
    from toolkit.core.runs import run_recipe
    from toolkit.export.job import ExportJob

    job = ExportJob(run, run_recipe(run), 17)  # the calibration images, no conversion
    try:
        with pytest.raises(TkError, match="--data-root") as err:
            job.calibration  # noqa: B018
        assert str(tmp_path / "gone") in str(err.value)
    finally:
        job.close()
    result = runner.invoke(
        app,
        [
            "export",
            str(run),
            "--format",
            "tflite",
            "--quantize",
            "int8",
            "--no-int8-fallback",
            "--data-root",
            str(data),
        ],
    )
    assert result.exit_code == 0, result.output
    assert load_manifest(run)["artifacts"]["model_int8.tflite"]["calibration"]["samples"] > 0


def test_latest_is_the_run_trained_last_after_verify_touched_an_older_one(exported_run, tmp_path):
    runs = tmp_path / "runs"
    older = Path(shutil.copytree(exported_run, runs / "older"))
    newer = Path(shutil.copytree(exported_run, runs / "newer"))
    for run, stamp in ((older, "2026-01-01T00:00:00+00:00"), (newer, "2026-02-01T00:00:00+00:00")):
        manifest = json.loads((run / "manifest.json").read_text())
        manifest.update(name=run.name, trained=stamp)
        (run / "manifest.json").write_text(json.dumps(manifest))
    touched = runner.invoke(app, ["verify", str(older), "--artifact", "model.onnx"])
    assert touched.exit_code == 0, touched.output
    result = runner.invoke(app, ["report", "--runs-dir", str(runs)])
    assert result.exit_code == 0, result.output
    assert f"using the latest run: {newer}" in result.output and (newer / "REPORT.md").is_file()
    assert not (older / "REPORT.md").exists()
