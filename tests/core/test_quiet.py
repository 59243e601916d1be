"""A script that imports tk, then TensorFlow, sees none of TensorFlow's C++ start-up lines, unless
it chose TF_CPP_MIN_LOG_LEVEL itself."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
# absl's C++ line prefix (I0000 00:00:... file.cc:N]) and its pre-init banner
CPP_LOG = re.compile(r"^([IWEF]\d{4} |WARNING: All log messages before absl)", re.M)


def _run(code: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items() if k not in ("TF_CPP_MIN_LOG_LEVEL", "TK_TF_LOGS")}
    return subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        env={**clean, "PYTHONPATH": str(ROOT), **env},
        timeout=600,
    )


@pytest.mark.slow
def test_the_python_api_imports_tensorflow_without_its_cpp_logs():
    code = (
        "import toolkit, os, tensorflow as tf; tf.constant(1.0) + 1; import keras; "
        "print(os.environ['TF_CPP_MIN_LOG_LEVEL'])"
    )
    result = _run(code)
    assert result.returncode == 0, result.stderr
    assert result.stdout.strip() == "3"
    assert not CPP_LOG.search(result.stderr), result.stderr


def test_a_level_the_user_set_is_kept_and_nothing_is_silenced():
    code = (
        "import os, sys; os.environ['TF_CPP_MIN_LOG_LEVEL'] = '1'; import toolkit; "
        "from toolkit.core.quiet import _QuietTensorFlowImport as Q; "
        "print(os.environ['TF_CPP_MIN_LOG_LEVEL'], any(isinstance(f, Q) for f in sys.meta_path))"
    )
    assert _run(code).stdout.split() == ["1", "False"]
    code = (
        "import os, sys, toolkit; from toolkit.core.quiet import _QuietTensorFlowImport as Q; "
        "print(any(isinstance(f, Q) for f in sys.meta_path))"
    )
    assert _run(code).stdout.split() == ["True"]
    assert _run(code, TK_TF_LOGS="1").stdout.split() == ["False"]


def test_an_import_blocker_before_tk_still_wins():
    """The hook asks the finders after it: a blocker that makes tensorflow unimportable still does."""
    code = (
        "import sys, importlib.abc\n"
        "class Block(importlib.abc.MetaPathFinder):\n"
        "    def find_spec(self, name, path, target=None):\n"
        "        if name == 'tensorflow' or name.startswith('tensorflow.'):\n"
        "            raise ModuleNotFoundError('blocked', name=name)\n"
        "sys.meta_path.insert(0, Block())\n"
        "import toolkit\n"
        "try:\n"
        "    import tensorflow\n"
        "except ModuleNotFoundError as exc:\n"
        "    print('blocked', exc.name)\n"
    )
    assert _run(code).stdout.split() == ["blocked", "tensorflow"]


def test_prints_dropped_on_one_thread_only(capsys):
    """onnxruntime's calibrators print on export's second thread: those lines go, the CLI's stay."""
    import threading

    from toolkit.core.quiet import prints_dropped_on_this_thread

    real = sys.stdout
    inside, go_on = threading.Event(), threading.Event()

    def worker():
        with prints_dropped_on_this_thread():
            print("calibrating ...")
            inside.set()
            go_on.wait(10)
            print("still calibrating ...")

    thread = threading.Thread(target=worker)
    thread.start()
    inside.wait(10)
    print("export success: model.onnx")  # the main thread's line while the worker is silenced
    go_on.set()
    thread.join()
    assert sys.stdout is real  # restored once the last silenced thread left
    out = capsys.readouterr().out
    assert "export success: model.onnx" in out
    assert "calibrating" not in out
