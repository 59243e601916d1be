"""`tk train DIR`: a folder of class folders (or train/validation/test of them) trained with a
default recipe, written out so the run can be repeated, edited and exported like any other.

The default is the quickstart's: MiniVGGNet from scratch at 64 px. It needs no download (ImageNet
weights may not be reachable) and trains in minutes on a CPU; for photos, a pretrained backbone
(recipes/flowers.yaml) is the better next step.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any, Sequence

import yaml

from ..core.context import SILENT, Context
from ..core.errors import TkError
from ..core.io import write_text_atomic
from ..core.overrides import apply_overrides
from ..core.recipe import recipe_from_dict
from ..core.runs import MAX_NAME, run_name_problem
from .splits import _class_dirs, _presplit_dirs, looks_presplit

HEADER = (
    "# Written by `tk train {folder}`: the default recipe for a folder of class folders\n"
    "# (MiniVGGNet from scratch, offline). Edit it and run: tk train {path}\n"
)


def default_recipe(folder: Path) -> dict[str, Any]:
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", folder.resolve().name).strip("_.")[: MAX_NAME - 5] or "dataset"
    if run_name_problem(name):  # a folder named like tk's own files (photos.partial, x-20250101-120000)
        name += "-data"
    return {
        "name": name,
        "seed": 42,
        "data": {"root": str(folder)},
        "model": {"backbone": "mini_vgg", "weights": "none", "image_size": 64},
        "train": {
            "mode": "scratch",
            "epochs": 15,
            "batch_size": 32,
            "learning_rate": 0.001,
            "augment": {"flip": "horizontal", "rotation": 0.05, "zoom": 0.1},
        },
    }


def write_folder_recipe(folder: Path, overrides: Sequence[str] = (), ctx: Context = SILENT) -> Path:
    """Check folder holds class folders, write the default recipe (with overrides) beside the
    others (recipes/<name>.yaml, or <name>.yaml when there is no recipes/ here); return its path.
    An existing file is never overwritten: the same content is reused, a different one refused."""
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
    text = HEADER.format(folder=folder, path=target) + yaml.safe_dump(raw, sort_keys=False)
    if target.exists():
        if target.is_file() and target.read_text(errors="replace") == text:
            ctx.say(f"training {folder} with {target} (written by an earlier tk train {folder})")
            return target
        raise TkError(
            f"{target}: exists already and differs from the default recipe for {folder}; "
            f"train it with tk train {target}, or move it away"
        )
    write_text_atomic(target, text)
    ctx.say(f"training {folder} with a default recipe, written to {target}")
    return target
