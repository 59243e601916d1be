"""tk train: feature extraction (cached or with augmentation), fine-tuning, or from scratch.

A run is built in exported/<name>.partial/ and swapped into exported/<name>/ only when it
finishes, so an interrupted or failed run never destroys the previous one, and a finished one moves
the previous run aside (exported/<name>-<trained time>/, core/runs.archive_run); `--resume` continues the
partial run (finished phases are skipped, the running one restarts from its last epoch).
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from .. import __version__
from ..core import schemas
from ..core.context import SILENT, Context
from ..core.errors import Interrupted, TkError
from ..core.images import INTERPOLATION
from ..core.io import (
    atomic_path,
    check_writable,
    now,
    sha256_file,
    size_bytes,
    tool_versions,
    write_json_atomic,
    write_text_atomic,
)
from ..core.lock import run_lock
from ..core.metrics import classification_metrics
from ..core.recipe import Recipe
from ..core.runs import REFERENCE, RUNS_DIR, SplitDataset, archive_run, save_manifest, save_split
from ..data.splits import discover, gap_in_test, missing_classes
from . import knobs
from .backbones import build_base, build_head, check_model, check_unfreeze_layer, compose, get_backbone, resolve_weights
from .checkpoints import prepare_partial


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict
    phases: list[str]
    archived: Optional[Path] = None  # where the previous run of this recipe was moved, if there was one


def train(
    recipe: Recipe,
    runs_dir: Path = RUNS_DIR,
    resume: bool = False,
    strict: Optional[bool] = None,
    ctx: Context = SILENT,
) -> TrainResult:
    """Train the recipe's model end to end and write its run folder (`ctx.progress`: decoding,
    feature extraction and each epoch's steps)."""
    check_model(recipe.model)  # an unknown name or a key the backbone does not take fails before TensorFlow loads
    if recipe.train.mode != "scratch" and recipe.model.weights == "none":
        raise TkError(
            f"train.mode: {recipe.train.mode} freezes the conv base, but model.weights is none "
            "(random features); use mode: scratch, or pretrained weights (imagenet or a file)"
        )
    resolve_weights(recipe.model.weights)  # a missing weights file fails before TensorFlow loads
    import keras

    from .backend import distribution_scope, resolve_precision, say_device, seed_everything
    from .logs import RunLogs

    seed_everything(recipe.seed)  # before the base is built: random init is seeded too
    policy = resolve_precision(recipe.train.mixed_precision)
    # Before any layer is built: the policy is fixed at construction. The head's output layer is
    # float32 whatever the policy (backbones.build_head).
    keras.mixed_precision.set_global_policy(policy)
    run_dir = Path(runs_dir) / recipe.name
    work = Path(runs_dir) / f"{recipe.name}.partial"
    # The distribution scope and the run lock are entered mid-way (after the checks that must fail
    # before anything is touched) yet must close in `finally`, after the KeyboardInterrupt handler.
    scope = contextlib.ExitStack()
    logs: Optional[RunLogs] = None
    try:
        scope.enter_context(distribution_scope(recipe.train.distribute, ctx))  # model built and fit inside
        # Built once, first: layer-name mistakes and an offline ImageNet download fail here, before
        # the data is read and before an interrupted run's .partial folder (replaced by a new run)
        # is touched.
        base = build_base(recipe.model)
        check_unfreeze_layer(base, recipe.train.fine_tune.unfreeze_from)
        dataset = _dataset(recipe, strict, ctx)
        # Held from before .partial is touched until the run is swapped in: one writer per run.
        check_writable(Path(runs_dir))
        scope.enter_context(run_lock(run_dir, "tk train", ctx))
        prepare_partial(work, recipe, resume, ctx, dataset)
        logs = RunLogs(recipe, work, resume, ctx)
        save_split(dataset, work / "split.json")
        say_device(policy, ctx)
        model, phases = _run_phases(recipe, dataset, base, work, ctx, logs)
        metrics = evaluate(model, dataset, recipe, ctx)
        _finish_run(recipe, dataset, model, metrics, phases, work)
        logs.finished(work, metrics, ctx)
        archived = _swap_into_place(work, run_dir)  # inside: under the lock
    except KeyboardInterrupt:
        if logs is not None:
            logs.failed(interrupted=True)
        raise Interrupted(
            f"interrupted: best checkpoints kept in {work}; continue with "
            f"tk train {recipe.source_path or 'RECIPE'} --resume"
        ) from None
    except BaseException:
        if logs is not None:
            logs.failed()
        raise
    finally:
        scope.close()
        keras.mixed_precision.set_global_policy("float32")
    if archived is not None:
        ctx.say(f"kept the previous run as {archived} (tk export/verify/bench take it by that path)")
    ctx.say(f"run written to {run_dir} (model.keras, metrics.json, curves)")
    return TrainResult(run_dir, metrics, phases, archived)


def _dataset(recipe: Recipe, strict: Optional[bool], ctx: Context) -> SplitDataset:
    data = recipe.data
    if strict is not None and strict != data.strict:
        from dataclasses import replace

        data = replace(data, strict=strict)
    root = Path(data.root)
    if data.synth and not root.exists():
        from ..data.synth import make_synthetic_dataset

        synth = data.synth
        ctx.say(f"making synthetic data in {root}: {synth.classes} classes x {synth.per_class} images, {synth.size} px")
        make_synthetic_dataset(root, synth.classes, synth.per_class, synth.size, seed=recipe.seed)
    dataset = discover(data, recipe.seed)
    for path, reason in dataset.skipped:
        ctx.say(f"skipped {path}: {reason}")
    counts = {s: len(items) for s, items in dataset.splits.items()}
    ctx.say(
        f"data: {len(dataset.classes)} classes ({', '.join(dataset.classes)}); "
        + ", ".join(f"{s} {n}" for s, n in counts.items())
        + (f"; {len(dataset.skipped)} files skipped" if dataset.skipped else "")
    )
    gap = gap_in_test(dataset)
    if gap:
        ctx.say(f"warning: {gap}")
    return dataset


def _decoded(dataset: SplitDataset, split: str, recipe: Recipe, ctx: Context) -> np.ndarray:
    from .decoded import decoded_images
    from .features import CACHE_DIR

    return decoded_images(dataset.paths(split), recipe.model.image_size, CACHE_DIR, ctx, label=split)


def _callbacks(phase: str, folder: Path, epochs: int, images: int, recipe: Recipe, ctx: Context, logs) -> list:
    import keras

    from .callbacks import AtomicBackupAndRestore, BestCheckpoint, HistoryWriter, StopOnNonFinite
    from .callbacks import Progress as EpochProgress

    callbacks = [
        StopOnNonFinite(phase),
        BestCheckpoint(folder),
        HistoryWriter(folder),
        EpochProgress(phase, epochs, images, ctx, recipe.train.batch_size),
        AtomicBackupAndRestore(folder / "backup", phase, ctx),
    ]
    if recipe.train.early_stopping:
        callbacks.append(keras.callbacks.EarlyStopping(patience=recipe.train.early_stopping))
    return callbacks + (logs.callbacks(phase) if logs is not None else [])


def _run_phases(recipe: Recipe, dataset: SplitDataset, base, work: Path, ctx: Context, logs=None):
    """Train phase by phase; returns the composed model with the best weights, and phase names."""
    spec = get_backbone(recipe.model.backbone)
    size, train = recipe.model.image_size, recipe.train
    head = build_head(tuple(base.output.shape[1:]), len(dataset.classes), recipe.model, spec.name)
    phases: list[str] = []
    if train.mode == "features":
        _phase_features(recipe, dataset, base, head, spec.scaling, work / "phases" / "features", ctx, logs)
        phases.append("features")
        model = compose(base, head, size, spec.scaling, base_training=False)
    else:
        scratch = train.mode == "scratch"
        base.trainable = scratch
        if scratch:
            _fast_batchnorm(base)
        model = compose(base, head, size, spec.scaling, base_training=None if scratch else False)
        _phase_end_to_end(
            train.mode,
            model,
            recipe,
            dataset,
            work / "phases" / train.mode,
            train.epochs,
            train.learning_rate,
            ctx,
            logs,
        )
        phases.append(train.mode)
    if train.fine_tune.epochs:
        unfreeze(base, train.fine_tune.unfreeze_from, train.fine_tune.unfreeze_last)
        trainable = sum(1 for layer in base.layers if layer.trainable and layer.weights)
        ctx.say(
            f"[finetune] {trainable} backbone layers with weights unfrozen "
            f"(BatchNorm kept in inference mode), learning rate {train.fine_tune.learning_rate:g}"
        )
        _phase_end_to_end(
            "finetune",
            model,
            recipe,
            dataset,
            work / "phases" / "finetune",
            train.fine_tune.epochs,
            train.fine_tune.learning_rate,
            ctx,
            logs,
        )
        phases.append("finetune")
    return model, phases


def _fast_batchnorm(base) -> None:
    """From scratch on a small dataset there are only a few hundred steps: with Keras' default
    momentum (0.99) the BatchNorm moving statistics stay near their initial values and the model
    predicts one class at inference. 0.9 lets them follow the data (MiniVGGNet uses it already)."""
    import keras

    for layer in base.layers:
        if isinstance(layer, keras.layers.BatchNormalization):
            layer.momentum = min(layer.momentum, 0.9)


def _phase_done(folder: Path) -> bool:
    return (folder / "done.json").is_file()


def _mark_done(folder: Path, seconds: float) -> None:
    write_json_atomic(folder / "done.json", {"finished": now(), "seconds": round(seconds, 1)})
    shutil.rmtree(folder / "backup", ignore_errors=True)


def _phase_features(
    recipe: Recipe,
    dataset: SplitDataset,
    base,
    head,
    scaling: str,
    folder: Path,
    ctx: Context,
    logs=None,
) -> None:
    """Fast feature extraction: cached conv-base features, head trained on them."""
    import keras

    from .features import build_extractor, cached_features

    folder.mkdir(parents=True, exist_ok=True)
    train = recipe.train
    if not _phase_done(folder):
        start = time.perf_counter()
        base.trainable = False
        # Built on the first cache miss only: with every split cached the base never runs.
        make_extractor = functools.cache(lambda: build_extractor(base, recipe.model.image_size, scaling))
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
            features, _ = cached_features(
                make_extractor,
                dataset.paths(split),
                recipe.model,
                engine,
                recipe.seed,
                ctx=ctx,
                label=split,
            )
            arrays[split] = (features, np.asarray(dataset.labels(split)))
        x, y = arrays["train"]
        k = len(dataset.classes)
        rate = knobs.learning_rate(
            train.lr_schedule, train.learning_rate, train.epochs, knobs.steps_per_epoch(len(x), train.batch_size)
        )
        head.compile(optimizer=knobs.optimizer(train, rate), loss=knobs.loss(train), metrics=["accuracy"])
        xv, yv = arrays["validation"]
        head.fit(
            x,
            knobs.targets(y, k, train),
            validation_data=(xv, knobs.targets(yv, k, train)),
            epochs=train.epochs,
            batch_size=train.batch_size,
            shuffle=True,
            verbose=0,
            class_weight=knobs.class_weights(y, k, train.class_weight),
            callbacks=_callbacks("features", folder, train.epochs, len(x), recipe, ctx, logs),
        )
        _mark_done(folder, time.perf_counter() - start)
        _plot(folder, "features")
    else:
        ctx.say("[features] phase already finished: reusing its best checkpoint")
    best = keras.saving.load_model(folder / "best.keras", compile=False)
    head.set_weights(best.get_weights())


def _phase_end_to_end(
    phase: str,
    model,
    recipe: Recipe,
    dataset: SplitDataset,
    folder: Path,
    epochs: int,
    learning_rate: float,
    ctx: Context,
    logs=None,
) -> None:
    """Train the composed model on images (augmented), keep the best weights by val_loss."""
    import keras

    from .decoded import batches
    from .inputs import inner_model, training_model

    folder.mkdir(parents=True, exist_ok=True)
    train = recipe.train
    if not _phase_done(folder):
        start = time.perf_counter()
        k, labels = len(dataset.classes), np.asarray(dataset.labels("train"), np.int32)
        train_ds = batches(
            _decoded(dataset, "train", recipe, ctx),
            knobs.targets(labels, k, train),
            train.batch_size,
            shuffle=True,
            seed=recipe.seed,
        )
        val_ds = batches(
            _decoded(dataset, "validation", recipe, ctx),
            knobs.targets(dataset.labels("validation"), k, train),
            train.batch_size,
        )
        trainer = training_model(model, train.augment, recipe.seed)
        rate = knobs.learning_rate(train.lr_schedule, learning_rate, epochs, len(train_ds))
        trainer.compile(optimizer=knobs.optimizer(train, rate), loss=knobs.loss(train), metrics=["accuracy"])
        trainer.fit(
            train_ds,
            validation_data=val_ds,
            epochs=epochs,
            verbose=0,
            shuffle=False,  # batches shuffle
            class_weight=knobs.class_weights(labels, k, train.class_weight),
            callbacks=_callbacks(phase, folder, epochs, len(dataset.paths("train")), recipe, ctx, logs),
        )
        _mark_done(folder, time.perf_counter() - start)
        _plot(folder, phase)
    else:
        ctx.say(f"[{phase}] phase already finished: reusing its best checkpoint")
    if (folder / "best.keras").is_file():
        best = keras.saving.load_model(folder / "best.keras", compile=False)
        model.set_weights(inner_model(best, model.name).get_weights())


def _plot(folder: Path, phase: str) -> None:
    from .curves import plot_history

    history = schemas.load_history(folder / "history.json")
    plot_history(history, folder / "curves.png", f"{phase}: accuracy and loss")


def unfreeze(base, unfreeze_from: Optional[str], unfreeze_last: Optional[int]) -> None:
    """Make the top of the backbone trainable; BatchNorm layers stay frozen (inference mode)."""
    import keras

    names = [layer.name for layer in base.layers]
    start = names.index(unfreeze_from) if unfreeze_from else max(len(names) - int(unfreeze_last or 0), 0)
    base.trainable = True
    for i, layer in enumerate(base.layers):
        is_bn = isinstance(layer, keras.layers.BatchNormalization)
        layer.trainable = i >= start and not is_bn


def evaluate(model, dataset: SplitDataset, recipe: Recipe, ctx: Context = SILENT) -> dict:
    """Test-split metrics of the final model, printed as a short table."""
    from .decoded import batches

    images = _decoded(dataset, "test", recipe, ctx)
    probs = model.predict(batches(images, None, recipe.train.batch_size), verbose=0)[: len(images)]
    metrics = classification_metrics(np.asarray(dataset.labels("test")), probs, dataset.classes)
    where = " (no test split: these are the validation images)" if dataset.test_is_validation else ""
    ctx.say(f"test accuracy {metrics['accuracy']:.4f} on {metrics['count']} images{where}")
    for name, m in metrics["per_class"].items():
        ctx.say(f"  {name:>16}: precision {m['precision']:.3f}  recall {m['recall']:.3f}  ({m['support']} images)")
    ctx.say("  confusion matrix (rows: true, columns: predicted): " + json.dumps(metrics["confusion_matrix"]))
    return metrics


def _finish_run(recipe: Recipe, dataset: SplitDataset, model, metrics: dict, phases: list[str], work: Path) -> None:
    import yaml

    with atomic_path(work / REFERENCE, suffix=".keras") as tmp:
        model.save(tmp)
    record = {"test": metrics, "phases": phases}
    missing = missing_classes(dataset.classes, dataset.splits["test"])
    if missing:  # so a later reader knows these test figures are not comparable
        record["test_missing_classes"] = missing
        record["warnings"] = [gap_in_test(dataset)]
    write_json_atomic(work / "metrics.json", record)
    write_text_atomic(work / "labels.txt", "\n".join(dataset.classes) + "\n")
    write_text_atomic(work / "recipe.yaml", yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    spec = get_backbone(recipe.model.backbone)
    size = recipe.model.image_size
    manifest = {
        "name": recipe.name,
        "tk_version": __version__,
        "created": now(),
        "trained": now(),  # what "the latest run" sorts by (export, verify and bench rewrite the file)
        "recipe": recipe.source_path,
        "backbone": spec.name,
        "classes": dataset.classes,
        "preprocessing": {
            "size": [size, size],
            "interpolation": INTERPOLATION,
            "color": "RGB",
            "input_range": [0, 255],
            # The backbone's scaling is a layer inside every artifact; devices feed RGB 0..255.
            "scaling": spec.scaling,
            "scaling_in_graph": True,
            "exif_transpose": True,
        },
        "metrics": {"test_accuracy": metrics["accuracy"]},
        "artifacts": {
            REFERENCE: {
                "file": REFERENCE,
                "format": "keras",
                "quantization": "none",
                "input": {"shape": [None, size, size, 3], "dtype": "float32"},
                "output": {"shape": [None, len(dataset.classes)], "dtype": "float32"},
                "sha256": sha256_file(work / REFERENCE),
                "size_bytes": size_bytes(work / REFERENCE),
                "versions": tool_versions("tensorflow", "keras"),
                "created": now(),
                "backend": _backend_name(),
            }
        },
    }
    save_manifest(work, manifest)


def _backend_name() -> str:
    import keras

    return keras.backend.backend()


def _swap_into_place(work: Path, run_dir: Path) -> Optional[Path]:
    """Make the finished run the recipe's stable name; the previous run is moved aside, never deleted."""
    archived = archive_run(run_dir)
    os.replace(work, run_dir)
    return archived
