"""Keras callbacks for a training phase: best checkpoint, history on disk, progress lines and bars.

The checkpoint is written atomically and its val_loss persisted, so Ctrl-C at any moment keeps
the best model so far, and `--resume` (with Keras' BackupAndRestore) continues without losing it.

The best checkpoint and the resume backup share one WriteBudget: both write the model's whole
state (MiniVGGNet at 64 px: 8.4 M weights, 100 MB with Adam's moments), which costs a short epoch
more than 10% of its CPU time in writes, page faults and kernel time. So they write in the same
epochs, at most checkpoints.WRITE_SHARE of the training time: the best weights wait in RAM in
between, and Ctrl-C (or SIGTERM) writes what waits before the run stops (flush_on_interrupt).
"""

from __future__ import annotations

import errno
import math
import shutil
import time
from pathlib import Path
from typing import Callable, Optional

import keras
import numpy as np

from ..core import schemas
from ..core.context import SILENT, Context
from ..core.errors import TkError
from ..core.io import atomic_path, format_size, write_json_atomic
from .checkpoints import WriteBudget


def flush_on_interrupt(callbacks: list) -> None:
    """After Ctrl-C or SIGTERM stopped fit(): write what the callbacks hold back (Keras calls no
    callback on an exception)."""
    for callback in callbacks:
        flush = getattr(callback, "flush_on_interrupt", None)
        if flush is not None:
            flush()


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
    """Save the model whenever val_loss improves: best.keras plus best.json ({epoch, val_loss}).

    An improvement is kept in RAM (its weights) until the budget lets it write, the phase ends or
    Ctrl-C stops it."""

    def __init__(self, folder: Path, budget: Optional[WriteBudget] = None):
        super().__init__()
        self.folder = Path(folder)
        self.budget = budget or WriteBudget(share=math.inf)  # alone: every improvement writes at once
        state = self.folder / "best.json"
        self.best = schemas.load_train_state(state).get("val_loss", math.inf) if state.is_file() else math.inf
        self.pending: Optional[tuple[int, float, list]] = None  # (epoch, val_loss, weights) not on disk yet

    def on_epoch_end(self, epoch, logs=None):
        val_loss = float((logs or {}).get("val_loss", math.inf))
        if val_loss < self.best:
            self.best = val_loss
            self.pending = (epoch, val_loss, None)  # the live weights are the best ones
        if self.pending is None:
            return
        if self.budget.due(epoch):
            self.budget.timed(self._write)
        elif self.pending[2] is None:
            self.pending = (*self.pending[:2], self.model.get_weights())  # training moves on

    def on_train_end(self, logs=None):
        self._write()

    def flush_on_interrupt(self) -> None:
        self._write()

    def _write(self) -> None:
        if self.pending is None:
            return
        epoch, val_loss, weights = self.pending
        live = self.model.get_weights() if weights is not None else None
        if weights is not None:
            self.model.set_weights(weights)
        try:
            save_atomic(self.folder / "best.keras", ".keras", _save_alone(self.model), state_bytes(self.model))
        finally:
            if live is not None:
                self.model.set_weights(live)
        write_json_atomic(self.folder / "best.json", {"epoch": epoch + 1, "val_loss": val_loss})
        self.pending = None


def _save_alone(model) -> Callable[[Path], None]:
    """model.save outside any distribution: saving builds a throwaway optimizer, whose variables
    would otherwise be collectives that the other processes of a job (which do not save) never join."""

    def save(path: Path) -> None:
        from .replicas import no_distribution

        with no_distribution():
            model.save(path)

    return save


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

    def __init__(self, backup_dir: Path, phase: str, ctx: Context = SILENT, budget: Optional[WriteBudget] = None):
        super().__init__(str(backup_dir))
        self.folder, self.phase, self.ctx = Path(backup_dir), phase, ctx
        self.budget = budget or WriteBudget(share=math.inf)  # alone: every epoch writes
        self.at_epoch_end = False  # no step since the last epoch ended: the live state is that epoch's
        self.saved_epoch = 0  # the epoch whose end the backup on disk holds (0: none written by this fit)

    def on_train_batch_begin(self, batch, logs=None):
        self.at_epoch_end = False

    def on_epoch_end(self, epoch, logs=None):
        self._current_epoch, self._last_batch_seen = epoch + 1, 0
        self.at_epoch_end = True
        if self.budget.due(epoch):
            self.budget.timed(self._save_model)

    def flush_on_interrupt(self) -> None:
        """Stopped at an epoch's end (the live state is that epoch's): back it up if it waits."""
        if self.at_epoch_end and self._current_epoch > self.saved_epoch:
            self._save_model()

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
        self.saved_epoch = self._current_epoch

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


class JobBackup(keras.callbacks.Callback):
    """A job's resume backup. Process 0 saves the model's and the optimizer's variables after every
    epoch (backup/state.npz, atomically); on --resume it reads them back and every process gets them
    by broadcast: no process but 0 needs the file, and the whole job continues from that epoch.
    Plain arrays by position, not a Keras weights file: loading one would write the replicated
    variables on process 0 alone, a collective the others would never join."""

    def __init__(self, backup_dir: Path, job, phase: str, ctx: Context = SILENT):
        super().__init__()
        self.folder, self.job, self.phase, self.ctx = Path(backup_dir), job, phase, ctx

    def _variables(self) -> list:
        return list(self.model.variables) + list(self.model.optimizer.variables)

    def on_train_begin(self, logs=None):
        optimizer = self.model.optimizer
        if not optimizer.built:  # its variables exist before the first step, to be restored into
            optimizer.build(self.model.trainable_variables)
        variables = self._variables()
        saved = self._read(variables) if self.job.writer else None
        epoch = self.job.from_writer(saved[0] if saved else 0)
        if not epoch:
            return
        arrays = saved[1] if saved else [np.zeros(v.shape, v.dtype) for v in variables]
        for variable, value in zip(variables, self.job.broadcast(arrays), strict=True):
            variable.assign(value)
        self.model._initial_epoch = epoch  # what keras' BackupAndRestore sets: fit() starts there
        self.ctx.say(f"[{self.phase}] the job resumes at epoch {epoch + 1} (backup {self.folder / 'state.npz'})")

    def _read(self, variables: list):
        """(epoch, arrays) from process 0's backup, or None (no backup, or one of another model)."""
        path = self.folder / "state.npz"
        if not path.is_file():
            if (self.folder / "latest.weights.h5").is_file():
                self.ctx.say(f"[{self.phase}] the backup was written by a single-process run: the phase starts over")
            return None
        try:
            with np.load(path) as state:
                arrays = [state[f"v{i}"] for i in range(int(state["count"]))]
                epoch = int(state["epoch"])
        except (OSError, KeyError, ValueError) as exc:
            self.ctx.say(
                f"[{self.phase}] the resume backup {path} does not load ({type(exc).__name__}): the phase starts over"
            )
            return None
        if [a.shape for a in arrays] != [tuple(v.shape) for v in variables]:
            self.ctx.say(f"[{self.phase}] the resume backup {path} is of another model: the phase starts over")
            return None
        return epoch, arrays

    def on_epoch_end(self, epoch, logs=None):
        if not self.job.writer:
            return
        arrays = {f"v{i}": np.asarray(v) for i, v in enumerate(self._variables())}

        def save(tmp: Path) -> None:
            with open(tmp, "wb") as fh:
                np.savez(fh, count=len(arrays), epoch=epoch + 1, **arrays)

        self.folder.mkdir(parents=True, exist_ok=True)
        save_atomic(self.folder / "state.npz", ".npz", save, state_bytes(self.model))
