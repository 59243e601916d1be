"""A diverged epoch stops training with one line, before any checkpoint sees the NaN model."""

from __future__ import annotations

import math

import keras
import numpy as np
import pytest

from toolkit.core.context import Context
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
        model.fit(
            x,
            y,
            validation_data=(x, y),
            epochs=3,
            verbose=0,
            callbacks=[StopOnNonFinite("head"), BestCheckpoint(tmp_path)],
        )
    assert not (tmp_path / "best.keras").exists()


def test_each_epoch_is_a_task_over_its_steps_and_keeps_its_summary_line(capsys):
    from fake_progress import RecordingProgress

    from toolkit.train.callbacks import Progress

    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="sgd", loss="sparse_categorical_crossentropy")
    x = np.random.default_rng(0).normal(size=(10, 2)).astype("float32")
    y = np.array([0, 1] * 5)
    progress, lines = RecordingProgress(), []
    model.fit(
        x,
        y,
        validation_data=(x, y),
        epochs=2,
        batch_size=4,
        verbose=0,
        callbacks=[Progress("head", 2, len(x), Context(say=lines.append, progress=progress), batch_size=4)],
    )
    assert progress.summary() == [("[head] epoch 1/2", 3, 3), ("[head] epoch 2/2", 3, 3)]  # 10 images, batch 4
    assert all(t.closed for t in progress.tasks)
    first, second = (t.notes for t in progress.tasks)
    assert first[0] == "compiling the training step" and second[0] != first[0]  # only fit()'s first batch traces
    assert all("img/s" in n and "loss" in n for n in first[1:4]) and first[-1] == "validating"
    assert len(lines) == 2 and lines[0].startswith("[head] epoch 1/2  loss") and "img/s  ETA" in lines[0]
    assert capsys.readouterr().out == ""  # verbose=0: no Keras bar beside tk's


def test_a_checkpoint_that_would_not_fit_is_refused_before_hdf5_writes_and_the_old_one_kept(tmp_path, monkeypatch):
    import errno
    from collections import namedtuple

    import toolkit.train.callbacks as callbacks

    path = tmp_path / "latest.weights.h5"
    path.write_bytes(b"w" * 4096)  # the previous epoch's backup
    usage = namedtuple("usage", "total used free")
    monkeypatch.setattr(callbacks.shutil, "disk_usage", lambda _: usage(10**9, 10**9 - 1000, 1000))
    calls: list = []
    with pytest.raises(OSError) as info:
        callbacks.save_atomic(path, ".weights.h5", calls.append)
    assert info.value.errno == errno.ENOSPC and "needs about" in str(info.value) and not calls
    assert path.read_bytes() == b"w" * 4096

    monkeypatch.setattr(callbacks.shutil, "disk_usage", lambda _: usage(10**9, 0, 5000))

    def h5py_on_a_full_disk(tmp):  # h5py's write errors carry no errno
        tmp.write_bytes(b"half")
        monkeypatch.setattr(callbacks.shutil, "disk_usage", lambda _: usage(10**9, 10**9, 0))
        raise OSError("Unable to synchronously write data")

    with pytest.raises(OSError) as info:
        callbacks.save_atomic(path, ".weights.h5", h5py_on_a_full_disk)
    assert info.value.errno == errno.ENOSPC
    assert path.read_bytes() == b"w" * 4096 and sorted(p.name for p in tmp_path.iterdir()) == [path.name]
