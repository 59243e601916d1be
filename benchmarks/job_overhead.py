"""Per-step cost of a 2-process tk train job against one process, one compute thread each.

    python benchmarks/job_overhead.py --workload quickstart --processes 2     # prints one JSON line
    python benchmarks/job_overhead.py --workload mobilenet_v2 --processes 1

Trains the workload with `tk train` (JAX backend; N processes on 127.0.0.1 with gloo CPU
collectives), reads process 0's epoch lines and prints the steady epochs' seconds per step (an
epoch's train and validation steps; the first epoch, which compiles, is left out). Every XLA
computation runs on one thread (--xla_cpu_multi_thread_eigen=false, intra_op_parallelism_threads=1)
so a process is one core's worth of compute: two processes on a 2-core machine are two workers
that exchange gradients every step, not a faster machine.

Workloads (made once under --root, decoded once; both processes share the decode cache):
- quickstart: recipes/quickstart.yaml as it is (MiniVGGNet from scratch, 48 px, global batch 32),
  epochs from --epochs.
- mobilenet_v2: MobileNetV2 224, frozen base inside the model (mode: augment) with a random-init
  stand-in weights file (no ImageNet download here), 3 synthetic classes x 40 images, batch 16.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import socket
import statistics
import subprocess
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
ONE_THREAD = "--xla_cpu_multi_thread_eigen=false intra_op_parallelism_threads=1"


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def recipe_for(workload: str, root: Path, epochs: int) -> Path:
    root.mkdir(parents=True, exist_ok=True)
    if workload == "quickstart":
        raw = yaml.safe_load((REPO / "recipes" / "quickstart.yaml").read_text())
        raw["data"]["root"] = str(root / "quickstart-data")
    else:
        raw = {
            "name": "mnv2_frozen",
            "seed": 42,
            "data": {"root": str(root / "mnv2-data"), "synth": {"classes": 3, "per_class": 40, "size": 64}},
            "model": {"backbone": "mobilenet_v2", "weights": str(standin(root)), "image_size": 224},
            "train": {"mode": "augment", "batch_size": 16, "augment": {"flip": "horizontal"}},
        }
    raw["train"].update({"epochs": epochs, "backend": "jax"})
    path = root / f"{workload}.yaml"
    path.write_text(yaml.safe_dump(raw, sort_keys=False))
    return path


def standin(root: Path) -> Path:
    """Random-init MobileNetV2 224 weights in a file: what `model.weights: <file>` loads. Step time
    does not depend on the values."""
    path = root / "mobilenet_v2_224_random.weights.h5"
    if not path.is_file():
        code = (
            "import keras; keras.utils.set_random_seed(5); "
            "keras.applications.MobileNetV2(weights=None, include_top=False, input_shape=(224, 224, 3))"
            f".save_weights({str(path)!r})"
        )
        subprocess.run([sys.executable, "-c", code], check=True, env={**os.environ, "KERAS_BACKEND": "jax"})
    return path


def run(recipe: Path, processes: int, root: Path) -> str:
    """process 0's stdout of `tk train` as a job of `processes` (a plain run for 1)."""
    env = {**os.environ, "PYTHONPATH": str(REPO), "TK_CACHE_DIR": str(root / "cache"), "XLA_FLAGS": ONE_THREAD}
    runs = str(root / f"runs-{processes}")
    base = [sys.executable, "-m", "toolkit", "train", str(recipe), "--runs-dir", runs]
    if processes == 1:
        return subprocess.run(base, env=env, capture_output=True, text=True, check=True).stdout
    port = free_port()
    procs = [
        subprocess.Popen(
            base[:5]
            + ["--runs-dir", f"{runs}/{p}", "--processes", str(processes), "--process-id", str(p)]
            + ["--coordinator", f"127.0.0.1:{port}"],
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for p in range(processes)
    ]
    outputs = [proc.communicate() for proc in procs]
    for proc, (_, err) in zip(procs, outputs, strict=True):
        if proc.returncode:
            raise SystemExit(f"process exited {proc.returncode}: {err[-2000:]}")
    return outputs[0][0]


def steady_step_seconds(stdout: str, recipe: Path) -> dict:
    """Seconds per step of every epoch after the first, from '[phase] epoch k/N ... R img/s' lines."""
    raw = yaml.safe_load(recipe.read_text())
    data = re.search(r"train (\d+), validation (\d+)", stdout)
    train, val = int(data.group(1)), int(data.group(2))
    batch = raw["train"]["batch_size"]
    steps = -(-train // batch) + -(-val // batch)
    rates = [float(r) for r in re.findall(r"\] epoch \d+/\d+ .* (\d+) img/s", stdout)]
    seconds = [train / r / steps for r in rates[1:]]  # img/s counts the epoch's train images over its whole time
    return {
        "steps_per_epoch": steps,
        "step_s": [round(s, 4) for s in seconds],
        "median_step_s": statistics.median(seconds),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--workload", choices=("quickstart", "mobilenet_v2"), required=True)
    parser.add_argument("--processes", type=int, default=2)
    parser.add_argument("--epochs", type=int, default=6)
    parser.add_argument("--root", type=Path, default=Path("/tmp/tk-job-bench"))
    args = parser.parse_args()
    recipe = recipe_for(args.workload, args.root, args.epochs)
    stdout = run(recipe, args.processes, args.root)
    print(json.dumps({"workload": args.workload, "processes": args.processes, **steady_step_seconds(stdout, recipe)}))


if __name__ == "__main__":
    main()
