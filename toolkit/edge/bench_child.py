"""The measuring process of `tk bench`: one fresh `python -c` per (artifact, thread count).

The cold start is process start to first prediction; thread settings apply even to TensorFlow
(whose pool is fixed once created); one artifact's allocations never inflate another's numbers.
The child prints one marked JSON line (its measurements, or the one-line error); it dies with
the bench that started it (core/interrupts.die_with_parent).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from typing import Any

import numpy as np

from ..core.errors import TkError
from ..core.interrupts import die_with_parent
from .machine import peak_rss_mb
from .timing import RunPlan, batch_throughput, timed_runs

_CHILD = "import sys; from toolkit.edge.bench_child import child_main; child_main(sys.argv[1])"
_MARK = "TKBENCH "


def child_main(spec_json: str) -> None:
    """Runs in the fresh process: load, first prediction (cold start), then the warm measurements."""
    spec = json.loads(spec_json)
    die_with_parent(spec["parent"])  # a killed bench (even kill -9) takes its measuring child along
    try:
        print(_MARK + json.dumps(_measure(spec)), flush=True)
    except TkError as exc:
        print(_MARK + json.dumps({"error": str(exc)}), flush=True)
        sys.exit(1)
    except MemoryError:  # the model's activations at this batch, past what check_batch could foresee
        error = f"{spec['artifact']}: out of memory while measuring at batch {spec['batch']}; pass a smaller --batch"
        print(_MARK + json.dumps({"error": error}), flush=True)
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
        "notes": predictor.notes,  # what a bare model file lacks (labels, preprocessing)
    }
    runtime = predictor.runtime_info()
    if runtime:
        out["runtime"] = runtime
    for _ in range(spec["warmup"]):
        predictor.predict(image)
    plan = RunPlan(**spec["runs"])
    out["latencies_ms"] = timed_runs(lambda: predictor.predict(image), plan)
    batch = np.repeat(image, spec["batch"], axis=0)
    predictor.predict(batch)  # warm the batch-B shape (TFLite reallocates on a new batch size)
    out["throughput_ips"] = batch_throughput(lambda: predictor.predict(batch), spec["batch"], plan)
    if spec.get("test"):
        pixels_file, labels = spec["test"]
        if labels and isinstance(labels[0], str):  # a bare model: class folders named by its labels
            from .bare import label_indices

            labels = label_indices(labels, predictor.labels or [], predictor.path.name, spec.get("data_root"))
        out["accuracy"] = _accuracy(predictor, pixels_file, labels, spec["batch"])
        out["test_count"] = len(labels)
    return out


def _accuracy(predictor, pixels_file: str | list[str], labels: list[int], batch: int) -> float:
    """Top-1 accuracy on the test images the parent decoded once for every artifact (uint8 .npy),
    or on image paths, decoded here at the model's own input size (a bare file's)."""
    if isinstance(pixels_file, list):
        from ..core.images import load_batch

        pixels = load_batch(pixels_file, predictor.size)
    else:
        pixels = np.load(pixels_file, mmap_mode="r")
    step = max(batch, 32)
    probs = [predictor.predict(np.asarray(pixels[i : i + step], np.float32)) for i in range(0, len(pixels), step)]
    return float((np.concatenate(probs).argmax(axis=1) == np.asarray(labels)).mean())


def run_child(spec: dict[str, Any], timeout_s: float) -> dict[str, Any]:
    """Measure one (artifact, threads) in a fresh process; its result, or TkError saying why not.

    On any exception here (Ctrl-C, SIGTERM made Terminated, the timeout) subprocess.run kills the
    child before re-raising; if this process is killed outright, die_with_parent ends the child."""
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": os.environ.get("TF_CPP_MIN_LOG_LEVEL", "3")}
    spec = {**spec, "parent": os.getpid()}
    started_at = time.time()
    try:
        proc = subprocess.run(
            [sys.executable, "-c", _CHILD, json.dumps(spec)], capture_output=True, text=True, timeout=timeout_s, env=env
        )
    except subprocess.TimeoutExpired:
        raise TkError(f"{spec['artifact']}: bench did not finish in {timeout_s:.0f} s; use fewer --runs") from None
    lines = [line[len(_MARK) :] for line in proc.stdout.splitlines() if line.startswith(_MARK)]
    if not lines and proc.returncode < 0:  # killed by a signal: the kernel's OOM killer, or a user
        name = signal.Signals(-proc.returncode).name
        raise TkError(
            f"{spec['artifact']}: the measuring process was killed by {name} (out of memory?); "
            "pass a smaller --batch or fewer --threads"
        )
    if not lines:
        tail = "\n".join(proc.stderr.strip().splitlines()[-15:])
        raise RuntimeError(f"bench process for {spec['artifact']} failed (exit {proc.returncode}):\n{tail}")
    result = json.loads(lines[-1])
    if "error" in result:
        raise TkError(result["error"])
    result["cold_start_s"] = result.pop("first_prediction_at") - started_at
    return result
