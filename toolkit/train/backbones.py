"""Registry of backbones: what each one is built from and what its weights expect, as data.

Adding a backbone is one BackboneSpec entry; what differs between backbones (constructor
arguments, a fixed head, which optional recipe keys it takes) is a field of the entry, never an
`if name == ...`. Keras is imported inside functions only, so `tk train` checks the recipe's model
section against the entry (check_model) before TensorFlow loads.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..core.errors import TkError, suggest
from ..core.recipe import ModelSection

# Input scaling the weights were trained with. The model applies it itself (Preprocess layer),
# so every exported artifact takes RGB 0..255 and the device reproduces nothing but resizing.
SCALING_MODES = ("caffe", "tf", "torch", "unit", "raw")
# Recipe keys (model.<key>) only some backbones take, passed to the constructor under the same name.
OPTIONAL_KEYS = ("alpha", "minimalistic")


@dataclass(frozen=True)
class BackboneSpec:
    name: str
    keras_app: Optional[str]  # constructor in keras.applications; None for our own MiniVGGNet
    scaling: str  # one of SCALING_MODES
    default_size: int
    feature_layer: Optional[str]  # default feature layer; None = the base's own output
    conv_layers: tuple[str, ...]  # sensible layers to look at (explain), shallow to deep
    imagenet: bool = True
    notes: str = ""
    # Extra keyword arguments for the keras.applications constructor (e.g. MobileNetV3's own
    # rescaling layer, which its ImageNet weights expect).
    constructor_kwargs: tuple[tuple[str, Any], ...] = ()
    # A fixed head instead of the recipe's model.head.dense (MiniVGGNet's FC 512), and whether
    # each hidden Dense is followed by BatchNormalization.
    head_dense: Optional[tuple[int, ...]] = None
    head_batchnorm: bool = False
    # Which OPTIONAL_KEYS the constructor takes (VGG16 has no alpha: passing one is a TypeError).
    accepts: tuple[str, ...] = ()
    # The alphas Keras publishes ImageNet weights for (any alpha trains with weights: none).
    imagenet_alphas: tuple[float, ...] = ()


BACKBONES: dict[str, BackboneSpec] = {
    spec.name: spec
    for spec in (
        BackboneSpec("vgg16", "VGG16", "caffe", 224, "block5_pool", ("block1_conv2", "block3_conv3", "block5_conv3")),
        BackboneSpec("vgg19", "VGG19", "caffe", 224, "block5_pool", ("block1_conv2", "block3_conv4", "block5_conv4")),
        BackboneSpec(
            "mobilenet",
            "MobileNet",
            "tf",
            224,
            "conv_pw_13_relu",
            ("conv_pw_1_relu", "conv_pw_6_relu", "conv_pw_13_relu"),
            accepts=("alpha",),
            imagenet_alphas=(0.25, 0.5, 0.75, 1.0),
        ),
        BackboneSpec(
            "mobilenet_v2",
            "MobileNetV2",
            "tf",
            224,
            "out_relu",
            ("block_1_expand_relu", "block_6_expand_relu", "out_relu"),
            accepts=("alpha",),
            imagenet_alphas=(0.35, 0.5, 0.75, 1.0, 1.3, 1.4),
        ),
        # MobileNetV3 and EfficientNet rescale inside the Keras model (include_preprocessing).
        BackboneSpec(
            "mobilenet_v3_small",
            "MobileNetV3Small",
            "raw",
            224,
            None,
            ("expanded_conv_project_bn", "expanded_conv_5_project_bn"),
            constructor_kwargs=(("include_preprocessing", True),),
            accepts=("alpha", "minimalistic"),
            imagenet_alphas=(0.75, 1.0),
        ),
        BackboneSpec(
            "mobilenet_v3_large",
            "MobileNetV3Large",
            "raw",
            224,
            None,
            ("expanded_conv_project_bn", "expanded_conv_11_project_bn"),
            constructor_kwargs=(("include_preprocessing", True),),
            accepts=("alpha", "minimalistic"),
            imagenet_alphas=(0.75, 1.0),
        ),
        BackboneSpec(
            "efficientnet_b0",
            "EfficientNetB0",
            "raw",
            224,
            "top_activation",
            ("block2a_expand_activation", "block4a_expand_activation", "top_activation"),
        ),
        BackboneSpec(
            "resnet50",
            "ResNet50",
            "caffe",
            224,
            "conv5_block3_out",
            ("conv2_block3_out", "conv4_block6_out", "conv5_block3_out"),
        ),
        BackboneSpec(
            "mini_vgg",
            None,
            "unit",
            64,
            "block2_pool",
            ("block1_conv1", "block1_conv2", "block2_conv1", "block2_conv2"),
            imagenet=False,
            notes="MiniVGGNet, trained from scratch: the baseline",
            head_dense=(512,),
            head_batchnorm=True,
        ),
    )
}


def get_backbone(name: str) -> BackboneSpec:
    if name not in BACKBONES:
        hint = suggest(name, BACKBONES)
        raise TkError(f"model.backbone: unknown backbone {name!r}{hint}; allowed: {', '.join(BACKBONES)}")
    return BACKBONES[name]


def check_model(model: ModelSection) -> BackboneSpec:
    """The backbone's entry, once the model section asks only for what it accepts: an unknown name,
    a key it does not take or an alpha without ImageNet weights is one line, before TensorFlow loads."""
    spec = get_backbone(model.backbone)
    for key in OPTIONAL_KEYS:
        if getattr(model, key) is not None and key not in spec.accepts:
            takers = [name for name, s in BACKBONES.items() if key in s.accepts]
            takes = ", ".join(spec.accepts) or "none"
            raise TkError(
                f"model.{key}: backbone {spec.name} does not take {key} (it takes {takes} of "
                f"{', '.join(OPTIONAL_KEYS)}); remove model.{key}, or use a backbone that takes it: {', '.join(takers)}"
            )
    alpha = model.alpha
    if alpha is not None and model.weights == "imagenet" and spec.imagenet_alphas and alpha not in spec.imagenet_alphas:
        raise TkError(
            f"model.alpha: {spec.name} has ImageNet weights for alpha {', '.join(map(str, spec.imagenet_alphas))} "
            f"only (got {alpha}); use one of those, or model.weights: none (or a weights file) to train another width"
        )
    return spec


def _preprocess_layer_class():
    import keras

    @keras.saving.register_keras_serializable(package="tk")
    class Preprocess(keras.layers.Layer):
        """The backbone's input scaling as a layer, so it travels inside every exported model."""

        _MEAN = {"caffe": (103.939, 116.779, 123.68), "torch": (0.485, 0.456, 0.406)}
        _STD = (0.229, 0.224, 0.225)

        def __init__(self, mode: str, **kwargs: Any):
            super().__init__(**kwargs)
            self.mode = mode

        def call(self, x):
            from keras import ops

            if self.mode == "caffe":  # RGB -> BGR, zero-centre on ImageNet means, no scaling
                x = ops.flip(x, axis=-1)
                return x - ops.convert_to_tensor(self._MEAN["caffe"], dtype=x.dtype)
            if self.mode == "tf":
                return x / 127.5 - 1.0
            if self.mode == "torch":
                mean = ops.convert_to_tensor(self._MEAN["torch"], dtype=x.dtype)
                std = ops.convert_to_tensor(self._STD, dtype=x.dtype)
                return (x / 255.0 - mean) / std
            if self.mode == "unit":
                return x / 255.0
            return x

        def get_config(self):
            return {**super().get_config(), "mode": self.mode}

    return Preprocess


_PREPROCESS = None


def preprocess_layer(mode: str, name: str = "preprocess"):
    global _PREPROCESS  # one class per process, registered once with Keras
    if _PREPROCESS is None:
        _PREPROCESS = _preprocess_layer_class()
    return _PREPROCESS(mode, name=name)


def ensure_custom_objects() -> None:
    """Register tk's layers with Keras before loading a .keras file written by tk."""
    if _PREPROCESS is None:
        preprocess_layer("raw")


def resolve_weights(weights: str) -> Optional[str]:
    """'imagenet' | None (random init) | an existing weights file path."""
    if weights == "none":
        return None
    if weights == "imagenet":
        return "imagenet"
    path = Path(weights).expanduser()
    if not path.is_file():
        raise TkError(
            f"model.weights: file not found: {weights} (use imagenet, none, or a path to a .h5/.weights.h5 file)"
        )
    return str(path)


def build_base(model: ModelSection):
    """The conv base, cut at the feature layer; input is already scaled for its weights."""
    import keras

    spec = check_model(model)
    size = model.image_size
    weights = resolve_weights(model.weights)
    if spec.keras_app is None:
        if weights == "imagenet":
            raise TkError(
                f"model.weights: {spec.name} has no ImageNet weights (it is trained from scratch); use none or a file"
            )
        base = build_mini_vgg((size, size, 3))
        if weights:
            _load_weights_file(base, weights)
    else:
        kwargs: dict[str, Any] = {"include_top": False, "input_shape": (size, size, 3)}
        kwargs.update({key: getattr(model, key) for key in spec.accepts if getattr(model, key) is not None})
        kwargs.update(spec.constructor_kwargs)
        ctor = getattr(keras.applications, spec.keras_app)
        base = _call_with_weights(ctor, kwargs, weights, spec)
    layer_name = model.feature_layer or spec.feature_layer
    output = base.output
    if layer_name and layer_name != base.layers[-1].name:
        output = _find_layer(base, layer_name, "model.feature_layer").output
    # One name for every backbone, so tools find it: model.get_layer("backbone"). Keras 3 keeps
    # a model's name in `.name` (the old `_name` is ignored), so name it when it is made.
    return keras.Model(base.input, output, name="backbone")


def _call_with_weights(ctor, kwargs, weights, spec: BackboneSpec):
    if weights != "imagenet":
        base = ctor(weights=None, **kwargs)
        if weights:
            _load_weights_file(base, weights)
        return base
    try:
        return ctor(weights="imagenet", **kwargs)
    except Exception as exc:
        # Offline, keras.utils.get_file turns urllib's URLError/HTTPError into a plain
        # Exception("URL fetch failure on <url>: ..."); a file in the cache that h5py cannot
        # read is an OSError. Anything else is a bug and keeps its traceback. Never fall back
        # to random weights: that would train silently on meaningless features.
        if "URL fetch failure" in str(exc):
            raise TkError(_offline_message(spec, str(exc))) from None
        if isinstance(exc, OSError):
            raise TkError(
                f"model.weights: the ImageNet weights for {spec.name} in {_keras_cache_dir()} "
                f"cannot be read ({exc}); delete the file there and run again"
            ) from None
        raise


def _keras_cache_dir() -> Path:
    """Where keras.utils.get_file keeps downloads: $KERAS_HOME or ~/.keras (else /tmp/.keras)."""
    try:
        from keras.src.backend.config import keras_home  # what get_file itself uses

        home = keras_home()
    except ImportError:
        home = os.environ.get("KERAS_HOME", str(Path.home() / ".keras"))
    home = os.path.expanduser(home)
    if not os.access(home, os.W_OK) and os.path.isdir("/tmp"):
        home = "/tmp/.keras"  # get_file's own fallback when the home folder is read-only
    return Path(home) / "models"


def _offline_message(spec: BackboneSpec, detail: str) -> str:
    import re

    match = re.search(r"https?://\S+?\.h5", detail)
    url = match.group(0) if match else "the ImageNet weights file"
    fname = url.rsplit("/", 1)[-1] if match else f"{spec.keras_app} notop weights (.h5)"
    return (
        f"model.weights: cannot download ImageNet weights for {spec.name} (offline?): Keras wanted {fname} "
        f"from {url}; copy that file into {_keras_cache_dir()}/ or set model.weights to a local weights file path; "
        "or train from scratch, no download: tk train ... --scratch (MiniVGGNet, random weights)"
    )


def _load_weights_file(model, path: str) -> None:
    try:
        model.load_weights(path)
    except Exception as exc:  # a wrong file is a user error, whatever Keras raises
        raise TkError(f"model.weights: cannot load {path} into {model.name}: {exc}") from None


def _find_layer(model, name: str, key: str):
    names = [layer.name for layer in model.layers]
    if name not in names:
        hint = suggest(name, names, n=3)
        raise TkError(f"{key}: layer {name!r} is not in {model.name}{hint}; see `tk layers` for the valid names")
    return model.get_layer(name)


def build_mini_vgg(input_shape: tuple[int, int, int]):
    """MiniVGGNet: two (CONV-RELU-BN) x2 - POOL - DROPOUT blocks of 32 and 64 filters."""
    import keras
    from keras import layers

    inputs = keras.Input(input_shape)
    x = inputs
    for block, filters in ((1, 32), (2, 64)):
        for conv in (1, 2):
            x = layers.Conv2D(filters, 3, padding="same", name=f"block{block}_conv{conv}")(x)
            x = layers.Activation("relu", name=f"block{block}_relu{conv}")(x)
            # momentum 0.9: small datasets give few steps; 0.99 leaves the moving stats near init
            x = layers.BatchNormalization(momentum=0.9, name=f"block{block}_bn{conv}")(x)
        x = layers.MaxPooling2D(2, name=f"block{block}_pool")(x)
        x = layers.Dropout(0.25, name=f"block{block}_dropout")(x)
    return keras.Model(inputs, x, name="mini_vgg")


def build_head(feature_shape: tuple[int, ...], num_classes: int, model: ModelSection, backbone: str):
    """The new classifier on top of the features. MiniVGGNet's is FC 512 + BN + dropout."""
    import keras
    from keras import layers

    inputs = keras.Input(feature_shape)
    head = model.head
    x = layers.Flatten()(inputs) if head.pooling == "flatten" else layers.GlobalAveragePooling2D()(inputs)
    spec = get_backbone(backbone)
    widths = spec.head_dense if spec.head_dense is not None else head.dense
    for i, width in enumerate(widths):
        x = layers.Dense(width, activation="relu", name=f"head_dense{i + 1}")(x)
        if spec.head_batchnorm:
            x = layers.BatchNormalization(momentum=0.9, name=f"head_bn{i + 1}")(x)
        if head.dropout:
            x = layers.Dropout(head.dropout, name=f"head_dropout{i + 1}")(x)
    if not widths and head.dropout:  # no hidden layer (dense: []): dropout on the pooled features
        x = layers.Dropout(head.dropout, name="head_dropout")(x)
    # Softmax over every class, binary included: one output convention for every format.
    outputs = layers.Dense(num_classes, activation="softmax", dtype="float32", name="predictions")(x)
    return keras.Model(inputs, outputs, name="head")


def compose(base, head, image_size: int, scaling: str, base_training: Optional[bool] = False):
    """RGB 0..255 -> Preprocess -> backbone -> head: the model that is trained and exported.

    A pretrained base runs with training=False so its BatchNorm layers stay in inference mode
    even when fine-tuning unfreezes them; a base trained from scratch passes None (follow fit).
    """
    import keras

    inputs = keras.Input((image_size, image_size, 3), name="image")
    x = preprocess_layer(scaling)(inputs)
    return keras.Model(inputs, head(base(x, training=base_training)), name="classifier")


def layer_names(model_section: ModelSection) -> list[str]:
    """Every layer name of the backbone (for fine-tuning and explain)."""
    section = ModelSection(**{**model_section.__dict__, "weights": "none"})
    return [layer.name for layer in build_base(section).layers]


def check_unfreeze_layer(base, unfreeze_from: Optional[str]) -> None:
    """Fail before any training when fine_tune.unfreeze_from is not a layer of the built base."""
    if unfreeze_from:
        _find_layer(base, unfreeze_from, "train.fine_tune.unfreeze_from")
