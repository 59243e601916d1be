"""tk train on Keras' JAX and PyTorch backends with TensorFlow unimportable; their models export and
verify here, under TensorFlow.

The JAX legs run where jax is installed (`make setup` installs the [jax] extra). The torch legs
run where torch is importable: in this interpreter, or in the one TK_TORCH_PYTHON names (a venv
with `pip install -e '.[torch,test]'`, no TensorFlow in it), so the export half still runs here.
The training subprocess cannot import TensorFlow at all, so any import of it on the training
path fails the run.
"""

from __future__ import annotations

import functools
import importlib.util
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import yaml
from helpers import SCRATCH_ON_ANOTHER_BACKEND, read_scalars, small_recipe, train_without_tensorflow

REPO = Path(__file__).resolve().parents[2]
needs_jax = pytest.mark.skipif(
    importlib.util.find_spec("jax") is None, reason="jax not installed (make setup installs it)"
)


@functools.lru_cache(maxsize=None)
def torch_python() -> str | None:
    """An interpreter that imports torch: this one, else the one TK_TORCH_PYTHON names."""
    if importlib.util.find_spec("torch") is not None:
        return sys.executable
    given = os.environ.get("TK_TORCH_PYTHON")
    if (
        given
        and subprocess.run(
            [given, "-c", "import torch, keras"],
            capture_output=True,
            env={**os.environ, "KERAS_BACKEND": "torch"},
            timeout=120,
        ).returncode
        == 0
    ):
        return given
    return None


needs_torch = pytest.mark.skipif(
    "torch_python() is None",
    reason="torch is not importable here and TK_TORCH_PYTHON names no python that imports it "
    "(pip install -e '.[torch,test]' in a venv, then TK_TORCH_PYTHON=<venv>/bin/python)",
)
BACKENDS = [pytest.param("jax", marks=needs_jax), pytest.param("torch", marks=needs_torch)]


def _python(backend: str) -> str:
    return torch_python() if backend == "torch" else sys.executable


@pytest.fixture(scope="module", params=BACKENDS)
def backend_run(request, synth_root, tmp_path_factory) -> Path:
    """Scratch mode with augmentation, trained on JAX or torch (backend from the environment)."""
    backend = request.param
    if backend == "jax":  # the session's JAX run (a job's test compares itself with it too)
        return request.getfixturevalue("jax_scratch_run")
    tmp = tmp_path_factory.mktemp(backend)
    recipe = small_recipe(f"{backend}_scratch", synth_root, train=SCRATCH_ON_ANOTHER_BACKEND)
    proc = train_without_tensorflow(recipe, tmp, backend_env=backend, python=_python(backend))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"backend {backend}, device CPU" in proc.stdout
    assert "decoded once" in proc.stdout
    return tmp / "runs" / f"{backend}_scratch"


@pytest.mark.slow
def test_scratch_trains_without_tensorflow(backend_run):
    metrics = json.loads((backend_run / "metrics.json").read_text())["test"]
    assert metrics["accuracy"] > 0.5  # 3 balanced classes: chance is 1/3
    manifest = json.loads((backend_run / "manifest.json").read_text())
    assert manifest["artifacts"]["model.keras"]["backend"] == backend_run.name.split("_")[0]
    # TensorBoard logs on this backend too, with TensorFlow unimportable
    history = json.loads((backend_run / "phases" / "scratch" / "history.json").read_text())
    train = read_scalars(backend_run / "logs" / "scratch" / "train")
    validation = read_scalars(backend_run / "logs" / "scratch" / "validation")
    assert [v for _, v in train["epoch_loss"]] == pytest.approx(history["loss"])
    assert [v for _, v in validation["epoch_loss"]] == pytest.approx(history["val_loss"])


@pytest.mark.slow
@pytest.mark.parametrize("backend", BACKENDS)
def test_features_then_finetune_from_the_recipe(backend, synth_root, base_weights, tmp_path):
    recipe = small_recipe(
        f"{backend}_features",
        synth_root,
        model={"weights": str(base_weights)},
        train={
            "mode": "features",
            "epochs": 2,
            "backend": backend,
            "fine_tune": {"epochs": 1, "unfreeze_from": "block2_conv1", "learning_rate": 1e-4},
        },
    )
    proc = train_without_tensorflow(
        recipe, tmp_path, backend_env=None, python=_python(backend)
    )  # backend from the recipe
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert f"backend {backend}" in proc.stdout
    assert "extracting with engine keras" in proc.stdout  # LiteRT's engine converts through TensorFlow
    phases = json.loads((tmp_path / "runs" / recipe.name / "metrics.json").read_text())["phases"]
    assert phases == ["features", "finetune"]


@pytest.mark.slow
@pytest.mark.parametrize("backend", [pytest.param("torch", marks=needs_torch)])
def test_frozen_base_with_augmentation(backend, synth_root, base_weights, tmp_path):
    recipe = small_recipe(
        f"{backend}_augment",
        synth_root,
        model={"weights": str(base_weights)},
        train={
            "mode": "augment",
            "epochs": 2,
            "backend": backend,
            "augment": {"flip": "horizontal", "rotation": 0.05, "zoom": 0.1, "contrast": 0.1},
        },
    )
    proc = train_without_tensorflow(recipe, tmp_path, backend_env=None, python=_python(backend))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run = tmp_path / "runs" / recipe.name
    assert json.loads((run / "metrics.json").read_text())["phases"] == ["augment"]
    assert json.loads((run / "manifest.json").read_text())["artifacts"]["model.keras"]["backend"] == backend


@pytest.mark.slow
def test_model_exports_and_verifies_under_tensorflow(backend_run, tmp_path):
    import shutil

    from toolkit.export.exporter import export_run
    from toolkit.export.verify import verify_run

    run = tmp_path / "runs" / backend_run.name
    shutil.copytree(backend_run, run)
    export_run(run, formats=["tflite", "onnx"], quantizations=["none"])
    report = verify_run(run)
    assert report  # verify_run raises ParityError when an artifact disagrees with model.keras
    assert any(p.suffix in (".tflite", ".onnx") for p in run.iterdir())


@pytest.mark.slow
@needs_jax
@pytest.mark.skipif(importlib.util.find_spec("tensorflow") is None, reason="needs TensorFlow installed beside JAX")
def test_jax_training_leaves_installed_tensorflow_unloaded(synth_root, tmp_path):
    """An install with both: `tk train` on JAX trains, checkpoints, logs and evaluates without
    loading TensorFlow (Keras' seeding and model.save would import it whenever it is importable)."""
    recipe = small_recipe(
        "jax_no_tf",
        synth_root,
        train={"backend": "jax", "epochs": 1, "augment": {"flip": "horizontal", "rotation": 0.05}},
    )
    path = tmp_path / "recipe.yaml"
    path.write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    code = (
        "import sys\n"
        "from toolkit.cli.launch import main\n"
        "try:\n"
        "    code = main(sys.argv[1:])\n"
        "except SystemExit as stop:  # Typer's app exits\n"
        "    code = stop.code\n"
        "print('tensorflow loaded:', 'tensorflow' in sys.modules, 'exit', code)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "TK_CACHE_DIR": str(tmp_path / "cache")}
    env.pop("KERAS_BACKEND", None)  # the recipe's backend: jax
    proc = subprocess.run(
        [sys.executable, "-c", code, "train", str(path), "--runs-dir", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "backend jax, device CPU" in proc.stdout
    assert (tmp_path / "runs" / "jax_no_tf" / "model.keras").is_file()
    assert "tensorflow loaded: False exit 0" in proc.stdout, proc.stdout + proc.stderr


def test_unknown_backend_in_the_environment_is_one_line(synth_root, tmp_path):
    proc = train_without_tensorflow(small_recipe("bad_backend", synth_root), tmp_path, backend_env="mxnet")
    assert proc.returncode == 1
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: KERAS_BACKEND=mxnet"), lines
    assert "Traceback" not in proc.stdout + proc.stderr


@pytest.mark.parametrize(
    "setting, gpus, policy",
    [
        (True, [], "mixed_float16"),
        (False, [{"capability": 9.0}], "float32"),  # older recipes' booleans
        ("auto", [], "float32"),
        ("auto", [{"capability": 9.0}], "mixed_bfloat16"),
        ("auto", [{"capability": 9.0}, {"capability": 7.5}], "mixed_float16"),
        ("mixed_bfloat16", [], "mixed_bfloat16"),
    ],
)
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
    code = "import sys; sys.modules['tensorflow'] = None\nfrom toolkit.cli.app import app; app()"
    proc = subprocess.run(
        [sys.executable, "-c", code, "export", str(trained_run), "--format", "tflite"],
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(REPO)},
        timeout=300,
    )
    lines = (proc.stdout + proc.stderr).strip().splitlines()
    assert proc.returncode == 1 and len(lines) == 1, lines
    assert lines[0].startswith("error: this command needs TensorFlow") and "tk-edge[train]" in lines[0]


_TWO_TF_CPUS = (
    "import tensorflow as tf\n"
    "cpu = tf.config.list_physical_devices('CPU')[0]\n"
    "tf.config.set_logical_device_configuration(cpu, [tf.config.LogicalDeviceConfiguration()] * 2)\n"
)


@pytest.mark.slow
@pytest.mark.parametrize(
    "backend",
    [
        pytest.param("jax", marks=needs_jax),
        "tensorflow",
    ],
)
def test_data_parallel_on_two_virtual_cpus_converges_like_one(backend, synth_root, tmp_path):
    recipe = small_recipe(f"dp_{backend}", synth_root, train={"epochs": 8, "distribute": "data_parallel"})
    path = tmp_path / "dp.yaml"
    path.write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    env = {
        **os.environ,
        "PYTHONPATH": str(REPO),
        "TK_CACHE_DIR": str(tmp_path / "cache"),
        "KERAS_BACKEND": backend,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
    }
    code = (_TWO_TF_CPUS if backend == "tensorflow" else "") + "from toolkit.cli.app import app; app()"
    proc = subprocess.run(
        [sys.executable, "-c", code, "train", str(path), "--runs-dir", str(tmp_path / "runs")],
        capture_output=True,
        text=True,
        env=env,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    assert "distribute: data_parallel over 2 devices" in proc.stdout, proc.stdout
    accuracy = json.loads((tmp_path / "runs" / recipe.name / "metrics.json").read_text())["test"]["accuracy"]
    assert accuracy > 0.6, proc.stdout  # the single-device session run (trained_run) reaches ~0.9+


@needs_jax
def test_augmentation_compiles_the_training_step_on_jax():
    """Keras' RandomRotation says it does not compile (a TensorFlow XLA limit); on JAX it does, and
    without it fit() would run the whole step eagerly."""
    code = (
        "import keras\n"
        "from toolkit.core.recipe import AugmentSection\n"
        "from toolkit.train.inputs import training_model\n"
        "inputs = keras.Input((16, 16, 3))\n"
        "model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(inputs)))\n"
        "augment = AugmentSection(flip='horizontal', rotation=0.1, zoom=0.1, contrast=0.1)\n"
        "trainer = training_model(model, augment, seed=1)\n"
        "trainer.compile(optimizer='adam', loss='sparse_categorical_crossentropy')\n"
        "import numpy as np\n"
        "trainer.fit(np.zeros((4, 16, 16, 3), np.uint8), np.zeros(4, np.int32), verbose=0)\n"
        "print('jit_compile', trainer.jit_compile)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(REPO), "KERAS_BACKEND": "jax"}
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=300)
    assert proc.returncode == 0, proc.stderr
    assert "jit_compile True" in proc.stdout
