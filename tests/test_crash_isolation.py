"""Issue 20: one native abort ("Fatal Python error: Aborted", seen once in TensorFlow's make_iterator
under heavy machine load) must cost one failed test, not the whole run and its summary.

`make test` runs the suite in one pytest-xdist worker (-n 1): a worker that dies is reported as
that test's failure, a fresh worker takes the remaining tests. This checks that contract on a
generated test file, in a subprocess."""

from __future__ import annotations

import subprocess
import sys

import pytest

pytest.importorskip("xdist")  # the [test] extra; the device install's edge pass runs without it

ABORTS = """
import os

def test_before():
    pass

def test_native_abort():
    os.abort()  # what a C++ std::terminate in a runtime does to the process

def test_after():
    pass
"""


def test_an_abort_fails_one_test_and_the_run_goes_on_to_its_summary(tmp_path):
    (tmp_path / "test_aborts.py").write_text(ABORTS)
    # Its own rootdir: under `make test`'s --basetemp (inside the repository) pytest would otherwise
    # take the repository's pyproject.toml as its config and name the test by a longer path.
    (tmp_path / "pytest.ini").write_text("[pytest]\n")
    proc = subprocess.run(
        [sys.executable, "-m", "pytest", "-q", "-n", "1", "-p", "no:cacheprovider", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=tmp_path,
    )
    assert proc.returncode == 1, proc.stdout
    summary = proc.stdout.strip().splitlines()[-1]
    assert "1 failed, 2 passed" in summary, proc.stdout
    assert "worker 'gw0' crashed while running 'test_aborts.py::test_native_abort'" in proc.stdout
