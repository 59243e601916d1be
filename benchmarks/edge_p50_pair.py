"""Edge p50s, before against after (issue 19 item 6): `tk bench` of two trees, paired rounds.

    python benchmarks/edge_p50_pair.py --a-tree DIR --a-run RUN --b-tree DIR --b-run RUN
        [--pairs 3] [--threads 1,2] [--runs 300] [--warmup 30]

Each round runs `python -m toolkit bench RUN --json` once per tree (PYTHONPATH=the tree, so an
older checkout is measured without installing it: `git worktree add /tmp/base COMMIT`), in an
order that alternates between rounds, so a pair shares the machine's load. Runs are fixed (not
adaptive) so both sides time the same number of predictions. Give each side its own copy of the
run folder: bench writes bench.json there. The ratio of a row is the median of the per-round
B/A ratios of its p50, with their range; the machine's load average is printed per round.
It measures; it asserts nothing.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys


def bench(tree: str, run: str, args: argparse.Namespace) -> dict[tuple[str, int], float]:
    cmd = [sys.executable, "-m", "toolkit", "bench", run, "--threads", args.threads]
    cmd += ["--runs", str(args.runs), "--warmup", str(args.warmup), "--json"]
    env = {**os.environ, "PYTHONPATH": tree}
    out = subprocess.run(cmd, env=env, capture_output=True, text=True, check=True, cwd=tree).stdout
    rows = json.loads(out)["rows"]
    return {(r["file"], r["threads"]): r["p50_ms"] for r in rows}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--a-tree", required=True)
    parser.add_argument("--a-run", required=True)
    parser.add_argument("--b-tree", required=True)
    parser.add_argument("--b-run", required=True)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--threads", default="1,2")
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=30)
    args = parser.parse_args()
    sides = {"a": (args.a_tree, args.a_run), "b": (args.b_tree, args.b_run)}
    rounds: list[dict[str, dict]] = []
    for i in range(args.pairs):
        load = os.getloadavg()[0]
        order = "ab" if i % 2 == 0 else "ba"
        rounds.append({side: bench(*sides[side], args) for side in order})
        print(f"round {i + 1} ({order}): load {load:.2f} -> {os.getloadavg()[0]:.2f}", flush=True)
    if any(set(r["a"]) != set(r["b"]) for r in rounds):
        sys.exit("error: the two runs benched different artifacts or threads; give both the same formats")
    print(f"\nA = {args.a_tree}, B = {args.b_tree}; {args.runs} runs after {args.warmup} warm-up")
    print("\n| artifact | threads | A p50 ms (median) | B p50 ms (median) | B/A (median) | range |")
    print("|---|---:|---:|---:|---:|---|")
    for key in rounds[0]["a"]:
        a = [r["a"][key] for r in rounds]
        b = [r["b"][key] for r in rounds]
        ratios = [y / x for x, y in zip(a, b, strict=True)]
        print(
            f"| {key[0]} | {key[1]} | {statistics.median(a):.2f} | {statistics.median(b):.2f} "
            f"| {statistics.median(ratios):.3f}x | {min(ratios):.3f}-{max(ratios):.3f} |"
        )


if __name__ == "__main__":
    main()
