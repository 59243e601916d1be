"""The device commands once, for their two front ends: `tk predict`, `tk verify BUNDLE` and
`tk bench`, as the Typer commands in app.py call them (help, usage errors, the tests' CliRunner)
and as the console script's fast path does (cli/launch.py), without Typer, click or pydantic.

Each command's options are a table (argtable.py) that app.py's signatures read; each body prints
through `say` (stdout) and `tell` (stderr), given by the front end: rich's consoles under Typer,
plain lines (lines.py) on the fast path. rich is imported for bench's table only, and for progress
bars when a person watches a terminal (device_context).
"""

from __future__ import annotations

import contextlib
import sys
from pathlib import Path
from typing import Any, Callable, Iterator, Optional

from ..core.context import Context, silent
from ..core.errors import TkError
from ..core.formats import DEVICE_FORMATS, FORMATS, suffixes
from ..core.progress import NO_PROGRESS
from .argtable import (
    DATA_ROOT,
    JSON,
    RUNS_DIR,
    Arguments,
    Option,
    Table,
    check_choices,
    comma_list,
    list_option,
    thread_counts,
    web_option,
)

Line = Callable[[str], None]

PREDICT = Table(
    Arguments(
        first="artifact", first_required=True, first_kind="path", rest="images", rest_required=True, rest_kind="path"
    ),
    (
        Option("--top-k", "top_k", "Labels to show per image.", metavar="K", default=1),
        JSON,
        Option("--threads", "threads", "Runtime threads (default: the runtime's own choice, all cores).", metavar="N"),
    ),
)
VERIFY = Table(
    Arguments(first="run"),
    (
        list_option(
            "--artifact",
            "artifacts",
            "Only these artifact files, e.g. model_int8.tflite (default: every exported artifact).",
            metavar="FILE[,FILE...]",
        ),
        JSON,
        RUNS_DIR,
        DATA_ROOT,
        web_option(
            "RUN is a tk pack --web bundle: run its models in headless Chromium over its check set "
            "(recorded as target 'browser' in device_parity.json).",
        ),
    ),
)
BENCH = Table(
    Arguments(rest="targets"),
    (
        list_option(
            "--threads",
            "threads",
            "Thread counts (default: the recipe's bench.threads, else 1,2).",
            metavar="N[,N...]",
        ),
        Option(
            "--runs",
            "runs",
            "Timed batch-1 predictions per artifact and thread count (default: the recipe's bench.runs, "
            "else adaptive: until the p50 is known to 2%, 20..300 runs).",
            metavar="N",
        ),
        Option(
            "--warmup", "warmup", "Untimed predictions before timing (default: the recipe's bench.warmup).", metavar="N"
        ),
        Option(
            "--batch", "batch", "Batch size for the throughput figure (default: the recipe's bench.batch).", metavar="N"
        ),
        list_option(
            "--format",
            "formats",
            f"Only these formats, or all (default: the device formats, {suffixes(DEVICE_FORMATS)}; all adds "
            "model.keras and saved_model).",
            metavar="FORMAT[,FORMAT...]",
        ),
        Option("--max-latency-ms", "max_latency_ms", "Ship limit: batch-1 p50 latency.", metavar="MS", kind="float"),
        Option("--min-accuracy", "min_accuracy", "Ship limit: test accuracy (0..1).", metavar="FRACTION", kind="float"),
        JSON,
        RUNS_DIR,
        DATA_ROOT,
        web_option(
            "TARGET is a tk pack --web bundle: latency of its models in headless Chromium, native "
            "latency interleaved, and their ratio (adaptive runs unless --runs).",
        ),
    ),
)


@contextlib.contextmanager
def device_context(as_json: bool, data_root: Optional[Path], say: Line) -> Iterator[Context]:
    """The domain's Context: lines through `say` (none under --json); progress bars only when both
    streams are a terminal, and then through common.context, whose rich bars keep lines above them."""
    common = sys.modules.get("toolkit.cli.common")  # loaded: the Typer path, whose consoles decide
    if common is not None:
        watched = common.console.is_terminal and common.err_console.is_terminal
    else:
        watched = sys.stdout.isatty() and sys.stderr.isatty()
    if not as_json and watched:
        from .common import context

        with context(as_json, data_root) as ctx:
            yield ctx
        return
    yield Context(say=silent if as_json else say, progress=NO_PROGRESS, data_root=data_root)


def predict(
    artifact: Path, images: list[Path], top_k: int, as_json: bool, threads: Optional[int], say: Line, tell: Line
) -> None:
    """Predictions (or the JSON) on stdout; notes, warnings and skipped files on stderr. Raises
    TkError when some inputs were not images."""
    from ..core.io import json_text
    from ..edge.predict import bad_files_line, format_prediction, packed_warning
    from ..edge.predict import predict as run_predict

    echo = None if as_json else (lambda p: say(format_prediction(p)))
    bad: list[tuple[str, str]] = []

    def skipped(file: str, why: str) -> None:  # reported as met, on stderr; the rest go on
        bad.append((file, why))
        if len(bad) > 1:  # the first one is named in the closing error line
            tell(f"skipped: {file}: {why}")

    warning = packed_warning(artifact)
    if warning:
        tell(f"warning: {warning}")
    results = run_predict(
        artifact,
        images,
        k=top_k,
        threads=threads,
        on_prediction=echo,
        on_bad=skipped,
        on_note=lambda text: tell(f"note: {text}"),  # stderr: stdout holds the predictions only
    )
    if as_json:
        say(json_text([p.to_json() for p in results]))
    if bad:  # exit 1: a script must not take a partial answer for a whole one
        raise TkError(bad_files_line(bad, len(results)))


def bundle_given(run: Optional[str], runs_dir: Path) -> Optional[Path]:
    """The bundle RUN names as a folder, else None (the fast path's test: a run name, a recipe or a
    damaged manifest goes to the Typer command, which looks runs up and says what is wrong)."""
    from ..core.runs import MANIFEST, is_bundle, resolve_run

    if run is None or not (Path(run) / MANIFEST).is_file():
        return None
    folder = resolve_run(run, runs_dir)  # a folder with a manifest: itself, and nothing said
    try:
        return folder if is_bundle(folder) else None
    except TkError:
        return None


def verify_bundle(
    bundle: Path, artifacts: Optional[list[str]], as_json: bool, data_root: Optional[Path], ctx: Context, say: Line
) -> None:
    """The bundle's check set, here, with this machine's runtime: one ✓/✗ line per artifact (or the
    JSON report), device_parity.json written, ParityError when one fails."""
    from ..core.io import json_text
    from ..edge.device_verify import raise_on_failure, verify_bundle

    if artifacts or data_root:
        raise TkError("--artifact/--data-root: not for a bundle; tk verify BUNDLE checks every packed artifact")
    report = verify_bundle(bundle, ctx=ctx)
    if as_json:
        say(json_text(report))
    raise_on_failure(report)


def verify_bundle_command(
    bundle: Path, artifacts: Optional[list[str]], as_json: bool, data_root: Optional[Path], say: Line
) -> None:
    """`tk verify BUNDLE` as the fast path runs it (the Typer command looks the run up first)."""
    with device_context(as_json, data_root, say) as ctx:
        verify_bundle(bundle, comma_list(artifacts), as_json, data_root, ctx, say)


def _bench_web(targets, given, fixed_runs, max_latency_ms, min_accuracy, ctx):
    from ..edge.bench import settings_for
    from ..web.bench import bench_web

    if len(targets or []) != 1:
        raise TkError("tk bench --web: name one bundle folder (tk bench BUNDLE --web)")
    bundle = Path(targets[0])
    settings = settings_for(bundle, **given)
    return bench_web(bundle, settings, fixed_runs, given["threads"], max_latency_ms, min_accuracy, ctx)


def bench(
    targets: Optional[list[str]],
    threads: Optional[list[str]],
    runs: Optional[int],
    warmup: Optional[int],
    batch: Optional[int],
    formats: Optional[list[str]],
    max_latency_ms: Optional[float],
    min_accuracy: Optional[float],
    as_json: bool,
    runs_dir: Path,
    data_root: Optional[Path],
    web: bool,
    say: Line,
) -> None:
    """Bench every target, then one table per run (rich: the only thing here that needs it), its
    notes and the ship line; or bench.json's content under --json."""
    from ..core.io import json_text
    from ..edge.bench import bench_targets

    chosen = check_choices("--format", comma_list(formats), FORMATS)
    given: dict[str, Any] = {
        "threads": thread_counts(threads),
        "runs": runs,
        "warmup": warmup,
        "batch": batch,
        "formats": tuple(chosen) if chosen else None,
    }
    with device_context(as_json, data_root, say) as ctx:
        if web:
            result = _bench_web(targets, given, runs is not None, max_latency_ms, min_accuracy, ctx)
        else:
            result = bench_targets(targets or [], runs_dir, given, max_latency_ms, min_accuracy, ctx)
            from ..train.tracking import log_bench  # no Keras: the device install benches too

            for run_dir, report in zip(result["runs"], result["reports"], strict=True):
                log_bench(run_dir, report, ctx)
    reports = result["reports"]
    if as_json:
        say(json_text(reports if len(reports) > 1 else reports[0]))
        return
    _print_tables(reports, web, say)
    if result["ship"] is not None:
        from .render import ship_line

        say(ship_line(result["ship"]))


def _print_tables(reports: list[dict[str, Any]], web: bool, say: Line) -> None:
    from rich.console import Console

    from ..edge.bench import machine_label
    from ..edge.machine import flags_text
    from .render import rows_table

    # A pipe gets 120 columns (rich would fold the table to 80; browser rows' machine tag and ratio
    # need 170); a terminal keeps its width.
    out = Console(highlight=False)
    if not out.is_terminal:
        out = Console(width=170 if web else 120, highlight=False)
    for report in reports:
        several = len({r["machine"] for r in report["rows"]}) > 1
        where = "" if several else f" on {machine_label(report['machine'])}, {flags_text(report['machine'])}"
        out.print(
            rows_table(report["rows"], title=f"{report['run']}{where}: {report['description']}", machine_column=several)
        )
        for note in report["notes"]:
            say(f"note: {note}")
