"""Helpers the tests import (`from helpers import ...`): a small recipe, a Ctrl-C at an epoch,
the one-line-error check. Fixtures stay in conftest.py, which pytest loads by itself.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
# What a session trains on JAX and on torch: from scratch, with augmentation.
SCRATCH_ON_ANOTHER_BACKEND = {
    "epochs": 8,
    "augment": {"flip": "horizontal", "rotation": 0.05, "zoom": 0.1, "contrast": 0.1},
}


def small_recipe(name: str, root: Path, **sections):
    """A recipe for tests: synthetic data, small images, few epochs; sections override."""
    from toolkit.core.recipe import recipe_from_dict

    raw = {
        "name": name,
        "seed": 7,
        "data": {"root": str(root)},
        "model": {"backbone": "mini_vgg", "weights": "none", "image_size": 32},
        "train": {
            "mode": "scratch",
            "epochs": 12,
            "batch_size": 16,
            "augment": {"flip": "none", "rotation": 0.0, "zoom": 0.0},
        },
        "export": {"calibration_samples": 60},
    }
    for key, value in sections.items():
        raw[key] = {**raw.get(key, {}), **value} if isinstance(value, dict) else value
    return recipe_from_dict(raw)


def interrupt_at_epoch(monkeypatch, epoch: int):
    """Make training raise KeyboardInterrupt as epoch `epoch` begins (as if Ctrl-C came once the
    epoch before was done): the callbacks have saved that epoch's checkpoint and resume backup.
    Returns the function that lets training run on again (for the --resume that follows)."""
    from toolkit.train.callbacks import Progress

    original = Progress.on_epoch_begin

    def ctrl_c(self, at, logs=None):
        if at == epoch:
            raise KeyboardInterrupt
        original(self, at, logs)

    monkeypatch.setattr(Progress, "on_epoch_begin", ctrl_c)
    return lambda: monkeypatch.setattr(Progress, "on_epoch_begin", original)


def assert_one_line_error(result, *fragments: str) -> None:
    """A user mistake: exit 1, one line starting 'error: ', no traceback, naming the fragments."""
    assert result.exit_code == 1, result.output
    lines = [line for line in result.output.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), result.output
    assert "Traceback" not in result.output
    for fragment in fragments:
        assert fragment in lines[0], lines[0]


def train_without_tensorflow(
    recipe, tmp_path: Path, backend_env: str | None = "jax", python: str | None = None
) -> subprocess.CompletedProcess:
    """`tk train` of the recipe in a subprocess that cannot import TensorFlow (runs in tmp_path/runs)."""
    import yaml

    path = tmp_path / f"{recipe.name}.yaml"
    path.write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    # A finder that refuses tensorflow, not sys.modules['tensorflow'] = None: Keras' preprocessing
    # layers take "tensorflow" in sys.modules to mean "maybe inside tf.data" and would import it.
    # find_spec answers (with no file: torch's dynamo asks find_spec for every library it skips,
    # and would stop at an error there); importing it fails.
    code = (
        "import sys, importlib.abc, importlib.machinery\n"
        "class NoTF(importlib.abc.MetaPathFinder, importlib.abc.Loader):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'tensorflow': return importlib.machinery.ModuleSpec(name, self)\n"
        "    def create_module(self, spec): raise ImportError('tensorflow is blocked')\n"
        "    def exec_module(self, module): raise ImportError('tensorflow is blocked')\n"
        "sys.meta_path.insert(0, NoTF())\n"
        "from toolkit.cli.app import app; app()\n"
        "assert 'tensorflow' not in sys.modules"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "TK_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("KERAS_BACKEND", None)
    if backend_env:
        env["KERAS_BACKEND"] = backend_env
    return subprocess.run(
        [python or sys.executable, "-c", code, "train", str(path), "--runs-dir", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
    )


def read_scalars(folder: Path) -> dict[str, list[tuple[int, float]]]:
    """TensorBoard scalars of the event files in folder: {tag: [(step, value), ...]}. Reads the
    TFRecord framing (length, crc, event, crc) with tensorboardX's Event proto: no TensorFlow."""
    import struct

    from tensorboardX.proto import event_pb2

    scalars: dict[str, list[tuple[int, float]]] = {}
    for path in sorted(Path(folder).glob("events.out.tfevents.*")):
        data, offset = path.read_bytes(), 0
        while offset + 12 <= len(data):
            (length,) = struct.unpack("<Q", data[offset : offset + 8])
            event = event_pb2.Event.FromString(data[offset + 12 : offset + 12 + length])
            offset += 12 + length + 4
            for value in event.summary.value:
                scalars.setdefault(value.tag, []).append((event.step, value.simple_value))
    return scalars


# What the web tests pack (tk pack --web): float32 and int8 of both device formats.
WEB_ARTIFACTS = ("model_float32.tflite", "model_int8.tflite", "model.onnx", "model_int8.onnx")
