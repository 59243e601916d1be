"""A diverged epoch stops training with one line, before any checkpoint sees the NaN model."""

from __future__ import annotations

import json
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


# --- checkpoint writes within a budget ------------------------------------------------------------


class FakeClock:
    def __init__(self):
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_write_budget_spaces_writes_by_their_cost_and_decides_once_per_epoch():
    from toolkit.train.checkpoints import WriteBudget

    clock = FakeClock()
    budget = WriteBudget(share=0.02, clock=clock)
    assert budget.due(0)  # nothing measured yet: the first epoch writes
    clock.now += 0.2
    budget.charge(0.2)  # the best checkpoint's write
    clock.now += 0.1
    budget.charge(0.1)  # the backup's, same epoch: 0.3 s in all
    clock.now += 10.0
    assert not budget.due(1)  # 10 s of training < 0.3 s / 0.02
    clock.now += 5.5
    assert not budget.due(1)  # decided once for the epoch: every writer gets the same answer
    assert budget.due(2)  # 15.5 s since the last write
    clock.now += 0.01
    budget.charge(0.01)  # a cheap round: the next epoch writes again after 0.5 s
    clock.now += 0.5
    assert budget.due(3)


def _small_model():
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(2, activation="softmax")])
    model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
    return model


def _shift(model, by: float) -> None:
    model.set_weights([w + by for w in model.get_weights()])


def test_a_held_back_best_is_written_at_the_end_with_its_own_weights(tmp_path):
    from toolkit.train.checkpoints import WriteBudget

    clock = FakeClock()
    budget = WriteBudget(share=0.02, clock=clock)
    model = _small_model()
    best = BestCheckpoint(tmp_path, budget)
    best.set_model(model)
    best.on_epoch_end(0, {"val_loss": 1.0})  # the first epoch writes
    assert json.loads((tmp_path / "best.json").read_text())["epoch"] == 1
    budget.charge(100.0)  # as if that write took 100 s: nothing is due for a long while
    _shift(model, 1.0)
    expected = [w.copy() for w in model.get_weights()]
    best.on_epoch_end(1, {"val_loss": 0.5})  # better, but held back in RAM
    assert json.loads((tmp_path / "best.json").read_text())["epoch"] == 1
    _shift(model, 1.0)
    live = [w.copy() for w in model.get_weights()]
    best.on_epoch_end(2, {"val_loss": 0.9})  # worse: nothing to hold
    best.on_train_end()
    assert json.loads((tmp_path / "best.json").read_text()) == {"epoch": 2, "val_loss": 0.5}
    saved = keras.saving.load_model(tmp_path / "best.keras", compile=False).get_weights()
    assert all(np.array_equal(a, b) for a, b in zip(saved, expected, strict=True))
    assert all(np.array_equal(a, b) for a, b in zip(model.get_weights(), live, strict=True))  # training's own


def test_ctrl_c_writes_the_held_back_best_and_backup_and_resume_continues(tmp_path):
    from toolkit.train.callbacks import AtomicBackupAndRestore
    from toolkit.train.checkpoints import WriteBudget
    from toolkit.train.fit import _fit

    class CtrlC(keras.callbacks.Callback):
        def on_epoch_begin(self, epoch, logs=None):
            if epoch == 3:
                raise KeyboardInterrupt

    x = np.random.default_rng(0).normal(size=(16, 2)).astype("float32")
    y = np.array([0, 1] * 8)
    model = _small_model()
    budget = WriteBudget(share=1e-9)  # after the first epoch, no write is ever due
    losses: list[float] = []
    record = keras.callbacks.LambdaCallback(on_epoch_end=lambda epoch, logs: losses.append(logs["val_loss"]))
    callbacks = [
        record,
        BestCheckpoint(tmp_path, budget),
        CtrlC(),
        AtomicBackupAndRestore(tmp_path / "backup", "p", budget=budget),
    ]
    with pytest.raises(KeyboardInterrupt):
        _fit(model, x, y, validation_data=(x, y), epochs=6, verbose=0, callbacks=callbacks)
    # Stopped as epoch 4 began: epoch 3's state is the live one, and both writers wrote what waited.
    assert json.loads((tmp_path / "backup" / "training_metadata.json").read_text())["epoch"] == 3
    assert json.loads((tmp_path / "best.json").read_text()) == {
        "epoch": int(np.argmin(losses)) + 1,
        "val_loss": pytest.approx(min(losses)),
    }
    resumed = _small_model()
    seen: list[int] = []
    record = keras.callbacks.LambdaCallback(on_epoch_begin=lambda epoch, logs: seen.append(epoch))
    resumed.fit(x, y, epochs=6, verbose=0, callbacks=[AtomicBackupAndRestore(tmp_path / "backup", "p"), record])
    assert seen == [3, 4, 5]


def test_without_a_budget_every_improvement_writes_at_once(tmp_path):
    """What a multi-process job gets: holding weights back would set them on process 0 alone."""
    model = _small_model()
    best = BestCheckpoint(tmp_path)
    best.set_model(model)
    for epoch, loss in enumerate((1.0, 0.5, 0.25)):
        best.on_epoch_end(epoch, {"val_loss": loss})
        assert json.loads((tmp_path / "best.json").read_text())["epoch"] == epoch + 1
        assert best.pending is None
