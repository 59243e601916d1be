"""Cached feature extraction: a second run never calls the backbone again, the cache key follows
the image contents, and the TFLite engine computes what the Keras extractor computes."""

from __future__ import annotations

import json
import shutil

import numpy as np
import pytest
from helpers import small_recipe

from toolkit.core.context import Context
from toolkit.train.features import build_extractor, cache_key, extractor_key, run_extractor


def test_second_run_with_another_head_hits_the_cache(finetuned_run, synth_root, base_weights, tmp_path, monkeypatch):
    """finetuned_run extracted these features; a new head with more epochs must reuse them."""
    import toolkit.train.features
    from toolkit.train.phases import train

    def backbone_called(*args, **kwargs):
        raise AssertionError("the conv base ran again: the feature cache was not used")

    monkeypatch.setattr(toolkit.train.features, "run_extractor", backbone_called)
    recipe = small_recipe(
        "features_again",
        synth_root,
        model={"weights": str(base_weights), "head": {"dense": [64], "dropout": 0.2}},
        train={"mode": "features", "epochs": 4},
    )
    said: list[str] = []
    result = train(recipe, runs_dir=tmp_path, ctx=Context(say=said.append))
    hits = [m for m in said if "cache hit" in m]
    assert len(hits) == 2 and any("train" in m for m in hits) and any("validation" in m for m in hits), said
    history = json.loads((result.run_dir / "phases" / "features" / "history.json").read_text())
    assert len(history["loss"]) == 4
    assert result.metrics["count"] > 0


def _extractor(base_weights):
    from toolkit.core.recipe import ModelSection
    from toolkit.train.backbones import build_base, get_backbone

    model = ModelSection(backbone="mini_vgg", weights=str(base_weights), image_size=32)
    return model, build_extractor(build_base(model), 32, get_backbone("mini_vgg").scaling)


def test_tflite_engine_matches_keras_and_reuses_the_converted_extractor(
    finetuned_run, base_weights, synth_root, feature_cache, monkeypatch
):
    import toolkit.train.features

    model, extractor = _extractor(base_weights)
    paths = [str(p) for p in sorted(synth_root.glob("*/*.jpg"))[::6]]  # 30 real images, all classes
    keras_features = run_extractor(extractor, paths, 32, "keras")

    def convert_again(*args, **kwargs):
        raise AssertionError("converted again although finetuned_run left the extractor in the cache")

    monkeypatch.setattr(toolkit.train.features, "_convert", convert_again)
    key = extractor_key(model, "tflite", finetuned_run.recipe.seed)
    tflite_features = run_extractor(extractor, paths, 32, "tflite", key=key, cache_dir=feature_cache)
    assert tflite_features.shape == keras_features.shape == (len(paths), 8, 8, 64)
    np.testing.assert_allclose(tflite_features, keras_features, atol=1e-4)


def test_cache_key_follows_image_contents_and_extractor(synth_root, tmp_path):
    from dataclasses import replace

    from toolkit.core.recipe import ModelSection

    folder = tmp_path / "images"
    shutil.copytree(synth_root / "circle", folder)
    paths = [str(p) for p in sorted(folder.glob("*.jpg"))[:5]]
    model = ModelSection(backbone="mobilenet_v2", weights="imagenet", image_size=96)
    key = cache_key(extractor_key(model, "tflite", 0), paths)
    assert cache_key(extractor_key(model, "tflite", 0), paths) == key  # deterministic
    # Touching a file without changing it keeps the key; changing its bytes changes it.
    data = open(paths[0], "rb").read()
    open(paths[0], "wb").write(data)
    assert cache_key(extractor_key(model, "tflite", 0), paths) == key
    open(paths[0], "wb").write(data + b"\0")
    assert cache_key(extractor_key(model, "tflite", 0), paths) != key
    open(paths[0], "wb").write(data)
    for other in (
        replace(model, image_size=128),
        replace(model, feature_layer="block_13_expand_relu"),
        replace(model, backbone="vgg16"),
        replace(model, weights="none"),
    ):
        assert cache_key(extractor_key(other, "tflite", 0), paths) != key, other
    assert cache_key(extractor_key(model, "keras", 0), paths) != key


def test_a_bad_file_passed_to_the_extractor_is_named(finetuned_run, base_weights, feature_cache, tmp_path):
    from toolkit.core.errors import TkError

    model, extractor = _extractor(base_weights)
    path = tmp_path / "broken.jpg"
    path.write_text("not an image at all")
    key = extractor_key(model, "tflite", finetuned_run.recipe.seed)  # converted already: no conversion here
    with pytest.raises(TkError, match="broken.jpg"):
        run_extractor(extractor, [str(path)], 32, "tflite", key=key, cache_dir=feature_cache)


@pytest.mark.parametrize("engine", ["tflite", "keras"])
def test_extraction_reports_every_image(engine, synth_root, tmp_path, monkeypatch):
    import keras
    from fake_progress import RecordingProgress

    from toolkit.train import features

    monkeypatch.setattr(features, "CACHE_DIR", tmp_path)  # engine keras decodes into the cache first
    inputs = keras.Input((32, 32, 3))
    extractor = keras.Model(inputs, keras.layers.Conv2D(2, 3)(inputs))
    paths = sorted(str(p) for p in synth_root.rglob("*.jpg"))[:20]
    progress = RecordingProgress()
    out = features.run_extractor(extractor, paths, 32, engine, ctx=Context(progress=progress), label="train")
    assert out.shape == (20, 30, 30, 2)
    (task,) = progress.named("extracting features (train images)")
    assert (task.total, task.done, task.closed) == (20, 20, True)
    if engine == "tflite":  # a converted extractor runs EXTRACT_BATCH images at a time
        assert task.advances == [16, 4] and progress.named("converting the extractor")[0].closed
    else:  # decoded once (its own task), then predicted 32 at a time
        assert progress.summary()[0] == ("decoding train images", 20, 20) and task.advances == [20]
