"""Batch-1 latency of one artifact through tk's own predictor, as one process (for paired whole-process timing).

    python benchmarks/runtime_latency.py RUN/model_int8.xml --threads 1 --runs 300

Loads the artifact as `tk bench` does (load_predictor: the manifest beside it, its sha256 checked),
predicts one real test image of the run `--warmup` times untimed, then `--runs` times, and prints one
JSON line: file, threads, p50/p90 ms (wall), CPU ms per prediction, and what the runtime ran with
(OpenVINO: inference precision).
Timing the whole process from outside (e.g. `/usr/bin/time -v`, A and B alternated) adds start-up,
load and compile to the in-process p50, which `tk bench` reports as cold start.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact", type=Path)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=10)
    args = parser.parse_args()

    from toolkit.core.images import load_image
    from toolkit.core.runs import load_split
    from toolkit.edge.predictors import load_predictor

    predictor = load_predictor(args.artifact, num_threads=args.threads)
    split = load_split(args.artifact.parent / "split.json")
    image = load_image(split.paths("test")[0], predictor.size)[None]
    for _ in range(args.warmup):
        predictor.predict(image)
    times = []
    cpu_start = time.process_time()
    for _ in range(args.runs):
        start = time.perf_counter()
        predictor.predict(image)
        times.append((time.perf_counter() - start) * 1e3)
    # CPU seconds the process spent per prediction (all its threads): on a shared, loaded machine
    # wall-clock latency measures the queue for a core; CPU time measures the work. At 1 thread it
    # is the latency an idle core would give; at 2 threads it adds what idle threads spin.
    cpu_ms = (time.process_time() - cpu_start) * 1e3 / args.runs
    p50, p90 = np.percentile(times, [50, 90])
    print(
        json.dumps(
            {
                "file": args.artifact.name,
                "threads": args.threads,
                "p50_ms": round(float(p50), 3),
                "p90_ms": round(float(p90), 3),
                "cpu_ms_per_prediction": round(cpu_ms, 3),
                **predictor.runtime_info(),
            }
        )
    )


if __name__ == "__main__":
    main()
