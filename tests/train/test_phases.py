"""tk train: a model learns, frozen layers stay frozen, runs resume, recipe mistakes fail early.

Heavy runs are session fixtures (conftest.py: trained_run, finetuned_run); the tests here read
their run folders, plus two small runs of their own (interrupt/resume, mixed precision).
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import interrupt_at_epoch, small_recipe

from toolkit.core.context import Context
from toolkit.core.errors import TkError
from toolkit.core.io import sha256_file


def _load(path: Path):
    import keras

    from toolkit.train.backbones import ensure_custom_objects

    ensure_custom_objects()
    return keras.saving.load_model(path, compile=False)


def _layer_weights(model) -> dict[str, list[np.ndarray]]:
    return {layer.name: [w.numpy() for w in layer.weights] for layer in model.layers if layer.weights}


def _same(a: list[np.ndarray], b: list[np.ndarray]) -> bool:
    return len(a) == len(b) and all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))


# --- from scratch: the session's reference run --------------------------------------------------


def test_scratch_model_learns_the_synthetic_task(trained_run):
    metrics = json.loads((trained_run / "metrics.json").read_text())
    test = metrics["test"]
    assert test["accuracy"] >= 0.9, test  # chance is 1/3
    classes = (trained_run / "labels.txt").read_text().split()
    assert sorted(test["per_class"]) == sorted(classes)
    for name, m in test["per_class"].items():
        assert 0.0 <= m["precision"] <= 1.0 and 0.0 <= m["recall"] <= 1.0 and m["support"] > 0, name
    confusion = np.asarray(test["confusion_matrix"])
    assert confusion.shape == (len(classes), len(classes))
    assert confusion.sum() == test["count"]
    assert np.trace(confusion) / confusion.sum() == pytest.approx(test["accuracy"])


def test_run_folder_has_model_manifest_split_and_per_phase_outputs(trained_run):
    for name in ("model.keras", "manifest.json", "split.json", "labels.txt", "recipe.yaml", "metrics.json"):
        assert (trained_run / name).is_file(), name
    phases = json.loads((trained_run / "metrics.json").read_text())["phases"]
    assert phases == ["scratch"]
    for phase in phases:
        folder = trained_run / "phases" / phase
        history = json.loads((folder / "history.json").read_text())
        epochs = small_recipe("scratch", trained_run).train.epochs
        assert len(history["loss"]) == len(history["val_loss"]) == epochs  # one entry per epoch
        assert (folder / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert (folder / "best.keras").is_file()
    manifest = json.loads((trained_run / "manifest.json").read_text())
    assert manifest["artifacts"]["model.keras"]["sha256"] == sha256_file(trained_run / "model.keras")
    assert manifest["preprocessing"]["size"] == [32, 32]
    assert not (trained_run.parent / "scratch.partial").exists()


def test_the_split_is_reproducible_from_the_seed(trained_run, synth_root, tmp_path):
    from toolkit.core.runs import save_split
    from toolkit.data.splits import discover

    recipe = small_recipe("scratch", synth_root)
    save_split(discover(recipe.data, recipe.seed), tmp_path / "again.json")
    assert (tmp_path / "again.json").read_bytes() == (trained_run / "split.json").read_bytes()
    save_split(discover(recipe.data, recipe.seed + 1), tmp_path / "other.json")
    assert (tmp_path / "other.json").read_bytes() != (trained_run / "split.json").read_bytes()


# --- feature extraction, then fine-tuning --------------------------------------------------------


def _file_weights(base_weights: Path) -> dict[str, list[np.ndarray]]:
    from toolkit.core.recipe import ModelSection
    from toolkit.train.backbones import build_base

    return _layer_weights(build_base(ModelSection(backbone="mini_vgg", weights=str(base_weights), image_size=32)))


def test_feature_extraction_leaves_the_frozen_base_unchanged(finetuned_run, base_weights):
    expected = _file_weights(base_weights)
    assert {name for name, arrays in finetuned_run.after_features.items() if arrays} == set(expected)
    for name, arrays in expected.items():
        assert _same(finetuned_run.after_features[name], arrays), name


def test_fine_tuning_changes_only_the_unfrozen_layers(finetuned_run, base_weights):
    import keras

    expected = _file_weights(base_weights)
    backbone = _load(finetuned_run.run_dir / "model.keras").get_layer("backbone")
    names = [layer.name for layer in backbone.layers]
    start = names.index("block2_conv1")
    for i, layer in enumerate(backbone.layers):
        if not layer.weights:
            continue
        now = [w.numpy() for w in layer.weights]
        if isinstance(layer, keras.layers.BatchNormalization):
            # Inference mode: gamma/beta frozen and the moving mean/variance not updated.
            assert _same(now, expected[layer.name]), f"{layer.name} (BatchNorm) changed"
        elif i >= start:
            assert not _same(now, expected[layer.name]), f"{layer.name} was unfrozen but did not change"
        else:
            assert _same(now, expected[layer.name]), f"{layer.name} is below block2_conv1 but changed"
    assert json.loads((finetuned_run.run_dir / "metrics.json").read_text())["phases"] == ["features", "finetune"]
    for phase in ("features", "finetune"):
        assert (finetuned_run.run_dir / "phases" / phase / "curves.png").is_file()
    assert any("[finetune]" in m and "BatchNorm kept in inference mode" in m for m in finetuned_run.messages)


# --- interrupt and resume ------------------------------------------------------------------------


def _tree_hashes(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): sha256_file(p) for p in sorted(folder.rglob("*")) if p.is_file()}


def test_interrupt_keeps_the_best_checkpoint_and_resume_finishes(synth_root, trained_run, tmp_path, monkeypatch):
    from toolkit.train.phases import train

    runs = tmp_path / "runs"
    previous = runs / "resumable"
    shutil.copytree(trained_run, previous)  # a finished earlier run under the same name
    before = _tree_hashes(previous)
    recipe = small_recipe("resumable", synth_root, train={"epochs": 4})
    resume_training = interrupt_at_epoch(monkeypatch, 2)  # as if Ctrl-C came once epoch 2 was done
    with pytest.raises(TkError, match="--resume"):
        train(recipe, runs_dir=runs)
    assert _tree_hashes(previous) == before  # the earlier run is untouched
    partial = runs / "resumable.partial" / "phases" / "scratch"
    assert (partial / "best.keras").is_file()
    assert len(json.loads((partial / "history.json").read_text())["loss"]) == 2

    resume_training()
    said: list[str] = []
    result = train(recipe, runs_dir=runs, resume=True, ctx=Context(say=said.append))
    epochs_run = [m for m in said if m.startswith("[scratch] epoch")]
    assert epochs_run and epochs_run[0].startswith("[scratch] epoch 3/4")  # continued, not restarted
    history = json.loads((result.run_dir / "phases" / "scratch" / "history.json").read_text())
    assert len(history["loss"]) == 4
    assert not (runs / "resumable.partial").exists()
    assert _tree_hashes(result.run_dir) != before  # the finished run took the stable name
    assert json.loads((result.run_dir / "metrics.json").read_text())["test"]["count"] > 0
    # retraining never destroys a finished run: the earlier one was moved aside, intact, and said so
    assert result.archived is not None and result.archived.parent == runs
    assert result.archived.name.startswith("resumable-") and _tree_hashes(result.archived) == before
    assert any(m.startswith(f"kept the previous run as {result.archived}") for m in said)
    from toolkit.core.runs import load_manifest, resolve_run

    assert load_manifest(result.run_dir)["trained"] > load_manifest(result.archived)["trained"]
    assert resolve_run(None, runs) == result.run_dir  # latest: the run trained last


# --- recipe mistakes fail before any work --------------------------------------------------------


@pytest.mark.parametrize(
    "sections, expected",
    [
        ({"model": {"backbone": "vgg61"}}, ["unknown backbone 'vgg61'", "vgg16", "mobilenet_v2", "mini_vgg"]),
        (
            {"model": {"weights": "/nowhere/base.weights.h5"}, "train": {"mode": "features"}},
            ["model.weights", "/nowhere/base.weights.h5"],
        ),
        ({"model": {"weights": "none"}, "train": {"mode": "features"}}, ["train.mode", "weights is none"]),
        ({"model": {"feature_layer": "block9_pool"}}, ["model.feature_layer", "block9_pool"]),
    ],
)
def test_recipe_mistakes_fail_before_any_work(synth_root, tmp_path, sections, expected):
    from toolkit.train.phases import train

    with pytest.raises(TkError) as info:
        train(small_recipe("mistake", synth_root, **sections), runs_dir=tmp_path)
    for text in expected:
        assert text in str(info.value)
    assert list(tmp_path.iterdir()) == []  # no run folder, no .partial


def test_unfreeze_from_a_missing_layer_is_named_and_keeps_an_interrupted_run(synth_root, base_weights, tmp_path):
    from toolkit.train.phases import train

    partial = tmp_path / "mistake.partial"
    partial.mkdir()
    (partial / "keep.txt").write_text("an interrupted run")
    recipe = small_recipe(
        "mistake",
        synth_root,
        model={"weights": str(base_weights)},
        train={"mode": "features", "fine_tune": {"epochs": 1, "unfreeze_from": "block5_conv1"}},
    )
    with pytest.raises(TkError, match="train.fine_tune.unfreeze_from: layer 'block5_conv1'"):
        train(recipe, runs_dir=tmp_path)
    assert (partial / "keep.txt").read_text() == "an interrupted run"


# --- device line and mixed precision -------------------------------------------------------------


def test_mixed_precision_trains_with_a_float32_output(synth_root, base_weights, tmp_path):
    import keras

    from toolkit.train.phases import train

    said: list[str] = []
    recipe = small_recipe(
        "mixed",
        synth_root,
        model={"weights": str(base_weights)},
        train={
            "mode": "features",
            "epochs": 1,
            "mixed_precision": True,
            "fine_tune": {"epochs": 1, "unfreeze_from": "block2_conv1"},
        },
    )
    result = train(recipe, runs_dir=tmp_path, ctx=Context(say=said.append))
    assert any(m.startswith("backend tensorflow, device CPU") and m.endswith("precision mixed_float16") for m in said)
    assert any("mixed_precision: extracting with engine keras" in m for m in said)  # float16 has no TFLite path
    model = _load(result.run_dir / "model.keras")
    conv = model.get_layer("backbone").get_layer("block1_conv1")
    assert conv.dtype_policy.compute_dtype == "float16"
    predictions = model.get_layer("head").get_layer("predictions")
    assert predictions.dtype_policy.compute_dtype == "float32"
    assert model.output.dtype == "float32"
    assert keras.mixed_precision.global_policy().name == "float32"  # reset for whatever runs next
    assert 0.0 <= result.metrics["accuracy"] <= 1.0 and result.metrics["count"] > 0


def test_training_reports_decoding_and_every_step_and_keras_prints_no_bar(tmp_path, monkeypatch, capsys):
    from fake_progress import RecordingProgress

    from toolkit.data.synth import make_synthetic_dataset
    from toolkit.train import features
    from toolkit.train.phases import train

    root = make_synthetic_dataset(tmp_path / "data", classes=2, per_class=20, size=32, seed=0)  # small: cheap
    monkeypatch.setattr(features, "CACHE_DIR", tmp_path / "cache")  # a cold cache: every split is decoded
    progress, lines = RecordingProgress(), []
    result = train(
        small_recipe("progress", root, train={"epochs": 2}),
        runs_dir=tmp_path / "runs",
        ctx=Context(say=lines.append, progress=progress),
    )
    split = json.loads((result.run_dir / "split.json").read_text())["splits"]
    train_images = len(split["train"])
    steps = -(-train_images // 16)
    assert progress.summary() == [
        ("decoding train images", train_images, train_images),
        ("decoding validation images", len(split["validation"]), len(split["validation"])),
        ("[scratch] epoch 1/2", steps, steps),
        ("[scratch] epoch 2/2", steps, steps),
        ("decoding test images", len(split["test"]), len(split["test"])),
    ]
    assert all(t.closed for t in progress.tasks)
    assert [line.split("  ")[0] for line in lines if " epoch " in line] == [
        "[scratch] epoch 1/2",
        "[scratch] epoch 2/2",
    ]
    out, err = capsys.readouterr()
    assert out == "" and "━" not in err and "step" not in err  # Keras' own progress bar stays off
