"""ONNX int8 (onnxruntime QDQ) vs the float32 ONNX export of a tk run: size, p50 latency, parity.

    python benchmarks/onnx_int8_bench.py RUN [MinMax,Percentile,Entropy]

RUN is a trained and exported run folder (model.onnx present).
"""

import json
import os
import sys
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np
import onnxruntime as ort

from toolkit.core.context import Context
from toolkit.core.images import load_batch
from toolkit.core.recipe import load_recipe
from toolkit.core.runs import load_split
from toolkit.export.job import ExportJob  # calibration exactly as tk export samples it
from toolkit.export.onnx_int8 import quantize_onnx_int8 as quantize


def p50(path: Path, image: np.ndarray, threads: int, warmup: int = 20, runs: int = 300) -> float:
    options = ort.SessionOptions()
    options.intra_op_num_threads, options.inter_op_num_threads = threads, 1
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
    feed = {session.get_inputs()[0].name: image}
    for _ in range(warmup):
        session.run(None, feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        session.run(None, feed)
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def predict(path: Path, images: np.ndarray) -> np.ndarray:
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    return session.run(None, {session.get_inputs()[0].name: images})[0]


def main() -> None:
    run = Path(sys.argv[1])
    methods = sys.argv[2].split(",") if len(sys.argv) > 2 else ["MinMax"]
    recipe = load_recipe(run / "recipe.yaml")
    job = ExportJob(run, recipe, 17, Context(say=print))
    calibration = job.calibration
    job.close()
    split = load_split(run / "split.json")
    size = tuple(json.loads((run / "manifest.json").read_text())["preprocessing"]["size"])
    test = load_batch([p for p, _ in split.splits["test"]], size)
    float_path = run / "model.onnx"
    ref = predict(float_path, test)
    print(
        f"calibration {calibration.shape}, test {test.shape}; float ONNX predicts "
        f"{len(set(ref.argmax(1)))} classes, probability spread {ref.std(0).mean():.3f}"
    )
    rows = [("float32", float_path, None)]
    for method in methods:
        for act in ("uint8", "int8"):
            out = run / f"model_int8_{act}_{method}.onnx"
            start = time.perf_counter()
            info = quantize(float_path, calibration, out, activations=act, method=method)
            rows.append((f"int8 QDQ, act {act}, {method} ({time.perf_counter() - start:.0f} s)", out, info))
    one = test[:1]
    print("| model | size (MB) | p50 1 thread (ms) | p50 2 threads (ms) | top-1 agreement | max abs diff |")
    print("|---|---:|---:|---:|---:|---:|")
    for name, path, _ in rows:
        got = predict(path, test)
        lat = [p50(path, one, t) for t in (1, 2)]
        print(
            f"| {name} | {path.stat().st_size / 1e6:.2f} | {lat[0]:.2f} | {lat[1]:.2f} | "
            f"{(got.argmax(1) == ref.argmax(1)).mean():.1%} | {np.abs(got - ref).max():.2e} |",
            flush=True,
        )
    print(json.dumps(rows[1][2], indent=1))


if __name__ == "__main__":
    main()
