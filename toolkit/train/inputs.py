"""Augmentation in the training step: Keras' preprocessing layers, backend-neutral.

Images come decoded (train/decoded.py); flips, rotations, zooms and contrast changes run on the
accelerator inside a training-only model that wraps the real one, so the exported model stays
free of random ops.
"""

from __future__ import annotations

from typing import Optional

from ..core.recipe import AugmentSection


def augmentation_layers(augment: AugmentSection, seed: int):
    """Keras' random augmentation layers for the recipe, or None when all are off."""
    import keras
    from keras import layers

    parts = []
    if augment.flip != "none":
        parts.append(layers.RandomFlip(augment.flip, seed=seed))
    if augment.rotation:
        parts.append(layers.RandomRotation(augment.rotation, fill_mode="reflect", seed=seed + 1))
    if augment.zoom:
        parts.append(layers.RandomZoom(augment.zoom, fill_mode="reflect", seed=seed + 2))
    if augment.contrast:
        # RandomContrast works on 0..255 input here (value_range) and keeps that range.
        parts.append(layers.RandomContrast(augment.contrast, value_range=(0, 255), seed=seed + 3))
    if keras.backend.backend() == "jax":
        # RandomRotation (and Keras' other affine layers) say supports_jit=False, which is true of
        # TensorFlow's XLA only; Keras then runs a JAX model's whole training step eagerly, op by
        # op: 1.9x the CPU seconds of the compiled step for MiniVGGNet at 64 px (issue 19 item 4).
        # Their JAX code (jax.scipy's map_coordinates) compiles.
        for layer in parts:
            layer.supports_jit = True
    return keras.Sequential(parts, name="augmentation") if parts else None


def training_model(model, augment: Optional[AugmentSection], seed: int):
    """The model fit() trains: augmentation layers in front of `model`, sharing its weights.

    The augmentation runs inside the training step on the accelerator (and is the identity in
    evaluation), and the exported model never contains it: only `model` is saved.
    """
    import keras

    layers = augmentation_layers(augment, seed) if augment is not None else None
    if layers is None:
        return model
    inputs = keras.Input(model.inputs[0].shape[1:], name="image")
    return keras.Model(inputs, model(layers(inputs)), name="trainer")


def inner_model(saved, name: str):
    """The classifier inside a saved trainer (or the saved model itself)."""
    return saved.get_layer(name) if saved.name == "trainer" else saved
