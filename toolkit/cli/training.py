"""`tk train`, `tk keys` and `tk layers`: training a recipe or a folder, and what a recipe can say.

Registered on the `tk` app by app.py (in this order, first in `tk --help`).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from ..core import quiet
from ..core.errors import TkError
from ..core.recipe_keys import SCRATCH, with_shortcuts
from ..train.job import HEARTBEAT_TIMEOUT, JOIN_TIMEOUT
from . import common
from .common import DEFAULT_RUNS, JsonOpt, RunsDir, SetOpt, context, say, user_errors
from .options import PANEL_SHORTCUTS, shortcut

JOB_PANEL = "Multi-process job (JAX backend; see README: Training on several machines)"


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
    processes: Annotated[
        Optional[int],
        typer.Option(
            "--processes",
            metavar="N",
            help="Join a job of N processes (default: KERAS_DISTRIBUTION_NUM_PROCESSES, or the cluster's).",
            rich_help_panel=JOB_PANEL,
        ),
    ] = None,
    process_id: Annotated[
        Optional[int],
        typer.Option(
            "--process-id",
            metavar="I",
            help="This process's id, 0 to N-1; 0 is the coordinator and the only writer "
            "(default: KERAS_DISTRIBUTION_PROCESS_ID, or the cluster's).",
            rich_help_panel=JOB_PANEL,
        ),
    ] = None,
    coordinator: Annotated[
        Optional[str],
        typer.Option(
            "--coordinator",
            metavar="HOST:PORT",
            help="Process 0's address (default: KERAS_DISTRIBUTION_JOB_ADDRESSES, JAX_COORDINATOR_ADDRESS, "
            "or the cluster's).",
            rich_help_panel=JOB_PANEL,
        ),
    ] = None,
    cluster: Annotated[
        bool,
        typer.Option(
            "--cluster",
            help="Join the job the cluster describes (SLURM, Open MPI, Kubernetes, Cloud TPU: "
            "jax.distributed's auto-detection) for whatever the flags above leave out.",
            rich_help_panel=JOB_PANEL,
        ),
    ] = False,
    join_timeout: Annotated[
        int,
        typer.Option(
            "--join-timeout",
            metavar="SECONDS",
            help="Give up (one line, exit 1) when not every process has joined by then.",
            rich_help_panel=JOB_PANEL,
        ),
    ] = JOIN_TIMEOUT,
    heartbeat_timeout: Annotated[
        int,
        typer.Option(
            "--heartbeat-timeout",
            metavar="SECONDS",
            help="A process silent this long is dead: the others stop (one line each).",
            rich_help_panel=JOB_PANEL,
        ),
    ] = HEARTBEAT_TIMEOUT,
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
    from ..train.job import job_spec
    from .supervise import child_spec

    job = child_spec() or job_spec(processes, process_id, coordinator, cluster, join_timeout, heartbeat_timeout)
    if job is not None and child_spec() is None:  # this process supervises the job's training process
        argv = ["train", str(recipe), "--runs-dir", str(runs_dir)] + (["--resume"] if resume else [])
        argv += [] if strict is None else ["--strict" if strict else "--skip-bad"]
        argv += [arg for item in overrides for arg in ("--set", item)] + (["--json"] if as_json else [])
        raise typer.Exit(_supervise(recipe, overrides, job, argv))
    with context(as_json) as ctx:
        result, recipe_path = train_from_path(recipe, overrides, runs_dir, resume, strict, ctx, job)
    if as_json:
        say(
            json_text(
                {
                    "run": str(result.run_dir),
                    "recipe": str(recipe_path),
                    "phases": result.phases,
                    **({"test": result.metrics} if result.metrics else {}),
                    **({"job": result.job} if result.job else {}),
                }
            )
        )
    else:
        say(f"next: tk export {result.run_dir} && tk verify {result.run_dir} (then tk bench, tk pack)")


def _supervise(recipe: Path, sets: Optional[list[str]], job, argv: list[str]) -> int:
    """Checks that need no JAX (recipe, backend, coordinator address), then the training as a child."""
    from ..core.recipe import load_recipe
    from ..train.job import check_backend, check_coordinator
    from .supervise import run_child

    if recipe.is_dir():
        raise TkError(
            f"{recipe}: a job trains from a recipe file, the same on every process; run tk train {recipe} "
            "once without job flags to write one (it stops after training), or write it yourself"
        )
    loaded = load_recipe(recipe, sets or ())
    check_backend(os.environ.get("KERAS_BACKEND") or loaded.train.backend)
    if job.coordinator is not None:
        check_coordinator(job.coordinator, job.process_id)
    return run_child(argv, job)


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
