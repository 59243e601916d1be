"""The `tk` command: parse, call one function, print. No logic lives here.

A TkError (something the user can fix) becomes one red line and exit code 1; anything else is a
bug and keeps its traceback. Heavy imports happen inside the commands so `tk --help` and the
device path (predict/bench on .tflite/.onnx) stay fast and free of TensorFlow.
"""

from __future__ import annotations

import functools
import os
from pathlib import Path
from typing import Annotated, Optional

import typer
from rich.console import Console

from .errors import TkError

# TensorFlow's C++ logs (cuInit probes, graph attributes) are noise for a CLI user; set
# TF_CPP_MIN_LOG_LEVEL=0 to see them again.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

app = typer.Typer(add_completion=False, no_args_is_help=True, pretty_exceptions_show_locals=False,
                  help="tk: transfer-learn an image classifier, export it for the edge, verify and benchmark it.")
data_app = typer.Typer(no_args_is_help=True, help="Make, inspect and fetch datasets.")
app.add_typer(data_app, name="data")

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def say(message: str) -> None:
    console.print(message, markup=False, soft_wrap=True)


def user_errors(fn):
    """Turn TkError into one line on stderr and exit 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TkError as exc:
            err_console.print(f"error: {exc}", style="red", markup=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


RunArg = Annotated[Optional[str], typer.Argument(help="Run folder, recipe file or run name (default: the latest run).")]
RunsDir = Annotated[Path, typer.Option("--runs-dir", help="Where run folders live.")]
DEFAULT_RUNS = Path(os.environ.get("TK_RUNS_DIR", "exported"))


@app.command()
@user_errors
def train(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML, e.g. recipes/quickstart.yaml.")],
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run.")] = False,
    strict: Annotated[Optional[bool], typer.Option("--strict/--skip-bad", help="Fail on bad image files instead of skipping them.")] = None,
    runs_dir: RunsDir = DEFAULT_RUNS,
):
    """Train the recipe's classifier: feature extraction, then fine-tuning (or from scratch)."""
    from .recipe import load_recipe
    from .train import train as run_training

    run_training(load_recipe(recipe), runs_dir=runs_dir, resume=resume, strict=strict, say=say)


@app.command()
@user_errors
def layers(recipe: Annotated[Path, typer.Argument(help="Recipe YAML.")]):
    """List the backbone's layer names (for feature_layer and fine_tune.unfreeze_from)."""
    from .backbones import layer_names
    from .recipe import load_recipe

    for name in layer_names(load_recipe(recipe).model):
        say(name)


@data_app.command("synth")
@user_errors
def data_synth(
    directory: Annotated[Path, typer.Argument(help="Folder to create (one sub-folder per class).")],
    classes: Annotated[int, typer.Option(help="Number of classes (2-8).")] = 3,
    per_class: Annotated[int, typer.Option("--per-class", help="Images per class.")] = 60,
    size: Annotated[int, typer.Option(help="Image side in pixels.")] = 64,
    seed: Annotated[int, typer.Option(help="Random seed.")] = 0,
):
    """Make a procedural, learnable image dataset (shapes on textures) for offline work."""
    from .synth import make_synthetic_dataset

    make_synthetic_dataset(directory, classes, per_class, size, seed)
    say(f"wrote {classes} classes x {per_class} images ({size} px) to {directory}")


def main() -> None:  # pragma: no cover - console entry point alias
    app()
