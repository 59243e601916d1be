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


ACCEPTED = [(name, key) for name, spec in sorted(BACKBONES.items()) for key in spec.accepts]
VALUES = {"alpha": 0.5, "minimalistic": True}


@pytest.mark.parametrize("name, key", ACCEPTED, ids=[f"{n}-{k}" for n, k in ACCEPTED])
def test_every_key_a_backbone_accepts_reaches_its_constructor(name, key):
    base = build_base(ModelSection(backbone=name, weights="none", image_size=SMALLEST, **{key: VALUES[key]}))
    plain = build_base(ModelSection(backbone=name, weights="none", image_size=SMALLEST))
    assert base.count_params() != plain.count_params()  # a narrower or minimalistic network, not ignored


@pytest.mark.parametrize("name", sorted(BACKBONES))
def test_a_key_a_backbone_does_not_take_is_one_line_naming_key_backbone_and_what_it_accepts(name):
    from toolkit.train.backbones import OPTIONAL_KEYS, check_model

    for key in (k for k in OPTIONAL_KEYS if k not in BACKBONES[name].accepts):
        with pytest.raises(TkError) as info:
            check_model(ModelSection(backbone=name, weights="none", **{key: VALUES[key]}))
        line = str(info.value)
        assert line.startswith(f"model.{key}: backbone {name} does not take {key}") and "\n" not in line
        takers = [n for n, s in BACKBONES.items() if key in s.accepts]
        assert f"(it takes {', '.join(BACKBONES[name].accepts) or 'none'} of alpha, minimalistic)" in line
        assert line.endswith(f"use a backbone that takes it: {', '.join(takers)}")


def test_an_alpha_without_imagenet_weights_is_refused_before_the_download():
    from toolkit.train.backbones import check_model

    with pytest.raises(TkError, match=r"model.alpha: mobilenet_v2 has ImageNet weights for alpha 0.35, 0.5"):
        check_model(ModelSection(backbone="mobilenet_v2", weights="imagenet", alpha=0.6))
    assert check_model(ModelSection(backbone="mobilenet_v2", weights="none", alpha=0.6)).name == "mobilenet_v2"


def test_the_capability_check_runs_without_tensorflow(tmp_path):
    import subprocess
    import sys

    code = (
        "import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
        "from toolkit.core.errors import TkError\nfrom toolkit.core.recipe import ModelSection\n"
        "from toolkit.train.backbones import check_model\n"
        "try:\n    check_model(ModelSection(backbone='vgg16', alpha=0.5))\nexcept TkError as e:\n    print(e)\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.startswith(
        "model.alpha: backbone vgg16 does not take alpha (it takes none of alpha, minimalistic)"
    )


def test_tk_train_refuses_a_key_the_backbone_does_not_take_in_one_line(tmp_path):
    from helpers import assert_one_line_error
    from typer.testing import CliRunner

    from toolkit.cli.app import app

    recipe = tmp_path / "r.yaml"
    recipe.write_text("name: r\ndata: {root: nowhere}\nmodel: {backbone: vgg16, alpha: 0.5, weights: none}\n")
    result = CliRunner().invoke(app, ["train", str(recipe)])
    assert_one_line_error(result, "model.alpha: backbone vgg16 does not take alpha", "mobilenet_v2")
