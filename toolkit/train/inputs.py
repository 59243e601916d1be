"""tf.data input pipelines over a split, with images decoded by images.load_image.

Decoding goes through Pillow (EXIF orientation, CMYK, 16-bit, alpha) in parallel map calls, so
training sees exactly the pixels the device will; batches are prefetched so the CPU decodes the
next batch while the model runs. Augmentation runs here, in the pipeline, with Keras'
preprocessing layers: the trained model stays free of random ops and exports cleanly.
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..core.images import load_image
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
    return keras.Sequential(parts, name="augmentation") if parts else None


def image_dataset(paths: list[str], labels: Optional[list[int]], size: int, batch_size: int, *,
                  shuffle: bool = False, seed: int = 0, augment: Optional[AugmentSection] = None):
    """A batched, prefetched tf.data.Dataset of (images, labels) or images alone."""
    import tensorflow as tf

    def decode(path):
        return load_image(path.decode(), (size, size))

    def load(path):
        image = tf.numpy_function(decode, [path], tf.float32, stateful=False)
        image.set_shape((size, size, 3))
        return image

    ds = tf.data.Dataset.from_tensor_slices(list(paths))
    if labels is not None:
        ds = tf.data.Dataset.zip((ds, tf.data.Dataset.from_tensor_slices(np.asarray(labels, dtype=np.int32))))
    if shuffle:
        ds = ds.shuffle(len(paths), seed=seed, reshuffle_each_iteration=True)
    if labels is not None:
        ds = ds.map(lambda p, y: (load(p), y), num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    else:
        ds = ds.map(load, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True)
    ds = ds.batch(batch_size)
    if augment is not None:
        layers = augmentation_layers(augment, seed)
        if layers is not None:
            ds = ds.map(lambda x, y: (layers(x, training=True), y), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.prefetch(tf.data.AUTOTUNE)
