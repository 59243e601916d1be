"""Issue 4 targets: two consecutive `tk bench` runs of one run folder, plus an edge cold start.

    .venv/bin/python benchmarks/edge_bench.py RUN_DIR [--base-python BASE_VENV/bin/python]
        [--threads 1,2] [--runs 50] [--warmup 10] [--batch 8]

Prints a Markdown block for BENCHMARKS.md: the table of the second run, then the figures the
issue asks for (int8 vs float32 TFLite p50, fastest artifact vs the Keras model, edge cold start
and peak RSS of a .tflite in a base-install process (no TensorFlow) against the TensorFlow path,
and how far the two consecutive runs' p50 differ). `--base-python` is a venv made with the base
install only (`python -m venv B && B/bin/pip install .`); its `tk bench` runs on a copy of the
.tflite/.onnx files and manifest, so it cannot touch the main run's bench.json.
It measures; it asserts nothing. The machine's load average is printed before and after,
because other processes on a shared machine move every figure.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path


def tk_bench(tk: Path, targets: list[str], args: argparse.Namespace, threads: str) -> dict:
    cmd = [
        str(tk),
        "bench",
        *targets,
        "--threads",
        threads,
        "--runs",
        str(args.runs),
        "--warmup",
        str(args.warmup),
        "--batch",
        str(args.batch),
        "--json",
    ]
    print("$ " + " ".join(cmd), file=sys.stderr)
    proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if proc.returncode != 0:
        sys.exit(f"tk bench failed:\n{proc.stderr[-3000:]}")
    return json.loads(proc.stdout)


def by_key(report: dict) -> dict[tuple[str, int], dict]:
    return {(r["file"], r["threads"]): r for r in report["rows"]}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--base-python", type=Path, help="python of a base-install venv (no TensorFlow)")
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--runs", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=10)
    parser.add_argument("--batch", type=int, default=8)
    args = parser.parse_args()
    tk = Path(sys.executable).parent / "tk"
    load_before = os.getloadavg()

    first = tk_bench(tk, [str(args.run)], args, args.threads)
    second = tk_bench(tk, [str(args.run)], args, args.threads)
    edge = None
    if args.base_python:
        with tempfile.TemporaryDirectory(prefix="tk-edge-") as tmp:
            for name in ("model_int8.tflite", "model_float32.tflite", "manifest.json", "split.json"):
                shutil.copy(args.run / name, tmp)
            base_tk = args.base_python.parent / "tk"
            edge = tk_bench(base_tk, [f"{tmp}/model_int8.tflite", f"{tmp}/model_float32.tflite"], args, "1")
    load_after = os.getloadavg()

    from toolkit.edge.bench import HEADERS, format_row

    rows = second["rows"]
    print(
        f"machine: {second['machine']['cpu']}, {second['machine']['cores']} cores, {second['machine']['os']}, "
        f"Python {second['machine']['python']}; "
        + ", ".join(f"{k} {v}" for k, v in second["machine"]["versions"].items())
    )
    print(
        f"load average before {load_before[0]:.2f}, after {load_after[0]:.2f}; {args.runs} runs after {args.warmup} "
        f"warm-up, throughput at batch {args.batch}\n"
    )
    print("| " + " | ".join(HEADERS) + " |\n|" + "---|" * len(HEADERS))
    for r in rows:
        print("| " + " | ".join(format_row(r)) + " |")
    print()
    one, two = by_key(first), by_key(second)
    for threads in sorted({t for _, t in two}):
        int8, f32, keras = (two.get((f, threads)) for f in ("model_int8.tflite", "model_float32.tflite", "model.keras"))
        if int8 and f32:
            print(
                f"- threads {threads}: int8 TFLite p50 {int8['p50_ms']:.2f} ms = "
                f"{int8['p50_ms'] / f32['p50_ms']:.2f}x float32 TFLite ({f32['p50_ms']:.2f} ms)"
            )
        fastest = min(
            (r for (f, t), r in two.items() if t == threads and not r["reference"]), key=lambda r: r["p50_ms"]
        )
        if keras:
            print(
                f"- threads {threads}: fastest {fastest['file']} p50 {fastest['p50_ms']:.2f} ms is "
                f"{keras['p50_ms'] / fastest['p50_ms']:.1f}x faster than the Keras model ({keras['p50_ms']:.2f} ms)"
            )
    keras = two.get(("model.keras", 1))
    if edge:
        for r in edge["rows"]:
            print(
                f"- edge cold start (base install, {r['file']}, tensorflow loaded: {r['tensorflow_loaded']}): "
                f"{r['cold_start_s']:.2f} s, peak RSS {r['peak_rss_mb']:.0f} MB"
                + (
                    f"; TensorFlow path (model.keras): {keras['cold_start_s']:.2f} s, {keras['peak_rss_mb']:.0f} MB"
                    if keras
                    else ""
                )
            )
    drifts = {k: abs(two[k]["p50_ms"] - one[k]["p50_ms"]) / one[k]["p50_ms"] for k in two if k in one}
    worst = max(drifts, key=drifts.get)
    within = sum(d <= 0.10 for d in drifts.values())
    print(
        f"- two consecutive runs: p50 within 10% for {within}/{len(drifts)} rows; largest difference "
        f"{drifts[worst]:.0%} ({worst[0]}, threads {worst[1]}: "
        f"{one[worst]['p50_ms']:.2f} -> {two[worst]['p50_ms']:.2f} ms)"
    )
    print("\n<details><summary>per-row p50 drift between the two runs</summary>\n")
    for file, threads in sorted(drifts):
        a, b = one[(file, threads)]["p50_ms"], two[(file, threads)]["p50_ms"]
        print(f"- {file} threads {threads}: {a:.2f} -> {b:.2f} ms ({(b - a) / a:+.0%})")
    print("\n</details>")


if __name__ == "__main__":
    main()
