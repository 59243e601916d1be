"""`tk explain`: what a trained run learned — feature maps and Grad-CAM (explain_maximize: filters).

A tk model is `image 0..255 -> Preprocess -> backbone (nested Model) -> head (nested Model)`. Keras
does not expose the inner layers of a nested model as outputs of the outer one, so every probe here
is built from the parts: preprocess, then a model from the backbone's input to the layers wanted
(plus the backbone's output when the head has to run too). Outputs go to RUN/explain/, written
atomically, named by what they show (featuremaps_<image>_<layer>.png, gradcam_<image>_<class>.png,
filters_<layer>.png).
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from .errors import TkError
from .images import BadImage, check_image, is_image_name, open_rgb

Say = Callable[[str], None]
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
        return self.run_dir / EXPLAIN_DIR

    def spatial_layers(self) -> list[str]:
        """Backbone layers with an (N, H, W, C) output: what feature maps and Grad-CAM can use."""
        return [layer.name for layer in self.backbone.layers if _rank(layer) == 4 and not _is_input(layer)]

    def head_layers(self) -> list[str]:
        """Head layers with an (N, units) output (Dense units, the class outputs)."""
        return [layer.name for layer in self.head.layers if _rank(layer) == 2 and not _is_input(layer)]

    def default_layers(self) -> list[str]:
        """The registry's sensible conv layers for this backbone (those present in this model)."""
        from .backbones import BACKBONES

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
        close = difflib.get_close_matches(name, valid, n=3)
        hint = f" (did you mean {', '.join(close)}?)" if close else ""
        shown = ", ".join(valid[:_LIST_AT_MOST])
        more = f", ... and {len(valid) - _LIST_AT_MOST} more" if len(valid) > _LIST_AT_MOST else ""
        raise TkError(f"layer {name!r} is not a {purpose} layer of {self.run_dir.name}{hint}; "
                      f"valid layers: {shown}{more}")

    def class_index(self, name: Optional[str]) -> Optional[int]:
        if name is None:
            return None
        if name not in self.classes:
            raise TkError(f"--class: {name!r} is not a class of {self.run_dir.name}; classes: {', '.join(self.classes)}")
        return self.classes.index(name)

    def load(self, paths: Sequence[Path]) -> np.ndarray:
        """Model input for user images (decoded exactly as training decoded them)."""
        from .images import load_batch

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
        return {name: np.asarray(out) for name, out in zip(layer_names, outputs)}

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
            picked = (tf.fill([len(images)], class_index) if class_index is not None
                      else tf.argmax(probs, axis=-1, output_type=tf.int32))
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

    from .backbones import ensure_custom_objects
    from .manifest import load_manifest

    run_dir = Path(run_dir)
    manifest = load_manifest(run_dir)
    path = run_dir / "model.keras"
    if not path.is_file():
        raise TkError(f"{run_dir}: no model.keras; train the run first (tk train RECIPE)")
    ensure_custom_objects()
    model = keras.saving.load_model(path, compile=False)
    nested = [layer for layer in model.layers if isinstance(layer, keras.Model)]
    preprocess = [layer for layer in model.layers if type(layer).__name__ == "Preprocess"]
    if len(nested) != 2 or len(preprocess) != 1:
        raise TkError(f"{path}: not a tk model (expected image -> Preprocess -> backbone -> head; "
                      f"got layers {', '.join(layer.name for layer in model.layers)}); retrain with tk train")
    # By order, not by name: runs saved before the base was named "backbone" carry its own name
    # (mini_vgg, mobilenetv2_0.35_64), and the order is the model's definition.
    backbone, head = nested
    size = tuple(manifest.get("preprocessing", {}).get("size") or model.input_shape[1:3])
    return Explainer(run_dir, model, preprocess[0], backbone, head, list(manifest["classes"]),
                     (int(size[0]), int(size[1])), manifest.get("backbone", ""))


# -- commands: compute, draw, write ---------------------------------------------------------


def explain_feature_maps(run_dir: Path, image: Path, layers: Optional[Sequence[str]] = None, count: int = 16,
                         say: Say = print, explainer: Optional[Explainer] = None) -> list[Path]:
    """One PNG grid per layer of the first `count` channels' activations for `image`."""
    from .plots import plot_image_grid

    ex = explainer or load_explainer(run_dir)
    valid = ex.spatial_layers()
    names = [ex.check_layer(name, valid, "convolutional (spatial)") for name in (layers or ex.default_layers())]
    batch = ex.load([_single_image(image)])
    maps = ex.feature_maps(batch, names)
    written = []
    for name in names:
        act = maps[name][0]
        n = min(count, act.shape[-1])
        cells = [_normalise(act[..., k]) for k in range(n)]
        titles = [f"ch {k}" for k in range(n)]
        path = ex.out_dir / f"featuremaps_{_slug(Path(image).stem)}_{name}.png"
        plot_image_grid(cells, titles, path, f"{name}: {act.shape[0]}x{act.shape[1]}x{act.shape[2]}, "
                        f"first {n} channels (each scaled to its own min..max) — {Path(image).name}")
        say(f"wrote {path}")
        written.append(path)
    return written


@dataclass
class GradCamResult:
    image: Path
    class_name: str
    probability: float  # of the class the heat explains
    heat: np.ndarray  # (H, W) at the model's input size, 0..1
    png: Path  # the image and its heat overlay side by side


def explain_gradcam(run_dir: Path, target: Path, class_name: Optional[str] = None, layer: Optional[str] = None,
                    limit: int = 64, alpha: float = 0.5, say: Say = print,
                    explainer: Optional[Explainer] = None) -> tuple[list[GradCamResult], Optional[Path]]:
    """Grad-CAM overlays for one image or a folder (plus a contact sheet for a folder)."""
    from .plots import overlay_heatmap, plot_image_grid

    ex = explainer or load_explainer(run_dir)
    layer = ex.check_layer(layer, ex.spatial_layers(), "convolutional (spatial)") if layer else ex.gradcam_layer()
    grid = ex.map_size(layer)
    if min(grid) <= 4 and ex.gradcam_layer() != layer:  # the heat is this grid upsampled
        say(f"note: {layer} is a {grid[0]}x{grid[1]} map at {ex.size[0]} px, so the heat is coarse; "
            f"an earlier layer gives finer heat (--layers {ex.gradcam_layer()})")
    class_index = ex.class_index(class_name)
    target = Path(target)
    paths = _folder_images(target, limit, say) if target.is_dir() else [_single_image(target)]
    results, overlays = [], []
    for start in range(0, len(paths), 32):  # bounded memory on big folders
        chunk = paths[start:start + 32]
        heat, picked, probs = ex.gradcam(ex.load(chunk), layer, class_index)
        for path, h, k, p in zip(chunk, heat, picked, probs):
            photo = _display_image(path)
            overlay = overlay_heatmap(photo, h, alpha=alpha)
            png = ex.out_dir / f"gradcam_{_slug(path.stem)}_{ex.classes[int(k)]}.png"
            _save_rgb(np.concatenate([photo, overlay], axis=1), png)  # the image | its heat
            overlays.append(overlay)
            results.append(GradCamResult(path, ex.classes[int(k)], float(p[int(k)]), h, png))
    for r in results:
        say(f"wrote {r.png}  ({r.class_name} {r.probability:.2f})")
    sheet = None
    if target.is_dir():
        sheet = ex.out_dir / f"gradcam_sheet_{_slug(target.name)}.png"
        titles = [f"{r.image.stem}: {r.class_name} {r.probability:.2f}" for r in results]
        plot_image_grid(overlays, titles, sheet, f"Grad-CAM at {layer} ({grid[0]}x{grid[1]} map) — {target.name}/ "
                        f"({'class ' + class_name if class_name else 'predicted class'})")
        say(f"wrote {sheet}")
    return results, sheet


def explain_run(run_dir: Path, image: Optional[Path] = None, layers: Optional[Sequence[str]] = None,
                filters: Optional[str] = None, count: Optional[int] = None, gradcam: bool = False,
                class_name: Optional[str] = None, steps: Optional[int] = None, say: Say = print) -> list[Path]:
    """What `tk explain` does: feature maps (--image), maximization (--filters), Grad-CAM (--gradcam)."""
    from .explain_maximize import AscentSettings, explain_filters

    if gradcam and image is None:
        raise TkError("--gradcam: needs --image PATH (an image file or a folder of images)")
    if image is None and filters is None:
        raise TkError("tk explain: nothing to explain; pass --image PATH [--layers L1,L2] (feature maps), "
                      "--filters LAYER [--count N] (activation maximization) or --gradcam --image PATH|DIR")
    if class_name is not None and not gradcam:
        raise TkError(f"--class {class_name}: only applies to --gradcam")
    if count is not None and count < 1:
        raise TkError(f"--count: must be >= 1 (got {count})")
    if steps is not None and steps < 1:
        raise TkError(f"--steps: must be >= 1 (got {steps})")
    if gradcam and layers and len(layers) > 1:
        raise TkError(f"--layers: Grad-CAM uses one layer (got {', '.join(layers)})")
    if image is not None and not gradcam and Path(image).is_dir():
        raise TkError(f"--image: {image} is a folder; feature maps take one image file (folders work with --gradcam)")
    ex = load_explainer(run_dir)
    written: list[Path] = []
    if gradcam:
        results, sheet = explain_gradcam(run_dir, Path(image), class_name, layers[0] if layers else None,
                                         limit=count or 64, say=say, explainer=ex)
        written += [r.png for r in results] + ([sheet] if sheet else [])
    elif image is not None:
        written += explain_feature_maps(run_dir, Path(image), layers, count or 16, say=say, explainer=ex)
    if filters is not None:
        settings = AscentSettings(steps=steps) if steps else AscentSettings()
        written.append(explain_filters(run_dir, filters, count or 8, settings, say=say, explainer=ex)[0])
    return written


# -- helpers ---------------------------------------------------------------------------------


def _rank(layer) -> int:
    try:
        return len(layer.output.shape)
    except (AttributeError, ValueError):  # layers never called in a graph have no output
        return 0


def _is_input(layer) -> bool:
    return type(layer).__name__ == "InputLayer"


def _normalise(channel: np.ndarray) -> np.ndarray:
    low, high = float(channel.min()), float(channel.max())
    return (channel - low) / (high - low) if high > low else np.zeros_like(channel)


def _slug(text: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in text)


def _single_image(path: Path) -> Path:
    path = Path(path)
    if not path.is_file():
        raise TkError(f"--image: file not found: {path} (pass an image file, or a folder for --gradcam)")
    return path


def _folder_images(folder: Path, limit: int, say: Say) -> list[Path]:
    files = sorted(p for p in folder.iterdir() if p.is_file() and is_image_name(p))
    good = []
    for path in files:
        reason = check_image(path)
        if reason:
            say(f"skipped {path}: {reason}")
        else:
            good.append(path)
    if not good:
        raise TkError(f"--image: no readable images in {folder} (JPEG, PNG, BMP or GIF files, not recursive)")
    if len(good) > limit:
        say(f"{len(good)} images in {folder}; explaining the first {limit} (raise --count for more)")
    return good[:limit]


def _display_image(path: Path) -> np.ndarray:
    """The photo, upright, sized for looking at (the heat is resized onto it)."""
    from PIL import Image

    try:
        img = open_rgb(path)
    except BadImage as exc:
        raise TkError(f"{path}: {exc}; pass JPEG, PNG, BMP or GIF images") from None
    side = max(img.size)
    scale = OVERLAY_MIN_SIDE / side if side < OVERLAY_MIN_SIDE else min(1.0, OVERLAY_MAX_SIDE / side)
    if scale != 1.0:
        img = img.resize((max(1, round(img.width * scale)), max(1, round(img.height * scale))), Image.Resampling.BICUBIC)
    return np.asarray(img)


def _save_rgb(array: np.ndarray, path: Path) -> None:
    from PIL import Image

    from .manifest import atomic_path

    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(array).save(tmp, format="PNG")
