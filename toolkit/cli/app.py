"""The `tk` command: parse, call one domain function, render what it returns (render.py).

A TkError (something the user can fix) becomes one red line and exit code 1; anything else is a
bug and keeps its traceback. Heavy imports happen inside the commands so `tk --help` and the
device path (predict/bench on the device formats) stay fast and free of TensorFlow. Help texts
that name formats are generated from core/formats.FORMATS, so a new row shows up in them.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Optional

import typer

from ..core import quiet
from ..core.errors import TkError
from ..core.formats import (
    BARE_FORMATS,
    DEFAULT_FORMATS,
    DEVICE_FORMATS,
    EXPORT_FORMATS,
    FORMATS,
    QUANT_LABEL,
    QUANTIZATIONS,
    suffixes,
)
from . import common, device
from .argtable import Table
from .common import DEFAULT_RUNS, DataRoot, JsonOpt, RunArg, RunsDir, SetOpt, context, say, user_errors
from .data import data_app
from .device import BENCH, PREDICT, VERIFY
from .explain import explain_app
from .lines import version_line
from .options import check_choices, comma_list
from .training import keys, layers, train

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
app.add_typer(data_app, name="data")
app.add_typer(explain_app, name="explain")


def _version(value: bool) -> None:
    if value:  # the console script answers a lone --version itself (cli/launch.py), the same line
        typer.echo(version_line())
        raise typer.Exit()


@app.callback()
def main(
    version: Annotated[
        Optional[bool], typer.Option("--version", callback=_version, is_eager=True, help="Print tk's version and exit.")
    ] = None,
):
    """tk: transfer-learn an image classifier, export it for the edge, verify and benchmark it."""


# tk train, tk keys, tk layers (cli/training.py): first in the help, as the job starts there.
app.command()(train)
app.command()(keys)
app.command()(layers)


def _option(table: Table, dest: str):
    """The typer.Option of a device command's option: flag, metavar and help from its table."""
    option = table[dest]
    return typer.Option(option.flag, metavar=option.metavar, help=option.help)


MODEL_FILES = ", ".join(
    [suffixes(list(FORMATS), ", ")] + [f"a {n} folder" for n, f in FORMATS.items() if f.folder_marker]
)


@app.command(
    help=f"Label images with an exported model; {suffixes(DEVICE_FORMATS)} need only the base install (no TensorFlow)."
)
@user_errors
def predict(
    artifact: Annotated[
        Path,
        typer.Argument(
            metavar="MODEL",
            help=f"Model file ({MODEL_FILES}) with manifest.json beside it; a {suffixes(BARE_FORMATS)} without one "
            "uses the labels and preprocessing it carries.",
        ),
    ],
    images: Annotated[list[Path], typer.Argument(metavar="IMAGE...", help="Image files or folders of images.")],
    # Flags, metavars, helps and defaults from device.py's table, which the console script's fast
    # path parses too (tests/cli/test_launch.py checks that the two agree).
    top_k: Annotated[int, _option(PREDICT, "top_k")] = PREDICT["top_k"].default,
    as_json: JsonOpt = False,
    threads: Annotated[Optional[int], _option(PREDICT, "threads")] = None,
):
    def tell(line: str) -> None:  # on stderr: stdout holds the predictions (or the JSON) only
        common.err_console.print(line, style="yellow", markup=False, soft_wrap=True)

    device.predict(artifact, images, top_k=top_k, as_json=as_json, threads=threads, say=say, tell=tell)


@app.command(
    "export",
    help="Export a trained run to "
    + ", ".join(
        f"{n} ({'/'.join(QUANT_LABEL[q] for q in FORMATS[n].quantizations)}"
        f"{'' if FORMATS[n].default else ', when named'})"
        for n in EXPORT_FORMATS
    )
    + ".",
)
@user_errors
def export_cmd(
    run: RunArg = None,
    formats: Annotated[
        Optional[list[str]],
        typer.Option(
            "--format",
            metavar="FORMAT[,FORMAT...]",
            help=f"{', '.join(EXPORT_FORMATS)} or all (= {', '.join(DEFAULT_FORMATS)}) "
            "(default: the recipe's export.formats).",
        ),
    ] = None,
    quantize: Annotated[
        Optional[list[str]],
        typer.Option(
            "--quantize",
            metavar="QUANT[,QUANT...]",
            help=f"Quantization: {', '.join(QUANTIZATIONS)} or all (default: export.quantize). "
            + "; ".join(f"{n} takes {', '.join(FORMATS[n].quantizations)}" for n in EXPORT_FORMATS)
            + ".",
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
    run: Annotated[
        Optional[str],
        typer.Argument(
            metavar="[RUN|BUNDLE]",
            help="Run folder, recipe file or run name (default: the latest run); or a tk pack bundle: "
            "its check set runs here, with this machine's runtime (no TensorFlow needed).",
        ),
    ] = None,
    artifacts: Annotated[Optional[list[str]], _option(VERIFY, "artifacts")] = None,
    as_json: JsonOpt = False,
    runs_dir: RunsDir = DEFAULT_RUNS,
    data_root: DataRoot = None,
    web: Annotated[bool, _option(VERIFY, "web")] = False,
):
    """Check every exported artifact predicts what the trained Keras model predicts (exit 1 if not).

    --json prints the parity report, also when a check fails (then exit 1). On a bundle (tk pack's
    folder) it runs the bundle's check set here, on the base install, and records device_parity.json.
    """
    artifacts = comma_list(artifacts)
    if web:
        return _verify_web(run, artifacts, as_json)

    from ..core.io import json_text
    from ..core.runs import is_bundle, resolve_run

    with context(as_json, data_root) as ctx:  # one ✓/✗ line per artifact, with its numbers and failures
        run_dir = resolve_run(run, runs_dir, ctx)
        if is_bundle(run_dir):  # the device path: base install, no TensorFlow imported
            return device.verify_bundle(run_dir, artifacts, as_json, data_root, ctx, say)
        quiet.import_tensorflow_quietly()
        from ..export.verify import raise_on_failure, verify_run

        report = verify_run(run_dir, artifacts, check=False, ctx=ctx)
    if as_json:
        say(json_text(report))
        if not report["passed"]:
            raise typer.Exit(1)  # the JSON says which check failed
    raise_on_failure(run_dir, report, reasons=False)  # the ✗ lines above said why: nothing said twice


def _verify_web(bundle: Optional[str], artifacts: Optional[list[str]], as_json: bool) -> None:
    from ..core.errors import ParityError
    from ..core.io import json_text
    from ..web.verify import verify_web

    if not bundle:
        raise TkError("tk verify --web: name the bundle folder (tk verify BUNDLE --web)")
    with context(as_json) as ctx:
        report = verify_web(Path(bundle), artifacts, ctx)
    if as_json:
        say(json_text(report))
    failed = [f for f, r in report["artifacts"].items() if not r["passed"]]
    if failed:
        if as_json:
            raise typer.Exit(1)
        raise ParityError(
            f"{len(failed)} of {len(report['artifacts'])} models fail in {report['runtime']}: {', '.join(failed)}; "
            f"details in {report['file']}"
        )
    if not as_json:
        say(f"all {len(report['artifacts'])} models match the reference in {report['runtime']}; wrote {report['file']}")


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
    threads: Annotated[Optional[list[str]], _option(BENCH, "threads")] = None,
    runs: Annotated[Optional[int], _option(BENCH, "runs")] = None,
    warmup: Annotated[Optional[int], _option(BENCH, "warmup")] = None,
    batch: Annotated[Optional[int], _option(BENCH, "batch")] = None,
    formats: Annotated[Optional[list[str]], _option(BENCH, "formats")] = None,
    max_latency_ms: Annotated[Optional[float], _option(BENCH, "max_latency_ms")] = None,
    min_accuracy: Annotated[Optional[float], _option(BENCH, "min_accuracy")] = None,
    as_json: JsonOpt = False,
    runs_dir: RunsDir = DEFAULT_RUNS,
    data_root: DataRoot = None,
    web: Annotated[bool, _option(BENCH, "web")] = False,
):
    """Size, cold start, peak memory, latency p50/p90/p99, throughput and accuracy per artifact.

    --json prints bench.json's content (one object per run) instead of the table.
    """
    device.bench(
        targets,
        threads,
        runs,
        warmup,
        batch,
        formats,
        max_latency_ms,
        min_accuracy,
        as_json,
        runs_dir,
        data_root,
        web,
        say,
    )


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
            help=f"Only artifacts of these formats ({', '.join(DEVICE_FORMATS)}; "
            f"default: every {suffixes(DEVICE_FORMATS, ' and ')} file).",
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
    allow_unverified: Annotated[
        bool,
        typer.Option(
            "--allow-unverified",
            help="Also pack artifacts that did not pass tk verify on these bytes (recorded as verified: false).",
        ),
    ] = False,
    runs_dir: RunsDir = DEFAULT_RUNS,
    data_root: DataRoot = None,
    as_json: JsonOpt = False,
    web: Annotated[
        bool,
        typer.Option(
            "--web",
            help="Also a static web page: index.html, tk.js, a batch-1 .tflite for LiteRT.js and the browser "
            "runtimes (npm ci of tk's lockfile, cached), served as is by any static host.",
        ),
    ] = False,
    cdn: Annotated[
        bool,
        typer.Option("--cdn", help="With --web: load the runtimes from pinned CDN URLs with integrity hashes."),
    ] = False,
):
    """Write the folder a device gets: artifacts, manifest, labels.txt and a labelled test sample.

    With no arguments: the latest run, into <runs-dir>/<its name>-device.
    """
    from ..core.io import format_size, json_text
    from ..core.runs import resolve_run
    from ..edge.pack import check_formats, pack

    if cdn and not web:
        raise TkError("--cdn: only with --web (it says where the web page loads its runtimes from)")
    formats, artifacts = comma_list(formats), comma_list(artifacts)
    check_formats(formats)  # before the run is looked up
    with context(as_json, data_root) as ctx:
        run_dir = resolve_run(run, runs_dir, ctx)
        directory = directory if directory is not None else Path(runs_dir) / f"{Path(run_dir).resolve().name}-device"
        if web:
            from ..web.pack import pack_web

            out = pack_web(run_dir, directory, formats, artifacts, samples, force, cdn, ctx, allow_unverified)
        else:
            out = pack(run_dir, directory, formats, artifacts, samples, force, ctx, allow_unverified=allow_unverified)
    if as_json:
        say(json_text(out))
        return
    for note in out["notes"]:
        say(f"note: {note}")
    say(
        f"packed {len(out['artifacts'])} artifact(s), {out['samples']} test images of {out['classes']} classes "
        f"and a check set of {out['checkset']} into {out['dir']} ({format_size(out['size_bytes'])}); on the "
        f"device: tk verify {out['dir']} && tk bench {out['dir']}"
    )
    if web:
        say(f"web page: {len(out['web']['models'])} model(s); check it with tk verify {out['dir']} --web")


@app.command("import")
@user_errors
def import_cmd(
    model: Annotated[
        Path,
        typer.Argument(metavar="MODEL", help="The classifier: a Keras 3 .keras, a legacy .h5 or a SavedModel folder."),
    ],
    data: Annotated[
        Path,
        typer.Option(
            "--data",
            metavar="DIR",
            help="Class folders of images (or train/validation/test of them; one folder is split by fractions). "
            "With --labels: test images, in folders named by the labels.",
        ),
    ],
    input_range: Annotated[
        str,
        typer.Option(
            "--input-range",
            metavar="RANGE",
            help="The pixels the model was trained on: 0..255, 0..1, -1..1, caffe (BGR minus ImageNet means) "
            "or torch (ImageNet mean/std). Never guessed.",
        ),
    ],
    labels: Annotated[
        Optional[Path],
        typer.Option(
            "--labels",
            metavar="FILE",
            help="Class names, one a line, in the model's output order (default: sorted folder names).",
        ),
    ] = None,
    name: Annotated[
        Optional[str], typer.Option("--name", metavar="NAME", help="Run name (default: the model file's name).")
    ] = None,
    image_size: Annotated[
        Optional[str],
        typer.Option("--image-size", metavar="HxW", help="Input size, for a model that takes any size (e.g. 224x224)."),
    ] = None,
    sets: SetOpt = None,
    as_json: JsonOpt = False,
    runs_dir: RunsDir = DEFAULT_RUNS,
):
    """Make a run of a classifier trained elsewhere (export, verify, bench, report, pack, explain work on it)."""
    quiet.import_tensorflow_quietly()
    from ..core.io import json_text
    from ..export.importer import import_model, parse_size
    from .render import import_lines

    with context(as_json) as ctx:
        result = import_model(model, data, input_range, labels, name, parse_size(image_size), runs_dir, sets or (), ctx)
    if as_json:
        say(json_text(result.to_json()))
        return
    for line in import_lines(result):
        say(line)


@app.command()
@user_errors
def report(
    run: RunArg = None,
    merge: Annotated[
        Optional[list[Path]],
        typer.Option("--merge", metavar="BENCH_JSON", help="bench.json from another machine; repeatable."),
    ] = None,
    mix_models: Annotated[
        bool,
        typer.Option(
            "--mix-models",
            help="Put merged bench rows of another model (another reference sha256) in the same table.",
        ),
    ] = False,
    runs_dir: RunsDir = DEFAULT_RUNS,
):
    """Write REPORT.md in the run folder: the gate's verdict, curves, test metrics, parity, bench, latency plot."""
    from ..report.report import report_for

    with context() as ctx:
        report_for(run, runs_dir, merge or [], ctx, mix_models=mix_models)
