"""Keep TensorFlow's C++ start-up and converter logs off a CLI user's terminal.

TensorFlow writes absl INFO lines (oneDNN, CUDA probes) to file descriptor 2 before its own log
level applies, and the TFLite quantizer prints its settings there too. They are noise for a user
and hide tk's one-line messages, so the CLI silences fd 2 around those calls only. Python
exceptions are unaffected (they are raised, then printed after stderr is restored). Set
TK_TF_LOGS=1 to see them.
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator


@contextlib.contextmanager
def silenced_stderr() -> Iterator[None]:
    if os.environ.get("TK_TF_LOGS") == "1":
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
