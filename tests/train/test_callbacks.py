"""A diverged epoch stops training with one line, before any checkpoint sees the NaN model."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from toolkit.core.errors import TkError
from toolkit.train.callbacks import BestCheckpoint, StopOnNonFinite


@pytest.mark.parametrize("logs", [{"loss": math.nan, "val_loss": 0.5}, {"loss": 0.5, "val_loss": math.inf}])
def test_non_finite_loss_raises_naming_the_epoch(logs):
    with pytest.raises(TkError, match=r"at epoch 3 of the head phase; lower train.learning_rate"):
        StopOnNonFinite("head").on_epoch_end(2, logs)


def test_fit_stops_at_the_nan_epoch_and_no_checkpoint_is_written(tmp_path):
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer=keras.optimizers.SGD(learning_rate=1e30), loss="sparse_categorical_crossentropy")
    x = np.full((8, 2), 1e30, dtype="float32")
    y = np.array([0, 1] * 4)
    with pytest.raises(TkError, match="training diverged"):
        model.fit(x, y, validation_data=(x, y), epochs=3, verbose=0,
                  callbacks=[StopOnNonFinite("head"), BestCheckpoint(tmp_path)])
    assert not (tmp_path / "best.keras").exists()
