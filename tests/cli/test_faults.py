"""Disk full and read-only folders end in one line naming the folder, not an OSError traceback.
Simulated with monkeypatch: tests may run as root, where chmod does not block writes."""

from __future__ import annotations

import errno
import math

import pytest
from typer.testing import CliRunner

import toolkit.core.io as io
from toolkit.cli.app import app
from toolkit.core.errors import fault_line


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "disk is full"), (errno.EROFS, "read-only")])
def test_fault_errnos_become_one_line_naming_the_folder(code, words):
    line = fault_line(OSError(code, "boom", "/runs/r1/model.keras"))
    assert line.startswith("could not write in /runs/r1") and words in line


@pytest.mark.parametrize(
    "code, words",
    [(errno.EACCES, "no permission"), (errno.ENAMETOOLONG, "too long"), (errno.ELOOP, "symbolic links")],
)
def test_path_faults_name_the_path_and_never_claim_a_write(code, words):
    """Issue 20: reading /proc/1/environ said "could not write in /proc/1"; a long path was a traceback."""
    line = fault_line(OSError(code, "boom", "/proc/1/environ"))
    assert line.startswith("/proc/1/environ: boom; ") and words in line and "write" not in line
    long = "/data/" + "x" * 5000
    assert len(fault_line(OSError(code, "boom", long))) < 300


def test_other_oserrors_keep_their_traceback():
    assert fault_line(OSError(errno.EIO, "io")) is None


def test_disk_full_while_writing_synthetic_data_is_one_line(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "data" / "x.json"))

    monkeypatch.setattr(io.tempfile, "mkstemp", full)
    from PIL import Image

    import toolkit.core.images as images  # noqa: F401

    monkeypatch.setattr(Image.Image, "save", full)
    result = CliRunner().invoke(app, ["data", "synth", str(tmp_path / "data")])
    assert result.exit_code == 1, result.output
    assert "disk is full" in result.output and "Traceback" not in result.output


# --- through each command: one line naming the folder, the earlier run byte-identical ----------

import hashlib  # noqa: E402
import json  # noqa: E402
import shutil  # noqa: E402
from pathlib import Path  # noqa: E402

from helpers import assert_one_line_error, small_recipe  # noqa: E402


def _hashes(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def _ends_in_one_error_line(result, *fragments: str) -> None:
    """tk train prints progress as it goes: its failure is the one error line at the end."""
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert [i for i, line in enumerate(lines) if line.startswith("error: ")] == [len(lines) - 1], result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[-1], lines[-1]


def _recipe_file(tmp_path: Path, recipe) -> Path:
    import yaml

    path = tmp_path / f"{recipe.name}.yaml"
    path.write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    return path


def test_disk_full_mid_checkpoint_keeps_the_last_backup_and_resume_finishes(
    synth_root, trained_run, feature_cache, tmp_path, monkeypatch
):
    import keras

    from toolkit.train import checkpoints

    monkeypatch.setattr(checkpoints, "WRITE_SHARE", math.inf)  # every epoch writes: the 2nd backup is epoch 2's
    runs = tmp_path / "runs"
    shutil.copytree(trained_run, runs / trained_run.name)  # the finished earlier run of this name
    before = _hashes(runs / trained_run.name)
    recipe = _recipe_file(tmp_path, small_recipe(trained_run.name, synth_root, train={"epochs": 3}))
    backup = runs / f"{trained_run.name}.partial" / "phases" / "scratch" / "backup"
    original, seen = keras.Model.save_weights, {}

    def full_on_the_second_backup(self, filepath, *args, **kwargs):
        if str(filepath).endswith(".weights.h5") and "backup" in str(filepath):
            seen["calls"] = seen.get("calls", 0) + 1
            if seen["calls"] == 2:
                seen["latest"] = (backup / "latest.weights.h5").read_bytes()
                Path(filepath).write_bytes(b"\0" * 100)  # the half-written temporary
                raise OSError(errno.ENOSPC, "No space left on device", str(filepath))
        return original(self, filepath, *args, **kwargs)

    monkeypatch.setattr(keras.Model, "save_weights", full_on_the_second_backup)
    result = CliRunner().invoke(app, ["train", str(recipe), "--runs-dir", str(runs)])
    _ends_in_one_error_line(result, "disk is full", str(backup), "--resume")
    assert (backup / "latest.weights.h5").read_bytes() == seen["latest"]  # epoch 1's backup, whole
    assert json.loads((backup / "training_metadata.json").read_text())["epoch"] == 1
    assert not [p for p in backup.iterdir() if ".tmp" in p.name]
    assert _hashes(runs / trained_run.name) == before

    monkeypatch.setattr(keras.Model, "save_weights", original)  # space freed
    result = CliRunner().invoke(app, ["train", str(recipe), "--runs-dir", str(runs), "--resume"])
    assert result.exit_code == 0, result.output
    epochs = [line for line in result.output.splitlines() if line.startswith("[scratch] epoch")]
    assert epochs[0].startswith("[scratch] epoch 2/3"), result.output
    history = json.loads((runs / trained_run.name / "phases" / "scratch" / "history.json").read_text())
    assert len(history["loss"]) == 3


def test_read_only_runs_folder_fails_train_before_training(
    synth_root, trained_run, feature_cache, tmp_path, monkeypatch
):
    runs = tmp_path / "runs"
    shutil.copytree(trained_run, runs / trained_run.name)
    before = _hashes(runs)
    recipe = _recipe_file(tmp_path, small_recipe(trained_run.name, synth_root, train={"epochs": 1}))
    _read_only(monkeypatch, runs)
    result = CliRunner().invoke(app, ["train", str(recipe), "--runs-dir", str(runs)])
    _ends_in_one_error_line(result, f"could not write in {runs}", "read-only")
    assert "epoch" not in result.output and _hashes(runs) == before


def _read_only(monkeypatch, folder: Path) -> None:
    """Every new file under folder fails as on a read-only mount (root ignores chmod)."""
    original = io.tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and Path(dir).resolve().is_relative_to(folder.resolve()):
            raise OSError(errno.EROFS, "Read-only file system", str(Path(dir) / "x"))
        return original(*args, dir=dir, **kwargs)

    monkeypatch.setattr(io.tempfile, "mkstemp", mkstemp)


@pytest.mark.parametrize(
    "command",
    [
        ["verify"],
        ["bench", "--runs", "3", "--warmup", "1", "--threads", "1"],
        ["report"],
        ["export", "--format", "onnx"],
    ],
)
def test_read_only_run_folder_is_one_line_before_the_work(exported_run, tmp_path, monkeypatch, command):
    run = tmp_path / exported_run.name
    shutil.copytree(exported_run, run)
    before = _hashes(run)
    _read_only(monkeypatch, run)
    result = CliRunner().invoke(app, [command[0], str(run), *command[1:]])
    assert_one_line_error(result, f"could not write in {run}", "read-only")
    assert _hashes(run) == before


def test_disk_full_during_an_export_keeps_every_earlier_artifact(exported_run, tmp_path, monkeypatch):
    import toolkit.export.exporter as exporter

    run = tmp_path / exported_run.name
    shutil.copytree(exported_run, run)
    before = _hashes(run)

    def full(job, quantization, tmp):
        tmp.write_bytes(b"\0" * 1000)  # half an artifact
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp))

    monkeypatch.setitem(exporter.WRITERS, "onnx", full)
    result = CliRunner().invoke(app, ["export", str(run), "--format", "onnx"])
    assert_one_line_error(result, f"could not write in {run}", "disk is full")
    assert _hashes(run) == before  # no temporary, no .export-* folder, every artifact as it was


def test_paths_too_long_are_one_line_in_pack_predict_bench_and_set(device_run, tmp_path):
    """Issue 20: ENAMETOOLONG was a traceback in pack, predict, bench and --set."""
    from toolkit.core.runs import load_split

    long = str(tmp_path / ("x" * 300))
    image = load_split(device_run / "split.json").paths("test")[0]
    for args in (
        ["pack", str(device_run), long],
        ["predict", str(device_run / "model.onnx"), long + ".jpg"],
        ["predict", long + ".onnx", image],
        ["bench", long],
        ["data", "inspect", str(device_run / "recipe.yaml"), "--set", f"data.root={long}"],
    ):
        assert_one_line_error(CliRunner().invoke(app, args), "File name too long", "use a shorter path")
