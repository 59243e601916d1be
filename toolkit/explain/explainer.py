"""The explainer: a trained run taken apart into the pieces every probe of `tk explain` uses.

A tk model is `image 0..255 -> Preprocess -> backbone (nested Model) -> head (nested Model)`. Keras
does not expose the inner layers of a nested model as outputs of the outer one, so every probe here
is built from the parts: preprocess, then a model from the backbone's input to the layers wanted
(plus the backbone's output when the head has to run too). Outputs go to RUN/explain/, written
atomically, named by what they show (featuremaps_<image>_<layer>.png, gradcam_<image>_<class>.png,
filters_<layer>.png).
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..core.context import SILENT, Context
from ..core.errors import TkError, suggest
from ..core.images import BadImage, check_image, is_image_name, open_rgb

EXPLAIN_DIR = "explain"
# Small photos are enlarged for the overlay so the heat is visible; big ones shrunk to a screen.
OVERLAY_MIN_SIDE, OVERLAY_MAX_SIDE = 256, 512
_LIST_AT_MOST = 60  # layer names listed in an error; MobileNets have ~150


@dataclass
class Explainer:
    """A loaded run, taken apart into the pieces the probes are built from."""

    run_dir: Path
    model: Any  # the whole keras.Model
    preprocess: Any  # the Preprocess layer (0..255 -> what the backbone expects)
    backbone: Any  # nested keras.Model
    head: Any  # nested keras.Model
    classes: list[str]
    size: tuple[int, int]  # (height, width) the model takes
    backbone_name: str  # registry key, e.g. mini_vgg

    @property
    def out_dir(self) -> Path:
        """RUN/explain/, made if missing; a link there (to anywhere) is refused, never written through."""
        from ..core.io import output_folder

        return output_folder(self.run_dir, EXPLAIN_DIR)

    def spatial_layers(self) -> list[str]:
        """Backbone layers with an (N, H, W, C) output: what feature maps and Grad-CAM can use."""
        return [layer.name for layer in self.backbone.layers if _rank(layer) == 4 and not _is_input(layer)]

    def head_layers(self) -> list[str]:
        """Head layers with an (N, units) output (Dense units, the class outputs)."""
        return [layer.name for layer in self.head.layers if _rank(layer) == 2 and not _is_input(layer)]

    def default_layers(self) -> list[str]:
        """The registry's sensible conv layers for this backbone (those present in this model)."""
        from ..train.backbones import BACKBONES

        spec = BACKBONES.get(self.backbone_name)
        names = set(self.spatial_layers())
        chosen = [name for name in (spec.conv_layers if spec else ()) if name in names]
        return chosen or self.spatial_layers()[-1:]

    def map_size(self, name: str) -> tuple[int, int]:
        return tuple(int(n) for n in self.backbone.get_layer(name).output.shape[1:3])

    def gradcam_layer(self) -> str:
        """The deepest registry layer whose map is at least 7x7 (out_relu at 224 px, the usual
        choice; at 64 px out_relu is 2x2 and its upsampled heat cannot say where anything is)."""
        layers = self.default_layers()
        fine = [name for name in layers if min(self.map_size(name)) >= 7]
        return (fine or layers)[-1]

    def check_layer(self, name: str, valid: Sequence[str], purpose: str) -> str:
        if name in valid:
            return name
        hint = suggest(name, valid, n=3)
        shown = ", ".join(valid[:_LIST_AT_MOST])
        more = f", ... and {len(valid) - _LIST_AT_MOST} more" if len(valid) > _LIST_AT_MOST else ""
        raise TkError(
            f"layer {name!r} is not a {purpose} layer of {self.run_dir.name}{hint}; valid layers: {shown}{more}"
        )

    def class_index(self, name: Optional[str]) -> Optional[int]:
        if name is None:
            return None
        if name not in self.classes:
            raise TkError(
                f"--class: {name!r} is not a class of {self.run_dir.name}; classes: {', '.join(self.classes)}"
            )
        return self.classes.index(name)

    def load(self, paths: Sequence[Path]) -> np.ndarray:
        """Model input for user images (decoded exactly as training decoded them)."""
        from ..core.images import load_batch

        return load_batch(list(paths), self.size)

    # -- probes ---------------------------------------------------------------------------

    def probe(self, layer_names: Sequence[str], with_features: bool = False):
        """keras.Model: backbone input -> the named layers' outputs (+ the backbone's output)."""
        import keras

        outputs = [self.backbone.get_layer(name).output for name in layer_names]
        if with_features:
            outputs.append(self.backbone.output)
        return keras.Model(self.backbone.input, outputs)

    def logits(self, features):
        """The head's class scores before softmax (Grad-CAM wants them: softmax saturates)."""
        from keras import layers, ops

        last = self.head.layers[-1]
        if isinstance(last, layers.Dense) and getattr(last.activation, "__name__", "") == "softmax":
            import keras

            body = keras.Model(self.head.input, last.input)
            return ops.matmul(body(features, training=False), last.kernel) + last.bias
        return ops.log(self.head(features, training=False) + 1e-12)

    def feature_maps(self, images: np.ndarray, layer_names: Sequence[str]) -> dict[str, np.ndarray]:
        """layer -> (N, h, w, C) activations for a batch of 0..255 images."""
        outputs = self.probe(layer_names)(self.preprocess(images), training=False)
        outputs = outputs if isinstance(outputs, (list, tuple)) else [outputs]
        return {name: np.asarray(out) for name, out in zip(layer_names, outputs, strict=True)}

    def gradcam(self, images: np.ndarray, layer: str, class_index: Optional[int] = None):
        """Grad-CAM heatmaps at the model's input size, 0..1, for each image's predicted class
        (or `class_index`): ReLU(sum_k mean(d score / d A_k) * A_k), upsampled bilinearly.

        Returns (heatmaps (N, H, W), class indices (N,), probabilities (N, C)).
        """
        import tensorflow as tf

        probe = self.probe([layer], with_features=True)
        x = self.preprocess(tf.convert_to_tensor(images, tf.float32))
        with tf.GradientTape() as tape:
            # One graph from the backbone's input to both the layer and the features, so the tape
            # sees the path conv -> features -> scores and the gradient w.r.t. conv is defined.
            conv, features = probe(x, training=False)
            scores = self.logits(features)
            probs = tf.nn.softmax(scores, axis=-1)  # == the head's output (logits are pre-softmax)
            picked = (
                tf.fill([len(images)], class_index)
                if class_index is not None
                else tf.argmax(probs, axis=-1, output_type=tf.int32)
            )
            target = tf.reduce_sum(tf.gather(scores, picked, axis=1, batch_dims=1))
        grads = tape.gradient(target, conv)
        if grads is None:
            raise TkError(f"layer {layer!r} does not feed the backbone's output; pick a layer on the path to it")
        weights = tf.reduce_mean(grads, axis=(1, 2), keepdims=True)  # (N, 1, 1, C)
        cam = tf.nn.relu(tf.reduce_sum(weights * conv, axis=-1))[..., None]
        cam = tf.image.resize(cam, self.size, method="bilinear")[..., 0].numpy()
        peak = cam.reshape(len(cam), -1).max(axis=1).reshape(-1, 1, 1)
        heat = np.where(peak > 0, cam / np.maximum(peak, 1e-12), 0.0).astype(np.float32)
        return heat, picked.numpy(), probs.numpy()


def load_explainer(run_dir: Path) -> Explainer:
    """Load RUN/model.keras and find its Preprocess layer, backbone and head."""
    import keras

    from ..core.runs import REFERENCE, load_manifest
    from ..export.reference import load_keras_model

    run_dir = Path(run_dir)
    manifest = load_manifest(run_dir)
    path = run_dir / REFERENCE
    if not path.is_file():
        raise TkError(f"{run_dir}: no {REFERENCE}; train the run first (tk train RECIPE)")
    model = load_keras_model(path)
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    preprocess = [layer for layer in model.layers if type(layer).__name__ == "Preprocess"]
    if len(nested) != 2 or len(preprocess) != 1:
        raise TkError(
            f"{path}: not a tk model (expected image -> Preprocess -> backbone -> head; "
            f"got layers {', '.join(layer.name for layer in model.layers)}); retrain with tk train"
        )
    # By order, not by name: runs saved before the base was named "backbone" carry its own name
    # (mini_vgg, mobilenetv2_0.35_64), and the order is the model's definition.
    backbone, head = nested
    size = tuple(manifest.get("preprocessing", {}).get("size") or model.input_shape[1:3])
    return Explainer(
        run_dir,
        model,
        preprocess[0],
        backbone,
        head,
        list(manifest["classes"]),
        (int(size[0]), int(size[1])),
        manifest.get("backbone", ""),
    )


# -- helpers ---------------------------------------------------------------------------------


def _rank(layer) -> int:
    try:
        return len(layer.output.shape)
    except (AttributeError, ValueError):  # layers never called in a graph have no output
        return 0


def _is_input(layer) -> bool:
    return type(layer).__name__ == "InputLayer"


def normalise(channel: np.ndarray) -> np.ndarray:
    low, high = float(channel.min()), float(channel.max())
    return (channel - low) / (high - low) if high > low else np.zeros_like(channel)


def slug(text: str) -> str:
    """A name from a file, a class or a layer as part of a PNG's name: sanitised, capped, unicode kept."""
    from ..core.text import file_part

    return file_part(text, max_bytes=80)


def single_image(path: Path) -> Path:
    path = Path(path)
    if path.is_dir():
        raise TkError(f"--image: {path} is a folder; this takes one image file (tk explain gradcam takes a folder)")
    if not path.is_file():
        raise TkError(f"--image: file not found: {path} (pass an image file, or a folder to tk explain gradcam)")
    return path


def folder_images(folder: Path, limit: int, ctx: Context = SILENT) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_image_name(p))
    good = []
    for path in files:
        reason = check_image(path)
        if reason:
            ctx.say(f"skipped {path}: {reason}")
        else:
            good.append(path)
    if not good:
        raise TkError(f"--image: no readable images in {folder} (JPEG, PNG, BMP or GIF files, not recursive)")
    if len(good) > limit:
        ctx.say(f"{len(good)} images in {folder}; explaining the first {limit} (raise --count for more)")
    return good[:limit]


def display_image(path: Path) -> np.ndarray:
    """The photo, upright, sized for looking at (the heat is resized onto it)."""
    from PIL import Image

    try:
        img = open_rgb(path)
    except BadImage as exc:
        raise TkError(f"{path}: {exc}; pass JPEG, PNG, BMP or GIF images") from None
    side = max(img.size)
    scale = OVERLAY_MIN_SIDE / side if side < OVERLAY_MIN_SIDE else min(1.0, OVERLAY_MAX_SIDE / side)
    if scale != 1.0:
        img = img.resize(
            (max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.BICUBIC
        )
    return np.asarray(img)
