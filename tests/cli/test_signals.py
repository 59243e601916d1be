"""Issue 20: SIGTERM is handled like Ctrl-C wherever a temporary exists (core/interrupts.py), what a
SIGKILL left is cleared by the next command, and bench's measuring child dies with its parent."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

from toolkit.core.context import Context
from toolkit.core.lock import lock_path
from toolkit.edge.pack import pack

ROOT = Path(__file__).resolve().parents[2]
pytestmark = pytest.mark.edge


@pytest.fixture
def run_copy(device_run, tmp_path) -> Path:
    return Path(shutil.copytree(device_run, tmp_path / "runs" / "run", ignore=shutil.ignore_patterns("saved_model")))


def _dot_files(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


# In a subprocess: on a tk that does not handle SIGTERM, the signal would end the test runner.
TERMINATED_MIDWAY = """
import os, shutil, signal, sys, time
import toolkit.edge.pack as pack
copy = shutil.copyfile
def terminated_midway(src, dst, *args, **kwargs):  # SIGTERM arrives while files are copied
    copy(src, dst, *args, **kwargs)
    os.kill(os.getpid(), signal.SIGTERM)
    time.sleep(5)  # the handler raises here, in the main thread
pack.shutil = type(sys)("shutil_spy")
pack.shutil.__dict__.update(shutil.__dict__, copyfile=terminated_midway)
from toolkit.cli.app import app
app(sys.argv[1:])
"""


def test_sigterm_during_pack_removes_its_work_folder_and_lock(run_copy, tmp_path):
    target = tmp_path / "out" / "bundle"
    pack(run_copy, target, files=["model.onnx"], samples=3)
    earlier = sorted(p.name for p in target.iterdir())
    args = ["pack", str(run_copy), str(target), "--force", "--format", "onnx"]
    proc = subprocess.run(
        [sys.executable, "-c", TERMINATED_MIDWAY, *args],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert proc.returncode == 143 and "stopped by SIGTERM" in proc.stderr and "Traceback" not in proc.stderr
    assert _dot_files(target.parent) == []  # no .bundle.pack-*, no .bundle.lock
    assert sorted(p.name for p in target.iterdir()) == earlier  # the earlier bundle as it was


def test_what_a_killed_pack_left_is_cleared_by_the_next(run_copy, tmp_path):
    """kill -9 runs no cleanup: its work folder stays; the next pack of DIR (holding DIR's lock) clears it."""
    target = tmp_path / "out" / "bundle"
    (target.parent / ".bundle.pack-k1ll3d" / "samples").mkdir(parents=True)
    (target.parent / ".bundle.pack-k1ll3d" / "model.onnx").write_bytes(b"half")
    said = []
    pack(run_copy, target, files=["model.onnx"], samples=3, ctx=Context(say=said.append))
    assert _dot_files(target.parent) == [] and any("left by an interrupted tk pack" in s for s in said)


def _bench_child(parent: subprocess.Popen, timeout: float = 60) -> psutil.Process:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        children = psutil.Process(parent.pid).children()
        if children:
            return children[0]
        assert parent.poll() is None, parent.communicate()
        time.sleep(0.1)
    raise AssertionError("bench started no measuring process")


@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL])
def test_bench_measuring_child_dies_with_its_parent(run_copy, sig):
    args = ["bench", str(run_copy / "model.onnx"), "--threads", "1", "--runs", "100000000", "--warmup", "0"]
    parent = subprocess.Popen(
        [sys.executable, "-m", "toolkit", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    child = _bench_child(parent)
    parent.send_signal(sig)
    out, err = parent.communicate(timeout=60)
    try:
        child.wait(timeout=30)  # psutil.TimeoutExpired if it outlived its parent
    finally:
        if child.is_running():  # a failed test leaves no orphan measuring for hours
            child.kill()
    if sig == signal.SIGTERM:  # handled: one line, exit 143, the lock released, nothing written
        assert parent.returncode == 143 and "stopped by SIGTERM" in err and "Traceback" not in err
        assert not lock_path(run_copy).exists() and not (run_copy / "bench.json").exists()
