"""Which Keras 3 backend trains: chosen before keras is first imported, reported with the device.

Keras reads KERAS_BACKEND once, at its first import, so the CLI calls `select_backend` right after
reading the recipe (core.recipe imports no keras). On jax and torch nothing here imports
TensorFlow: a GPU box without TensorFlow wheels trains, and exports elsewhere (a .keras file moves
between backends).
"""

from __future__ import annotations

import contextlib
import os
import sys
from typing import Iterator

from ..core.context import Context
from ..core.errors import TkError
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
            raise TkError(
                f"keras is already loaded on backend {keras.backend.backend()}, not {chosen}; "
                f"run tk train in a fresh process (or set KERAS_BACKEND={chosen})"
            )
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


@contextlib.contextmanager
def tensorflow_unseen() -> Iterator[None]:
    """On jax and torch, Keras' lazy `tensorflow` handle says "not installed" while tk trains,
    unless TensorFlow is loaded already.

    Keras probes that handle whenever TensorFlow is installed: keras.utils.set_random_seed imports
    it to seed tf.data (which tk does not use off TensorFlow), and model.save imports it to ask
    whether a value is a tf.TensorShape (none can be, TensorFlow not being loaded). On JAX that import
    costs ~2 s and ~0.5 GB, and TensorFlow's thread pools then share the cores with XLA's.
    """
    import keras

    try:
        from keras.src.utils.module_utils import tensorflow as handle
    except ImportError:  # another Keras layout: nothing to hide
        handle = None
    if (
        keras.backend.backend() == "tensorflow"
        or handle is None
        or "tensorflow" in sys.modules
        or getattr(handle, "_available", None) is not None
    ):
        yield
        return
    handle._available = False
    try:
        yield
    finally:
        handle._available = None  # asked again afterwards: tk export on this backend needs TensorFlow


def _gpus() -> list[dict]:
    """Each visible GPU: name, memory in GiB (None when the backend does not say), compute capability."""
    import keras

    backend = keras.backend.backend()
    found = []
    if backend == "tensorflow":
        import tensorflow as tf

        for gpu in tf.config.list_physical_devices("GPU"):
            details = tf.config.experimental.get_device_details(gpu)
            major, minor = details.get("compute_capability", (0, 0))
            found.append(
                {"name": details.get("device_name", gpu.name), "memory": None, "capability": major + minor / 10}
            )
    elif backend == "jax":
        import jax

        for dev in jax.devices():
            if dev.platform == "gpu":
                total = (dev.memory_stats() or {}).get("bytes_limit")
                found.append(
                    {
                        "name": dev.device_kind,
                        "memory": total / 2**30 if total else None,
                        "capability": float(getattr(dev, "compute_capability", 0) or 0),
                    }
                )
    else:
        import torch

        for i in range(torch.cuda.device_count()):
            props = torch.cuda.get_device_properties(i)
            found.append(
                {"name": props.name, "memory": props.total_memory / 2**30, "capability": props.major + props.minor / 10}
            )
    return found


def describe_device() -> str:
    """'backend jax, device GPU (NVIDIA H100, 80 GiB)' or '... CPU (2 cores)'."""
    import keras

    gpus = [g["name"] + (f", {g['memory']:.0f} GiB" if g["memory"] else "") for g in _gpus()]
    where = f"GPU ({'; '.join(gpus)})" if gpus else f"CPU ({os.cpu_count()} cores)"
    return f"backend {keras.backend.backend()}, device {where}"


def resolve_precision(setting) -> str:
    """The Keras dtype policy for train.mixed_precision (old recipes' true/false still mean fp16/fp32).

    auto: bfloat16 on GPUs with compute capability >= 8 (Ampere and later: same range as float32,
    no loss scaling), float16 on older GPUs, float32 on a CPU (mixed precision is slower there).
    """
    if isinstance(setting, int):  # YAML's 1/0 compare equal to true/false in the recipe's Literal
        setting = bool(setting)
    if setting is True:
        return "mixed_float16"
    if setting is False:
        return "float32"
    if setting != "auto":
        return setting
    gpus = _gpus()
    if not gpus:
        return "float32"
    return "mixed_bfloat16" if min(g["capability"] for g in gpus) >= 8 else "mixed_float16"


def say_device(policy: str, ctx: Context) -> None:
    line = describe_device()
    ctx.say(f"{line}, precision {policy}")
    if policy != "float32" and "GPU (" not in line:
        ctx.say(f"warning: {policy} on a CPU is slower than float32; it pays off on a GPU")


def distribution_scope(mode: str, ctx: Context, job=None):
    """A context in which the model is built, compiled and fit (data_parallel), else a no-op.

    A multi-process job (train/job.py) is always data parallel, over every device of every
    process, whatever train.distribute says; each process feeds its own share (train/shards.py)."""
    import contextlib

    import keras

    if job is not None and job.multi:
        devices = keras.distribution.list_devices()  # global: every process's devices
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices, auto_shard_dataset=False))
        ctx.say(
            f"distribute: data parallel over {len(devices)} devices of {job.processes} processes "
            "(keras DataParallel on jax.distributed)"
        )
        return _reset_distribution()
    if mode == "none":
        return contextlib.nullcontext()
    backend = keras.backend.backend()
    if backend == "jax":
        devices = keras.distribution.list_devices()  # the default platform: GPUs when there are any
        keras.distribution.set_distribution(keras.distribution.DataParallel(devices=devices))
        ctx.say(f"distribute: data_parallel over {len(devices)} devices ({', '.join(devices)}), keras DataParallel")
        return _reset_distribution()
    if backend == "tensorflow":
        import tensorflow as tf

        devices = [d.name for d in tf.config.list_logical_devices("GPU")] or [
            d.name for d in tf.config.list_logical_devices("CPU")
        ]
        strategy = tf.distribute.MirroredStrategy(devices=devices)
        ctx.say(
            f"distribute: data_parallel over {strategy.num_replicas_in_sync} devices ({', '.join(devices)}), "
            "tf.distribute.MirroredStrategy"
        )
        return strategy.scope()
    raise TkError(
        f"train.distribute: data_parallel is built for the jax and tensorflow backends, not {backend}; "
        "use backend jax (or tensorflow), or distribute: none"
    )


def _reset_distribution():
    import contextlib

    import keras

    @contextlib.contextmanager
    def scope():
        try:
            yield
        finally:
            keras.distribution.set_distribution(None)

    return scope()
