"""Keras callbacks for a training phase: best checkpoint, history on disk, progress lines and bars.

The checkpoint is written atomically and its val_loss persisted, so Ctrl-C at any moment keeps
the best model so far, and `--resume` (with Keras' BackupAndRestore) continues without losing it.
"""

from __future__ import annotations

import errno
import math
import shutil
import time
from pathlib import Path
from typing import Callable

import keras

from ..core import schemas
from ..core.context import SILENT, Context
from ..core.errors import TkError
from ..core.io import atomic_path, format_size, write_json_atomic


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
                raise TkError(
                    f"training diverged: {key} is {float(value)} at epoch {epoch + 1} of the "
                    f"{self.phase} phase; lower train.learning_rate (the run was not saved)"
                )


class BestCheckpoint(keras.callbacks.Callback):
    """Save the model whenever val_loss improves: best.keras plus best.json ({epoch, val_loss})."""

    def __init__(self, folder: Path):
        super().__init__()
        self.folder = Path(folder)
        state = self.folder / "best.json"
        self.best = schemas.load_train_state(state).get("val_loss", math.inf) if state.is_file() else math.inf

    def on_epoch_end(self, epoch, logs=None):
        val_loss = float((logs or {}).get("val_loss", math.inf))
        if val_loss < self.best:
            self.best = val_loss
            save_atomic(self.folder / "best.keras", ".keras", self.model.save, state_bytes(self.model))
            write_json_atomic(self.folder / "best.json", {"epoch": epoch + 1, "val_loss": val_loss})


def state_bytes(model) -> int:
    """About what saving the model takes on disk: its variables and its optimizer's, 4 bytes each."""
    optimizer = getattr(model, "optimizer", None)
    variables = list(model.variables) + (list(optimizer.variables) if optimizer is not None else [])
    return sum(4 * math.prod(int(d) for d in v.shape) for v in variables)


def save_atomic(path: Path, suffix: str, save: Callable[[Path], None], estimate: int = 0) -> None:
    """save(tmp) into a temporary sibling, renamed onto path when complete: a full disk leaves the
    previous file. Checked first against the free space the previous file's size says it needs,
    because HDF5 has crashed the process on a disk that fills mid-write; an errno-less OSError from
    h5py on a disk that is now full is reported as the ENOSPC it is."""
    path = Path(path)
    needed = max(path.stat().st_size if path.is_file() else 0, estimate)
    _check_free(path, needed)
    try:
        with atomic_path(path, suffix=suffix) as tmp:
            save(tmp)
    except OSError as exc:
        if exc.errno is None:
            _check_free(path, max(needed, 1 << 20))
        raise


def _check_free(path: Path, needed: int) -> None:
    try:
        free = shutil.disk_usage(path.parent).free
    except OSError:
        return
    if free < needed:
        raise OSError(
            errno.ENOSPC,
            f"No space left on device ({format_size(free, binary=True)} free, {path.name} needs about "
            f"{format_size(needed, binary=True)})",
            str(path),
        )


class AtomicBackupAndRestore(keras.callbacks.BackupAndRestore):
    """Keras' resume backup, written atomically (weights, then the epoch they belong to), so a full
    disk or a kill mid-write leaves the previous epoch's backup. A backup that does not load (a
    truncated latest.weights.h5 left by an older tk) falls back to the phase's best checkpoint,
    or to the phase's first epoch, and says so instead of crashing."""

    def __init__(self, backup_dir: Path, phase: str, ctx: Context = SILENT):
        super().__init__(str(backup_dir))
        self.folder, self.phase, self.ctx = Path(backup_dir), phase, ctx

    def _save_model(self):
        self.folder.mkdir(parents=True, exist_ok=True)
        save_atomic(
            Path(self._weights_path),
            ".weights.h5",
            lambda tmp: self.model.save_weights(filepath=str(tmp), overwrite=True),
            state_bytes(self.model),
        )
        write_json_atomic(
            Path(self._training_metadata_path), {"epoch": self._current_epoch, "batch": self._last_batch_seen}
        )

    def on_train_begin(self, logs=None):
        try:
            self._load_model()
        except Exception as exc:  # h5py raises OSError, KeyError or ValueError on a damaged file
            self._fall_back(exc)

    def _fall_back(self, exc: Exception) -> None:
        damaged = self._weights_path
        shutil.rmtree(self.folder, ignore_errors=True)
        self.model._initial_epoch = 0
        best, state = self.folder.parent / "best.keras", self.folder.parent / "best.json"
        where = "from its first epoch"
        if best.is_file() and state.is_file():
            try:
                if self.model.optimizer is not None and not self.model.optimizer.built:
                    self.model.optimizer.build(self.model.trainable_variables)
                self.model.load_weights(best)
                epoch = int(schemas.load_train_state(state)["epoch"])
                self.model._initial_epoch = epoch
                where = f"from its best checkpoint (epoch {epoch}, {best})"
            except Exception:  # noqa: BLE001 -- the best checkpoint is damaged too: start the phase over
                pass
        self.ctx.say(
            f"[{self.phase}] the resume backup {damaged} does not load ({type(exc).__name__}); "
            f"resuming the phase {where}"
        )


class HistoryWriter(keras.callbacks.Callback):
    """history.json after every epoch (a resumed phase appends to what was there)."""

    def __init__(self, folder: Path):
        super().__init__()
        self.path = Path(folder) / "history.json"
        self.history: dict[str, list[float]] = schemas.load_history(self.path) if self.path.is_file() else {}

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
    """One line per epoch: metrics, images/s and the phase's ETA; on `ctx.progress`, also a task per
    epoch that advances per step (images/s and loss so far as its note). fit() runs with
    verbose=0, so Keras' own bar never prints beside this one."""

    def __init__(
        self,
        phase: str,
        epochs: int,
        images_per_epoch: int,
        ctx: Context = SILENT,
        batch_size: int = 32,
    ):
        super().__init__()
        self.phase, self.epochs, self.images, self.ctx = phase, epochs, images_per_epoch, ctx
        self.batch_size = batch_size
        self.durations: list[float] = []
        self.task = None

    def on_epoch_begin(self, epoch, logs=None):
        self.start = time.perf_counter()
        steps = (self.params or {}).get("steps") or -(-self.images // self.batch_size)
        self._end_task()  # an epoch that raised never reached on_epoch_end
        self._context = self.ctx.progress.task(f"[{self.phase}] epoch {epoch + 1}/{self.epochs}", steps)
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
        self.ctx.say(
            f"[{self.phase}] epoch {epoch + 1}/{self.epochs}  {shown}  "
            f"{self.images / max(seconds, 1e-9):.0f} img/s  ETA {_clock(eta)}"
        )


def _clock(seconds: float) -> str:
    minutes, secs = divmod(int(round(seconds)), 60)
    return f"{minutes}:{secs:02d}"
