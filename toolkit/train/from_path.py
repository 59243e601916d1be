"""`tk train PATH`: a recipe file, or a folder of class folders with its default recipe.

Loads the recipe (with --set overrides), picks the Keras backend before Keras is first imported
(it reads KERAS_BACKEND once), and trains. A folder's recipe is written for the run and removed
again if the run fails (data/folder_recipe.py).
"""

from __future__ import annotations

import contextlib
from pathlib import Path
from typing import Optional, Sequence

from ..core.context import SILENT, Context
from ..core.errors import TkError
from ..core.recipe import load_recipe
from ..core.runs import RUNS_DIR


def train_from_path(
    path: Path,
    overrides: Sequence[str] = (),
    runs_dir: Path = RUNS_DIR,
    resume: bool = False,
    strict: Optional[bool] = None,
    ctx: Context = SILENT,
    job=None,
):
    """Train the recipe at path (or the folder's default recipe); returns (TrainResult, recipe path)."""
    path = Path(path)
    if not path.exists():
        raise TkError(
            f"{path}: no such recipe or folder (pass a recipe YAML, e.g. recipes/quickstart.yaml, "
            "or a folder of class folders)"
        )
    if path.is_dir():
        from ..data.folder_recipe import folder_recipe

        recipe_file = folder_recipe(path, overrides, ctx)
        overrides = ()  # written into the recipe
    else:
        recipe_file = contextlib.nullcontext(path)
    with recipe_file as recipe_path:
        recipe = load_recipe(recipe_path, overrides)
        from .backbones import check_model
        from .backend import select_backend

        check_model(recipe.model)  # a key the backbone does not take: one line, before TensorFlow loads

        if select_backend(recipe) == "tensorflow":
            from ..core.quiet import import_tensorflow_quietly

            import_tensorflow_quietly()
        from .phases import train

        return train(recipe, runs_dir=runs_dir, resume=resume, strict=strict, ctx=ctx, job=job), recipe_path
