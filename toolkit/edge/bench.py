"""`tk bench`: size, cold start, peak memory, latency, throughput and accuracy per artifact.

Every (artifact, thread count) is measured in a fresh `python -c` process: that is what a device
pays when it starts the model (the cold start is process start to first prediction, its peak RSS
read by the child), thread settings then apply even to TensorFlow (whose thread pool is
fixed once created), and one artifact's allocations never inflate another's numbers. The parent
never loads a model, so on the edge install (no TensorFlow) it benches the device formats only.
A bare .tflite/.onnx (no manifest.json beside it) is benched with what it carries (edge/bare.py);
its accuracy is measured on `--data-root`, a folder of class folders named by its labels.
Benchmarks measure; they never assert timings.
"""

from __future__ import annotations

import importlib.util
import math
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

from ..core import schemas
from ..core.caps import check_batch, check_threads
from ..core.context import SILENT, Context
from ..core.errors import TkError
from ..core.formats import BARE_FORMATS, DEVICE_FORMATS, FORMATS, format_of_path, looks_like_model, sort_key, suffixes
from ..core.io import check_writable, now, write_json_atomic
from ..core.lock import run_lock
from ..core.runs import MANIFEST, REFERENCE, artifact_path, load_manifest, record_metrics, resolve_run
from ..core.sections import BenchSection
from .bench_gate import gate_candidates, mark_rows, verdicts_for
from .bench_measure import decoded_test, measure_artifact, percentiles, verified_accuracy  # noqa: F401
from .bench_rows import (
    describe_settings,
    earlier_note,
    merge_rows,
    row_settings,
    set_aside_note,
    split_comparable,
    upgrade_rows,
)
from .machine import RUNTIME_PACKAGES, machine_info, machine_label, peak_rss_mb  # noqa: F401 (re-exported)
from .timing import RunPlan

BENCH_JSON = "bench.json"


_DEFAULTS = BenchSection()  # one source of defaults: the recipe schema (why each value is there)


@dataclass(frozen=True)
class BenchSettings:
    threads: tuple[int, ...] = _DEFAULTS.threads
    runs: Optional[int] = _DEFAULTS.runs  # timed batch-1 predictions per row; None: adaptive (edge/timing.py)
    warmup: int = _DEFAULTS.warmup  # untimed predictions first: allocation, XNNPACK packing, caches
    batch: int = _DEFAULTS.batch  # throughput batch size
    min_runs: int = _DEFAULTS.min_runs
    max_runs: int = _DEFAULTS.max_runs
    precision: float = _DEFAULTS.precision
    # None: the device formats (.tflite, .onnx: what ships); ("all",) or format names otherwise.
    formats: Optional[tuple[str, ...]] = None
    timeout_s: float = 1800.0

    def check(self) -> None:
        for name, value, low in (("--runs", self.runs, 1), ("--warmup", self.warmup, 0), ("--batch", self.batch, 1)):
            if value is not None and value < low:
                raise TkError(f"{name}: must be >= {low} (got {value})")
        if not self.threads:
            raise TkError("--threads: give at least one thread count, e.g. --threads 1,2")
        check_threads(self.threads)

    @property
    def plan(self) -> RunPlan:
        return RunPlan(self.runs, self.min_runs, self.max_runs, self.precision)


def settings_for(run_dir: Path, **overrides: Any) -> BenchSettings:
    """The run recipe's bench section (when recipe.yaml is there), with the options given overriding it."""
    base = BenchSettings()
    if (Path(run_dir) / "recipe.yaml").is_file():
        from ..core.recipe import load_recipe

        try:
            section = load_recipe(Path(run_dir) / "recipe.yaml").bench
            base = BenchSettings(
                threads=tuple(section.threads),
                runs=section.runs,
                warmup=section.warmup,
                batch=section.batch,
                min_runs=section.min_runs,
                max_runs=section.max_runs,
                precision=section.precision,
            )
        except TkError:
            pass  # a recipe from another tk version: the defaults still bench
    given = {k: v for k, v in overrides.items() if v is not None}
    return BenchSettings(**{**base.__dict__, **given})


def parse_threads(text: str) -> tuple[int, ...]:
    try:
        return tuple(int(t) for t in text.split(",") if t.strip())
    except ValueError:
        raise TkError(f"--threads: expected comma-separated integers like 1,2,4 (got {text!r})") from None


def tensorflow_available() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


# --------------------------------------------------------------------------- the parent


def _test_split(
    run_dir: Path, manifest: dict[str, Any], data_root: Optional[Path] = None
) -> tuple[Optional[list[str]], Optional[list], Optional[str]]:
    """The run's test images (resolved against the data root, or data_root), or why accuracy is skipped.

    A bundle's images are its own samples (load_split keeps them inside it); its split names the
    manifest's classes in the same order, or accuracy would compare labels of different models.
    Bare model files (no manifest): data_root, if given, is a folder of class folders whose names
    the child process maps to the model's labels."""
    from ..core.runs import BUNDLE, SPLIT, load_split

    if manifest.get("bare"):
        if data_root is None:
            return None, None, "accuracy not measured: pass --data-root DIR (class folders named by the model's labels)"
        from .bare import labelled_images

        paths, names = labelled_images(data_root)
        return paths, names, None
    if not (run_dir / SPLIT).is_file():
        return None, None, "no split.json in the run folder: accuracy not measured"
    split = load_split(run_dir / SPLIT, data_root)
    if "bundle" in manifest and split.layout != BUNDLE and data_root is None:
        raise TkError(
            f"{run_dir / SPLIT}: a bundle's split.json lists its own samples (layout bundle), this one "
            f"points at a dataset ({split.root}); run tk pack again, or pass --data-root"
        )
    if split.classes != manifest.get("classes"):
        raise TkError(
            f"{run_dir / SPLIT}: classes {split.classes} differ from {run_dir / MANIFEST} "
            f"({manifest.get('classes')}); copy the run's split.json and manifest.json together"
        )
    items = split.splits.get("test") or []
    if not items:
        return None, None, "the test split is empty: accuracy not measured"
    missing = split.missing_line([p for p, _ in items], run_dir / SPLIT)
    if missing:
        return None, None, f"accuracy not measured: {missing}"
    return [p for p, _ in items], [y for _, y in items], None


def device_format(name: Optional[str]) -> bool:
    return (name or "") in DEVICE_FORMATS


def _artifacts_of(
    run_dir: Path,
    manifest: dict[str, Any],
    only: Optional[list[str]],
    notes: list[str],
    formats: Optional[Sequence[str]] = None,
) -> list[dict[str, Any]]:
    from .predictors import artifact_entries

    entries = artifact_entries(manifest, run_dir / MANIFEST)
    names = only if only is not None else list(entries)
    if only is None and (formats is None or "all" not in formats):

        def wanted(entry: dict[str, Any]) -> bool:
            return device_format(entry.get("format")) if formats is None else entry.get("format") in formats

        left_out = [n for n in names if not wanted(entries.get(n) or {})]
        names = [n for n in names if n not in left_out]
        if left_out and formats is None:
            notes.append(
                f"not benched: {', '.join(left_out)} (TensorFlow formats never ship to a device; "
                "--format all benches them too)"
            )
    chosen = []
    for name in names:
        entry = entries.get(name)
        if not isinstance(entry, dict):
            raise TkError(f"{run_dir / name}: not listed in {run_dir / MANIFEST}; re-run tk export")
        path = artifact_path(run_dir, entry.get("file", name))  # a name like ../x is refused, not benched
        if not path.exists():
            if only is not None:
                raise TkError(f"{run_dir / name}: model file not found")
            notes.append(f"{name}: listed in the manifest but not present here: skipped")
            continue
        fmt = FORMATS.get(entry.get("format"))
        if fmt is not None and fmt.needs_tensorflow and not tensorflow_available():
            if only is not None:
                raise TkError(
                    f"{run_dir / name}: a {fmt.name} model needs TensorFlow, which the base install "
                    f"does not have: pip install 'tk-edge[train]', or bench the {suffixes(DEVICE_FORMATS)} files"
                )
            notes.append(
                f"{name}: skipped (TensorFlow is not installed: the edge install benches {suffixes(DEVICE_FORMATS)})"
            )
            continue
        chosen.append(entry)
    return sorted(chosen, key=lambda e: sort_key(e.get("format"), e.get("quantization"), e["file"]))


def bench_run(
    run_dir: Path,
    settings: BenchSettings,
    only: Optional[list[str]] = None,
    ctx: Context = SILENT,
) -> dict[str, Any]:
    """Bench a run's artifacts (or `only` those files); write bench.json and the manifest metrics.

    ctx.data_root overrides split.json's data root (where the test images are now); ctx.progress
    gets one task per artifact, advanced per thread count measured. Holds the run's lock: no
    export replaces an artifact while it is measured, no verify rewrites the manifest meanwhile.
    """
    settings.check()
    bare = only is not None and not (Path(run_dir) / MANIFEST).is_file()
    if bare:  # model files alone: what each carries is read by the child that runs it
        from .bare import bare_manifest

        manifest = bare_manifest(run_dir, only)
    else:
        manifest = load_manifest(run_dir)
    size = manifest.get("preprocessing", {}).get("size") if isinstance(manifest.get("preprocessing"), dict) else None
    if isinstance(size, list) and len(size) == 2 and all(isinstance(v, int) and v > 0 for v in size):
        check_batch(settings.batch, (size[0], size[1]))  # before a child dies of MemoryError
    check_writable(run_dir)  # a read-only run folder fails now, not after minutes of measuring
    _read_previous(run_dir / BENCH_JSON)  # so does a damaged bench.json it would merge into
    with run_lock(run_dir, "tk bench", ctx):
        # re-read under the lock: an export may have finished meanwhile
        return _bench_locked(run_dir, manifest if bare else load_manifest(run_dir), settings, only, ctx)


def _bench_locked(
    run_dir: Path, manifest: dict[str, Any], settings: BenchSettings, only: Optional[list[str]], ctx: Context
) -> dict[str, Any]:
    notes: list[str] = []
    entries = _artifacts_of(run_dir, manifest, only, notes, settings.formats)
    if not entries:
        raise TkError(
            f"{run_dir}: nothing to bench ({'; '.join(notes) or 'no artifacts in the manifest'}); run tk export first"
        )
    paths, labels, why = _test_split(run_dir, manifest, ctx.data_root)
    if why:
        notes.append(why)
    image = paths[0] if paths else None
    created, machine = now(), machine_info()  # the load average before this call's own load
    label = machine_label(machine)
    call = {"warmup": settings.warmup, "batch": settings.batch, "measured_at": created, "machine": label}
    with tempfile.TemporaryDirectory(prefix="tk-bench-") as scratch:
        pixels = decoded_test(paths, manifest, Path(scratch), ctx) if paths else None
        pixels = paths if pixels is None and paths else pixels  # size unknown here: each child decodes
        rows = [
            row
            for entry in entries
            for row in measure_artifact(run_dir, entry, settings, image, pixels, labels, call, ctx)
        ]
    reused = sorted({r["file"] for r in rows if r.get("accuracy_from") == "verify"})
    if reused:
        notes.append(f"accuracy of {', '.join(reused)}: tk verify's, measured on the same files and test images here")
    verdicts, gated, gate_notes = verdicts_for(run_dir)
    report = bench_report(run_dir, manifest, rows, machine, notes + gate_notes)
    mark_rows(report["rows"], verdicts)
    report["gated"] = gated
    report["verdicts"] = {f: [v.status, v.reason] for f, v in verdicts.items()}
    write_json_atomic(run_dir / BENCH_JSON, report)
    for entry in entries if not manifest.get("bare") else ():  # a bare file has no manifest to record into
        mine = [r for r in rows if r["file"] == entry["file"]]
        record_metrics(
            run_dir,
            entry["file"],
            "bench",
            {
                "created": created,
                "machine": label,
                "accuracy": mine[0].get("accuracy"),
                "settings": row_settings(mine[0]),
                "by_threads": {
                    str(r["threads"]): {
                        k: r[k] for k in ("p50_ms", "p90_ms", "p99_ms", "throughput_ips", "cold_start_s", "peak_rss_mb")
                    }
                    for r in mine
                },
            },
        )
    return report


def bench_report(
    run_dir: Path, manifest: dict[str, Any], rows: list[dict[str, Any]], machine: dict[str, Any], notes: list[str]
) -> dict[str, Any]:
    """bench.json: this call's rows with the earlier ones they did not re-measure, comparable ones
    under "rows", those measured with other settings under "other_rows" (kept, never mixed in)."""
    old = _read_previous(run_dir / BENCH_JSON)
    label, created = rows[0]["machine"], rows[0]["measured_at"]
    current_sha = {f: e.get("sha256") for f, e in manifest.get("artifacts", {}).items()}
    previous = upgrade_rows(old, machine_label(old["machine"])) if old else []
    previous += old.get("other_rows", []) if old else []
    pool, stale = merge_rows(previous, rows, current_sha)
    settings = row_settings(rows[0])
    shown, other = split_comparable(pool, settings)
    notes = list(notes)
    if stale:
        notes.append(
            f"{stale} earlier row(s) dropped: their artifact changed since (other sha256) or is no "
            "longer in the manifest"
        )
    notes += [n for n in (set_aside_note(other), earlier_note(shown, rows)) if n]
    machines = dict(old.get("machines", {})) if old else {}
    if old and "machines" not in old:  # a bench.json of an older tk: its one machine
        machines[machine_label(old["machine"])] = old["machine"]
    machines[label] = machine
    used = {r["machine"] for r in pool}
    return {
        "run": manifest.get("name", run_dir.name),
        "reference_sha256": _reference_sha(manifest),
        "created": created,
        "machine": machine,
        "machines": {k: v for k, v in machines.items() if k in used},
        "settings": {"threads": sorted({r["threads"] for r in shown}), **settings},
        "description": describe_settings(settings),
        "benched": list(dict.fromkeys(r["file"] for r in rows)),
        "rows": shown,
        "other_rows": other,
        "notes": notes,
    }


def _reference_sha(manifest: dict[str, Any]) -> Optional[str]:
    """The trained model these rows' artifacts come from: a bundle names it, a run records it."""
    if "bundle" in manifest:
        return manifest["bundle"].get("reference_sha256")
    return manifest.get("artifacts", {}).get(REFERENCE, {}).get("sha256")


def _read_previous(path: Path) -> Optional[dict[str, Any]]:
    """The earlier bench.json, checked by its schema: a damaged one is one line, never overwritten
    (it may hold another machine's rows nobody can measure again)."""
    return schemas.load_bench(path) if os.path.lexists(path) else None


def split_targets(targets: Sequence[str], runs_dir: Path, ctx: Context = SILENT) -> dict[Path, Optional[list[str]]]:
    """Run folders to bench, each with None (all its artifacts) or the artifact files named."""
    plan: dict[Path, Optional[list[str]]] = {}
    if not targets:
        plan[resolve_run(None, runs_dir, ctx)] = None
    for target in targets:
        path = Path(target)
        if looks_like_model(path):
            if not path.exists():
                raise TkError(f"{path}: model file not found")
            run = path.parent
            if not (run / MANIFEST).is_file() and format_of_path(path).name not in BARE_FORMATS:
                raise TkError(f"{path}: no {MANIFEST} beside it; copy the run's manifest.json with the model")
            if run in plan and plan[run] is None:
                continue
            plan.setdefault(run, []).append(path.name)
        else:
            plan[resolve_run(target, runs_dir, ctx)] = None
    return plan


def choose_artifact(
    rows: Sequence[dict[str, Any]], max_latency_ms: Optional[float], min_accuracy: Optional[float]
) -> tuple[Optional[dict[str, Any]], list[str]]:
    """The smallest artifact that meets both limits (at its best thread count), or why none does.

    The Keras reference is not a candidate: it is what the artifacts are measured against.
    """
    candidates = [r for r in rows if not r.get("reference")]
    ok, why = [], []
    for file in dict.fromkeys(r["file"] for r in candidates):
        mine = [r for r in candidates if r["file"] == file]
        fastest = min(mine, key=lambda r: r["p50_ms"])
        problems = []
        if max_latency_ms is not None and fastest["p50_ms"] > max_latency_ms:
            problems.append(f"p50 {fastest['p50_ms']:.2f} ms > {max_latency_ms:g} ms")
        accuracy = fastest.get("accuracy")
        if min_accuracy is not None and (accuracy is None or accuracy < min_accuracy):
            problems.append(
                "accuracy not measured" if accuracy is None else f"accuracy {accuracy:.3f} < {min_accuracy:g}"
            )
        if problems:
            why.append(f"{file}: {', '.join(problems)}")
        else:
            ok.append(fastest)
    if not ok:
        return None, why or ["no artifacts were benched"]
    best = min(ok, key=lambda r: (r["size_bytes"] or 0, r["p50_ms"]))
    return best, why


HEADERS = ("artifact", "thr", "MB", "cold s", "RSS MB", "p50 ms", "p90 ms", "p99 ms", "img/s", "acc", "parity")
# A row's parity verdict as a short cell (edge/verdicts.py); "-" where nothing judged the artifact.
PARITY_CELLS = {"passed": "✓ passed", "failed": "✗ failed", "stale": "? stale", "not verified": "? not verified"}
# Browser rows (tk bench --web) carry their p50 over native p50, measured in the same call.
RATIO_HEADER = "x native"
BROWSER_NOTE = (
    "browser rows: cold s is the page's load of runtime and model, RSS the browser's processes, "
    f"{RATIO_HEADER} the p50 over native p50 measured in the same call"
)


def table_headers(rows: Sequence[dict[str, Any]], machine_column: bool = False) -> list[str]:
    """HEADERS, with the machine in front when several are shown and the ratio when a row has one."""
    ratio = any(r.get("ratio") is not None for r in rows)
    return (["machine"] if machine_column else []) + list(HEADERS) + ([RATIO_HEADER] if ratio else [])


def _cell(value: Optional[float], fmt: str) -> str:
    return "-" if value is None else format(value, fmt)


def format_row(r: dict[str, Any], machine_column: bool = False, ratio_column: bool = False) -> list[str]:
    """One bench row as text cells, in HEADERS order (shared by the terminal and REPORT.md)."""
    size = r.get("size_bytes")
    precision = (r.get("runtime") or {}).get("inference_precision")  # what OpenVINO actually ran
    cells = [
        r["file"] + (" *" if r.get("reference") else "") + (f" [{precision}]" if precision else ""),
        str(r["threads"]),
        f"{size / 1e6:.2f}" if size else "-",
        _cell(r.get("cold_start_s"), ".2f"),
        _cell(r.get("peak_rss_mb"), ".0f"),
        f"{r['p50_ms']:.2f}",
        f"{r['p90_ms']:.2f}",
        f"{r['p99_ms']:.2f}",
        _cell(r.get("throughput_ips"), ".0f"),
        _cell(r.get("accuracy"), ".3f"),
        "" if r.get("reference") else PARITY_CELLS.get(r.get("parity") or "", "-"),
    ]
    ratio = [_cell(r.get("ratio"), ".2f")] if ratio_column else []
    return ([r.get("machine", "")] if machine_column else []) + cells + ratio


def bench_targets(
    targets: Sequence[str],
    runs_dir: Path,
    overrides: dict[str, Any],
    max_latency_ms: Optional[float] = None,
    min_accuracy: Optional[float] = None,
    ctx: Context = SILENT,
) -> dict[str, Any]:
    """Bench every target (runs or artifact files); with limits, also pick the artifact to ship.

    Returns {"reports": [bench report per run], "ship": row or None, "runs": [their run folders]};
    raises TkError when limits are given and no artifact meets them.
    """
    check_limits(max_latency_ms, min_accuracy)  # before minutes of measuring, not after
    plan = split_targets(targets, runs_dir, ctx)
    reports = [bench_run(run, settings_for(run, **overrides), only, ctx) for run, only in plan.items()]
    ship = None
    if max_latency_ms is not None or min_accuracy is not None:
        rows, skipped = gate_candidates(reports, ship_candidates(reports))
        ship, why = choose_artifact(rows, max_latency_ms, min_accuracy)
        if ship is None:
            gate = f"; not considered (did not pass tk verify): {'; '.join(skipped)}" if skipped else ""
            raise TkError("no artifact meets the limits: " + "; ".join(why) + gate)
        among = len({(r["machine"], r["file"]) for r in rows if not r.get("reference")})
        ship = {**ship, "among": among, "skipped": skipped}
    return {"reports": reports, "ship": ship, "runs": list(plan)}


def check_limits(max_latency_ms: Optional[float], min_accuracy: Optional[float]) -> None:
    """Ship limits are numbers a row can meet: NaN compares false with everything, -inf and 0 ms
    accept or refuse all, an accuracy is a fraction."""
    if max_latency_ms is not None and not (math.isfinite(max_latency_ms) and max_latency_ms > 0):
        raise TkError(f"--max-latency-ms: must be a number of milliseconds > 0 (got {max_latency_ms})")
    if min_accuracy is not None and not (math.isfinite(min_accuracy) and 0 <= min_accuracy <= 1):
        raise TkError(f"--min-accuracy: must be a fraction between 0 and 1, e.g. 0.9 (got {min_accuracy})")


def ship_candidates(reports: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """The rows a ship pick may compare: measured in this call, on this machine, with one set of settings.

    Latency limits hold on the machine that measured them, and an artifact benched by an earlier
    call (maybe with other settings) is not what the user just asked to choose between.
    """
    # Across runs the test splits differ anyway; timing settings must match.
    settings = {", ".join(f"{k} {report['settings'][k]}" for k in ("runs", "warmup", "batch")) for report in reports}
    if len(settings) > 1:
        raise TkError(
            "ship limits: these runs were benched with different settings ("
            + " vs ".join(sorted(settings))
            + "); pass --runs, --warmup and --batch to bench them alike"
        )
    return [
        {**r, "run": report["run"]}
        for report in reports
        for r in report["rows"]
        if r["measured_at"] == report["created"]
        and r["machine"] == machine_label(report["machine"])
        and r["file"] in report["benched"]
    ]
