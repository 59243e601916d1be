"""`tk data synth|inspect|fetch`: make, inspect and fetch datasets."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from . import common
from .common import JsonOpt, SetOpt, context, say, user_errors

data_app = typer.Typer(no_args_is_help=True, help="Make, inspect and fetch datasets.")


@data_app.command("synth")
@user_errors
def data_synth(
    directory: Annotated[Path, typer.Argument(metavar="DIR", help="Folder to create (one sub-folder per class).")],
    classes: Annotated[int, typer.Option(metavar="N", help="Number of classes (2-8).")] = 3,
    per_class: Annotated[int, typer.Option("--per-class", metavar="N", help="Images per class.")] = 60,
    size: Annotated[int, typer.Option(metavar="PX", help="Image side in pixels.")] = 64,
    seed: Annotated[int, typer.Option(metavar="N", help="Random seed.")] = 0,
):
    """Make a procedural, learnable image dataset (shapes on textures) for offline work."""
    from ..data.synth import make_synthetic_dataset

    make_synthetic_dataset(directory, classes, per_class, size, seed)
    say(f"wrote {classes} classes x {per_class} images ({size} px) to {directory}")


@data_app.command("inspect")
@user_errors
def data_inspect(
    recipe: Annotated[Path, typer.Argument(metavar="RECIPE", help="Recipe YAML whose data section to inspect.")],
    as_json: JsonOpt = False,
    sets: SetOpt = None,
):
    """Counts per class and split, image sizes, bad files and warnings, before training.

    --json prints the same report as JSON.
    """
    from ..core.io import json_text
    from ..core.recipe import load_recipe
    from ..data.survey import survey
    from .render import survey_table

    report = survey(load_recipe(recipe, sets or ()))
    if as_json:
        typer.echo(json_text(report))
        return
    for part in survey_table(report):
        common.console.print(part)


@data_app.command("fetch")
@user_errors
def data_fetch(
    recipe: Annotated[Path, typer.Argument(metavar="RECIPE", help="Recipe YAML with data.source.url.")],
    sets: SetOpt = None,
):
    """Download the recipe's dataset, check its sha256, unpack it safely into data.root."""
    from ..core.recipe import load_recipe
    from ..data.fetch import fetch

    with context() as ctx:
        fetch(load_recipe(recipe, sets or ()), ctx)
