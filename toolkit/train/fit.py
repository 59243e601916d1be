"""One training phase's fit: its inputs, its callbacks, and the features and end-to-end phases.

Every process of a job runs these; what writes (checkpoints, history, curves, done.json) runs on
process 0 only, and whether a phase is done is process 0's answer (its folder), for all.
"""

from __future__ import annotations

import contextlib
import functools
import shutil
import time
from pathlib import Path

import numpy as np

from ..core import schemas
from ..core.context import Context
from ..core.io import now, write_json_atomic
from ..core.recipe import Recipe
from ..core.runs import SplitDataset
from . import knobs
from .job import SOLO, Job


def decoded_split(dataset: SplitDataset, split: str, recipe: Recipe, ctx: Context, job: Job = SOLO) -> np.ndarray:
    """The split's images decoded (this process's share of them in a job)."""
    from .decoded import decoded_images
    from .features import CACHE_DIR
    from .replicas import cache_dir

    paths = job.shard(dataset.paths(split))
    label = split if not job.multi else f"{split} (share of {job.name})"
    return decoded_images(paths, recipe.model.image_size, cache_dir(CACHE_DIR, job), ctx, label=label)


def split_batches(data: np.ndarray, dataset: SplitDataset, split: str, recipe: Recipe, job: Job, shuffle: bool = False):
    """What fit() takes for a split: (data, targets) batches; in a job this process's share of
    every global batch, class weights as sample weights."""
    train = recipe.train
    k, labels = len(dataset.classes), np.asarray(dataset.labels(split), np.int32)
    if not job.multi:
        from .decoded import batches

        return batches(data, knobs.targets(labels, k, train), train.batch_size, shuffle=shuffle, seed=recipe.seed)
    from .shards import check_shards, sharded_batches

    check_shards(split, len(labels), job)
    mine = np.asarray(job.shard(labels), np.int32)
    weights = knobs.class_weights(labels, k, train.class_weight) if split == "train" else None
    return sharded_batches(
        data,
        knobs.targets(mine, k, train),
        len(labels),
        train.batch_size,
        job,
        shuffle=shuffle,
        seed=recipe.seed,
        class_weight=weights,
        label_ids=mine,
    )


def _callbacks(
    phase: str, folder: Path, epochs: int, images: int, recipe: Recipe, ctx: Context, job: Job = SOLO, logs=None
) -> list:
    import keras

    from .callbacks import AtomicBackupAndRestore, BestCheckpoint, HistoryWriter, JobBackup, StopOnNonFinite
    from .callbacks import Progress as EpochProgress
    from .checkpoints import WriteBudget

    # The best checkpoint and the resume backup write in the same epochs. Not in a job: holding the
    # best weights back means setting them on process 0 alone, a collective the others never join.
    budget = WriteBudget() if not job.multi else None
    callbacks: list = [StopOnNonFinite(phase)]  # every process sees the same (global) logs
    if job.writer:  # what writes files or speaks: process 0 only
        callbacks += [
            BestCheckpoint(folder, budget),
            HistoryWriter(folder),
            EpochProgress(phase, epochs, images, ctx, recipe.train.batch_size),
        ]
        if logs is not None:  # TensorBoard events and MLflow (train/logs.py)
            callbacks += logs.callbacks(phase)
    if job.multi:
        callbacks.append(JobBackup(folder / "backup", job, phase, ctx))
    else:
        callbacks.append(AtomicBackupAndRestore(folder / "backup", phase, ctx, budget))
    if recipe.train.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(patience=recipe.train.early_stopping))
    return callbacks


def _fit(model, *args, callbacks: list, **kwargs) -> None:
    """model.fit; on Ctrl-C or SIGTERM the checkpoint writes that wait are made before it stops."""
    from .callbacks import flush_on_interrupt

    try:
        model.fit(*args, callbacks=callbacks, **kwargs)
    except KeyboardInterrupt:
        flush_on_interrupt(callbacks)
        raise


def _phase_done(folder: Path) -> bool:
    return (folder / "done.json").is_file()


def _mark_done(folder: Path, seconds: float) -> None:
    write_json_atomic(folder / "done.json", {"finished": now(), "seconds": round(seconds, 1)})
    shutil.rmtree(folder / "backup", ignore_errors=True)


def phase_features(
    recipe: Recipe,
    dataset: SplitDataset,
    base,
    head,
    scaling: str,
    folder: Path,
    ctx: Context,
    job: Job = SOLO,
    logs=None,
) -> None:
    """Fast feature extraction: cached conv-base features, head trained on them."""
    import keras

    from .features import CACHE_DIR, build_extractor, cached_features
    from .replicas import cache_dir, check_identical, local_copy, no_distribution, restore_best

    train = recipe.train
    if not _phase_ready(folder, job):
        start = time.perf_counter()
        base.trainable = False
        # Built on the first cache miss only: with every split cached the base never runs. A job's
        # process extracts its own share with a local copy (no collective per batch).
        make_extractor = functools.cache(
            (lambda: local_copy(build_extractor(base, recipe.model.image_size, scaling)))
            if job.multi
            else (lambda: build_extractor(base, recipe.model.image_size, scaling))
        )
        engine = train.feature_engine
        if engine == "tflite" and keras.backend.backend() != "tensorflow":
            ctx.say(
                f"[features] backend {keras.backend.backend()}: extracting with engine keras "
                "(the LiteRT engine converts the base through TensorFlow)"
            )
            engine = "keras"
        if keras.mixed_precision.global_policy().name != "float32" and engine == "tflite":
            # A float16 graph does not convert to TFLite builtins; mixed precision means a GPU,
            # where Keras' predict is the fast engine anyway.
            ctx.say("[features] mixed_precision: extracting with engine keras (TFLite cannot run the float16 base)")
            engine = "keras"
        arrays = {}
        for split in ("train", "validation"):
            with no_distribution() if job.multi else contextlib.nullcontext():  # each process on its own share
                arrays[split], _ = cached_features(
                    make_extractor,
                    job.shard(dataset.paths(split)),
                    recipe.model,
                    engine,
                    recipe.seed,
                    cache_dir=cache_dir(CACHE_DIR, job),
                    ctx=ctx,
                    label=split,
                )
        n = len(dataset.paths("train"))
        rate = knobs.learning_rate(
            train.lr_schedule, train.learning_rate, train.epochs, knobs.steps_per_epoch(n, train.batch_size)
        )
        head.compile(optimizer=knobs.optimizer(train, rate), loss=knobs.loss(train), metrics=["accuracy"])
        callbacks = _callbacks("features", folder, train.epochs, n, recipe, ctx, job, logs)
        if job.multi:
            _fit(
                head,
                split_batches(arrays["train"], dataset, "train", recipe, job, shuffle=True),
                validation_data=split_batches(arrays["validation"], dataset, "validation", recipe, job),
                epochs=train.epochs,
                verbose=0,
                shuffle=False,  # the shares shuffle
                callbacks=callbacks,
            )
            check_identical(head, job, "features", ctx)
        else:
            k, y, yv = (
                len(dataset.classes),
                np.asarray(dataset.labels("train")),
                np.asarray(dataset.labels("validation")),
            )
            _fit(
                head,
                arrays["train"],
                knobs.targets(y, k, train),
                validation_data=(arrays["validation"], knobs.targets(yv, k, train)),
                epochs=train.epochs,
                batch_size=train.batch_size,
                shuffle=True,
                verbose=0,
                class_weight=knobs.class_weights(y, k, train.class_weight),
                callbacks=callbacks,
            )
        _finish_phase(folder, "features", time.perf_counter() - start, job)
    else:
        ctx.say("[features] phase already finished: reusing its best checkpoint")
    restore_best(head, folder, job)


def _phase_ready(folder: Path, job: Job) -> bool:
    """Whether the phase finished in an earlier (resumed) run: process 0's folder says, for all."""
    if job.writer:
        folder.mkdir(parents=True, exist_ok=True)
    return job.from_writer(_phase_done(folder) if job.writer else False)


def _finish_phase(folder: Path, phase: str, seconds: float, job: Job) -> None:
    if job.writer:
        _mark_done(folder, seconds)
        _plot(folder, phase)


def phase_end_to_end(
    phase: str,
    model,
    recipe: Recipe,
    dataset: SplitDataset,
    folder: Path,
    epochs: int,
    learning_rate: float,
    ctx: Context,
    job: Job = SOLO,
    logs=None,
) -> None:
    """Train the composed model on images (augmented), keep the best weights by val_loss."""
    from .inputs import training_model
    from .replicas import check_identical, restore_best

    train = recipe.train
    if not _phase_ready(folder, job):
        start = time.perf_counter()
        train_ds = split_batches(
            decoded_split(dataset, "train", recipe, ctx, job), dataset, "train", recipe, job, shuffle=True
        )
        val_ds = split_batches(
            decoded_split(dataset, "validation", recipe, ctx, job), dataset, "validation", recipe, job
        )
        trainer = training_model(model, train.augment, recipe.seed)
        rate = knobs.learning_rate(train.lr_schedule, learning_rate, epochs, len(train_ds))
        trainer.compile(optimizer=knobs.optimizer(train, rate), loss=knobs.loss(train), metrics=["accuracy"])
        labels = np.asarray(dataset.labels("train"), np.int32)
        _fit(
            trainer,
            train_ds,
            validation_data=val_ds,
            epochs=epochs,
            verbose=0,
            shuffle=False,  # batches shuffle
            # A job's class weights are sample weights already (shards.py).
            class_weight=None if job.multi else knobs.class_weights(labels, len(dataset.classes), train.class_weight),
            callbacks=_callbacks(phase, folder, epochs, len(labels), recipe, ctx, job, logs),
        )
        if job.multi:
            check_identical(model, job, phase, ctx)
        _finish_phase(folder, phase, time.perf_counter() - start, job)
    else:
        ctx.say(f"[{phase}] phase already finished: reusing its best checkpoint")
    restore_best(model, folder, job, inner=model.name)


def _plot(folder: Path, phase: str) -> None:
    from .curves import plot_history

    history = schemas.load_history(folder / "history.json")
    plot_history(history, folder / "curves.png", f"{phase}: accuracy and loss")
