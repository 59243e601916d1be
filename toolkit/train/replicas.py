"""What a job's processes hold in common: the model's weights, and the files only process 0 has.

Under keras.distribution every variable is a global array replicated on every process, and every
write to one (a load, set_weights) is a collective that every process must join with the same
value. So process 0 never loads a checkpoint into the shared model alone: it reads the file into
plain arrays (outside the distribution), broadcasts them, and every process assigns the same
values. Reading needs no peer (a replicated array is local everywhere), so process 0 saves alone.
Anything that runs on one process only (the test evaluation, feature extraction over a share)
runs on a local copy of the model.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from pathlib import Path
from typing import Iterator, Optional

import numpy as np

from .. import __version__
from ..core.context import Context
from ..core.errors import TkError
from ..core.recipe import Recipe
from .job import SOLO, Job, JobSpec, weights_digest


def join_job(spec: Optional[JobSpec], recipe: Recipe, resume: bool, ctx: Context) -> Job:
    """This process's place in the job (SOLO without one); the processes agree on what they run."""
    if spec is None:
        return SOLO
    from .job import check_batch, digest, join

    member = join(spec, os.environ.get("KERAS_BACKEND") or recipe.train.backend)
    import jax
    import keras

    member.agree(
        "versions",
        f"tk {__version__}, keras {keras.__version__}, jax {jax.__version__}",
        "install the same versions on every host",
    )
    member.agree(
        "recipe (sha256)",
        digest(recipe.to_dict()),
        "start every process with the same recipe file and the same --set options",
    )
    member.agree("--resume", "resume" if resume else "no resume", "pass --resume to every process, or to none")
    check_batch(recipe.train.batch_size, member)
    share = recipe.train.batch_size // member.processes
    ctx.say(
        f"job: {member.name}{' (the writer)' if member.writer else ''}, {member.devices} {member.platform} devices "
        f"({member.local_devices} per process), coordinator {member.coordinator}; train.batch_size "
        f"{recipe.train.batch_size} is the global batch: {share} images per process per step"
    )
    return member


def on_writer(job: Job, step) -> None:
    """Run `step` on process 0 only, on its own devices; every process learns whether it failed,
    so none waits for a peer that gave up (a single process just runs it)."""
    if not job.multi:
        step()
        return
    error = None
    if job.writer:
        try:
            # Outside the distribution: Keras creates variables while saving (a throwaway optimizer),
            # and each would be a collective the other processes never join.
            with no_distribution():
                step()
        except TkError as exc:
            error = str(exc)
    job.all_ok(error)


def job_record(model, recipe: Recipe, job: Job, ctx: Context) -> dict:
    """Processes, devices and the global batch, and (in a job) each process's final weights digest."""
    record = job.record(recipe.train.batch_size)
    if job.multi:
        mine = weights_digest(model.get_weights())
        ctx.say(f"{job.name}: final weights sha256 {mine[:16]}")
        job.agree("final weights (sha256)", mine, "the replicas diverged; report it with every process's log")
        record["weights_sha256"] = [d.decode() for d in job.gather(mine.encode())]
    return record


def shared_screener(job: Job):
    """A screener (data.splits.discover) that checks each process's share of the files and tells
    every process what all of them found: a data set is screened once, not once per host."""
    from ..data.splits import screen

    def shared(items: list) -> tuple[list, list]:
        mine = job.shard(range(len(items)))
        _, bad = screen([items[i] for i in mine])
        why = dict(bad)  # path -> reason
        found = [[i, why[items[i][0]]] for i in mine if items[i][0] in why]
        parts = job.gather(json.dumps(found).encode())
        # Indices into each host's own listing: a host whose listing differs fails the split check.
        everyone = {int(i): reason for part in parts for i, reason in json.loads(part) if 0 <= int(i) < len(items)}
        good = [item for i, item in enumerate(items) if i not in everyone]
        return good, [(items[i][0], reason) for i, reason in sorted(everyone.items())]

    return shared


@contextlib.contextmanager
def no_distribution() -> Iterator[None]:
    """Models built and files loaded inside live on this process's own devices."""
    import keras

    saved = keras.distribution.distribution()
    keras.distribution.set_distribution(None)
    try:
        yield
    finally:
        keras.distribution.set_distribution(saved)


def local_copy(model):
    """`model` with its current weights, on this process only (no collective to run it)."""
    import keras

    with no_distribution():
        copy = keras.models.clone_model(model)
        copy.set_weights(model.get_weights())
    return copy


def read_best(path: Path, inner: Optional[str] = None) -> list[np.ndarray]:
    """The weights of a saved .keras model (the classifier `inner` of a saved trainer), as arrays."""
    import keras

    from .inputs import inner_model

    with no_distribution():
        best = keras.saving.load_model(path, compile=False)
        return (inner_model(best, inner) if inner else best).get_weights()


def restore_best(model, folder: Path, job: Job, inner: Optional[str] = None) -> None:
    """Load the phase's best checkpoint into `model` on every process (process 0 has the file)."""
    path = Path(folder) / "best.keras"
    if not job.multi:
        if path.is_file():
            model.set_weights(read_best(path, inner))
        return
    if not job.from_writer(path.is_file() if job.writer else False):
        return
    weights = read_best(path, inner) if job.writer else [np.zeros(w.shape, w.dtype) for w in model.weights]
    model.set_weights(job.broadcast(weights))


def check_identical(model, job: Job, phase: str, ctx: Context) -> str:
    """Every process's weights digest after a phase's training; TkError if any differs."""
    mine = weights_digest(model.get_weights())
    if job.multi:
        job.agree(
            f"weights after the {phase} phase",
            mine,
            "the replicas diverged, which data-parallel training must never do; report it with both processes' logs",
        )
        ctx.say(f"[{phase}] weights sha256 {mine[:16]}: identical on all {job.processes} processes")
    return mine


def cache_dir(default: Path, job: Job) -> Path:
    """Where this process caches decoded images and features: process 0 in the run's cache, the
    others outside exported/ (process 0 is its only writer), unless TK_CACHE_DIR names a place."""
    if job.writer or os.environ.get("TK_CACHE_DIR"):
        return Path(default)
    uid = os.getuid() if hasattr(os, "getuid") else "user"
    return Path(tempfile.gettempdir()) / f"tk-cache-{uid}"
