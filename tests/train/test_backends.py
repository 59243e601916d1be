"""tk train on Keras' JAX backend with TensorFlow unimportable; its model exports and verifies here.

The JAX legs run where jax is installed (`make setup` installs the [jax] extra); the subprocess
cannot import TensorFlow at all, so any import of it on the training path fails the run.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from conftest import small_recipe

REPO = Path(__file__).resolve().parents[2]
needs_jax = pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax not installed (make setup installs it)")


def _train_without_tensorflow(recipe, tmp_path: Path, backend_env: str | None = "jax") -> subprocess.CompletedProcess:
    path = tmp_path / f"{recipe.name}.yaml"
    path.write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    # A finder that refuses tensorflow, not sys.modules['tensorflow'] = None: Keras' preprocessing
    # layers take "tensorflow" in sys.modules to mean "maybe inside tf.data" and would import it.
    code = ("import sys, importlib.abc\n"
            "class NoTF(importlib.abc.MetaPathFinder):\n"
            "    def find_spec(self, name, path=None, target=None):\n"
            "        if name.split('.')[0] == 'tensorflow': raise ImportError('tensorflow is blocked')\n"
            "sys.meta_path.insert(0, NoTF())\n"
            "from toolkit.cli.app import app; app()\n"
            "assert 'tensorflow' not in sys.modules")
    env = {**os.environ, "PYTHONPATH": str(REPO), "TK_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("KERAS_BACKEND", None)
    if backend_env:
        env["KERAS_BACKEND"] = backend_env
    return subprocess.run([sys.executable, "-c", code, "train", str(path), "--runs-dir", str(tmp_path / "runs")],
                          capture_output=True, text=True, env=env, timeout=600)


@pytest.fixture(scope="module")
def jax_run(synth_root, tmp_path_factory) -> Path:
    """Scratch mode with augmentation, trained on JAX (backend from the environment)."""
    tmp = tmp_path_factory.mktemp("jax")
    recipe = small_recipe("jax_scratch", synth_root, train={
        "epochs": 8, "augment": {"flip": "horizontal", "rotation": 0.05, "zoom": 0.1, "contrast": 0.1}})
    proc = _train_without_tensorflow(recipe, tmp)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "backend jax, device CPU" in proc.stdout
    assert "decoded once" in proc.stdout
    return tmp / "runs" / "jax_scratch"


@needs_jax
@pytest.mark.slow
def test_scratch_trains_on_jax_without_tensorflow(jax_run):
    metrics = json.loads((jax_run / "metrics.json").read_text())["test"]
    assert metrics["accuracy"] > 0.5  # 3 balanced classes: chance is 1/3
    manifest = json.loads((jax_run / "manifest.json").read_text())
    assert manifest["artifacts"]["model.keras"]["backend"] == "jax"


@needs_jax
@pytest.mark.slow
def test_features_then_finetune_on_jax_from_the_recipe(synth_root, base_weights, tmp_path):
    recipe = small_recipe("jax_features", synth_root, model={"weights": str(base_weights)},
                          train={"mode": "features", "epochs": 2, "backend": "jax",
                                 "fine_tune": {"epochs": 1, "unfreeze_from": "block2_conv1", "learning_rate": 1e-4}})
    proc = _train_without_tensorflow(recipe, tmp_path, backend_env=None)  # backend from the recipe
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "backend jax" in proc.stdout
    assert "extracting with engine keras" in proc.stdout  # LiteRT's engine converts through TensorFlow
    phases = json.loads((tmp_path / "runs" / "jax_features" / "metrics.json").read_text())["phases"]
    assert phases == ["features", "finetune"]


@needs_jax
@pytest.mark.slow
def test_jax_model_exports_and_verifies_under_tensorflow(jax_run, tmp_path):
    import shutil

    from toolkit.export.exporter import export_run
    from toolkit.export.verify import verify_run

    run = tmp_path / "runs" / jax_run.name
    shutil.copytree(jax_run, run)
    export_run(run, formats=["tflite", "onnx"], quantizations=["none"], say=lambda _: None)
    report = verify_run(run, say=lambda _: None)
    assert report  # verify_run raises ParityError when an artifact disagrees with model.keras
    assert any(p.suffix in (".tflite", ".onnx") for p in run.iterdir())


def test_unknown_backend_in_the_environment_is_one_line(synth_root, tmp_path):
    proc = _train_without_tensorflow(small_recipe("bad_backend", synth_root), tmp_path, backend_env="mxnet")
    assert proc.returncode == 1
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: KERAS_BACKEND=mxnet"), lines
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.parametrize("setting, gpus, policy", [
    (True, [], "mixed_float16"), (False, [{"capability": 9.0}], "float32"),  # older recipes' booleans
    ("auto", [], "float32"), ("auto", [{"capability": 9.0}], "mixed_bfloat16"),
    ("auto", [{"capability": 9.0}, {"capability": 7.5}], "mixed_float16"), ("mixed_bfloat16", [], "mixed_bfloat16"),
])
def test_precision_policy_follows_the_gpu(setting, gpus, policy, monkeypatch):
    from toolkit.train import backend

    monkeypatch.setattr(backend, "_gpus", lambda: gpus)
    assert backend.resolve_precision(setting) == policy


def test_recipe_precision_and_backend_keys(synth_root):
    from toolkit.core.errors import TkError

    assert small_recipe("p", synth_root).train.mixed_precision == "auto"
    assert small_recipe("p", synth_root, train={"mixed_precision": True}).train.mixed_precision is True
    assert small_recipe("p", synth_root, train={"backend": "torch"}).train.backend == "torch"
    with pytest.raises(TkError, match="train.mixed_precision: must be one of auto"):
        small_recipe("p", synth_root, train={"mixed_precision": "half"})
    with pytest.raises(TkError, match="train.backend: must be one of tensorflow, jax, torch"):
        small_recipe("p", synth_root, train={"backend": "mxnet"})


def test_commands_that_need_tensorflow_say_so_in_one_line(trained_run, tmp_path):
    code = ("import sys; sys.modules['tensorflow'] = None\n"
            "from toolkit.cli.app import app; app()")
    proc = subprocess.run([sys.executable, "-c", code, "export", str(trained_run), "--format", "tflite"],
                          capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=300)
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, lines
    assert lines[0].startswith("error: this command needs TensorFlow") and "tk-edge[train]" in lines[0]


_TWO_TF_CPUS = ("import tensorflow as tf\n"
                "cpu = tf.config.list_physical_devices('CPU')[0]\n"
                "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n")


@pytest.mark.slow
@pytest.mark.parametrize("backend", [
    pytest.param("jax", marks=needs_jax),
    "tensorflow",
])
def test_data_parallel_on_two_virtual_cpus_converges_like_one(backend, synth_root, tmp_path):
    recipe = small_recipe(f"dp_{backend}", synth_root, train={"epochs": 8, "distribute": "data_parallel"})
    path = tmp_path / "dp.yaml"
    path.write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    env = {**os.environ, "PYTHONPATH": str(REPO), "TK_CACHE_DIR": str(tmp_path / "cache"), "KERAS_BACKEND": backend,
           "XLA_FLAGS": "--xla_force_host_platform_device_count=2"}
    code = (_TWO_TF_CPUS if backend == "tensorflow" else "") + "from toolkit.cli.app import app; app()"
    proc = subprocess.run([sys.executable, "-c", code, "train", str(path), "--runs-dir", str(tmp_path / "runs")],
                          capture_output=True, text=True, env=env, timeout=600)
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "distribute: data_parallel over 2 devices" in proc.stdout, proc.stdout
    accuracy = json.loads((tmp_path / "runs" / recipe.name / "metrics.json").read_text())["test"]["accuracy"]
    assert accuracy > 0.6, proc.stdout  # the single-device session run (trained_run) reaches ~0.9+
