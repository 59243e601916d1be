"""Shared fixtures: synthetic data and one small trained run per test session.

Everything heavy (training) happens once per session here; tests read the results. Runs and the
feature cache live in a session temp folder, never in the repo's exported/.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import SCRATCH_ON_ANOTHER_BACKEND, small_recipe, train_without_tensorflow

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tk")


@pytest.fixture(scope="session")
def synth_root(session_dir) -> Path:
    """3 classes x 60 synthetic 48 px JPEGs (shapes on textures), with objects.json boxes."""
    from toolkit.data.synth import make_synthetic_dataset

    return make_synthetic_dataset(session_dir / "synth", classes=3, per_class=60, size=48, seed=1)


@pytest.fixture(scope="session")
def runs_dir(session_dir, monkeypatch_session) -> Path:
    path = session_dir / "runs"
    path.mkdir()
    return path


@pytest.fixture(scope="session")
def monkeypatch_session():
    mp = pytest.MonkeyPatch()
    yield mp
    mp.undo()


@pytest.fixture(scope="session")
def feature_cache(session_dir, monkeypatch_session) -> Path:
    path = session_dir / "cache"
    monkeypatch_session.setattr("toolkit.train.features.CACHE_DIR", path)
    return path


@pytest.fixture(scope="session")
def trained_run(synth_root, runs_dir, feature_cache) -> Path:
    """MiniVGGNet trained from scratch on the synthetic data: the session's reference run."""
    from toolkit.train.phases import train

    result = train(small_recipe("scratch", synth_root), runs_dir=runs_dir)
    return result.run_dir


@pytest.fixture(scope="session")
def jax_scratch_run(synth_root, tmp_path_factory) -> Path:
    """The small recipe from scratch with augmentation, trained by one process on JAX (TensorFlow
    unimportable): the JAX backend's own run, and the one-process reference of a multi-process job."""
    import importlib.util

    if importlib.util.find_spec("jax") is None:
        pytest.skip("jax not installed (make setup installs it)")
    tmp = tmp_path_factory.mktemp("jax")
    recipe = small_recipe("jax_scratch", synth_root, train=SCRATCH_ON_ANOTHER_BACKEND)
    proc = train_without_tensorflow(recipe, tmp, backend_env="jax")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "backend jax, device CPU" in proc.stdout
    assert "decoded once" in proc.stdout
    return tmp / "runs" / recipe.name


@pytest.fixture(scope="session")
def exported_run(trained_run, session_dir) -> Path:
    """A copy of trained_run with every format exported: saved_model/, model_{float32,float16,
    dynamic,int8}.tflite (int8: uint8 I/O), model.onnx, all recorded in its manifest.json.

    A copy in its own runs folder, so trained_run stays as training left it and "the latest run"
    of runs_dir is unchanged. Tests that damage artifacts must copy this folder first.
    """
    import shutil

    from toolkit.export.exporter import export_run

    run = session_dir / "exported_runs" / trained_run.name
    shutil.copytree(trained_run, run)
    export_run(run, formats=["all"], quantizations=["all"])
    return run


@pytest.fixture(scope="session")
def device_run(request) -> Path:
    """The exported run the device-path (`edge`) tests read: .tflite/.onnx, manifest, test images.

    CI also runs the `edge` tests in a venv with only the base install, where there is no
    TensorFlow to train and export one: there TK_EDGE_RUN names the run the full suite exported
    (the full suite writes its path to the file TK_EDGE_RUN_OUT names).
    """
    given = os.environ.get("TK_EDGE_RUN")
    if given:
        return Path(given)
    run = request.getfixturevalue("exported_run")
    if os.environ.get("TK_EDGE_RUN_OUT"):
        Path(os.environ["TK_EDGE_RUN_OUT"]).write_text(str(run))
    return run


@pytest.fixture(scope="session")
def base_weights(trained_run, session_dir) -> Path:
    """trained_run's MiniVGGNet conv base as a weights file: a "pretrained" base for the
    feature-extraction and fine-tuning tests (ImageNet weights would need the internet)."""
    import keras

    from toolkit.train.backbones import ensure_custom_objects

    ensure_custom_objects()
    model = keras.saving.load_model(trained_run / "model.keras", compile=False)
    path = session_dir / "base.weights.h5"
    model.get_layer("backbone").save_weights(path)
    return path


@pytest.fixture(scope="session")
def finetuned_run(synth_root, session_dir, feature_cache, base_weights):
    """mini_vgg from base_weights: cached feature extraction, then fine-tuning from block2_conv1.

    Returns a namespace: run_dir, recipe, messages (what train said), and after_features
    ({layer name: [arrays]} of the backbone when fine-tuning started, i.e. after the features
    phase). Its own runs folder, so runs_dir's latest run stays trained_run.
    """
    from types import SimpleNamespace

    import toolkit.train.fit as fit_module
    import toolkit.train.phases as train_module

    recipe = small_recipe(
        "finetune",
        synth_root,
        model={"weights": str(base_weights)},
        train={
            "mode": "features",
            "epochs": 3,
            "fine_tune": {"epochs": 2, "unfreeze_from": "block2_conv1", "learning_rate": 1e-4},
        },
    )
    snapshot: dict = {}
    original = fit_module.phase_end_to_end

    def spy(phase, model, *args, **kwargs):  # unfreeze() only flips flags: weights are as features left them
        if phase == "finetune":
            snapshot.update(
                {layer.name: [w.numpy().copy() for w in layer.weights] for layer in model.get_layer("backbone").layers}
            )
        return original(phase, model, *args, **kwargs)

    from toolkit.core.context import Context

    messages: list[str] = []
    mp = pytest.MonkeyPatch()
    mp.setattr(fit_module, "phase_end_to_end", spy)
    try:
        result = train_module.train(recipe, runs_dir=session_dir / "finetune_runs", ctx=Context(say=messages.append))
    finally:
        mp.undo()
    return SimpleNamespace(run_dir=result.run_dir, recipe=recipe, messages=messages, after_features=snapshot)


@pytest.fixture(scope="session")
def int8_inputs(exported_run):
    """What the int8 converters take, from exported_run: its SavedModel, 40 training images to
    calibrate on, the test images and the Keras model's probabilities on them."""
    from types import SimpleNamespace

    import numpy as np

    from toolkit.core.images import load_batch
    from toolkit.core.runs import load_manifest, load_split
    from toolkit.export.reference import load_keras_model

    split = load_split(exported_run / "split.json")
    size = tuple(load_manifest(exported_run)["preprocessing"]["size"])
    test = load_batch(split.paths("test"), size)
    model = load_keras_model(exported_run / "model.keras")
    return SimpleNamespace(
        saved_model=exported_run / "saved_model",
        onnx=exported_run / "model.onnx",
        calibration=load_batch(split.paths("train")[:40], size),
        test=test,
        reference=np.asarray(model.predict(test, verbose=0)),
    )
