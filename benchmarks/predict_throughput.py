"""`tk predict` over many images against a plain Pillow + runtime loop (issue 19 item 3).

    python benchmarks/predict_throughput.py loop ARTIFACT DIR       # the plain loop, batch 1
    python benchmarks/predict_throughput.py pair ARTIFACT DIR [--pairs 3] [--tk 'python -m toolkit']
    python benchmarks/predict_throughput.py batches ARTIFACT DIR [--sizes 1,2,4,8,16,32] [--repeats 3]

loop:    what a user writes without tk: Pillow opens each file exactly as core/images.py does
         (JPEG draft at the model size, EXIF orientation, RGB, bilinear resize), the runtime's own
         API (ai_edge_litert Interpreter or onnxruntime InferenceSession, as many threads as
         cores, as tk), one image per call, a plain `astype` quantization for an integer input,
         and one "file: label probability" line per image. Nothing of tk is imported.
pair:    the loop and `tk predict ARTIFACT DIR` (the real console entry) as whole processes,
         interleaved (tk, loop, tk, loop, ...) after one untimed warm-up of each; each run's CPU
         seconds (user + sys) and peak RSS come from the kernel's accounting of the finished
         child (os.wait4), its wall time from a monotonic clock. Prints min/median/max of each
         and the tk/loop ratios pair by pair. Public tools only: the same as /usr/bin/time -v.
batches: in one process, tk's predictor on DIR's images decoded once, at each batch size: CPU
         and wall seconds per image (best of --repeats, the machine is shared). This is the
         measurement edge/batching.py's PREDICT_BATCH table is chosen from.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

# The loop imports only what it uses (numpy, Pillow, the runtime): argparse, subprocess and
# statistics are the harness's, imported below the loop's entry, so they are not in its figures.

SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")


def images_in(folder: str) -> list[Path]:
    return sorted(p for p in Path(folder).rglob("*") if p.is_file() and p.suffix.lower() in SUFFIXES)


def plain_loop(artifact: str, folder: str) -> None:
    import numpy as np
    from PIL import Image, ImageOps

    path = Path(artifact)
    labels = (path.parent / "labels.txt").read_text().split()
    threads = os.cpu_count()
    if path.suffix == ".tflite":
        from ai_edge_litert.interpreter import Interpreter

        interpreter = Interpreter(model_path=str(path), num_threads=threads)
        interpreter.allocate_tensors()
        inp, out = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        height, width = int(inp["shape"][1]), int(inp["shape"][2])

        def run(x):
            if inp["dtype"] != np.float32:
                scale, zero = inp["quantization"]
                info = np.iinfo(inp["dtype"])
                x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(inp["dtype"])
            interpreter.set_tensor(inp["index"], x)
            interpreter.invoke()
            y = interpreter.get_tensor(out["index"])[0]
            if out["dtype"] != np.float32:
                scale, zero = out["quantization"]
                y = (y.astype(np.float32) - zero) * scale
            return y
    else:
        import onnxruntime as ort

        options = ort.SessionOptions()
        options.intra_op_num_threads = threads
        options.inter_op_num_threads = 1
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        name = session.get_inputs()[0].name
        height, width = session.get_inputs()[0].shape[1:3]

        def run(x):
            return session.run(None, {name: x})[0][0]

    for file in images_in(folder):
        img = Image.open(file)
        if img.format == "JPEG":
            img.draft("RGB", (width, height))
        img = ImageOps.exif_transpose(img).convert("RGB")
        if img.size != (width, height):
            img = img.resize((width, height), Image.Resampling.BILINEAR)
        probs = run(np.asarray(img, dtype=np.float32)[None])
        top = int(np.argmax(probs))
        print(f"{file}: {labels[top]} {float(probs[top]):.3f}")


def timed(argv: list[str]) -> dict[str, float]:
    """One whole process: CPU seconds, wall seconds, peak RSS (MiB), from the kernel's accounting."""
    import shlex
    import subprocess

    start = time.monotonic()
    child = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(child.pid, 0)
    wall = time.monotonic() - start
    child.returncode = os.waitstatus_to_exitcode(status)
    err = child.stderr.read().decode(errors="replace")
    child.stderr.close()
    if child.returncode != 0:
        raise SystemExit(f"{shlex.join(argv)} failed ({child.returncode}): {err.strip()[-400:]}")
    return {"cpu": usage.ru_utime + usage.ru_stime, "wall": wall, "rss": usage.ru_maxrss / 1024}


def spread(values: list[float]) -> str:
    import statistics

    return f"{statistics.median(values):.3f} ({min(values):.3f}-{max(values):.3f})"


def pair(artifact: str, folder: str, pairs: int, tk: str) -> None:
    import shlex

    tk_argv = [*shlex.split(tk), "predict", artifact, folder]
    loop_argv = [sys.executable, __file__, "loop", artifact, folder]
    timed(tk_argv), timed(loop_argv)  # warm-up: page cache, .pyc files
    rows = {"tk": [], "loop": []}
    for _ in range(pairs):
        rows["tk"].append(timed(tk_argv))
        rows["loop"].append(timed(loop_argv))
    print(f"{artifact}: {len(images_in(folder))} images, {pairs} pairs, load {os.getloadavg()[0]:.2f}")
    for side, runs in rows.items():
        print(
            f"  {side:5s} cpu {spread([r['cpu'] for r in runs])} s  wall {spread([r['wall'] for r in runs])} s  "
            f"peak {spread([r['rss'] for r in runs])} MiB"
        )
    for key in ("cpu", "wall"):
        ratios = [a[key] / b[key] for a, b in zip(rows["tk"], rows["loop"], strict=True)]
        print(f"  tk/loop {key}: {spread(ratios)}")
    deltas = [a["rss"] - b["rss"] for a, b in zip(rows["tk"], rows["loop"], strict=True)]
    print(f"  tk-loop peak RSS: {spread(deltas)} MiB")


def batches(artifact: str, folder: str, sizes: list[int], repeats: int) -> None:
    import resource

    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    import numpy as np

    from toolkit.core.images import load_image
    from toolkit.edge.predictors import load_predictor

    predictor = load_predictor(artifact)
    images = np.stack([load_image(p, predictor.size) for p in images_in(folder)])
    predictor.predict(images[:1])
    print(f"{artifact} ({predictor.kind}), {len(images)} images, load {os.getloadavg()[0]:.2f}")
    best = {size: [float("inf"), float("inf"), 0.0] for size in sizes}  # CPU/image, wall/image, first call
    for repeat in range(repeats):  # sizes interleaved, so drift on a shared machine hits them alike
        for size in sizes:
            count = len(images) // size * size  # whole batches only
            start = time.perf_counter()
            predictor.predict(images[:size])  # a reallocation for this size happens here, untimed
            if repeat == 0:
                best[size][2] = time.perf_counter() - start
            before, start = resource.getrusage(resource.RUSAGE_SELF), time.perf_counter()
            for i in range(0, count, size):
                predictor.predict(images[i : i + size])
            wall, after = time.perf_counter() - start, resource.getrusage(resource.RUSAGE_SELF)
            cpu = after.ru_utime + after.ru_stime - before.ru_utime - before.ru_stime
            best[size][0] = min(best[size][0], cpu / count)
            best[size][1] = min(best[size][1], wall / count)
    for size, (cpu, wall, first) in best.items():
        print(
            f"  batch {size:3d}: {cpu * 1000:6.2f} ms CPU/image  {wall * 1000:6.2f} ms wall/image  "
            f"first call at this size {first:.3f} s (a steady batch: {wall * size:.3f} s)"
        )


def main() -> None:
    if sys.argv[1:2] == ["loop"] and len(sys.argv) == 4:
        return plain_loop(sys.argv[2], sys.argv[3])
    import argparse

    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for name in ("loop", "pair", "batches"):
        p = sub.add_parser(name)
        p.add_argument("artifact")
        p.add_argument("folder")
        if name == "pair":
            p.add_argument("--pairs", type=int, default=3)
            p.add_argument("--tk", default=f"{sys.executable} -m toolkit")
        if name == "batches":
            p.add_argument("--sizes", default="1,2,4,8,16,32")
            p.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    if args.command == "pair":
        pair(args.artifact, args.folder, args.pairs, args.tk)
    elif args.command == "batches":
        batches(args.artifact, args.folder, [int(s) for s in args.sizes.split(",")], args.repeats)


if __name__ == "__main__":
    main()
