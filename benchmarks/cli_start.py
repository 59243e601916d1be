"""Device CLI start (issue 19 item 2): `tk predict` on one image against a minimal script, and
`tk --version` / `tk --help`, each a fresh process as a user runs it.

    python benchmarks/cli_start.py MODEL.tflite|MODEL.onnx IMAGE [--runs 7] [--tree DIR] [--entry M:F]
        [--before-tree DIR --before-entry M:F] [--bundle DIR]

Every command runs as the console script would (`from M import F; sys.exit(F())`, argv[0] = tk)
with PYTHONPATH=the tree, so a source tree is measured without installing it (--before-tree: an
older checkout, e.g. `git archive BASE toolkit | tar -x -C DIR`). The commands of one round run
back to back in a rotating order, so each round is a pair (or a set) measured under the same
machine load; a ratio is the median of the per-round ratios, not a ratio of medians. Wall and CPU
(user + sys of the child, from wait4) are reported: on a loaded machine wall varies with the
neighbours, CPU much less.

The minimal script is what a user would write by hand: load the same runtime (ai_edge_litert's
Interpreter or onnxruntime's InferenceSession), decode the image with Pillow at the model's input
size, run it, print the top class index.
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

MINIMAL_TFLITE = """
import sys
import numpy as np
from PIL import Image
from ai_edge_litert.interpreter import Interpreter
it = Interpreter(model_path=sys.argv[1])
it.allocate_tensors()
inp, out = it.get_input_details()[0], it.get_output_details()[0]
h, w = inp["shape"][1:3]
img = Image.open(sys.argv[2]).convert("RGB").resize((w, h), Image.BILINEAR)
it.set_tensor(inp["index"], np.asarray(img, dtype=inp["dtype"])[None])
it.invoke()
print(sys.argv[2], int(it.get_tensor(out["index"])[0].argmax()))
"""

MINIMAL_ONNX = """
import sys
import numpy as np
from PIL import Image
import onnxruntime as ort
s = ort.InferenceSession(sys.argv[1], providers=["CPUExecutionProvider"])
inp = s.get_inputs()[0]
h, w = inp.shape[1:3]
img = Image.open(sys.argv[2]).convert("RGB").resize((w, h), Image.BILINEAR)
dtype = np.uint8 if "uint8" in inp.type else np.float32
print(sys.argv[2], int(s.run(None, {inp.name: np.asarray(img, dtype=dtype)[None]})[0][0].argmax()))
"""

LAUNCH = "import sys; sys.argv[0] = 'tk'; from {module} import {func}; sys.exit({func}())"


def timed(argv: list[str], env: dict) -> tuple[float, float]:
    """(wall, cpu) seconds of one fresh process; its output is discarded, a failure is fatal."""
    start = time.perf_counter()
    proc = subprocess.Popen(argv, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    _, status, usage = os.wait4(proc.pid, 0)
    wall = time.perf_counter() - start
    proc.returncode = os.waitstatus_to_exitcode(status)
    err = proc.stderr.read().decode()
    proc.stderr.close()
    if proc.returncode != 0:
        sys.exit(f"{' '.join(argv)}: exit {proc.returncode}\n{err}")
    return wall, usage.ru_utime + usage.ru_stime


def environment(**extra: str) -> dict:
    """This environment, less PYTHONDONTWRITEBYTECODE: an installed tk runs from cached bytecode
    (pip compiles it; a source tree caches it on its first run), as the runtimes' packages do; the
    untimed warm-up round writes the caches. Compiling toolkit's sources on every start would
    add ~45 ms to tk and nothing to the minimal script."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    return {**env, **extra}


def tk(tree: Path, entry: str, args: list[str]) -> tuple[list[str], dict]:
    module, func = entry.split(":")
    env = environment(PYTHONPATH=str(tree), TF_CPP_MIN_LOG_LEVEL="3")
    return [sys.executable, "-c", LAUNCH.format(module=module, func=func), *args], env


def rounds(commands: dict[str, tuple[list[str], dict]], runs: int) -> dict[str, list[tuple[float, float]]]:
    """Each command once per round (after one untimed warm-up round: file cache, .pyc files),
    in an order rotated each round so that none always goes first."""
    names = list(commands)
    for name in names:
        timed(*commands[name])
    results: dict[str, list[tuple[float, float]]] = {n: [] for n in names}
    for r in range(runs):
        for name in names[r % len(names) :] + names[: r % len(names)]:
            results[name].append(timed(*commands[name]))
    return results


def load() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def machine() -> str:
    """The CPU's model name and the SIMD flags that decide the runtimes' kernels (Linux)."""
    text = Path("/proc/cpuinfo").read_text()
    name = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith("model name")), "?")
    flags = set(next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith("flags")), []))
    shown = " ".join(f"{f}={'yes' if f in flags else 'no'}" for f in ("avx2", "avx512f", "avx512_vnni", "amx_tile"))
    return f"{name}, {os.cpu_count()} cores, {shown}; Python {sys.version.split()[0]}"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("model", type=Path)
    parser.add_argument("image", type=Path)
    parser.add_argument("--runs", type=int, default=7)
    parser.add_argument("--tree", type=Path, default=Path(__file__).resolve().parents[1])
    parser.add_argument("--entry", default="toolkit.cli.launch:main", help="the console script's module:function")
    parser.add_argument("--before-tree", type=Path)
    parser.add_argument("--before-entry", default="toolkit.cli.app:app")
    parser.add_argument("--bundle", type=Path, help="also tk verify BUNDLE (a scratch copy: it writes to it)")
    opts = parser.parse_args()

    model, image = str(opts.model.resolve()), str(opts.image.resolve())
    minimal = MINIMAL_ONNX if model.endswith(".onnx") else MINIMAL_TFLITE
    commands = {"minimal": ([sys.executable, "-c", minimal, model, image], environment())}
    trees = {"": (opts.tree, opts.entry)}
    if opts.before_tree:
        trees["before "] = (opts.before_tree, opts.before_entry)
    for label, (tree, entry) in trees.items():
        commands[f"{label}tk predict"] = tk(tree, entry, ["predict", model, image])
    for label, (tree, entry) in trees.items():
        if opts.bundle:
            commands[f"{label}tk verify BUNDLE"] = tk(tree, entry, ["verify", str(opts.bundle.resolve())])
    for label, (tree, entry) in trees.items():
        commands[f"{label}tk --version"] = tk(tree, entry, ["--version"])
        commands[f"{label}tk --help"] = tk(tree, entry, ["--help"])

    print(machine())
    print(f"load average before: {load()}")
    results = rounds(commands, opts.runs)
    print(f"load average after: {load()}")
    print(f"{opts.runs} rounds; median (min-max) seconds")
    print(f"{'command':<24} {'wall':>22} {'cpu':>22}")
    for name, rows in results.items():
        walls, cpus = [w for w, _ in rows], [c for _, c in rows]
        print(
            f"{name:<24} {statistics.median(walls):>8.3f} ({min(walls):.3f}-{max(walls):.3f})"
            f" {statistics.median(cpus):>8.3f} ({min(cpus):.3f}-{max(cpus):.3f})"
        )
    pairs = [("tk predict", "minimal"), ("before tk predict", "minimal")]
    pairs += [(t, f"before {t}") for t in ("tk predict", "tk verify BUNDLE", "tk --version", "tk --help")]
    print("paired ratios, median of per-round ratios (wall, cpu)")
    for a, b in pairs:
        if a in results and b in results:
            walls = [x[0] / y[0] for x, y in zip(results[a], results[b], strict=True)]
            cpus = [x[1] / y[1] for x, y in zip(results[a], results[b], strict=True)]
            print(f"{a + ' / ' + b:<44} {statistics.median(walls):6.2f} {statistics.median(cpus):6.2f}")


if __name__ == "__main__":
    main()
