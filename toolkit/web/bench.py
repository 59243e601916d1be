"""`tk bench BUNDLE --web`: browser latency per model and runtime, with native latency beside it.

The page warms each model up, then times batch-1 predictions on the check set's first image in
rounds; after each round it waits while tk times the native runtime (LiteRT or onnxruntime, in
this process, same file, same thread count as the browser runtime used) for as many runs. Browser
and native thus share the machine's load, round by round, and never run at once: the ratio is
p50 browser over p50 native of the same call. Without --runs the count adapts: as many runs as fit
TARGET_S after the warm-up tells how long one takes, within MIN_RUNS..the recipe's bench.runs.

Rows are tagged with the machine `browser (Chromium N, wasm SIMD, k threads)` and merge into the
bundle's bench.json beside native rows (edge/bench.py's rules); cold s is the page's load of
runtime and model, RSS the browser's processes after the runs, accuracy on the check set.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..core.context import SILENT, Context
from ..core.errors import Say, TkError
from ..core.io import check_writable, now, write_json_atomic
from ..core.runs import load_manifest
from ..edge.bench import BENCH_JSON, BenchSettings, bench_report, choose_artifact, percentiles
from ..edge.machine import cpu_flags, machine_info
from ..edge.predictors import load_predictor
from .checkset import bundle_checkset
from .chromium import chromium_version, find_chromium
from .harness import drive
from .verify import batch1_copies, check_local, load_web

TARGET_S = 3.0  # adaptive runs: about this long per model, after the warm-up
MIN_RUNS = 20
ROUNDS = 5  # browser/native alternations per model


def browser_label(version: str, simd: bool, threads: int) -> str:
    major = version.split(".")[0]
    return f"browser (Chromium {major}, wasm{' SIMD' if simd else ''}, {threads} thread{'s' if threads != 1 else ''})"


class _Native:
    """The same artifact on its native runtime, timed for as many runs as the page just did."""

    def __init__(self, bundle: Path, pixels: np.ndarray, originals: dict[str, str]):
        self.bundle, self.image = bundle, pixels[:1].astype(np.float32)
        self.originals = originals  # a batch-1 copy runs natively as its original (same model, at batch 1)
        self.predictors: dict[tuple[str, int], Any] = {}
        self.latencies: dict[tuple[str, int], list[float]] = {}

    def run(self, file: str, threads: int, count: int) -> None:
        key = (file, threads)
        if key not in self.predictors:
            self.predictors[key] = load_predictor(self.bundle / self.originals.get(file, file), num_threads=threads)
            self.predictors[key].predict(self.image)  # its first call allocates
        predictor, out = self.predictors[key], self.latencies.setdefault(key, [])
        for _ in range(count):
            start = time.perf_counter()
            predictor.predict(self.image)
            out.append((time.perf_counter() - start) * 1000)


def _browser_rss_mb(pid: Optional[int]) -> Optional[float]:
    if pid is None:
        return None
    import psutil

    try:
        root = psutil.Process(pid)
        return sum(p.memory_info().rss for p in [root, *root.children(recursive=True)]) / 2**20
    except psutil.Error:
        return None


class _Collector:
    """What the page posts during a bench: browser timings per (file, threads), native runs between."""

    def __init__(self, native: _Native, say: Say):
        self.native, self.say = native, say
        self.browser: dict[tuple[str, int], dict[str, Any]] = {}
        self.notes: list[str] = []

    def on_post(self, body: dict[str, Any]) -> dict[str, Any]:
        file, kind, threads = str(body.get("file")), body.get("kind"), int(body.get("threads") or 1)
        if kind == "error":
            self.notes.append(
                f"{file} on {body.get('runtime')}: could not run in Chromium ({str(body.get('error'))[:200]})"
            )
            return {"ok": True}
        row = self.browser.setdefault((file, threads), {"runtime": body.get("runtime"), "latencies": []})
        row["threads"] = threads
        if kind == "chunk":
            row["latencies"] += [float(x) for x in body.get("latencies_ms", [])]
            self.native.run(file, threads, len(body.get("latencies_ms", [])))
        elif kind == "bench-done":
            row["load_ms"], row["probabilities"] = body.get("load_ms"), body.get("probabilities")
            row["rss_mb"] = _browser_rss_mb(body.get("browser_pid"))
            self.say(
                f"bench {file} on {row['runtime']}, {threads} thread(s): "
                f"{len(row['latencies'])} runs in the browser and natively"
            )
        return {"ok": True}


def _job(web: dict, checkset, settings: BenchSettings, fixed_runs: bool, threads: Optional[int], first: bool) -> dict:
    # MediaPipe's vision wasm has one thread whatever is asked: benched on the first pass only.
    items = [
        {"file": m["file"], "runtime": m["runtime"]} for m in web["models"] if first or m["runtime"] != "mediapipe"
    ]
    most = settings.runs if settings.runs is not None else settings.max_runs  # bench.runs null: adaptive natively too
    return {
        "mode": "bench",
        "items": items,
        "threads": threads,
        "checkset": {"pixels": checkset.pixels_url, "count": checkset.meta["count"]},
        "warmup": max(settings.warmup, 1),
        "runs": settings.runs if fixed_runs else None,
        "target_s": TARGET_S,
        "min_runs": min(MIN_RUNS, most),
        "max_runs": most,
        "rounds": ROUNDS,
        "accuracy": True,
    }


def bench_web(
    bundle: Path,
    settings: BenchSettings,
    fixed_runs: bool,
    threads: Optional[Sequence[int]] = None,
    max_latency_ms: Optional[float] = None,
    min_accuracy: Optional[float] = None,
    ctx: Context = SILENT,
    timeout_s: float = 1800,
) -> dict[str, Any]:
    """Bench every browser model of the bundle (at each thread count, else the page's default:
    min(4, cores)); write bench.json; return {"reports": [report], "ship": row or None}."""
    bundle = Path(bundle)
    settings.check()
    if threads is not None and any(t < 1 for t in threads):
        raise TkError(f"--threads: thread counts must be >= 1 (got {list(threads)})")
    manifest, web = load_manifest(bundle), load_web(bundle)
    check_local(bundle, web)
    checkset = bundle_checkset(bundle, manifest)
    check_writable(bundle)
    version = chromium_version(find_chromium())
    copies = batch1_copies(manifest)
    collector = _Collector(_Native(bundle, checkset.pixels, {c: v["of"] for c, v in copies.items()}), ctx.say)
    simd = False
    for i, count in enumerate(threads or [None]):
        job = _job(web, checkset, settings, fixed_runs, count, first=i == 0)
        ctx.say(f"bench {len(job['items'])} model(s) of {bundle} in Chromium {version}, native runs interleaved")
        simd = bool(drive(bundle, job, collector.on_post, timeout_s=timeout_s).get("environment", {}).get("simd"))
    created = now()
    rows = [
        _row(key, b, manifest, checkset, settings, fixed_runs, collector.native) for key, b in collector.browser.items()
    ]
    rows = [
        {**r, "measured_at": created, "machine": browser_label(version, simd, r["threads"])}
        for r in rows
        if r is not None
    ]
    if not rows:
        raise TkError(f"{bundle}: no model ran in Chromium ({'; '.join(collector.notes) or 'no results'})")
    host = {**machine_info(), "cpu_flags": cpu_flags()}
    report = bench_report(bundle, manifest, rows, host, collector.notes)
    report["machines"].update({r["machine"]: {**host, "browser": f"Chromium {version}"} for r in rows})
    write_json_atomic(bundle / BENCH_JSON, report)
    return {"reports": [report], "ship": _ship(rows, max_latency_ms, min_accuracy)}


def _ship(rows: list[dict[str, Any]], max_latency_ms: Optional[float], min_accuracy: Optional[float]) -> Optional[dict]:
    """The ship pick among this call's browser rows (the web target), when limits are given."""
    if max_latency_ms is None and min_accuracy is None:
        return None
    ship, why = choose_artifact(rows, max_latency_ms, min_accuracy)
    if ship is None:
        raise TkError("no artifact meets the limits in the browser: " + "; ".join(why))
    return {**ship, "among": len({r["file"] for r in rows})}


def _row(key, b, manifest, checkset, settings, fixed_runs, native) -> Optional[dict[str, Any]]:
    file = key[0]
    if not b["latencies"] or not native.latencies.get(key):
        return None
    copy = batch1_copies(manifest).get(file)
    entry = {**manifest["artifacts"].get(copy["of"] if copy else file, {}), **(copy or {})}
    stats, native_p50 = percentiles(b["latencies"]), float(np.median(native.latencies[key]))
    probs = np.asarray(b.get("probabilities") or [], dtype=np.float64)
    accuracy = float((probs.argmax(1) == checkset.labels).mean()) if probs.shape == checkset.reference.shape else None
    return {
        "file": file,
        "format": entry.get("format"),
        "quantization": entry.get("quantization", "none"),
        "reference": False,
        "runtime": b["runtime"],
        "threads": b["threads"],
        "size_bytes": entry.get("size_bytes"),
        "sha256": entry.get("sha256"),
        "runs": len(b["latencies"]) if fixed_runs else "auto",
        "runs_measured": len(b["latencies"]),
        "accuracy": accuracy,
        "test_count": int(checkset.meta["count"]),
        "warmup": max(settings.warmup, 1),
        "batch": settings.batch,
        **stats,
        "cold_start_s": b["load_ms"] / 1000 if b.get("load_ms") is not None else None,
        "peak_rss_mb": b.get("rss_mb"),
        "throughput_ips": None,  # batch 1 only in the browser
        "native_p50_ms": native_p50,
        "native_threads": b["threads"],
        "ratio": stats["p50_ms"] / native_p50 if native_p50 > 0 else None,
    }
