"""Cached feature extraction, before against after (issue 19 item 6): the same extractor, two trees.

    python benchmarks/extract_pair.py --a-tree DIR --b-tree DIR [--rounds 4] [--work /tmp/extract-pair]

Times only what a second `tk train` of a features recipe runs per image: tk's extraction with the
converted TFLite extractor already cached (`features._run_tflite`: Pillow decode on threads, one
batch ahead of LiteRT), MobileNetV2 at 180 px (random weights) over 450 synthetic 320 px JPEGs.
The extractor and images are made once in --work, so both trees run the same bytes. Each round
runs one process per tree (PYTHONPATH=the tree; an older checkout: `git worktree add DIR COMMIT`),
in an order that alternates between rounds; each process times 5 extractions and reports the
median wall and CPU seconds. The ratio is the median of the per-round B/A ratios.
benchmarks/feature_extraction.py compares tk with the seed notebooks' loop in one process.
It measures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ONE = """
import json, os, statistics, sys, time
from pathlib import Path
from toolkit.core.context import SILENT
from toolkit.train.features import _run_tflite
work = Path(sys.argv[1])
paths = sorted(str(p) for p in (work / "data").rglob("*.jpg"))
walls, cpus = [], []
for _ in range(5):
    wall, cpu = time.perf_counter(), time.process_time()
    _run_tflite(work / "extractor.tflite", paths, 180, SILENT)
    walls.append(time.perf_counter() - wall)
    cpus.append(time.process_time() - cpu)
print(json.dumps({"wall": statistics.median(walls), "cpu": statistics.median(cpus), "images": len(paths)}))
"""


def prepare(work: Path) -> None:
    """The images and the converted extractor, made once with this checkout's tk."""
    if (work / "extractor.tflite").exists():
        return
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
    from toolkit.core.recipe import ModelSection
    from toolkit.data.synth import make_synthetic_dataset
    from toolkit.train.backbones import build_base, get_backbone
    from toolkit.train.features import _convert, build_extractor

    work.mkdir(parents=True, exist_ok=True)
    if not (work / "data").exists():  # made whole or not at all (make_synthetic_dataset renames it into place)
        make_synthetic_dataset(work / "data", classes=3, per_class=150, size=320)
    model = ModelSection(backbone="mobilenet_v2", weights="none", image_size=180)
    extractor = build_extractor(build_base(model), 180, get_backbone("mobilenet_v2").scaling)
    partial = work / "extractor.tflite.partial"
    partial.write_bytes(_convert(extractor))
    partial.replace(work / "extractor.tflite")


def one(tree: str, work: Path) -> dict:
    env = {**os.environ, "PYTHONPATH": tree, "TF_CPP_MIN_LOG_LEVEL": "3"}
    out = subprocess.run([sys.executable, "-c", ONE, str(work)], env=env, capture_output=True, text=True, check=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a-tree", required=True)
    parser.add_argument("--b-tree", required=True)
    parser.add_argument("--rounds", type=int, default=4)
    parser.add_argument("--work", type=Path, default=Path("/tmp/extract-pair"))
    args = parser.parse_args()
    prepare(args.work)
    trees = {"a": args.a_tree, "b": args.b_tree}
    rounds = []
    for i in range(args.rounds):
        load, start = os.getloadavg()[0], time.strftime("%H:%M:%S")
        order = "ab" if i % 2 == 0 else "ba"
        result = {side: one(trees[side], args.work) for side in order}
        rounds.append(result)
        print(
            f"round {i + 1} ({order}, {start}, load {load:.2f} -> {os.getloadavg()[0]:.2f}): "
            f"A wall {result['a']['wall']:.3f} s cpu {result['a']['cpu']:.3f} s, "
            f"B wall {result['b']['wall']:.3f} s cpu {result['b']['cpu']:.3f} s",
            flush=True,
        )
    print(f"\nA = {args.a_tree}, B = {args.b_tree}; {rounds[0]['a']['images']} images, 5 extractions a process")
    for measure in ("wall", "cpu"):
        ratios = [r["b"][measure] / r["a"][measure] for r in rounds]
        print(f"B/A {measure}: {statistics.median(ratios):.3f}x (range {min(ratios):.3f}-{max(ratios):.3f})")


if __name__ == "__main__":
    main()
