"""The backbone registry: every entry builds, its named layers exist, its scaling is the one its
weights expect, and ImageNet weights never silently become random weights offline."""

from __future__ import annotations

import re
import socket

import numpy as np
import pytest

from toolkit.core.errors import TkError
from toolkit.core.recipe import HeadSection, ModelSection
from toolkit.train.backbones import BACKBONES, build_base, build_head, get_backbone

SMALLEST = 32  # the smallest input every keras.applications base and MiniVGGNet accept


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_every_backbone_builds_and_names_real_layers(name):
    spec = BACKBONES[name]
    base = build_base(ModelSection(backbone=name, weights="none", image_size=SMALLEST))
    names = [layer.name for layer in base.layers]
    assert base.name == "backbone"
    if spec.feature_layer:
        assert names[-1] == spec.feature_layer  # the base is cut at its default feature layer
    for layer in spec.conv_layers:
        assert layer in names, f"{name}: conv_layers names {layer!r}, not a layer of the base"
    assert spec.scaling in ("caffe", "tf", "torch", "unit", "raw")
    height, width, channels = base.output.shape[1:]
    assert height >= 1 and width >= 1 and channels >= 1


def test_feature_layer_selects_an_earlier_layer():
    base = build_base(ModelSection(backbone="mini_vgg", weights="none", image_size=32, feature_layer="block1_pool"))
    assert base.layers[-1].name == "block1_pool"
    assert tuple(base.output.shape[1:]) == (16, 16, 32)


def test_unknown_backbone_suggests_and_lists_the_allowed_names():
    with pytest.raises(TkError) as info:
        get_backbone("mobilenetv2")
    message = str(info.value)
    assert "did you mean 'mobilenet_v2'" in message
    for name in BACKBONES:
        assert name in message


@pytest.mark.parametrize("name, size", [("mobilenet_v2", 96), ("vgg16", 32)])
def test_imagenet_offline_names_the_file_and_the_cache_folder(name, size, tmp_path, monkeypatch):
    import keras.src.backend.config as keras_config

    # Cut the network (on a machine that has one) and point Keras at an empty cache.
    def offline(*args, **kwargs):
        raise socket.gaierror(socket.EAI_NONAME, "network disabled by the test")

    monkeypatch.setattr(socket, "getaddrinfo", offline)
    monkeypatch.setattr(socket.socket, "connect", offline)
    home = tmp_path / "keras_home"
    home.mkdir()
    monkeypatch.setattr(keras_config, "_KERAS_DIR", str(home))
    with pytest.raises(TkError) as info:  # never a model with random weights
        build_base(ModelSection(backbone=name, weights="imagenet", image_size=size))
    message = str(info.value)
    wanted = re.search(r"Keras wanted (\S+\.h5)", message)
    assert wanted and BACKBONES[name].keras_app.lower().replace("v2", "_v2") in wanted.group(1), message
    assert f"{home / 'models'}" in message
    assert "model.weights" in message and "local weights file" in message


def test_mini_vgg_has_no_imagenet_weights():
    with pytest.raises(TkError, match="mini_vgg has no ImageNet weights"):
        build_base(ModelSection(backbone="mini_vgg", weights="imagenet", image_size=32))


def test_a_weights_file_that_does_not_fit_is_a_user_error(tmp_path):
    not_weights = tmp_path / "notes.weights.h5"
    not_weights.write_text("not an HDF5 file")
    with pytest.raises(TkError, match="model.weights: cannot load"):
        build_base(ModelSection(backbone="mini_vgg", weights=str(not_weights), image_size=32))


@pytest.mark.parametrize(
    "backbone, reference", [("vgg16", "vgg16"), ("mobilenet_v2", "mobilenet_v2"), ("resnet50", "resnet50")]
)
def test_preprocess_layer_matches_the_keras_preprocess_input(backbone, reference, synth_root):
    """The scaling inside tk's models is the one the ImageNet weights were trained with."""
    import keras

    from toolkit.core.images import load_batch
    from toolkit.train.backbones import preprocess_layer

    images = load_batch(sorted(synth_root.glob("*/*.jpg"))[:4], (48, 48))
    ours = np.asarray(preprocess_layer(get_backbone(backbone).scaling)(images))
    theirs = getattr(keras.applications, reference).preprocess_input(images.copy())
    np.testing.assert_allclose(ours, theirs, atol=1e-4)


def test_head_without_hidden_layers_still_applies_its_dropout():
    import keras

    head = build_head(
        (3, 3, 8), 5, ModelSection(head=HeadSection(pooling="avg", dense=(), dropout=0.2)), "mobilenet_v2"
    )
    dropouts = [layer for layer in head.layers if isinstance(layer, keras.layers.Dropout)]
    assert [d.rate for d in dropouts] == [0.2]
    assert head.output.shape[-1] == 5 and head.get_layer("predictions").dtype_policy.compute_dtype == "float32"
