"""`tk explain maps|filters|gradcam`: what a trained run's model looks at, as PNGs in RUN/explain/."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..core import quiet
from .common import DEFAULT_RUNS, RunArg, RunsDir, context, user_errors
from .options import comma_list

# Three probes with options of their own (an image, a layer, a class, a step count): subcommands,
# as `tk data` has, so each takes only what it uses and --count means one thing per command.
explain_app = typer.Typer(
    no_args_is_help=True,
    help="Feature maps, activation maximization and Grad-CAM of a trained run, as PNGs in RUN/explain/.",
)
ImageOpt = Annotated[Path, typer.Option("--image", metavar="IMAGE", help="The image to explain.")]


@explain_app.command("maps")
@user_errors
def explain_maps(
    run: RunArg = None,
    image: ImageOpt = ...,
    layers: Annotated[
        Optional[list[str]],
        typer.Option(
            "--layers",
            metavar="LAYER[,LAYER...]",
            help="Backbone layers (default: the backbone's usual conv layers).",
        ),
    ] = None,
    count: Annotated[int, typer.Option("--count", metavar="N", help="Channels shown per layer.")] = 16,
    runs_dir: RunsDir = DEFAULT_RUNS,
):
    """What the backbone's layers see in one image: a grid of each layer's first channels."""
    quiet.import_tensorflow_quietly()
    from ..core.runs import resolve_run
    from ..explain.feature_maps import explain_feature_maps

    names = comma_list(layers)
    with context() as ctx:
        explain_feature_maps(resolve_run(run, runs_dir, ctx), image, names, count, ctx)


@explain_app.command("filters")
@user_errors
def explain_filters(
    run: RunArg = None,
    layer: Annotated[
        Optional[str],
        typer.Option(
            "--layer",
            metavar="LAYER",
            help="Backbone, head or predictions layer (default: the deepest usual conv layer).",
        ),
    ] = None,
    count: Annotated[int, typer.Option("--count", metavar="N", help="Filters (or units, or classes) to show.")] = 8,
    steps: Annotated[int, typer.Option("--steps", metavar="N", help="Gradient-ascent steps.")] = 160,
    runs_dir: RunsDir = DEFAULT_RUNS,
):
    """Activation maximization: the input pattern each of a layer's filters responds to most."""
    quiet.import_tensorflow_quietly()
    from ..core.runs import resolve_run
    from ..explain.maximize import AscentSettings
    from ..explain.maximize import explain_filters as run_filters

    with context() as ctx:
        run_filters(resolve_run(run, runs_dir, ctx), layer, count, AscentSettings(steps=steps), ctx)


@explain_app.command("gradcam")
@user_errors
def explain_gradcam(
    run: RunArg = None,
    image: Annotated[
        Path,
        typer.Option("--image", metavar="IMAGE|DIR", help="An image, or a folder of images (a contact sheet too)."),
    ] = ...,
    layer: Annotated[
        Optional[str],
        typer.Option(
            "--layer", metavar="LAYER", help="Convolutional layer to take the heat from (default: the deepest)."
        ),
    ] = None,
    class_name: Annotated[
        Optional[str],
        typer.Option("--class", metavar="CLASS", help="Explain this class instead of the predicted one."),
    ] = None,
    count: Annotated[
        int, typer.Option("--count", metavar="N", help="Images of a folder to explain, in name order.")
    ] = 64,
    runs_dir: RunsDir = DEFAULT_RUNS,
):
    """Grad-CAM: where in the image the evidence for a class is, as a heat overlay."""
    quiet.import_tensorflow_quietly()
    from ..core.runs import resolve_run
    from ..explain.gradcam import explain_gradcam as run_gradcam

    with context() as ctx:
        run_gradcam(resolve_run(run, runs_dir, ctx), image, class_name, layer, limit=count, ctx=ctx)
