"""A second tk train / tk export of a run in progress refuses in one line naming the other process;
a killed run's lock and leftovers never get in the next run's way."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
from pathlib import Path

import pytest
from helpers import assert_one_line_error, small_recipe
from typer.testing import CliRunner

from toolkit.cli.app import app
from toolkit.core.lock import lock_path

ROOT = Path(__file__).resolve().parents[2]
HOLDER = """
import sys
from toolkit.core.lock import run_lock
with run_lock(sys.argv[1], "tk train"):
    print("held", flush=True)
    sys.stdin.read()
"""


def _hold(run: Path) -> subprocess.Popen:
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run)],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.stdout.readline().strip() == "held"
    return proc


def _release(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    proc.wait(timeout=30)


def _tree(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_a_second_train_of_a_run_in_progress_refuses_naming_the_first(synth_root, feature_cache, tmp_path):
    import yaml

    runs = tmp_path / "runs"
    partial = runs / "busy.partial"
    partial.mkdir(parents=True)
    (partial / "best.keras").write_bytes(b"the first run's checkpoint")
    recipe = tmp_path / "busy.yaml"
    recipe.write_text(yaml.safe_dump(small_recipe("busy", synth_root, train={"epochs": 1}).to_dict()))
    proc = _hold(runs / "busy")
    try:
        result = CliRunner().invoke(app, ["train", str(recipe), "--runs-dir", str(runs)])
    finally:
        _release(proc)
    last = result.output.strip().splitlines()[-1]
    assert result.exit_code == 1 and "Traceback" not in result.output
    for fragment in (f"pid {proc.pid}", socket.gethostname(), "tk train", str(lock_path(runs / "busy"))):
        assert fragment in last, last
    assert (partial / "best.keras").read_bytes() == b"the first run's checkpoint"  # not deleted


def test_export_while_the_run_is_locked_refuses_and_a_dead_lock_is_taken_over(exported_run, tmp_path):
    run = tmp_path / "runs" / exported_run.name
    shutil.copytree(exported_run, run)
    before = _tree(run)
    proc = _hold(run)
    try:
        result = CliRunner().invoke(app, ["export", str(run), "--format", "onnx"])
    finally:
        _release(proc)
    assert_one_line_error(result, "in use by tk train", f"pid {proc.pid}", str(lock_path(run)))
    assert _tree(run) == before

    # killed: its lock (pid gone), its work folder and a half-written artifact stay behind
    lock_path(run).write_text(json.dumps({"pid": proc.pid, "host": socket.gethostname(), "command": "tk export"}))
    (run / ".tk-export-k1ll3d" / "saved_model").mkdir(parents=True)
    (run / ".tk-tmp-x7.tmp.onnx").write_bytes(b"half")
    result = CliRunner().invoke(app, ["export", str(run), "--format", "onnx"])
    assert result.exit_code == 0, result.output
    assert "taking over" in result.output and "removed" in result.output
    assert not lock_path(run).exists()
    assert sorted(p.name for p in run.iterdir() if p.name.startswith(".")) == []


def test_an_interrupted_partial_run_is_never_the_latest_run(trained_run, tmp_path):
    from toolkit.core.runs import resolve_run

    runs = tmp_path / "runs"
    shutil.copytree(trained_run, runs / "done")
    shutil.copytree(trained_run, runs / "later.partial")  # killed after writing its manifest
    os.utime(runs / "later.partial" / "manifest.json")
    assert resolve_run(None, runs) == runs / "done"


@pytest.mark.edge
def test_bench_while_the_run_is_locked_refuses_and_writes_nothing(device_run, tmp_path):
    """Issue 20: verify and bench take the run lock when they write into the run."""
    run = Path(shutil.copytree(device_run, tmp_path / "runs" / "run", ignore=shutil.ignore_patterns("saved_model")))
    before = _tree(run)
    proc = _hold(run)
    try:
        result = CliRunner().invoke(app, ["bench", str(run), "--runs", "1", "--threads", "1"])
    finally:
        _release(proc)
    assert_one_line_error(result, "in use by tk train", f"pid {proc.pid}")
    assert _tree(run) == before


def test_verify_while_the_run_is_locked_refuses_and_writes_nothing(exported_run, tmp_path):
    run = Path(shutil.copytree(exported_run, tmp_path / "runs" / "run", ignore=shutil.ignore_patterns("saved_model")))
    before = _tree(run)
    proc = _hold(run)
    try:
        result = CliRunner().invoke(app, ["verify", str(run)])
    finally:
        _release(proc)
    assert_one_line_error(result, "in use by tk train", f"pid {proc.pid}")
    assert _tree(run) == before
