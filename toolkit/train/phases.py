"""tk train: feature extraction (cached or with augmentation), fine-tuning, or from scratch.

A run is built in exported/<name>.partial/ and swapped into exported/<name>/ only when it
finishes, so an interrupted or failed run never destroys the previous one, and a finished one moves
the previous run aside (exported/<name>-<trained time>/, core/runs.archive_run); `--resume` continues the
partial run (finished phases are skipped, the running one restarts from its last epoch).

A multi-process job (train/job.py) runs the same code on every process: each feeds its share of
every global batch (train/shards.py), process 0 alone writes the run folder, and what it reads from
there reaches the others as broadcast arrays (train/replicas.py).
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..core.context import SILENT, Context, silent
from ..core.errors import Interrupted, TkError
from ..core.io import check_writable
from ..core.lock import run_lock
from ..core.metrics import classification_metrics
from ..core.progress import NO_PROGRESS
from ..core.recipe import Recipe
from ..core.runs import RUNS_DIR, SplitDataset, save_split
from ..data.splits import discover, gap_in_test
from . import fit
from .backbones import build_base, build_head, check_model, check_unfreeze_layer, compose, get_backbone, resolve_weights
from .checkpoints import prepare_partial
from .job import SOLO, Job, JobSpec
from .replicas import job_record, join_job, on_writer, shared_screener
from .run_folder import finish_run, swap_into_place


@dataclass
class TrainResult:
    run_dir: Path
    metrics: dict
    phases: list[str]
    archived: Optional[Path] = None  # where the previous run of this recipe was moved, if there was one
    job: Optional[dict] = None  # a multi-process job: processes, devices, batch, each process's weights digest


def train(
    recipe: Recipe,
    runs_dir: Path = RUNS_DIR,
    resume: bool = False,
    strict: Optional[bool] = None,
    ctx: Context = SILENT,
    job: Optional[JobSpec] = None,
) -> TrainResult:
    """Train the recipe's model end to end and write its run folder (`ctx.progress`: decoding,
    feature extraction and each epoch's steps).

    job: join a multi-process job first (JAX backend); every process calls train with the same
    recipe, process 0 writes the run folder and the others return its path without writing."""
    check_model(recipe.model)  # an unknown name or a key the backbone does not take fails before TensorFlow loads
    if recipe.train.mode != "scratch" and recipe.model.weights == "none":
        raise TkError(
            f"train.mode: {recipe.train.mode} freezes the conv base, but model.weights is none "
            "(random features); use mode: scratch, or pretrained weights (imagenet or a file)"
        )
    resolve_weights(recipe.model.weights)  # a missing weights file fails before TensorFlow loads
    member = join_job(job, recipe, resume, ctx)  # before any JAX computation
    talk = ctx if member.writer else ctx.but(say=silent, progress=NO_PROGRESS)  # process 0 speaks for the job
    import keras

    from .backend import distribution_scope, resolve_precision, say_device, seed_everything, tensorflow_unseen
    from .logs import RunLogs
    from .replicas import local_copy

    # The distribution scope and the run lock are entered mid-way (after the checks that must fail
    # before anything is touched) yet must close in `finally`, after the KeyboardInterrupt handler.
    scope = contextlib.ExitStack()
    scope.enter_context(tensorflow_unseen())  # jax/torch: Keras' probes must not load TensorFlow
    try:
        seed_everything(recipe.seed)  # before the base is built: random init is seeded too
        policy = resolve_precision(recipe.train.mixed_precision)
    except BaseException:
        scope.close()
        raise
    # Before any layer is built: the policy is fixed at construction. The head's output layer is
    # float32 whatever the policy (backbones.build_head).
    keras.mixed_precision.set_global_policy(policy)
    run_dir = Path(runs_dir) / recipe.name
    work = Path(runs_dir) / f"{recipe.name}.partial"
    logs: Optional[RunLogs] = None
    try:
        scope.enter_context(distribution_scope(recipe.train.distribute, talk, member))  # built and fit inside
        # Built once, first: layer-name mistakes and an offline ImageNet download fail here, before
        # the data is read and before an interrupted run's .partial folder (replaced by a new run)
        # is touched.
        base = build_base(recipe.model)
        check_unfreeze_layer(base, recipe.train.fine_tune.unfreeze_from)
        dataset = _dataset(recipe, strict, talk, member)

        def start() -> None:  # held from before .partial is touched until the run is swapped in: one writer per run
            check_writable(Path(runs_dir))
            scope.enter_context(run_lock(run_dir, "tk train", ctx))
            prepare_partial(work, recipe, resume, ctx, dataset)
            save_split(dataset, work / "split.json")
            nonlocal logs
            logs = RunLogs(recipe, work, resume, ctx)

        on_writer(member, start)
        say_device(policy, talk)
        model, phases = _run_phases(recipe, dataset, base, work, talk, member, logs)
        record = job_record(model, recipe, member, ctx)
        written: dict = {}

        def finish() -> None:
            final = local_copy(model) if member.multi else model  # evaluated and saved by process 0 alone
            written["metrics"] = evaluate(final, dataset, recipe, ctx)
            finish_run(recipe, dataset, final, written["metrics"], phases, work, record)
            logs.finished(work, written["metrics"], ctx)
            written["archived"] = swap_into_place(work, run_dir)  # inside: under the lock

        on_writer(member, finish)
    except KeyboardInterrupt:
        if logs is not None:
            logs.failed(interrupted=True)
        raise Interrupted(f"interrupted: {_resume_hint(recipe, work, member)}") from None
    except Exception as exc:  # a collective that failed because a peer went away: one line
        reason = member.lost_peer(exc)
        if reason is None:
            raise
        if logs is not None:
            logs.failed()
        raise TkError(
            f"{member.name}: another process of the job went away ({reason}), so this one stops too "
            f"(the others' own lines say why); {_resume_hint(recipe, work, member)}"
        ) from None
    except BaseException:
        if logs is not None:
            logs.failed()
        raise
    finally:
        scope.close()
        keras.mixed_precision.set_global_policy("float32")
    member.leave()
    archived = written.get("archived")
    if archived is not None:
        ctx.say(f"kept the previous run as {archived} (tk export/verify/bench take it by that path)")
    if member.writer:
        ctx.say(f"run written to {run_dir} (model.keras, metrics.json, curves)")
    else:
        ctx.say(f"{member.name} done: process 0 wrote the run ({run_dir.name} in its runs folder)")
    return TrainResult(run_dir, written.get("metrics", {}), phases, archived, record if member.multi else None)


def _resume_hint(recipe: Recipe, work: Path, job: Job) -> str:
    kept = f"best checkpoints kept in {work}" if job.writer else "process 0 keeps the best checkpoints"
    every = " on every process" if job.multi else ""
    return f"{kept}; continue with tk train {recipe.source_path or 'RECIPE'} --resume{every}"


def _dataset(recipe: Recipe, strict: Optional[bool], ctx: Context, job: Job = SOLO) -> SplitDataset:
    data = recipe.data
    if strict is not None and strict != data.strict:
        from dataclasses import replace

        data = replace(data, strict=strict)
    # Synthetic data is made once: by process 0 first, then by a process on another host if its
    # disk does not have it (the same seed draws the same images).
    on_writer(job, lambda: _synthesize(recipe, ctx))
    if not job.writer:
        _synthesize(recipe, ctx)
    dataset = discover(data, recipe.seed, screener=shared_screener(job) if job.multi else None)
    if job.multi:
        from .job import digest

        # One split: process 0 writes split.json, every process checks it trains on the same one.
        relative = {k: v for k, v in dataset.to_json().items() if k != "root"}
        job.agree(
            "split (sha256)",
            digest(relative),
            f"every host needs the same images under data.root ({data.root}); "
            "tk data inspect RECIPE on each shows the counts",
        )
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


def _synthesize(recipe: Recipe, ctx: Context) -> None:
    root, synth = Path(recipe.data.root), recipe.data.synth
    if synth and not root.exists():
        from ..data.synth import make_synthetic_dataset

        ctx.say(f"making synthetic data in {root}: {synth.classes} classes x {synth.per_class} images, {synth.size} px")
        make_synthetic_dataset(root, synth.classes, synth.per_class, synth.size, seed=recipe.seed)


def _run_phases(recipe: Recipe, dataset: SplitDataset, base, work: Path, ctx: Context, job: Job = SOLO, logs=None):
    """Train phase by phase; returns the composed model with the best weights, and phase names."""
    spec = get_backbone(recipe.model.backbone)
    size, train = recipe.model.image_size, recipe.train
    head = build_head(tuple(base.output.shape[1:]), len(dataset.classes), recipe.model, spec.name)
    phases: list[str] = []
    if train.mode == "features":
        fit.phase_features(recipe, dataset, base, head, spec.scaling, work / "phases" / "features", ctx, job, logs)
        phases.append("features")
        model = compose(base, head, size, spec.scaling, base_training=False)
    else:
        scratch = train.mode == "scratch"
        base.trainable = scratch
        if scratch:
            _fast_batchnorm(base)
        model = compose(base, head, size, spec.scaling, base_training=None if scratch else False)
        fit.phase_end_to_end(
            train.mode,
            model,
            recipe,
            dataset,
            work / "phases" / train.mode,
            train.epochs,
            train.learning_rate,
            ctx,
            job,
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
        fit.phase_end_to_end(
            "finetune",
            model,
            recipe,
            dataset,
            work / "phases" / "finetune",
            train.fine_tune.epochs,
            train.fine_tune.learning_rate,
            ctx,
            job,
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

    images = fit.decoded_split(dataset, "test", recipe, ctx)
    probs = model.predict(batches(images, None, recipe.train.batch_size), verbose=0)[: len(images)]
    metrics = classification_metrics(np.asarray(dataset.labels("test")), probs, dataset.classes)
    where = " (no test split: these are the validation images)" if dataset.test_is_validation else ""
    ctx.say(f"test accuracy {metrics['accuracy']:.4f} on {metrics['count']} images{where}")
    for name, m in metrics["per_class"].items():
        ctx.say(f"  {name:>16}: precision {m['precision']:.3f}  recall {m['recall']:.3f}  ({m['support']} images)")
    ctx.say("  confusion matrix (rows: true, columns: predicted): " + json.dumps(metrics["confusion_matrix"]))
    return metrics
