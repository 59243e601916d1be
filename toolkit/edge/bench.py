"""`tk bench`: size, cold start, peak memory, latency, throughput and accuracy per artifact.

Every (artifact, thread count) is measured in a fresh `python -c` process: that is what a device
pays when it starts the model (the cold start is process start to first prediction, its peak RSS
read by the child), thread settings then apply even to TensorFlow (whose thread pool is
fixed once created), and one artifact's allocations never inflate another's numbers. The parent
never loads a model, so on the edge install (no TensorFlow) it benches .tflite and .onnx only.
Benchmarks measure; they never assert timings.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..core.context import SILENT, Context
from ..core.errors import TkError
from ..core.formats import FORMATS, looks_like_model, sort_key
from ..core.io import check_writable, now, write_json_atomic
from ..core.progress import tracked
from ..core.recipe import BenchSection
from ..core.runs import MANIFEST, REFERENCE, load_manifest, record_metrics, resolve_run
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
from .timing import RunPlan, batch_throughput, timed_runs

BENCH_JSON = "bench.json"
_CHILD = "import sys; from toolkit.edge.bench import child_main; child_main(sys.argv[1])"
_MARK = "TKBENCH "


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
        if not self.threads or any(t < 1 for t in self.threads):
            raise TkError(f"--threads: thread counts must be >= 1 (got {list(self.threads)})")

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


def percentiles(values: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    p50, p90, p99 = np.percentile(arr, [50, 90, 99])
    return {
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "mean_ms": float(arr.mean()),
        "min_ms": float(arr.min()),
    }


def tensorflow_available() -> bool:
    return importlib.util.find_spec("tensorflow") is not None


# --------------------------------------------------------------------------- the child process


def child_main(spec_json: str) -> None:
    """Runs in the fresh process: load, first prediction (cold start), then the warm measurements."""
    spec = json.loads(spec_json)
    try:
        print(_MARK + json.dumps(_measure(spec)), flush=True)
    except TkError as exc:
        print(_MARK + json.dumps({"error": str(exc)}), flush=True)
        sys.exit(1)


def _measure(spec: dict[str, Any]) -> dict[str, Any]:
    from ..core.images import load_image
    from .predictors import load_predictor

    t_load = time.perf_counter()
    predictor = load_predictor(spec["artifact"], num_threads=spec["threads"])
    load_s = time.perf_counter() - t_load
    if spec["image"]:
        image = load_image(spec["image"], predictor.size)[None]
    else:  # no test image on this machine: latency does not depend on the pixels
        image = np.full((1, *predictor.size, 3), 127.0, np.float32)
    predictor.predict(image)
    first_prediction_at = time.time()
    out: dict[str, Any] = {
        "pid": os.getpid(),
        "first_prediction_at": first_prediction_at,
        "load_s": load_s,
        "peak_rss_mb": peak_rss_mb(),
        "tensorflow_loaded": sys.modules.get("tensorflow") is not None,
    }
    for _ in range(spec["warmup"]):
        predictor.predict(image)
    plan = RunPlan(**spec["runs"])
    out["latencies_ms"] = timed_runs(lambda: predictor.predict(image), plan)
    batch = np.repeat(image, spec["batch"], axis=0)
    predictor.predict(batch)  # warm the batch-B shape (TFLite reallocates on a new batch size)
    out["throughput_ips"] = batch_throughput(lambda: predictor.predict(batch), spec["batch"], plan)
    if spec.get("test"):
        pixels_file, labels = spec["test"]
        out["accuracy"] = _accuracy(predictor, pixels_file, labels, spec["batch"])
        out["test_count"] = len(labels)
    return out


def _accuracy(predictor, pixels_file: str, labels: list[int], batch: int) -> float:
    """Top-1 accuracy on the test images the parent decoded once for every artifact (uint8 .npy)."""
    pixels = np.load(pixels_file, mmap_mode="r")
    step = max(batch, 32)
    probs = [predictor.predict(np.asarray(pixels[i : i + step], np.float32)) for i in range(0, len(pixels), step)]
    return float((np.concatenate(probs).argmax(axis=1) == np.asarray(labels)).mean())


def _run_child(spec: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}
    started_at = time.time()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, json.dumps(spec)], capture_output=True, text=True, timeout=timeout_s, env=env
        )
    except subprocess.TimeoutExpired:
        raise TkError(f"{spec['artifact']}: bench did not finish in {timeout_s:.0f} s; use fewer --runs") from None
    lines = [line[len(_MARK) :] for line in proc.stdout.splitlines() if line.startswith(_MARK)]
    if not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"bench process for {spec['artifact']} failed (exit {proc.returncode}):\n{tail}")
    result = json.loads(lines[-1])
    if "error" in result:
        raise TkError(result["error"])
    result["cold_start_s"] = result.pop("first_prediction_at") - started_at
    return result


# --------------------------------------------------------------------------- the parent


def _test_split(
    run_dir: Path, data_root: Optional[Path] = None
) -> tuple[Optional[list[str]], Optional[list[int]], Optional[str]]:
    """The run's test images (resolved against the data root, or data_root), or why accuracy is skipped."""
    from ..core.runs import load_split

    if not (run_dir / "split.json").is_file():
        return None, None, "no split.json in the run folder: accuracy not measured"
    split = load_split(run_dir / "split.json", data_root)
    items = split.splits.get("test") or []
    if not items:
        return None, None, "the test split is empty: accuracy not measured"
    missing = split.missing_line([p for p, _ in items], run_dir / "split.json")
    if missing:
        return None, None, f"accuracy not measured: {missing}"
    return [p for p, _ in items], [y for _, y in items], None


def device_format(name: Optional[str]) -> bool:
    fmt = FORMATS.get(name or "")
    return fmt is not None and fmt.exported and not fmt.needs_tensorflow


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
        if entry is None:
            raise TkError(f"{run_dir / name}: not listed in {run_dir / MANIFEST}; re-run tk export")
        if not (run_dir / name).exists():
            if only is not None:
                raise TkError(f"{run_dir / name}: model file not found")
            notes.append(f"{name}: listed in the manifest but not present here: skipped")
            continue
        fmt = FORMATS.get(entry.get("format"))
        if fmt is not None and fmt.needs_tensorflow and not tensorflow_available():
            if only is not None:
                raise TkError(
                    f"{run_dir / name}: a {fmt.name} model needs TensorFlow, which the base install "
                    "does not have: pip install 'tk-edge[train]', or bench the .tflite/.onnx files"
                )
            notes.append(f"{name}: skipped (TensorFlow is not installed: the edge install benches .tflite/.onnx)")
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
    gets one task per artifact, advanced per thread count measured.
    """
    settings.check()
    manifest = load_manifest(run_dir)
    check_writable(run_dir)  # a read-only run folder fails now, not after minutes of measuring
    notes: list[str] = []
    entries = _artifacts_of(run_dir, manifest, only, notes, settings.formats)
    if not entries:
        raise TkError(
            f"{run_dir}: nothing to bench ({'; '.join(notes) or 'no artifacts in the manifest'}); run tk export first"
        )
    paths, labels, why = _test_split(run_dir, ctx.data_root)
    if why:
        notes.append(why)
    image = paths[0] if paths else None
    created, machine = now(), machine_info()  # the load average before this call's own load
    label = machine_label(machine)
    call = {"warmup": settings.warmup, "batch": settings.batch, "measured_at": created, "machine": label}
    with tempfile.TemporaryDirectory(prefix="tk-bench-") as scratch:
        pixels = _decoded_test(paths, manifest, Path(scratch), ctx) if paths else None
        rows = [
            row
            for entry in entries
            for row in _measure_artifact(run_dir, entry, settings, image, pixels, labels, call, ctx)
        ]
    reused = sorted({r["file"] for r in rows if r.get("accuracy_from") == "verify"})
    if reused:
        notes.append(f"accuracy of {', '.join(reused)}: tk verify's, measured on the same files and test images here")
    report = _bench_report(run_dir, manifest, rows, machine, notes)
    write_json_atomic(run_dir / BENCH_JSON, report)
    for entry in entries:
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


def _measure_artifact(
    run_dir: Path,
    entry: dict[str, Any],
    settings: BenchSettings,
    image: Optional[str],
    pixels: Optional[Path],
    labels: Optional[list[int]],
    call: dict[str, Any],
    ctx: Context,
) -> list[dict[str, Any]]:
    """One row per thread count, each measured in a fresh process."""
    file, rows = entry["file"], []
    verified = verified_accuracy(entry, labels, call["machine"])
    if verified is not None:
        pixels = None  # tk verify ran this very file over these test images here: not a second time
    for threads in tracked(
        ctx.progress, f"bench {file} (threads {','.join(map(str, settings.threads))})", list(settings.threads)
    ):
        ctx.say(f"bench {run_dir.resolve().name}/{file}  threads {threads}")
        spec = {
            "artifact": str(run_dir / file),
            "threads": threads,
            "image": image,
            "warmup": settings.warmup,
            "runs": settings.plan.to_json(),
            "batch": settings.batch,
            # Accuracy does not depend on threads (int8 too: tests/edge/test_bench.py checks it):
            # measured once per artifact, at its largest thread count (the quickest).
            "test": [str(pixels), labels] if pixels is not None and threads == max(settings.threads) else None,
        }
        result = _run_child(spec, settings.timeout_s)
        latencies = result.pop("latencies_ms")
        rows.append(
            {
                "file": file,
                "format": entry.get("format"),
                "quantization": entry.get("quantization", "none"),
                "reference": file == REFERENCE,
                "threads": threads,
                "size_bytes": entry.get("size_bytes"),
                "sha256": entry.get("sha256"),
                "runs": len(latencies),
                "runs_setting": settings.plan.setting(),
                "accuracy": None,
                "test_count": len(labels) if labels else None,
                **call,
                **percentiles(latencies),
                **result,
            }
        )
    measured = next((r["accuracy"] for r in rows if r.get("accuracy") is not None), verified)
    for row in rows:
        row["accuracy"] = measured
        row["accuracy_from"] = "verify" if verified is not None else "bench"
    return rows


def verified_accuracy(entry: dict[str, Any], labels: Optional[list[int]], machine: str) -> Optional[float]:
    """The artifact's test accuracy as tk verify measured it, when that was this file (sha256), on
    this machine, on the test split bench would use (same count): the same runtime on the same
    images gives the same predictions, so bench need not run them again."""
    record = (entry.get("metrics") or {}).get("verify")
    if not isinstance(record, dict) or not labels:
        return None
    same = (
        record.get("sha256") == entry.get("sha256")
        and record.get("machine") == machine
        and record.get("split") == "test"
        and record.get("count") == len(labels)
        and "error" not in record
    )
    accuracy = record.get("accuracy")
    return float(accuracy) if same and isinstance(accuracy, (int, float)) else None


def _decoded_test(paths: list[str], manifest: dict[str, Any], folder: Path, ctx: Context) -> Optional[Path]:
    """The test images decoded once (uint8, at the run's input size) for every artifact's accuracy,
    instead of once per artifact in each measuring process."""
    from ..core.images import load_pixels

    size = (manifest.get("preprocessing") or {}).get("size")
    if not (isinstance(size, list) and len(size) == 2):
        return None
    path = folder / "test.npy"
    out = np.lib.format.open_memmap(path, "w+", np.uint8, (len(paths), int(size[0]), int(size[1]), 3))
    with ctx.progress.task(f"bench: decoding {len(paths)} test images", len(paths)) as task:
        for i, image in enumerate(paths):
            out[i] = load_pixels(image, (int(size[0]), int(size[1])))
            task.advance(1)
    out.flush()
    del out
    return path


def _bench_report(
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


def _read_previous(path: Path) -> Optional[dict[str, Any]]:
    if not path.is_file():
        return None
    try:
        old = json.loads(path.read_text())
    except (json.JSONDecodeError, UnicodeDecodeError):
        return None  # unreadable: this call's rows start a new file
    ok = isinstance(old, dict) and isinstance(old.get("rows"), list) and isinstance(old.get("machine"), dict)
    return old if ok else None


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
            if not (run / MANIFEST).is_file():
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


HEADERS = ("artifact", "thr", "MB", "cold s", "RSS MB", "p50 ms", "p90 ms", "p99 ms", "img/s", "acc")


def format_row(r: dict[str, Any], machine_column: bool = False) -> list[str]:
    """One bench row as text cells, in HEADERS order (shared by the terminal and REPORT.md)."""
    size = r.get("size_bytes")
    accuracy = r.get("accuracy")
    cells = [
        r["file"] + (" *" if r.get("reference") else ""),
        str(r["threads"]),
        f"{size / 1e6:.2f}" if size else "-",
        f"{r['cold_start_s']:.2f}",
        f"{r['peak_rss_mb']:.0f}",
        f"{r['p50_ms']:.2f}",
        f"{r['p90_ms']:.2f}",
        f"{r['p99_ms']:.2f}",
        f"{r['throughput_ips']:.0f}",
        "-" if accuracy is None else f"{accuracy:.3f}",
    ]
    return ([r.get("machine", "")] if machine_column else []) + cells


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
    plan = split_targets(targets, runs_dir, ctx)
    reports = [bench_run(run, settings_for(run, **overrides), only, ctx) for run, only in plan.items()]
    ship = None
    if max_latency_ms is not None or min_accuracy is not None:
        rows = ship_candidates(reports)
        ship, why = choose_artifact(rows, max_latency_ms, min_accuracy)
        if ship is None:
            raise TkError("no artifact meets the limits: " + "; ".join(why))
        ship = {**ship, "among": len({(r["machine"], r["file"]) for r in rows if not r.get("reference")})}
    return {"reports": reports, "ship": ship, "runs": list(plan)}


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
        r
        for report in reports
        for r in report["rows"]
        if r["measured_at"] == report["created"]
        and r["machine"] == machine_label(report["machine"])
        and r["file"] in report["benched"]
    ]
