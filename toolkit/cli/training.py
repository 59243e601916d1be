"""`tk train`, `tk keys` and `tk layers`: training a recipe or a folder, and what a recipe can say.

Registered on the `tk` app by app.py (in this order, first in `tk --help`).
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from ..core import quiet
from ..core.errors import TkError
from ..core.recipe_keys import SCRATCH, with_shortcuts
from . import common
from .common import DEFAULT_RUNS, JsonOpt, RunsDir, SetOpt, context, say, user_errors
from .options import PANEL_SHORTCUTS, shortcut


@user_errors
def train(
    recipe: Annotated[
        Path,
        typer.Argument(
            metavar="RECIPE|DIR",
            help="Recipe YAML (e.g. recipes/quickstart.yaml), or a folder of class folders: trained with a "
            "default recipe (MobileNetV2 pretrained on ImageNet, 224 px, cached features then fine-tuning; "
            "--scratch: MiniVGGNet, no download) written to recipes/<folder>.yaml (./<folder>.yaml if there "
            "is no recipes/ here).",
        ),
    ],
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run.")] = False,
    strict: Annotated[
        Optional[bool], typer.Option("--strict/--skip-bad", help="Fail on bad image files instead of skipping them.")
    ] = None,
    sets: SetOpt = None,
    epochs: Annotated[Optional[int], shortcut("--epochs")] = None,
    image_size: Annotated[Optional[int], shortcut("--image-size")] = None,
    batch_size: Annotated[Optional[int], shortcut("--batch-size")] = None,
    backbone: Annotated[Optional[str], shortcut("--backbone")] = None,
    weights: Annotated[Optional[str], shortcut("--weights")] = None,
    lr: Annotated[Optional[float], shortcut("--lr")] = None,
    mode: Annotated[Optional[str], shortcut("--mode")] = None,
    scratch: Annotated[
        bool,
        typer.Option(
            "--scratch",
            help="Train MiniVGGNet from random weights, no download (offline): sets " + ", ".join(SCRATCH) + ".",
            rich_help_panel=PANEL_SHORTCUTS,
        ),
    ] = False,
    as_json: JsonOpt = False,
    runs_dir: RunsDir = DEFAULT_RUNS,
):
    """Train the recipe's classifier: feature extraction, then fine-tuning (or from scratch).

    Every recipe key, with its type, default and meaning: tk keys.
    """
    from ..core.io import json_text
    from ..train.from_path import train_from_path

    given = {
        "--epochs": epochs,
        "--image-size": image_size,
        "--batch-size": batch_size,
        "--backbone": backbone,
        "--weights": weights,
        "--lr": lr,
        "--mode": mode,
    }
    overrides = with_shortcuts(sets or [], given, scratch)
    with context(as_json) as ctx:
        result, recipe_path = train_from_path(recipe, overrides, runs_dir, resume, strict, ctx)
    if as_json:
        say(
            json_text(
                {
                    "run": str(result.run_dir),
                    "recipe": str(recipe_path),
                    "phases": result.phases,
                    "test": result.metrics,
                }
            )
        )
    else:
        say(f"next: tk export {result.run_dir} && tk verify {result.run_dir} (then tk bench, tk pack)")


@user_errors
def keys(
    prefix: Annotated[
        Optional[str],
        typer.Argument(metavar="[SECTION]", help="Only keys under this section, e.g. train or model.head."),
    ] = None,
    as_json: JsonOpt = False,
):
    """Every recipe key: its type, default and meaning (for recipe files and --set KEY=VALUE)."""
    from ..core.io import json_text
    from ..core.recipe_keys import recipe_keys
    from ..edge.parity import LIMITS
    from ..train.backbones import BACKBONES
    from .render import keys_table

    found = recipe_keys(prefix or "", LIMITS)
    if not found:
        sections = sorted({k.key.split(".")[0] for k in recipe_keys()})
        raise TkError(f"{prefix}: no recipe key starts with it; sections: {', '.join(sections)}")
    if as_json:
        say(json_text([k.to_json() for k in found]))
        return
    out = common.console if common.console.is_terminal else Console(width=160, highlight=False)
    out.print(keys_table(found))
    if any(k.key == "model.backbone" for k in found):
        say("model.backbone: " + ", ".join(BACKBONES))


@user_errors
def layers(recipe: Annotated[Path, typer.Argument(metavar="RECIPE", help="Recipe YAML.")], sets: SetOpt = None):
    """List the backbone's layer names (for feature_layer and fine_tune.unfreeze_from)."""
    from ..core.recipe import load_recipe
    from ..train.backbones import check_model, layer_names

    model = load_recipe(recipe, sets or ()).model
    check_model(model)  # before TensorFlow loads
    quiet.import_tensorflow_quietly()
    for name in layer_names(model):
        say(name)
