"""Keras callbacks for a training phase: best checkpoint, history on disk, progress lines and bars.

The checkpoint is written atomically and its val_loss persisted, so Ctrl-C at any moment keeps
the best model so far, and `--resume` (with Keras' BackupAndRestore) continues without losing it.
"""

from __future__ import annotations

import json
import math
import time
from pathlib import Path

import keras

from ..core.errors import Say, TkError
from ..core.io import atomic_path, write_json_atomic
from ..core.progress import NO_PROGRESS
from ..core.progress import Progress as TaskProgress


class StopOnNonFinite(keras.callbacks.Callback):
    """Raise TkError at the end of the first epoch whose loss is NaN/Inf. Listed first, so neither
    the best checkpoint nor the resume backup ever holds the diverged model; keras' TerminateOnNaN
    only stops, and fit() would return as if training had finished."""

    def __init__(self, phase: str):
        super().__init__()
        self.phase = phase

    def on_epoch_end(self, epoch, logs=None):
        for key in ("loss", "val_loss"):
            value = (logs or {}).get(key)
            if value is not None and not math.isfinite(float(value)):
                raise TkError(f"training diverged: {key} is {float(value)} at epoch {epoch + 1} of the "
                              f"{self.phase} phase; lower train.learning_rate (the run was not saved)")


class BestCheckpoint(keras.callbacks.Callback):
    """Save the model whenever val_loss improves: best.keras plus best.json ({epoch, val_loss})."""

    def __init__(self, folder: Path):
        super().__init__()
        self.folder = Path(folder)
        state = self.folder / "best.json"
        self.best = json.loads(state.read_text())["val_loss"] if state.is_file() else math.inf

    def on_epoch_end(self, epoch, logs=None):
        val_loss = float((logs or {}).get("val_loss", math.inf))
        if val_loss < self.best:
            self.best = val_loss
            with atomic_path(self.folder / "best.keras", suffix=".keras") as tmp:
                self.model.save(tmp)
            write_json_atomic(self.folder / "best.json", {"epoch": epoch + 1, "val_loss": val_loss})


class HistoryWriter(keras.callbacks.Callback):
    """history.json after every epoch (a resumed phase appends to what was there)."""

    def __init__(self, folder: Path):
        super().__init__()
        self.path = Path(folder) / "history.json"
        self.history: dict[str, list[float]] = json.loads(self.path.read_text()) if self.path.is_file() else {}

    def on_epoch_begin(self, epoch, logs=None):
        # After a resume Keras restarts at the backed-up epoch: drop anything recorded after it.
        self.history = {k: v[:epoch] for k, v in self.history.items()}

    def on_epoch_end(self, epoch, logs=None):
        for key, value in (logs or {}).items():
            if key == "learning_rate":
                continue
            self.history.setdefault(key, []).append(float(value))
        write_json_atomic(self.path, self.history)


class Progress(keras.callbacks.Callback):
    """One line per epoch: metrics, images/s and the phase's ETA; with `progress`, also a task per
    epoch that advances per step (images/s and loss so far as its note). fit() runs with
    verbose=0, so Keras' own bar never prints beside this one."""

    def __init__(self, phase: str, epochs: int, images_per_epoch: int, say: Say,
                 progress: TaskProgress = NO_PROGRESS, batch_size: int = 32):
        super().__init__()
        self.phase, self.epochs, self.images, self.say = phase, epochs, images_per_epoch, say
        self.progress, self.batch_size = progress, batch_size
        self.durations: list[float] = []
        self.task = None

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()
        steps = (self.params or {}).get("steps") or -(-self.images // self.batch_size)
        self._end_task()  # an epoch that raised never reached on_epoch_end
        self._context = self.progress.task(f"[{self.phase}] epoch {epoch + 1}/{self.epochs}", steps)
        self.task = self._context.__enter__()
        if not self.durations:  # fit() traces the train step on its first batch: seconds at 0/N
            self.task.advance(0, note="compiling the training step")

    def on_train_batch_end(self, batch, logs=None):
        if self.task is None:
            return
        images = min((batch + 1) * self.batch_size, self.images)
        rate = images / max(time.perf_counter() - self.start, 1e-9)
        loss = (logs or {}).get("loss")
        self.task.advance(1, note=f"{rate:.0f} img/s" + (f"  loss {float(loss):.4f}" if loss is not None else ""))

    def on_test_begin(self, logs=None):
        if self.task is not None:
            self.task.advance(0, note="validating")

    def _end_task(self) -> None:
        if self.task is not None:
            self.task, context = None, self._context
            context.__exit__(None, None, None)

    def on_train_end(self, logs=None):
        self._end_task()

    def on_epoch_end(self, epoch, logs=None):
        self._end_task()
        seconds = time.perf_counter() - self.start
        self.durations.append(seconds)
        logs = logs or {}
        eta = (self.epochs - epoch - 1) * sum(self.durations) / len(self.durations)
        shown = "  ".join(f"{k} {logs[k]:.4f}" for k in ("loss", "accuracy", "val_loss", "val_accuracy") if k in logs)
        self.say(f"[{self.phase}] epoch {epoch + 1}/{self.epochs}  {shown}  "
                 f"{self.images / max(seconds, 1e-9):.0f} img/s  ETA {_clock(eta)}")


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}:{secs:02d}"
