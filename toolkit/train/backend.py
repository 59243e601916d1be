"""Which Keras 3 backend trains: chosen before keras is first imported, reported with the device.

Keras reads KERAS_BACKEND once, at its first import, so the CLI calls `select_backend` right after
reading the recipe (core.recipe imports no keras). On jax and torch nothing here imports
TensorFlow: a GPU box without TensorFlow wheels trains, and exports elsewhere (a .keras file moves
between backends).
"""

from __future__ import annotations

import os
import sys

from ..core.errors import Say, TkError
from ..core.recipe import Recipe

BACKENDS = ("tensorflow", "jax", "torch")


def select_backend(recipe: Recipe) -> str:
    """Set KERAS_BACKEND for this process: the environment's value if set, else the recipe's."""
    chosen = os.environ.get("KERAS_BACKEND") or recipe.train.backend
    if chosen not in BACKENDS:
        raise TkError(f"KERAS_BACKEND={chosen} is not a Keras backend tk trains on; use one of {', '.join(BACKENDS)}")
    if "keras" in sys.modules:
        import keras

        if keras.backend.backend() != chosen:
            raise TkError(f"keras is already loaded on backend {keras.backend.backend()}, not {chosen}; "
                          f"run tk train in a fresh process (or set KERAS_BACKEND={chosen})")
        return chosen
    os.environ["KERAS_BACKEND"] = chosen
    return chosen


def is_tensorflow() -> bool:
    import keras

    return keras.backend.backend() == "tensorflow"


def seed_everything(seed: int) -> None:
    """Seeded, and on TensorFlow deterministic kernels (the other backends are deterministic on CPU)."""
    import keras

    keras.utils.set_random_seed(seed)
    if is_tensorflow():
        import tensorflow as tf

        tf.config.experimental.enable_op_determinism()


def describe_device() -> str:
    """'backend jax, device GPU (NVIDIA H100, 80 GiB)' or '... CPU (2 cores)'."""
    import keras

    backend = keras.backend.backend()
    gpus: list[str] = []
    if backend == "tensorflow":
        import tensorflow as tf

        for gpu in tf.config.list_physical_devices("GPU"):
            name = tf.config.experimental.get_device_details(gpu).get("device_name", gpu.name)
            gpus.append(name)
    elif backend == "jax":
        import jax

        for dev in jax.devices():
            if dev.platform == "gpu":
                stats = dev.memory_stats() or {}
                total = stats.get("bytes_limit")
                gpus.append(dev.device_kind + (f", {total / 2**30:.0f} GiB" if total else ""))
    else:
        import torch

        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            gpus.append(f"{props.name}, {props.total_memory / 2**30:.0f} GiB")
    where = f"GPU ({'; '.join(gpus)})" if gpus else f"CPU ({os.cpu_count()} cores)"
    return f"backend {backend}, device {where}"


def say_device(mixed_precision: bool, say: Say) -> None:
    line = describe_device()
    precision = "mixed_float16" if mixed_precision else "float32"
    say(f"{line}, precision {precision}")
    if mixed_precision and "GPU (" not in line:
        say("warning: mixed_precision on a CPU is slower than float32; it pays off on a GPU")
