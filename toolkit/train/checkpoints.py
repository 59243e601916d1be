"""The partial run folder (exported/<name>.partial/) before training starts in it: what a killed
writer left is removed, and `--resume` refuses a recipe that changed what the saved state means.

Called with the run's lock held (core/lock.py), so whoever wrote the leftovers is dead.
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

from ..core.context import SILENT, Context
from ..core.errors import TkError
from ..core.io import remove_leftovers, write_text_atomic
from ..core.recipe import Recipe
from ..core.runs import RUN_RECIPE

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


def prepare_partial(work: Path, recipe: Recipe, resume: bool, ctx: Context = SILENT) -> None:
    """Start (or continue, with resume) the partial run in `work`; the recipe is saved in it."""
    import yaml

    if work.exists() and not resume:
        shutil.rmtree(work)  # an interrupted run's: its writer is dead (we hold the lock)
    if resume and not work.exists():
        ctx.say(f"nothing to resume at {work}: starting a new run")
    if resume and work.exists():
        for path in remove_leftovers(work, recursive=True):
            ctx.say(f"removed {path}: left by an interrupted write")
        check_resumable(work, recipe, ctx)
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
