"""Shared fixtures: synthetic data and one small trained run per test session.

Everything heavy (training) happens once per session here; tests read the results. Runs and the
feature cache live in a session temp folder, never in the repo's exported/. The trained and
exported runs are also kept between local runs, keyed by a hash of the sources (run_cache.py).
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from helpers import WEB_ARTIFACTS, small_recipe
from run_cache import cache_dir, cached, shared

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

# Fixtures that train (or export what was trained): a test that uses one is marked `trains`, so
# `make test-fast` (-m "not trains") runs everything else in seconds.
TRAINING_FIXTURES = {"trained_run", "exported_run", "finetuned_run", "base_weights", "int8_inputs"}


def pytest_collection_modifyitems(config, items):
    device_run_given = bool(os.environ.get("TK_EDGE_RUN"))  # the edge pass reads a run, trains none
    for item in items:
        needs = TRAINING_FIXTURES | (set() if device_run_given else {"device_run"})
        if needs & set(getattr(item, "fixturenames", ())):
            item.add_marker(pytest.mark.trains)


@pytest.fixture(scope="session")
def session_dir(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("tk")


@pytest.fixture(scope="session")
def run_cache() -> Path | None:
    """This source tree's cache of the session's runs (None under CI=true or TK_TEST_CACHE=0)."""
    return cache_dir()


@pytest.fixture(scope="session")
def synth_root(session_dir, run_cache) -> Path:
    """3 classes x 60 synthetic 48 px JPEGs (shapes on textures), with objects.json boxes.
    Read-only: tests that change images copy them first."""
    from toolkit.data.synth import make_synthetic_dataset

    def make(folder: Path) -> None:
        make_synthetic_dataset(folder, classes=3, per_class=60, size=48, seed=1)

    return shared(run_cache and run_cache / "synth", session_dir / "synth", make)


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
def trained_run(synth_root, runs_dir, feature_cache, run_cache) -> Path:
    """MiniVGGNet trained from scratch on the synthetic data: the session's reference run."""
    from toolkit.train.phases import train

    def make(run: Path) -> None:
        assert train(small_recipe("scratch", synth_root), runs_dir=run.parent).run_dir == run

    return cached(run_cache and run_cache / "trained", runs_dir / "scratch", make)


@pytest.fixture(scope="session")
def exported_run(trained_run, session_dir, run_cache) -> Path:
    """A copy of trained_run with every format exported: saved_model/, model_{float32,float16,
    dynamic,int8}.tflite (int8: uint8 I/O), model.onnx, all recorded in its manifest.json.

    Verified once (parity.json, checkset/), so a pack of it carries the check set a device re-runs.
    A copy in its own runs folder, so trained_run stays as training left it and "the latest run"
    of runs_dir is unchanged. Tests that damage artifacts must copy this folder first.
    """
    import shutil

    from toolkit.core.errors import ParityError
    from toolkit.export.exporter import export_run
    from toolkit.export.verify import verify_run

    def make(run: Path) -> None:
        shutil.copytree(trained_run, run)
        export_run(run, formats=["all"], quantizations=["all"])
        try:
            verify_run(run)
        except ParityError:
            pass  # parity.json says which; tests that need a passing artifact pick one that passed

    run = session_dir / "exported_runs" / trained_run.name
    run.parent.mkdir(exist_ok=True)
    return cached(run_cache and run_cache / "exported", run, make)


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
    original = train_module._phase_end_to_end

    def spy(phase, model, *args, **kwargs):  # unfreeze() only flips flags: weights are as features left them
        if phase == "finetune":
            snapshot.update(
                {layer.name: [w.numpy().copy() for w in layer.weights] for layer in model.get_layer("backbone").layers}
            )
        return original(phase, model, *args, **kwargs)

    from toolkit.core.context import Context

    messages: list[str] = []
    mp = pytest.MonkeyPatch()
    mp.setattr(train_module, "_phase_end_to_end", spy)
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


@pytest.fixture(scope="session")
def openvino_run(exported_run, session_dir) -> Path:
    """A copy of exported_run with the optional OpenVINO IR exported too: model_{float32,float16,int8}.xml,
    each with its .bin, recorded in manifest.json (the other formats as exported_run has them)."""
    import shutil

    from toolkit.export.exporter import export_run

    run = session_dir / "openvino_runs" / exported_run.name
    shutil.copytree(exported_run, run)
    export_run(run, formats=["openvino"], quantizations=["all"])
    return run


# --------------------------------------------------------------------------- the browser target (tests/web)
# Tests marked `web` need the system's Chromium and the npm runtimes: off CI (env CI unset) a missing
# one is a skip that says which; on CI it is a failure, so a CI machine without them cannot pass.


def _web_missing() -> str | None:
    import shutil

    from toolkit.core.errors import TkError
    from toolkit.web.chromium import chromium_version, find_chromium
    from toolkit.web.runtime import installed_modules

    try:
        chromium_version(find_chromium())
    except TkError as exc:
        return str(exc)
    if installed_modules() is None and shutil.which("npm") is None:
        return "npm is not installed and the browser runtimes are not cached (apt-get install npm)"
    return None


@pytest.fixture(scope="session")
def chromium():
    """Skip (off CI) or fail (on CI) when Chromium or the runtimes are missing."""
    why = _web_missing()
    if why:
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the web tests: {why}")
        pytest.skip(why)


@pytest.fixture(scope="session")
def web_bundle(chromium, exported_run, session_dir) -> Path:
    """tk pack --web of the session's exported run (float32 and int8 of both formats), with its check set."""
    from typer.testing import CliRunner

    from toolkit.cli.app import app

    bundle = session_dir / "web_bundle"
    args = ["pack", str(exported_run), str(bundle), "--web", "--samples", "6"]
    for file in WEB_ARTIFACTS:
        args += ["--artifact", file]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    return bundle
