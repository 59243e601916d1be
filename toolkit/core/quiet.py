"""Keep TensorFlow's C++ start-up and converter logs off the user's terminal, in the CLI and in
the Python API alike.

TensorFlow writes absl INFO lines (oneDNN, CUDA probes, cpu_feature_guard) to file descriptor 2
while it is imported, before any log level applies (TF_CPP_MIN_LOG_LEVEL does not reach them),
and later ERROR lines (cuInit) that TF_CPP_MIN_LOG_LEVEL=3 does silence. So importing tk sets
that level and makes the one import of TensorFlow run with fd 2 silenced, unless the user set
TF_CPP_MIN_LOG_LEVEL themselves (their level is kept and nothing is silenced) or TK_TF_LOGS=1.
The TFLite quantizer also prints its settings there: converters silence fd 2 around those calls.
Python exceptions are unaffected (raised, then printed after stderr is restored).
Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import sys
import threading
from typing import Iterator

LEVEL = "TF_CPP_MIN_LOG_LEVEL"


def _logs_wanted() -> bool:
    return os.environ.get("TK_TF_LOGS") == "1"


@contextlib.contextmanager
def silenced_stderr() -> Iterator[None]:
    if _logs_wanted():
        yield
        return
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, 2)
    try:
        yield
    finally:
        sys.stderr.flush()
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


class _ThreadFilter:
    """sys.stdout that drops what some threads write and passes everything else on."""

    def __init__(self, real):
        self.real = real
        self.dropped: set[int] = set()

    def write(self, text: str) -> int:
        if threading.get_ident() in self.dropped:
            return len(text)
        return self.real.write(text)

    def __getattr__(self, name: str):
        return getattr(self.real, name)


_filter_lock = threading.Lock()


@contextlib.contextmanager
def prints_dropped_on_this_thread() -> Iterator[None]:
    """Drop what this thread prints to sys.stdout while other threads keep printing.

    For libraries that print progress (onnxruntime's calibrators) on a thread that runs beside the
    CLI's own output: contextlib.redirect_stdout swaps sys.stdout for every thread, so the CLI's
    lines printed meanwhile would be lost.
    """
    me = threading.get_ident()
    with _filter_lock:
        if not isinstance(sys.stdout, _ThreadFilter):
            sys.stdout = _ThreadFilter(sys.stdout)
        installed = sys.stdout
        installed.dropped.add(me)
    try:
        yield
    finally:
        with _filter_lock:
            installed.dropped.discard(me)
            if not installed.dropped and sys.stdout is installed:
                sys.stdout = installed.real


# The import protocol is duck-typed: no importlib.abc base classes, whose import (importlib.resources,
# tempfile) costs ~10 ms at every start of tk, a third of the device CLI's budget over a bare script.
class _QuietLoader:
    """The real loader of `tensorflow`, run with fd 2 silenced."""

    def __init__(self, loader):
        self.loader = loader

    def create_module(self, spec):
        return self.loader.create_module(spec)

    def exec_module(self, module):
        module.__loader__ = self.loader
        with silenced_stderr():
            self.loader.exec_module(module)


class _QuietTensorFlowImport:
    """Finds `tensorflow` through the finders after it (so a test's import blocker still wins)
    and wraps its loader; removes itself once it has done so."""

    def find_spec(self, name, path, target=None):
        if name != "tensorflow":
            return None
        for finder in [f for f in sys.meta_path if f is not self]:
            find = getattr(finder, "find_spec", None)
            spec = find(name, path, target) if find is not None else None
            if spec is not None:
                break
        else:
            return None
        with contextlib.suppress(ValueError):
            sys.meta_path.remove(self)
        if spec.loader is not None:
            spec.loader = _QuietLoader(spec.loader)
        return spec


def quiet_tensorflow_by_default() -> None:
    """Called when tk is imported: TF_CPP_MIN_LOG_LEVEL=3 and a silent `import tensorflow`, unless
    the user chose a level (or TK_TF_LOGS=1), or TensorFlow is loaded already."""
    if LEVEL in os.environ or _logs_wanted() or "tensorflow" in sys.modules:
        return
    os.environ[LEVEL] = "3"
    if not any(isinstance(f, _QuietTensorFlowImport) for f in sys.meta_path):
        sys.meta_path.insert(0, _QuietTensorFlowImport())


def import_tensorflow_quietly() -> None:
    """Import TensorFlow (and Keras) once, without its start-up log lines."""
    if sys.modules.get("tensorflow") is not None:
        return
    try:
        with silenced_stderr():
            import keras  # noqa: F401  (imports tensorflow as its backend)
            import tensorflow  # noqa: F401
    except ImportError as exc:
        from .errors import TkError

        # A JAX/PyTorch training box (the [jax] extra) has no TensorFlow: export there elsewhere.
        raise TkError(
            f"this command needs TensorFlow ({exc}); install it with pip install 'tk-edge[train]', "
            "or copy the run folder to a machine that has it"
        ) from None
