"""The partial run folder (exported/<name>.partial/) before training starts in it: what a killed
writer left is removed, and `--resume` refuses a recipe that changed what the saved state means;
and when a phase writes its checkpoints there (WriteBudget).

Called with the run's lock held (core/lock.py), so whoever wrote the leftovers is dead.
"""

from __future__ import annotations

import os
import shutil
import time
from pathlib import Path
from typing import Any, Callable, Optional

from ..core.context import SILENT, Context
from ..core.errors import TkError
from ..core.io import remove_leftovers, write_text_atomic
from ..core.recipe import Recipe
from ..core.runs import RUN_RECIPE, SPLIT, SplitDataset, load_split

# Keys a resumed run may change: they say how long to go on or what happens after training,
# not what the saved weights, optimizer state, split or features were computed with. Changing
# train.epochs (or fine_tune.epochs) only moves where a phase stops; early_stopping only when.
# data.source only matters to tk data fetch; export, verify and bench run after training; log
# only says where the curves go.
RESUMABLE = (
    "train.epochs",
    "train.fine_tune.epochs",
    "train.early_stopping",
    "data.source",
    "export",
    "verify",
    "bench",
    "log",
)


def prepare_partial(
    work: Path, recipe: Recipe, resume: bool, ctx: Context = SILENT, dataset: Optional[SplitDataset] = None
) -> None:
    """Start (or continue, with resume) the partial run in `work`; the recipe is saved in it.

    dataset: the data as discovered now; a resume refuses it if it is not the data the partial
    run was trained on (check_same_data)."""
    import yaml

    if work.exists() and not resume:
        shutil.rmtree(work)  # an interrupted run's: its writer is dead (we hold the lock)
    if resume and not work.exists():
        ctx.say(f"nothing to resume at {work}: starting a new run")
    if resume and work.exists():
        for path in remove_leftovers(work, recursive=True):
            ctx.say(f"removed {path}: left by an interrupted write")
        check_resumable(work, recipe, ctx)
        if dataset is not None:
            check_same_data(work, dataset)
    work.mkdir(parents=True, exist_ok=True)
    write_text_atomic(work / RUN_RECIPE, yaml.safe_dump(recipe.to_dict(), sort_keys=False))


def check_resumable(work: Path, recipe: Recipe, ctx: Context = SILENT) -> None:
    """TkError naming the keys that changed since the partial run started, except RESUMABLE ones."""
    import yaml

    saved_path = work / RUN_RECIPE
    if not saved_path.is_file():  # a partial run of a tk that did not save it
        ctx.say(f"note: {work} has no {RUN_RECIPE} (an older tk): cannot check the recipe is unchanged")
        return
    try:
        saved = yaml.safe_load(saved_path.read_text(encoding="utf-8"))
    except (yaml.YAMLError, UnicodeDecodeError, OSError):
        saved = None
    if not isinstance(saved, dict):
        ctx.say(f"note: {saved_path} does not parse: cannot check the recipe is unchanged")
        return
    changed = [key for key in _diff(saved, recipe.to_dict()) if not _resumable(key)]
    if changed:
        old, new = _flat(saved), _flat(recipe.to_dict())
        shown = ", ".join(f"{k} ({old.get(k, '(unset)')!r} -> {new.get(k, '(unset)')!r})" for k in changed[:6])
        more = f" and {len(changed) - 6} more" if len(changed) > 6 else ""
        raise TkError(
            f"--resume: the recipe changed since {work} was started: {shown}{more}; the saved state "
            f"was trained with the old values: restore them, or start over without --resume "
            f"(only {', '.join(RESUMABLE)} may change on resume)"
        )


def _resumable(key: str) -> bool:
    return any(key == allowed or key.startswith(allowed + ".") for allowed in RESUMABLE)


def _flat(obj: Any, prefix: str = "") -> dict[str, Any]:
    if not isinstance(obj, dict):
        return {prefix: obj}
    out: dict[str, Any] = {}
    for key, value in obj.items():
        name = f"{prefix}.{key}" if prefix else str(key)
        out.update(_flat(value, name) if isinstance(value, dict) and value else {name: value})
    return out


def _diff(old: dict, new: dict) -> list[str]:
    a, b = _flat(old), _flat(new)
    return [k for k in sorted(set(a) | set(b)) if a.get(k) != b.get(k)]


def check_same_data(work: Path, dataset: SplitDataset) -> None:
    """TkError naming what changed in the data since the partial run was started (or last resumed):
    classes, images added, removed or relabelled, images modified since (by mtime), the split."""
    path = work / SPLIT
    if not path.is_file():  # interrupted before its split was saved: nothing was trained yet
        return
    saved = load_split(path)
    changes = []
    if saved.classes != dataset.classes:
        changes.append(f"classes {saved.classes} -> {dataset.classes}")
    old, new = _images(saved), _images(dataset)
    for what, names in (
        ("added", sorted(set(new) - set(old))),
        ("removed", sorted(set(old) - set(new))),
        ("relabelled", sorted(p for p in set(old) & set(new) if old[p][0] != new[p][0])),
    ):
        if names:
            changes.append(f"{len(names)} image(s) {what} (first: {names[0]})")
    started = path.stat().st_mtime
    modified = sorted(rel for rel, (_, _, full) in new.items() if _mtime(full) > started)
    if modified:
        changes.append(f"{len(modified)} image(s) modified since (first: {modified[0]})")
    if not changes and any(old[p][1] != new[p][1] for p in new):
        changes.append("the same images fall into other splits")
    if changes:
        raise TkError(
            f"--resume: the data changed since {work} was started: {'; '.join(changes)}; the saved "
            "weights were trained on the old data: restore it, or start over without --resume"
        )


def _images(dataset: SplitDataset) -> dict[str, tuple[str, str, str]]:
    """Path relative to the data root -> (class name, split, path to open). Names, not indices:
    a class added before it shifts every index."""
    root = os.path.abspath(dataset.root)
    return {
        os.path.relpath(os.path.abspath(p), root).replace(os.sep, "/"): (dataset.classes[y], split, p)
        for split in ("train", "validation", "test")  # test last: a copy of validation when absent
        for p, y in dataset.splits.get(split, [])
    }


def _mtime(path: str) -> float:
    try:
        return os.stat(path).st_mtime
    except OSError:
        return 0.0


# The share of a phase's training time its checkpoint writes may take: after a write that took
# t seconds the next waits for t / WRITE_SHARE seconds of training (a kill loses at most that;
# MiniVGGNet's 0.3 s of writes: 15 s). A small model's writes (milliseconds) stay every epoch.
WRITE_SHARE = 0.02


class WriteBudget:
    """Whether an epoch's checkpoint writes are due, decided once per epoch for every writer, so
    the best checkpoint on disk is never older than the resume backup beside it."""

    def __init__(self, share: Optional[float] = None, clock: Callable[[], float] = time.monotonic):
        self.share, self.clock = WRITE_SHARE if share is None else share, clock
        self.last_write = clock()
        self.cost = 0.0  # seconds the last round of writes took: the first epoch always writes
        self.decided: tuple[int, bool] = (-1, False)

    def due(self, epoch: int) -> bool:
        if self.decided[0] != epoch:
            due = self.clock() - self.last_write >= self.cost / self.share
            self.decided = (epoch, due)
            if due:
                self.cost = 0.0
        return self.decided[1]

    def charge(self, seconds: float) -> None:
        """A write of this round took `seconds` (it ended now)."""
        self.cost += seconds
        self.last_write = self.clock()

    def timed(self, write: Callable[[], None]) -> None:
        start = self.clock()
        write()
        self.charge(self.clock() - start)
