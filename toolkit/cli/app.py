"""The `tk` command: parse, call one domain function, render what it returns (render.py).

A TkError (something the user can fix) becomes one red line and exit code 1; anything else is a
bug and keeps its traceback. Heavy imports happen inside the commands so `tk --help` and the
device path (predict/bench on .tflite/.onnx) stay fast and free of TensorFlow.
"""

from __future__ import annotations

import contextlib
import functools
import os
from pathlib import Path
from typing import Annotated, Iterator, Optional

import typer
from rich.console import Console

from ..core import quiet
from ..core.context import Context, silent
from ..core.errors import TkError, fault_line
from .progress import live_console, progress_for

# TensorFlow's C++ logs (cuInit probes, graph attributes) are noise for a CLI user: importing
# toolkit sets TF_CPP_MIN_LOG_LEVEL=3 unless it is set (core/quiet.py); TK_TF_LOGS=1 shows them.


def _flags_without_type() -> None:
    """Typer 0.29's rich help shows every on/off flag (--json, --help too) as taking a `<bool>`;
    a flag takes no value, so show none (plain click help already leaves it out)."""
    option = getattr(getattr(typer, "core", None), "TyperOption", None)
    shown = getattr(option, "display_type_rich", None)
    if shown is None or getattr(shown, "_tk_flag_fix", False):
        return

    def display_type_rich(self, ctx):
        return None if getattr(self, "is_flag", False) else shown(self, ctx)

    display_type_rich._tk_flag_fix = True
    option.display_type_rich = display_type_rich


_flags_without_type()

EXIT_CODES = (
    "Exit codes: 0 ok; 1 a failed check (verify parity, export, ship limits) or a mistake tk "
    "explains in one red line (bad recipe, missing file, bad option value); 2 the command line "
    "itself could not be parsed (unknown option, missing argument, wrong type)."
)

app = typer.Typer(
    add_completion=True,
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
    help="tk: transfer-learn an image classifier, export it for the edge, verify and benchmark it.",
    epilog=EXIT_CODES,
)
data_app = typer.Typer(no_args_is_help=True, help="Make, inspect and fetch datasets.")
app.add_typer(data_app, name="data")

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)


def say(message: str) -> None:
    # While progress bars are live on stderr, print through their console: rich keeps the line
    # above the bars (both streams are the same terminal then, or there would be no bars).
    (live_console() or console).print(message, markup=False, soft_wrap=True)


@contextlib.contextmanager
def context(as_json: bool = False, data_root: Optional[Path] = None) -> Iterator[Context]:
    """The domain's Context for one command: lines through `say` (none under --json, where stdout
    holds the JSON document only), progress bars on stderr when it is a terminal, --data-root."""
    with progress_for(console, err_console, as_json) as bars:
        yield Context(say=silent if as_json else say, progress=bars, data_root=data_root)


def _version(value: bool) -> None:
    if value:
        from importlib.metadata import PackageNotFoundError, version

        try:
            shown = version("tk-edge")
        except PackageNotFoundError:  # run from a source tree without `pip install -e .`
            from .. import __version__ as shown
        typer.echo(f"tk {shown}")
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print tk's version and exit.")
    ] = None,
):
    """tk: transfer-learn an image classifier, export it for the edge, verify and benchmark it."""


def user_errors(fn):
    """Turn TkError into one line on stderr and exit 1."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except TkError as exc:
            err_console.print(f"error: {exc}", style="red", markup=False, soft_wrap=True)
            raise typer.Exit(1) from None
        except OSError as exc:  # only disk full / read-only / permission: anything else is a bug
            line = fault_line(exc)
            if line is None:
                raise
            err_console.print(f"error: {line}", style="red", markup=False, soft_wrap=True)
            raise typer.Exit(1) from None

    return wrapper


RunArg = Annotated[Optional[str], typer.Argument(help="Run folder, recipe file or run name (default: the latest run).")]
RunsDir = Annotated[Path, typer.Option("--runs-dir", help="Where run folders live.")]
DEFAULT_RUNS = Path(os.environ.get("TK_RUNS_DIR", "exported"))
DataRoot = Annotated[
    Optional[Path],
    typer.Option(
        "--data-root",
        help="The dataset folder on this machine, if it moved since training (default: the root split.json records).",
    ),
]
# One --json for every command: strict JSON on stdout and nothing else; the exit code is what it
# would be without it (a failed check still exits 1, after printing the JSON that says why).
JsonOpt = Annotated[
    bool, typer.Option("--json", help="Print the result as JSON and nothing else on stdout; exit codes unchanged.")
]
SetOpt = Annotated[
    Optional[list[str]],
    typer.Option(
        "--set",
        metavar="KEY=VALUE",
        help="Override a recipe value, e.g. --set train.epochs=3 (dotted key, YAML value); repeatable.",
    ),
]


@app.command()
@user_errors
def train(
    recipe: Annotated[
        Path,
        typer.Argument(
            help="Recipe YAML (e.g. recipes/quickstart.yaml), or a folder of class "
            "folders: trained with a default recipe written to recipes/<folder>.yaml (./<folder>.yaml if there is no recipes/ here)."
        ),
    ],
    resume: Annotated[bool, typer.Option("--resume", help="Continue an interrupted run.")] = False,
    strict: Annotated[
        Optional[bool], typer.Option("--strict/--skip-bad", help="Fail on bad image files instead of skipping them.")
    ] = None,
    sets: SetOpt = None,
    as_json: JsonOpt = False,
    runs_dir: RunsDir = DEFAULT_RUNS,
):
    """Train the recipe's classifier: feature extraction, then fine-tuning (or from scratch)."""
    from ..core.io import json_text
    from ..core.recipe import load_recipe
    from ..train.backend import select_backend

    if not recipe.exists():
        raise TkError(
            f"{recipe}: no such recipe or folder (pass a recipe YAML, e.g. recipes/quickstart.yaml, "
            "or a folder of class folders)"
        )
    with context(as_json) as ctx:
        if recipe.is_dir():
            from ..data.folder_recipe import write_folder_recipe

            recipe, sets = write_folder_recipe(recipe, sets or [], ctx), None
        loaded = load_recipe(recipe, sets or ())
        if select_backend(loaded) == "tensorflow":  # before keras is first imported: it reads KERAS_BACKEND once
            quiet.import_tensorflow_quietly()
        from ..train.phases import train as run_training

        result = run_training(loaded, runs_dir=runs_dir, resume=resume, strict=strict, ctx=ctx)
    if as_json:
        say(
            json_text(
                {"run": str(result.run_dir), "recipe": str(recipe), "phases": result.phases, "test": result.metrics}
            )
        )


@app.command()
@user_errors
def layers(recipe: Annotated[Path, typer.Argument(help="Recipe YAML.")], sets: SetOpt = None):
    """List the backbone's layer names (for feature_layer and fine_tune.unfreeze_from)."""
    quiet.import_tensorflow_quietly()
    from ..core.recipe import load_recipe
    from ..train.backbones import layer_names

    for name in layer_names(load_recipe(recipe, sets or ()).model):
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
    from ..data.synth import make_synthetic_dataset

    make_synthetic_dataset(directory, classes, per_class, size, seed)
    say(f"wrote {classes} classes x {per_class} images ({size} px) to {directory}")


@data_app.command("inspect")
@user_errors
def data_inspect(
    recipe: Annotated[Path, typer.Argument(help="Recipe YAML whose data section to inspect.")],
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
        console.print(part)


@data_app.command("fetch")
@user_errors
def data_fetch(recipe: Annotated[Path, typer.Argument(help="Recipe YAML with data.source.url.")], sets: SetOpt = None):
    """Download the recipe's dataset, check its sha256, unpack it safely into data.root."""
    from ..core.recipe import load_recipe
    from ..data.fetch import fetch

    with context() as ctx:
        fetch(load_recipe(recipe, sets or ()), ctx)


@app.command()
@user_errors
def predict(
    artifact: Annotated[
        Path,
        typer.Argument(help="Model file (.tflite, .onnx, .keras or a SavedModel folder) with manifest.json beside it."),
    ],
    images: Annotated[list[Path], typer.Argument(help="Image files or folders of images.")],
    top_k: Annotated[int, typer.Option("--top-k", help="Labels to show per image.")] = 1,
    as_json: JsonOpt = False,
    threads: Annotated[
        Optional[str],
        typer.Option(
            help="Runtime threads, as in bench (e.g. 2 or 1,2); predict runs once, "
            "with the first count (default: all cores)."
        ),
    ] = None,
):
    """Label images with an exported model; .tflite/.onnx need only the base install (no TensorFlow)."""
    from ..core.io import json_text
    from ..edge.bench import parse_threads
    from ..edge.predict import bad_files_line, format_prediction
    from ..edge.predict import predict as run_predict

    echo = None if as_json else (lambda p: say(format_prediction(p)))
    bad: list[tuple[str, str]] = []

    def skipped(file: str, why: str) -> None:  # reported as met, on stderr; the rest go on
        bad.append((file, why))
        if len(bad) > 1:  # the first one is named in the closing error line
            err_console.print(f"skipped: {file}: {why}", style="yellow", markup=False, soft_wrap=True)

    counts = parse_threads(threads) if threads is not None else ()
    results = run_predict(
        artifact, images, k=top_k, threads=counts[0] if counts else None, on_prediction=echo, on_bad=skipped
    )
    if as_json:
        say(json_text([p.to_json() for p in results]))
    if bad:  # exit 1: a script must not take a partial answer for a whole one
        raise TkError(bad_files_line(bad, len(results)))


@app.command("export")
@user_errors
def export_cmd(
    run: RunArg = None,
    formats: Annotated[
        Optional[list[str]],
        typer.Option(
            "--format", help="savedmodel, tflite, onnx or all; repeatable (default: the recipe's export.formats)."
        ),
    ] = None,
    quantize: Annotated[
        Optional[list[str]],
        typer.Option(
            "--quantize",
            help="Quantization: none, float16, dynamic, int8 (TFLite and ONNX) or all; repeatable (default: export.quantize).",
        ),
    ] = None,
    opset: Annotated[Optional[int], typer.Option("--opset", help="ONNX opset (default: export.onnx_opset).")] = None,
    runs_dir: RunsDir = DEFAULT_RUNS,
    data_root: DataRoot = None,
    int8_fallback: Annotated[
        Optional[bool],
        typer.Option(
            "--int8-fallback/--no-int8-fallback",
            help="TFLite int8 that fails the int8 gate keeps its most sensitive layers in float (default: export.int8_fallback.enabled).",
        ),
    ] = None,
    as_json: JsonOpt = False,
):
    """Export a trained run to SavedModel, TFLite (float32/float16/dynamic/int8) and ONNX (float32/int8)."""
    quiet.import_tensorflow_quietly()
    from ..core.io import json_text
    from ..core.runs import resolve_run
    from ..export.exporter import export_run

    with context(as_json, data_root) as ctx:
        run_dir = resolve_run(run, runs_dir, ctx)
        entries = export_run(run_dir, formats, quantize, opset=opset, int8_fallback=int8_fallback, ctx=ctx)
    if as_json:
        say(json_text({"run": str(run_dir), "artifacts": entries}))


@app.command()
@user_errors
def verify(
    run: RunArg = None,
    artifacts: Annotated[
        Optional[list[str]],
        typer.Option("--artifact", help="Only this artifact file name; repeatable (default: every exported artifact)."),
    ] = None,
    as_json: JsonOpt = False,
    runs_dir: RunsDir = DEFAULT_RUNS,
    data_root: DataRoot = None,
):
    """Check every exported artifact predicts what the trained Keras model predicts (exit 1 if not).

    --json prints the parity report, also when a check fails (then exit 1).
    """
    from ..core.runs import resolve_run

    quiet.import_tensorflow_quietly()
    from ..core.io import json_text
    from ..export.verify import raise_on_failure, verify_run

    with context(as_json, data_root) as ctx:  # one ✓/✗ line per artifact, with its numbers and failures
        run_dir = resolve_run(run, runs_dir, ctx)
        report = verify_run(run_dir, artifacts, check=False, ctx=ctx)
    if as_json:
        say(json_text(report))
        if not report["passed"]:
            raise typer.Exit(1)  # the JSON says which check failed
    raise_on_failure(run_dir, report, reasons=False)  # the ✗ lines above said why: nothing said twice


@app.command()
@user_errors
def bench(
    targets: Annotated[
        Optional[list[str]],
        typer.Argument(help="Run folders, recipes, run names or artifact files (default: the latest run)."),
    ] = None,
    threads: Annotated[
        Optional[str],
        typer.Option(help="Thread counts, comma-separated (default: the recipe's bench.threads, else 1,2)."),
    ] = None,
    runs: Annotated[
        Optional[int],
        typer.Option(
            help="Timed batch-1 predictions per artifact and thread count (default: the recipe's bench.runs, else 300)."
        ),
    ] = None,
    warmup: Annotated[
        Optional[int], typer.Option(help="Untimed predictions before timing (default: the recipe's bench.warmup).")
    ] = None,
    batch: Annotated[
        Optional[int], typer.Option(help="Batch size for the throughput figure (default: the recipe's bench.batch).")
    ] = None,
    max_latency_ms: Annotated[
        Optional[float], typer.Option("--max-latency-ms", help="Ship limit: batch-1 p50 latency.")
    ] = None,
    min_accuracy: Annotated[
        Optional[float], typer.Option("--min-accuracy", help="Ship limit: test accuracy (0..1).")
    ] = None,
    as_json: JsonOpt = False,
    runs_dir: RunsDir = DEFAULT_RUNS,
    data_root: DataRoot = None,
):
    """Size, cold start, peak memory, latency p50/p90/p99, throughput and accuracy per artifact.

    --json prints bench.json's content (one object per run) instead of the table.
    """
    from ..core.io import json_text
    from ..edge.bench import bench_targets, machine_label, parse_threads
    from .render import rows_table, ship_line

    given = {"threads": parse_threads(threads) if threads else None, "runs": runs, "warmup": warmup, "batch": batch}
    with context(as_json, data_root) as ctx:
        result = bench_targets(targets or [], runs_dir, given, max_latency_ms, min_accuracy, ctx)
    reports = result["reports"]
    if as_json:
        say(json_text(reports if len(reports) > 1 else reports[0]))
        return
    # A pipe gets 120 columns (rich would fold the table to 80); a terminal keeps its width.
    out = console if console.is_terminal else Console(width=120, highlight=False)
    for report in reports:
        several = len({r["machine"] for r in report["rows"]}) > 1
        where = "" if several else f" on {machine_label(report['machine'])}"
        out.print(
            rows_table(report["rows"], title=f"{report['run']}{where}: {report['description']}", machine_column=several)
        )
        for note in report["notes"]:
            say(f"note: {note}")
    if result["ship"] is not None:
        say(ship_line(result["ship"]))


@app.command("pack")
@user_errors
def pack_cmd(
    run: Annotated[str, typer.Argument(help="Run folder, recipe file or run name.")],
    directory: Annotated[Path, typer.Argument(help="Folder to write the device bundle to (new or empty).")],
    formats: Annotated[
        Optional[list[str]],
        typer.Option(
            "--format",
            help="Only artifacts of this format (tflite, onnx); repeatable (default: every .tflite and .onnx).",
        ),
    ] = None,
    artifacts: Annotated[
        Optional[list[str]],
        typer.Option("--artifact", help="Only this artifact file, e.g. model_int8.tflite; repeatable."),
    ] = None,
    samples: Annotated[
        int, typer.Option("--samples", help="Test images to include, stratified by class (0: none).")
    ] = 200,
    force: Annotated[bool, typer.Option("--force", help="Replace DIR if it holds an earlier bundle.")] = False,
    runs_dir: RunsDir = DEFAULT_RUNS,
    data_root: DataRoot = None,
    as_json: JsonOpt = False,
):
    """Write the folder a device gets: artifacts, manifest, labels.txt and a labelled test sample."""
    from ..core.io import json_text
    from ..core.runs import resolve_run
    from ..edge.pack import pack

    with context(as_json, data_root) as ctx:
        out = pack(resolve_run(run, runs_dir, ctx), directory, formats, artifacts, samples, force, ctx)
    if as_json:
        say(json_text(out))
        return
    for note in out["notes"]:
        say(f"note: {note}")
    say(
        f"packed {len(out['artifacts'])} artifact(s), {out['samples']} test images of {out['classes']} classes "
        f"into {out['dir']} ({out['size_bytes'] / 1e6:.1f} MB); on the device: tk bench {out['dir']}"
    )


# Three probes with options of their own (an image, a layer, a class, a step count): subcommands,
# as `tk data` has, so each takes only what it uses and --count means one thing per command.
explain_app = typer.Typer(
    no_args_is_help=True,
    help="Feature maps, activation maximization and Grad-CAM of a trained run, as PNGs in RUN/explain/.",
)
app.add_typer(explain_app, name="explain")
ImageOpt = Annotated[Path, typer.Option("--image", help="The image to explain.")]


@explain_app.command("maps")
@user_errors
def explain_maps(
    run: RunArg = None,
    image: ImageOpt = ...,
    layers: Annotated[
        Optional[str],
        typer.Option("--layers", help="Backbone layers, comma-separated (default: the backbone's usual conv layers)."),
    ] = None,
    count: Annotated[int, typer.Option("--count", help="Channels shown per layer.")] = 16,
    runs_dir: RunsDir = DEFAULT_RUNS,
):
    """What the backbone's layers see in one image: a grid of each layer's first channels."""
    quiet.import_tensorflow_quietly()
    from ..core.runs import resolve_run
    from ..explain.feature_maps import explain_feature_maps

    names = [n.strip() for n in layers.split(",") if n.strip()] if layers else None
    with context() as ctx:
        explain_feature_maps(resolve_run(run, runs_dir, ctx), image, names, count, ctx)


@explain_app.command("filters")
@user_errors
def explain_filters(
    run: RunArg = None,
    layer: Annotated[
        Optional[str],
        typer.Option("--layer", help="Backbone, head or predictions layer (default: the deepest usual conv layer)."),
    ] = None,
    count: Annotated[int, typer.Option("--count", help="Filters (or units, or classes) to show.")] = 8,
    steps: Annotated[int, typer.Option("--steps", help="Gradient-ascent steps.")] = 160,
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
        Path, typer.Option("--image", help="An image, or a folder of images (a contact sheet too).")
    ] = ...,
    layer: Annotated[
        Optional[str], typer.Option("--layer", help="Convolutional layer to take the heat from (default: the deepest).")
    ] = None,
    class_name: Annotated[
        Optional[str], typer.Option("--class", help="Explain this class instead of the predicted one.")
    ] = None,
    count: Annotated[int, typer.Option("--count", help="Images of a folder to explain, in name order.")] = 64,
    runs_dir: RunsDir = DEFAULT_RUNS,
):
    """Grad-CAM: where in the image the evidence for a class is, as a heat overlay."""
    quiet.import_tensorflow_quietly()
    from ..core.runs import resolve_run
    from ..explain.gradcam import explain_gradcam as run_gradcam

    with context() as ctx:
        run_gradcam(resolve_run(run, runs_dir, ctx), image, class_name, layer, limit=count, ctx=ctx)


@app.command()
@user_errors
def report(
    run: RunArg = None,
    merge: Annotated[
        Optional[list[Path]], typer.Option("--merge", help="bench.json from another machine (repeatable).")
    ] = None,
    runs_dir: RunsDir = DEFAULT_RUNS,
):
    """Write REPORT.md in the run folder: curves, test metrics, parity, bench tables, latency plot."""
    from ..report.report import report_for

    with context() as ctx:
        report_for(run, runs_dir, merge or [], ctx)
