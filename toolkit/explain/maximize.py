"""Activation maximization: the input pattern that drives one filter (or unit, or class) hardest.

Gradient ascent in input space (the model's own 0..255 RGB), from low-amplitude noise around mid
grey, one image per filter, all filters in one batch. Plain ascent finds high-frequency noise the
network happens to respond to; the usual regularisers make it show structure instead:
random jitter (roll the image a few pixels each step, so the pattern must survive translation),
an occasional light Gaussian blur (kills pixel-level noise), and a small decay towards grey
(keeps contrast from running away). Each step is normalised by the gradient's std, so the step
size is in pixels whatever the layer's scale.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..core.context import SILENT, Context
from ..core.errors import TkError
from .explainer import Explainer, load_explainer, slug


@dataclass(frozen=True)
class AscentSettings:
    steps: int = 160
    step_px: float = 4.0  # pixels (of 0..255) per step, along the std-normalised gradient
    start_noise: float = 8.0  # std of the starting noise around grey 128: low amplitude
    jitter: int = 3  # max roll, pixels, per axis per step
    blur_every: int = 4  # steps between blurs
    blur_sigma: float = 0.7
    decay: float = 0.002  # pull towards grey each step
    seed: int = 0


@dataclass
class MaximizedFilters:
    layer: str
    filters: list[int]
    images: np.ndarray  # (N, H, W, 3) float32 0..255, the optimised inputs
    start: np.ndarray  # (N,) mean activation of each filter on the starting noise
    final: np.ndarray  # (N,) ... on the optimised image


def objective(ex: Explainer, layer: str):
    """x (N, H, W, 3) 0..255 -> (N, units) or (N, h, w, C) activations of `layer`.

    Backbone layers: through Preprocess and the backbone cut at that layer. Head layers: through
    the whole backbone, then the head cut at that layer. Units are taken before their activation
    (ReLU/activation layers: their input; Dense: x @ kernel + bias): a ReLU unit that is 0 on the
    starting noise has no gradient to climb, and maximising a softmax probability mostly pushes the
    other classes down, so the class outputs use the pre-softmax scores.
    """
    import keras
    from keras import ops

    in_backbone = layer in [lay.name for lay in ex.backbone.layers]
    part = ex.backbone if in_backbone else ex.head
    target = part.get_layer(layer)
    before = target.input if before_activation(target) else target.output
    if in_backbone:
        cut = keras.Model(ex.backbone.input, before)
        return lambda x: cut(ex.preprocess(x), training=False)
    features = lambda x: ex.backbone(ex.preprocess(x), training=False)  # noqa: E731
    if isinstance(target, keras.layers.Dense):
        cut = keras.Model(ex.head.input, target.input)
        return lambda x: ops.matmul(cut(features(x), training=False), target.kernel) + target.bias
    cut = keras.Model(ex.head.input, before)
    return lambda x: cut(features(x), training=False)


def before_activation(layer) -> bool:
    """Activation layers are maximised through their input (see objective)."""
    import keras

    return isinstance(layer, (keras.layers.ReLU, keras.layers.Activation, keras.layers.LeakyReLU))


def maximize(
    ex: Explainer, layer: str, filters: list[int], settings: AscentSettings = AscentSettings()
) -> MaximizedFilters:
    import tensorflow as tf

    forward = objective(ex, layer)
    index = tf.constant(filters, tf.int32)

    def score(x):
        act = forward(x)
        picked = tf.gather(act, index, axis=-1, batch_dims=1)  # (N,) or (N, h, w)
        return picked if picked.shape.rank == 1 else tf.reduce_mean(picked, axis=(1, 2))

    kernel = _gaussian_kernel(settings.blur_sigma)

    @tf.function(reduce_retracing=True)
    def step(x, shift, blur):
        rolled = tf.roll(x, shift, axis=(1, 2))
        with tf.GradientTape() as tape:
            tape.watch(rolled)
            total = tf.reduce_sum(score(rolled))
        grad = tf.roll(tape.gradient(total, rolled), -shift, axis=(1, 2))
        grad /= tf.math.reduce_std(grad, axis=(1, 2, 3), keepdims=True) + 1e-8
        x = x + settings.step_px * grad
        x = 128.0 + (x - 128.0) * (1.0 - settings.decay)
        if blur:
            x = tf.nn.depthwise_conv2d(
                tf.pad(x, [[0, 0], [1, 1], [1, 1], [0, 0]], "SYMMETRIC"), kernel, [1, 1, 1, 1], "VALID"
            )
        return tf.clip_by_value(x, 0.0, 255.0)

    rng = np.random.default_rng(settings.seed)
    h, w = ex.size
    x0 = np.clip(128.0 + rng.normal(0, settings.start_noise, (len(filters), h, w, 3)), 0, 255).astype(np.float32)
    x = tf.Variable(x0)
    start = score(tf.constant(x0)).numpy()
    for i in range(settings.steps):
        shift = tf.constant(rng.integers(-settings.jitter, settings.jitter + 1, size=2), tf.int32)
        blur = settings.blur_every > 0 and (i + 1) % settings.blur_every == 0 and i + 1 < settings.steps
        x.assign(step(x, shift, tf.constant(blur)))
    final = score(x).numpy()
    return MaximizedFilters(layer, list(filters), x.numpy(), start, final)


def explain_filters(
    run_dir: Path,
    layer: Optional[str] = None,
    count: int = 8,
    settings: AscentSettings = AscentSettings(),
    ctx: Context = SILENT,
    explainer: Optional[Explainer] = None,
) -> tuple[Path, MaximizedFilters]:
    """One PNG grid of the patterns that maximise the first `count` filters of `layer`."""
    import keras

    from .figures import plot_image_grid

    if count < 1:
        raise TkError(f"--count: must be >= 1 (got {count})")
    if settings.steps < 1:
        raise TkError(f"--steps: must be >= 1 (got {settings.steps})")
    ex = explainer or load_explainer(run_dir)
    valid = ex.spatial_layers() + ex.head_layers()
    layer = ex.check_layer(layer, valid, "backbone or head") if layer else ex.default_layers()[-1]
    width = int(objective(ex, layer)(np.zeros((1, *ex.size, 3), np.float32)).shape[-1])
    filters = list(range(min(count, width)))
    ctx.say(f"maximizing {len(filters)} of {width} filters of {layer} ({settings.steps} steps)...")
    result = maximize(ex, layer, filters, settings)
    is_class_layer = layer == ex.head.layers[-1].name
    in_head = layer not in [lay.name for lay in ex.backbone.layers]
    target = (ex.head if in_head else ex.backbone).get_layer(layer)
    taken = " (before its activation)" if before_activation(target) or isinstance(target, keras.layers.Dense) else ""
    what = "class score" if is_class_layer else "unit" if in_head else "filter"
    titles = [
        f"{ex.classes[f] if is_class_layer else f'{what} {f}'}: {s:.2g}->{e:.2g}{'' if e > s else ' (no gain)'}"
        for f, s, e in zip(filters, result.start, result.final, strict=True)
    ]
    stuck = [f for f, s, e in zip(filters, result.start, result.final, strict=True) if e <= s]
    if stuck:
        ctx.say(
            f"note: the ascent did not raise {len(stuck)} of {len(filters)} (e.g. {stuck[0]}); "
            f"try --steps {2 * settings.steps}"
        )
    path = ex.out_dir / f"filters_{slug(layer)}.png"
    plot_image_grid(
        [_display(img) for img in result.images],
        titles,
        path,
        f"{layer}{taken}: inputs that maximise each {what} (mean activation on the starting noise -> after ascent)",
    )
    ctx.say(f"wrote {path}")
    return path, result


def _display(image: np.ndarray) -> np.ndarray:
    """Stretch contrast (1st..99th percentile) so faint patterns around grey become visible."""
    low, high = np.percentile(image, (1, 99))
    return (np.clip((image - low) / max(high - low, 1e-6), 0, 1) * 255).astype(np.uint8)


def _gaussian_kernel(sigma: float):
    import tensorflow as tf

    taps = np.exp(-0.5 * (np.arange(-1, 2) / max(sigma, 1e-3)) ** 2)
    k2 = np.outer(taps, taps) / np.outer(taps, taps).sum()
    return tf.constant(np.repeat(k2[:, :, None, None], 3, axis=2), tf.float32)  # (3, 3, 3, 1)
