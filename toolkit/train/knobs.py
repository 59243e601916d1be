"""The recipe's training knobs turned into what Keras' compile and fit take: the optimizer, the
learning rate (a float or a cosine schedule), class weights, the loss and the labels it expects.
A new knob (weight decay, momentum, clipping) touches the recipe schema, this module and its test.

Built per phase (the features/scratch phase, then fine-tuning at its own lower rate), because a
schedule is counted in optimizer steps and each phase has its own step count.
"""

from __future__ import annotations

from typing import Any, Optional

import numpy as np

from ..core.recipe import LrSchedule, TrainSection


def steps_per_epoch(images: int, batch_size: int) -> int:
    return max(1, -(-images // batch_size))


def learning_rate(schedule: LrSchedule, rate: float, epochs: int, steps: int) -> Any:
    """The phase's learning rate: `rate` itself (constant), or a keras CosineDecay that warms up
    linearly from 0 to `rate` over warmup_epochs and then decays to 0 at the phase's last step."""
    if schedule.name == "constant":
        return rate
    import keras

    total = max(1, epochs * steps)
    # A short fine-tune phase may have fewer epochs than the warm-up: keep at least one decay step.
    warmup = min(schedule.warmup_epochs * steps, total - 1)
    if warmup == 0:
        return keras.optimizers.schedules.CosineDecay(rate, decay_steps=total)
    return keras.optimizers.schedules.CosineDecay(
        0.0, decay_steps=total - warmup, warmup_target=rate, warmup_steps=warmup
    )


OPTIMIZERS = {"adam": "Adam", "rmsprop": "RMSprop", "sgd": "SGD"}  # train.optimizer -> keras.optimizers


def optimizer(train: TrainSection, rate: Any) -> Any:
    """A fresh keras optimizer for one phase: train.optimizer at `rate` (a float or a schedule)."""
    import keras

    return getattr(keras.optimizers, OPTIMIZERS[train.optimizer])(learning_rate=rate)


def class_weights(labels: np.ndarray, classes: int, mode: str) -> Optional[dict[int, float]]:
    """balanced: n / (k * count) per class from the train labels (scikit-learn's "balanced"),
    so each class contributes the same total weight; a class with no train image gets 1."""
    if mode == "none":
        return None
    counts = np.bincount(np.asarray(labels, dtype=np.int64), minlength=classes)
    n = int(counts.sum())
    return {c: (n / (classes * int(counts[c])) if counts[c] else 1.0) for c in range(classes)}


def loss(train: TrainSection) -> Any:
    """Sparse cross-entropy on integer labels; with label smoothing, categorical cross-entropy on
    one-hot labels (Keras' sparse loss has no label_smoothing): see targets()."""
    import keras

    if train.label_smoothing:
        return keras.losses.CategoricalCrossentropy(label_smoothing=train.label_smoothing)
    return keras.losses.SparseCategoricalCrossentropy()


def targets(labels: np.ndarray, classes: int, train: TrainSection) -> np.ndarray:
    """Labels in the shape loss() expects: integers, or one-hot float32 rows when smoothing."""
    labels = np.asarray(labels, dtype=np.int32)
    if not train.label_smoothing:
        return labels
    return np.eye(classes, dtype=np.float32)[labels]
