"""One writer per run: a live holder is refused by name, a killed one's lock is taken over."""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from toolkit.core.context import Context
from toolkit.core.errors import TkError
from toolkit.core.lock import lock_path, run_lock

ROOT = Path(__file__).resolve().parents[2]

pytestmark = pytest.mark.edge

HOLDER = """
import sys
from toolkit.core.lock import run_lock
with run_lock(sys.argv[1], "tk train"):
    print("held", flush=True)
    sys.stdin.read()  # until the test closes our stdin
"""


@pytest.fixture
def held_elsewhere(tmp_path):
    """A live process holding tmp_path/runs/r1's lock; released (and reaped) after the test."""
    run = tmp_path / "runs" / "r1"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLDER, str(run)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True, env=env
    )
    assert proc.stdout.readline().strip() == "held"
    yield run, proc
    proc.stdin.close()
    proc.wait(timeout=30)


def dead_pid() -> int:
    proc = subprocess.Popen([sys.executable, "-c", "pass"])
    proc.wait()
    return proc.pid


def test_a_live_holder_is_refused_naming_pid_host_start_and_lock_file(held_elsewhere):
    run, proc = held_elsewhere
    with pytest.raises(TkError) as info:
        with run_lock(run, "tk export"):
            pass
    line = str(info.value)
    assert "\n" not in line
    for fragment in (f"pid {proc.pid}", socket.gethostname(), "tk train", "started 20", str(lock_path(run))):
        assert fragment in line, line
    assert json.loads(lock_path(run).read_text())["pid"] == proc.pid  # the holder's lock untouched


def test_the_lock_is_released_after_the_block(tmp_path):
    run = tmp_path / "r1"
    with run_lock(run, "tk train") as path:
        assert json.loads(path.read_text())["pid"] == os.getpid()
        with pytest.raises(TkError, match="in use by tk train"):  # not re-entrant: a second writer
            with run_lock(run, "tk export"):
                pass
    assert not lock_path(run).exists()
    with run_lock(run, "tk export"):
        pass


def test_a_killed_holders_lock_is_taken_over(tmp_path):
    run = tmp_path / "r1"
    path = lock_path(run)
    path.write_text(
        json.dumps({"pid": dead_pid(), "host": socket.gethostname(), "started": "then", "command": "tk train"})
    )
    said: list[str] = []
    with run_lock(run, "tk export", ctx=Context(say=said.append)):
        assert json.loads(path.read_text())["pid"] == os.getpid()
    assert said and "taking over" in said[0] and "no longer running" in said[0]
    assert not path.exists()


def test_an_empty_lock_left_by_a_kill_mid_create_is_taken_over(tmp_path):
    run = tmp_path / "r1"
    lock_path(run).write_text("")
    with run_lock(run, "tk train"):
        pass


def test_a_lock_from_another_host_is_refused_with_how_to_clear_it(tmp_path):
    run = tmp_path / "r1"
    lock_path(run).write_text(
        json.dumps({"pid": 1, "host": "elsewhere.example", "started": "then", "command": "tk train"})
    )
    with pytest.raises(TkError, match="elsewhere.example.*delete the lock"):
        with run_lock(run, "tk train"):
            pass


def test_the_lock_of_a_run_given_as_dot_is_named_after_the_run(tmp_path, monkeypatch):
    (tmp_path / "r1").mkdir()
    monkeypatch.chdir(tmp_path / "r1")
    assert lock_path(Path(".")) == tmp_path / ".r1.lock"


@pytest.mark.parametrize("kind", ["fifo", "folder", "dangling link"])
def test_a_lock_path_that_is_not_a_file_is_one_line_naming_it(tmp_path, kind):
    """Issue 20: a FIFO blocked tk export forever, a folder was a traceback, a dangling link said
    "wait for it to finish" forever. Each is now refused at once, naming what is there."""
    run = tmp_path / "runs" / "r1"
    path = lock_path(run)
    path.parent.mkdir(parents=True)
    {"fifo": os.mkfifo, "folder": os.mkdir, "dangling link": lambda p: os.symlink(tmp_path / "nothing", p)}[kind](path)
    code = "import sys\nfrom toolkit.core.lock import run_lock\nwith run_lock(sys.argv[1], 'tk export'):\n    pass\n"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.run([sys.executable, "-c", code, str(run)], capture_output=True, text=True, timeout=60, env=env)
    assert proc.returncode == 1 and "TkError" in proc.stderr and "not a lock file tk wrote" in proc.stderr
    what = {"fifo": "a named pipe (FIFO)", "folder": "a folder", "dangling link": "a symbolic link to nothing"}[kind]
    assert what in proc.stderr and f"rm -r {path}" in proc.stderr
    assert os.path.lexists(path)  # not ours to delete
