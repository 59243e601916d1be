"""`tk train DIR`: a folder of class folders (or train/validation/test of them) trained with a
default recipe, written out so the run can be repeated, edited and exported like any other.

The default is transfer learning, the lesson tk is built on: MobileNetV2 pretrained on ImageNet at
224 px, cached features for the new head, then fine-tuning of its last stage at a low learning
rate (recipes/flowers.yaml's settings). MobileNetV2 transfers well to small datasets and keeps
its accuracy under int8, which the device formats need (README, "Why MobileNetV2"). Its weights
are downloaded once by Keras; offline, `tk train DIR --scratch` trains MiniVGGNet from random
weights instead (core/recipe_keys.SCRATCH).
"""

from __future__ import annotations

import contextlib
import re
from pathlib import Path
from typing import Any, Iterator, Sequence

import yaml

from ..core.context import SILENT, Context
from ..core.errors import Interrupted, TkError
from ..core.io import write_text_atomic
from ..core.overrides import apply_overrides
from ..core.recipe import recipe_from_dict
from ..core.runs import MAX_NAME, run_name_problem
from .splits import _class_dirs, _presplit_dirs, looks_presplit

HEADER = (
    "# Written by `tk train {folder}`: the default recipe for a folder of class folders\n"
    "# ({what}). Edit it and run: tk train {path}\n"
)


def default_recipe(folder: Path) -> dict[str, Any]:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", folder.resolve().name).strip("_.")[: MAX_NAME - 5] or "dataset"
    if run_name_problem(name):  # a folder named like tk's own files (photos.partial, x-20250101-120000)
        name += "-data"
    return {
        "name": name,
        "seed": 42,
        "data": {"root": str(folder)},
        "model": {
            "backbone": "mobilenet_v2",
            "weights": "imagenet",
            "image_size": 224,
            # MobileNetV2's own classifier: pooled 1280 features, dropout, softmax.
            "head": {"pooling": "avg", "dense": [], "dropout": 0.2},
        },
        "train": {
            "mode": "features",
            "epochs": 10,
            "batch_size": 32,
            "learning_rate": 0.001,
            "early_stopping": 5,
            "augment": {"flip": "horizontal", "rotation": 0.1, "zoom": 0.1},
            # The last stride-2 stage (7x7 maps): the most task-specific features, small steps.
            "fine_tune": {"epochs": 5, "unfreeze_from": "block_13_expand", "learning_rate": 1.0e-5},
        },
    }


def _describe(raw: dict[str, Any]) -> str:
    model, train = raw["model"], raw["train"]
    weights = {"imagenet": "pretrained on ImageNet", "none": "from scratch"}.get(model["weights"], "own weights")
    then = ", then fine-tuning" if train.get("fine_tune", {}).get("epochs") else ""
    return f"{model['backbone']} {weights}, {model['image_size']} px, mode {train['mode']}{then}"


def write_folder_recipe(folder: Path, overrides: Sequence[str] = (), ctx: Context = SILENT) -> tuple[Path, bool]:
    """Check folder holds class folders, write the default recipe (with overrides) beside the
    others (recipes/<name>.yaml, or <name>.yaml when there is no recipes/ here); return its path
    and whether this call wrote it. An existing file is never overwritten: the same content is
    reused, a different one refused."""
    folder = Path(folder)
    split_dirs = _presplit_dirs(folder)
    top = split_dirs.get("train", folder) if looks_presplit(split_dirs) else folder
    if not _class_dirs(top):
        raise TkError(
            f"{folder}: a folder, but not of class folders (one sub-folder of images per class, or "
            f"train/ and validation/ of them); pass one of those, or a recipe YAML"
        )
    raw = apply_overrides(default_recipe(folder), overrides)
    recipe_from_dict(raw)  # a bad --set fails before anything is written
    target = (Path("recipes") if Path("recipes").is_dir() else Path(".")) / f"{raw['name']}.yaml"
    text = HEADER.format(folder=folder, path=target, what=_describe(raw)) + yaml.safe_dump(raw, sort_keys=False)
    if target.exists():
        if target.is_file() and target.read_text(errors="replace") == text:
            ctx.say(f"training {folder} with {target} (written by an earlier tk train {folder})")
            return target, False
        raise TkError(
            f"{target}: exists already and differs from the default recipe for {folder}; "
            f"train it with tk train {target}, or move it away"
        )
    write_text_atomic(target, text)
    ctx.say(f"training {folder} with a default recipe ({_describe(raw)}), written to {target}")
    return target, True


@contextlib.contextmanager
def folder_recipe(folder: Path, overrides: Sequence[str] = (), ctx: Context = SILENT) -> Iterator[Path]:
    """The folder's default recipe for the length of a training run. A run that fails takes the
    recipe it wrote with it (an offline ImageNet download, a bad image, a diverged loss): nothing is
    left to trip the next try with another option. An interrupted run keeps it, for --resume."""
    path, wrote = write_folder_recipe(folder, overrides, ctx)
    try:
        yield path
    except Interrupted:
        raise
    except BaseException:
        if wrote:
            path.unlink(missing_ok=True)
            ctx.say(f"removed {path}: the run did not finish")
        raise
