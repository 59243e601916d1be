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
from ..core.formats import EXPORT_FORMATS, QUANTIZATIONS
from ..core.recipe_keys import SCRATCH, with_shortcuts
from .helpfmt import show_metavars_not_types
from .options import PANEL_SHORTCUTS, check_choices, comma_list, shortcut, thread_counts
from .progress import live_console, progress_for

# TensorFlow's C++ logs (cuInit probes, graph attributes) are noise for a CLI user: importing
# toolkit sets TF_CPP_MIN_LOG_LEVEL=3 unless it is set (core/quiet.py); TK_TF_LOGS=1 shows them.


show_metavars_not_types()

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


RunArg = Annotated[
    Optional[str],
    typer.Argument(metavar="[RUN]", help="Run folder, recipe file or run name (default: the latest run)."),
]
RunsDir = Annotated[Path, typer.Option("--runs-dir", metavar="DIR", help="Where run folders live.")]
DEFAULT_RUNS = Path(os.environ.get("TK_RUNS_DIR", "exported"))
DataRoot = Annotated[
    Optional[Path],
    typer.Option(
        "--data-root",
        metavar="DIR",
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


@app.command()
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
    from ..train.backbones import BACKBONES
    from .render import keys_table

    found = recipe_keys(prefix or "")
    if not found:
        sections = sorted({k.key.split(".")[0] for k in recipe_keys()})
        raise TkError(f"{prefix}: no recipe key starts with it; sections: {', '.join(sections)}")
    if as_json:
        say(json_text([k.to_json() for k in found]))
        return
    out = console if console.is_terminal else Console(width=160, highlight=False)
    out.print(keys_table(found))
    if any(k.key == "model.backbone" for k in found):
        say("model.backbone: " + ", ".join(BACKBONES))


@app.command()
@user_errors
def layers(recipe: Annotated[Path, typer.Argument(metavar="RECIPE", help="Recipe YAML.")], sets: SetOpt = None):
    """List the backbone's layer names (for feature_layer and fine_tune.unfreeze_from)."""
    quiet.import_tensorflow_quietly()
    from ..core.recipe import load_recipe
    from ..train.backbones import layer_names

    for name in layer_names(load_recipe(recipe, sets or ()).model):
        say(name)


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
        console.print(part)


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


@app.command()
@user_errors
def predict(
    artifact: Annotated[
        Path,
        typer.Argument(
            metavar="MODEL",
            help="Model file (.tflite, .onnx, .keras or a SavedModel folder) with manifest.json beside it.",
        ),
    ],
    images: Annotated[list[Path], typer.Argument(metavar="IMAGE...", help="Image files or folders of images.")],
    top_k: Annotated[int, typer.Option("--top-k", metavar="K", help="Labels to show per image.")] = 1,
    as_json: JsonOpt = False,
    threads: Annotated[
        Optional[int],
        typer.Option(metavar="N", help="Runtime threads (default: the runtime's own choice, all cores)."),
    ] = None,
):
    """Label images with an exported model; .tflite/.onnx need only the base install (no TensorFlow)."""
    from ..core.io import json_text
    from ..edge.predict import bad_files_line, format_prediction
    from ..edge.predict import predict as run_predict

    echo = None if as_json else (lambda p: say(format_prediction(p)))
    bad: list[tuple[str, str]] = []

    def skipped(file: str, why: str) -> None:  # reported as met, on stderr; the rest go on
        bad.append((file, why))
        if len(bad) > 1:  # the first one is named in the closing error line
            err_console.print(f"skipped: {file}: {why}", style="yellow", markup=False, soft_wrap=True)

    results = run_predict(artifact, images, k=top_k, threads=threads, on_prediction=echo, on_bad=skipped)
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
            "--format",
            metavar="FORMAT[,FORMAT...]",
            help=f"{', '.join(EXPORT_FORMATS)} or all (default: the recipe's export.formats).",
        ),
    ] = None,
    quantize: Annotated[
        Optional[list[str]],
        typer.Option(
            "--quantize",
            metavar="QUANT[,QUANT...]",
            help=f"{', '.join(QUANTIZATIONS)} (TFLite; ONNX: none, int8) or all (default: export.quantize).",
        ),
    ] = None,
    opset: Annotated[
        Optional[int], typer.Option("--opset", metavar="N", help="ONNX opset (default: export.onnx_opset).")
    ] = None,
    runs_dir: RunsDir = DEFAULT_RUNS,
    data_root: DataRoot = None,
    int8_fallback: Annotated[
        Optional[bool],
        typer.Option(
            "--int8-fallback/--no-int8-fallback",
            help="TFLite int8 that fails the int8 gate keeps its most sensitive layers in float "
            "(default: export.int8_fallback.enabled).",
        ),
    ] = None,
    as_json: JsonOpt = False,
):
    """Export a trained run to SavedModel, TFLite (float32/float16/dynamic/int8) and ONNX (float32/int8)."""
    formats = check_choices("--format", comma_list(formats), EXPORT_FORMATS)  # before the run is looked up
    quantize = check_choices("--quantize", comma_list(quantize), QUANTIZATIONS)
    from ..core.recipe import ONNX_OPSETS

    if opset is not None and not ONNX_OPSETS[0] <= opset <= ONNX_OPSETS[1]:
        raise TkError(f"--opset: must be between {ONNX_OPSETS[0]} and {ONNX_OPSETS[1]} (got {opset})")
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
        typer.Option(
            "--artifact",
            metavar="FILE[,FILE...]",
            help="Only these artifact files, e.g. model_int8.tflite (default: every exported artifact).",
        ),
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
        report = verify_run(run_dir, comma_list(artifacts), check=False, ctx=ctx)
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
        typer.Argument(
            metavar="[TARGET]...",
            help="Run folders, recipes, run names or artifact files (default: the latest run).",
        ),
    ] = None,
    threads: Annotated[
        Optional[list[str]],
        typer.Option(metavar="N[,N...]", help="Thread counts (default: the recipe's bench.threads, else 1,2)."),
    ] = None,
    runs: Annotated[
        Optional[int],
        typer.Option(
            metavar="N",
            help="Timed batch-1 predictions per artifact and thread count (default: the recipe's bench.runs, "
            "else adaptive: until the p50 is known to 2%, 20..300 runs).",
        ),
    ] = None,
    warmup: Annotated[
        Optional[int],
        typer.Option(metavar="N", help="Untimed predictions before timing (default: the recipe's bench.warmup)."),
    ] = None,
    batch: Annotated[
        Optional[int],
        typer.Option(metavar="N", help="Batch size for the throughput figure (default: the recipe's bench.batch)."),
    ] = None,
    formats: Annotated[
        Optional[list[str]],
        typer.Option(
            "--format",
            metavar="FORMAT[,FORMAT...]",
            help="Only these formats, or all (default: the device formats, .tflite and .onnx; all adds "
            "model.keras and saved_model).",
        ),
    ] = None,
    max_latency_ms: Annotated[
        Optional[float], typer.Option("--max-latency-ms", metavar="MS", help="Ship limit: batch-1 p50 latency.")
    ] = None,
    min_accuracy: Annotated[
        Optional[float], typer.Option("--min-accuracy", metavar="FRACTION", help="Ship limit: test accuracy (0..1).")
    ] = None,
    as_json: JsonOpt = False,
    runs_dir: RunsDir = DEFAULT_RUNS,
    data_root: DataRoot = None,
):
    """Size, cold start, peak memory, latency p50/p90/p99, throughput and accuracy per artifact.

    --json prints bench.json's content (one object per run) instead of the table.
    """
    from ..core.formats import FORMATS
    from ..core.io import json_text
    from ..edge.bench import bench_targets, machine_label
    from .render import rows_table, ship_line

    chosen = check_choices("--format", comma_list(formats), FORMATS)
    given = {
        "threads": thread_counts(threads),
        "runs": runs,
        "warmup": warmup,
        "batch": batch,
        "formats": tuple(chosen) if chosen else None,
    }
    with context(as_json, data_root) as ctx:
        result = bench_targets(targets or [], runs_dir, given, max_latency_ms, min_accuracy, ctx)
        from ..train.tracking import log_bench  # no Keras: the device install benches too

        for run_dir, report in zip(result["runs"], result["reports"], strict=True):
            log_bench(run_dir, report, ctx)
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
    run: RunArg = None,
    directory: Annotated[
        Optional[Path],
        typer.Argument(
            metavar="[DIR]",
            help="Folder to write the device bundle to, new or empty (default: <runs-dir>/<run name>-device).",
        ),
    ] = None,
    formats: Annotated[
        Optional[list[str]],
        typer.Option(
            "--format",
            metavar="FORMAT[,FORMAT...]",
            help="Only artifacts of these formats (tflite, onnx; default: every .tflite and .onnx).",
        ),
    ] = None,
    artifacts: Annotated[
        Optional[list[str]],
        typer.Option("--artifact", metavar="FILE[,FILE...]", help="Only these artifact files, e.g. model_int8.tflite."),
    ] = None,
    samples: Annotated[
        int, typer.Option("--samples", metavar="N", help="Test images to include, stratified by class (0: none).")
    ] = 200,
    force: Annotated[bool, typer.Option("--force", help="Replace DIR if it holds an earlier bundle.")] = False,
    runs_dir: RunsDir = DEFAULT_RUNS,
    data_root: DataRoot = None,
    as_json: JsonOpt = False,
):
    """Write the folder a device gets: artifacts, manifest, labels.txt and a labelled test sample.

    With no arguments: the latest run, into <runs-dir>/<its name>-device.
    """
    from ..core.io import json_text
    from ..core.runs import resolve_run
    from ..edge.pack import check_formats, pack

    formats = comma_list(formats)
    check_formats(formats)  # before the run is looked up
    with context(as_json, data_root) as ctx:
        run_dir = resolve_run(run, runs_dir, ctx)
        directory = directory if directory is not None else Path(runs_dir) / f"{Path(run_dir).resolve().name}-device"
        out = pack(run_dir, directory, formats, comma_list(artifacts), samples, force, ctx)
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


@app.command()
@user_errors
def report(
    run: RunArg = None,
    merge: Annotated[
        Optional[list[Path]],
        typer.Option("--merge", metavar="BENCH_JSON", help="bench.json from another machine; repeatable."),
    ] = None,
    runs_dir: RunsDir = DEFAULT_RUNS,
):
    """Write REPORT.md in the run folder: curves, test metrics, parity, bench tables, latency plot."""
    from ..report.report import report_for

    with context() as ctx:
        report_for(run, runs_dir, merge or [], ctx)
