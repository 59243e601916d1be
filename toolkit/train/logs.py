"""Training logs a person opens while or after a run trains: TensorBoard event files in
RUN/logs/<phase>/{train,validation} on every backend, and an MLflow run when asked (tracking.py).

The event files are written by tensorboardX, which needs neither TensorFlow nor a Keras backend's
own summary writer (keras.callbacks.TensorBoard needs TensorFlow's, so it cannot log a JAX or
PyTorch run without it). Tags and folders follow keras.callbacks.TensorBoard (`epoch_loss` in
train/ and validation/), so `tensorboard --logdir exported/<run>/logs` overlays the two curves
of each phase as it would for a Keras model.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path
from typing import Any, Optional

import keras

from ..core.context import SILENT, Context
from ..core.recipe import Recipe

LOGS = "logs"


class TensorBoardEpochs(keras.callbacks.Callback):
    """Each epoch's loss, metrics and learning rate as TensorBoard scalars (step = epoch)."""

    def __init__(self, folder: Path):
        super().__init__()
        self.folder = Path(folder)
        self.writers: dict[str, Any] = {}

    def _writer(self, split: str):
        if split not in self.writers:
            from tensorboardX import SummaryWriter

            self.writers[split] = SummaryWriter(str(self.folder / split), flush_secs=30)
        return self.writers[split]

    def on_epoch_end(self, epoch, logs=None):
        logs = dict(logs or {})
        if "learning_rate" not in logs and getattr(self.model, "optimizer", None) is not None:
            # the rate the epoch ended at (a schedule's current value), as Keras' TensorBoard logs it
            logs["learning_rate"] = keras.ops.convert_to_numpy(self.model.optimizer.learning_rate)
        for key, value in logs.items():
            split, name = ("validation", key[4:]) if key.startswith("val_") else ("train", key)
            self._writer(split).add_scalar(f"epoch_{name}", float(value), epoch)
        for writer in self.writers.values():
            writer.flush()  # readable while the run goes on, and after a kill

    def on_train_end(self, logs=None):
        for writer in self.writers.values():
            writer.close()
        self.writers = {}


class RunLogs:
    """The logs of one training run: what callbacks each phase gets, and what happens at the end."""

    def __init__(self, recipe: Recipe, work: Path, resume: bool = False, ctx: Context = SILENT):
        from .tracking import MlflowTracker

        self.folder = Path(work) / LOGS
        self.tensorboard = recipe.log.tensorboard and _tensorboard_writer_installed(ctx)
        self.tracker: Optional[MlflowTracker] = MlflowTracker.start(recipe, work, resume, ctx)
        if self.tensorboard:
            run = Path(work).with_name(Path(work).name.removesuffix(".partial"))
            ctx.say(f"TensorBoard logs: tensorboard --logdir {run / LOGS}")

    def callbacks(self, phase: str) -> list:
        found = [TensorBoardEpochs(self.folder / phase)] if self.tensorboard else []
        return found + ([self.tracker.callback(phase)] if self.tracker is not None else [])

    def finished(self, work: Path, metrics: dict[str, Any], ctx: Context = SILENT) -> None:
        if self.tracker is not None:
            self.tracker.finish(work, metrics, ctx)

    def failed(self, interrupted: bool = False) -> None:
        if self.tracker is not None:
            self.tracker.end("KILLED" if interrupted else "FAILED")


def _tensorboard_writer_installed(ctx: Context) -> bool:
    if importlib.util.find_spec("tensorboardX") is not None:
        return True
    ctx.say(
        "note: no TensorBoard logs: tensorboardX is not installed (pip install 'tk-edge[train]', or "
        "tensorboardX; set log.tensorboard: false to silence this)"
    )
    return False
