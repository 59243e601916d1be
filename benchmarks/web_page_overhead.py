"""tk's page against each runtime's own minimal example: does the page add latency? (issue 25 item 5)

For every (model, runtime) of a web bundle, benchmarks/web/overhead.html loads tk.js's runner (A:
what tk's page and `tk bench --web` call: pixels -> runtime input, the runtime's call, output ->
probabilities) and the runtime's own minimal example (B: its README code, run() on an input
prepared once), then times them call by call, A B A B ..., so the shared machine's load hits both
alike. Same page, server (COOP/COEP), threads and pixels. The figure per page load is p50(A) /
p50(B); the table gives the median over --loads page loads, and each one.

    python benchmarks/web_page_overhead.py BUNDLE [--loads 5] [--runs 300] [--warmup 20]
"""

from __future__ import annotations

import argparse
import os
import shutil
import statistics
import sys
import tempfile
from pathlib import Path
from urllib.parse import urlencode

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE.parent))

from toolkit.edge.machine import cpu_flags, machine_info  # noqa: E402
from toolkit.web.chromium import chromium_version, find_chromium, headless  # noqa: E402
from toolkit.web.server import BundleServer, Harness  # noqa: E402
from toolkit.web.verify import load_web  # noqa: E402


def one_load(bundle: Path, item: dict, runs: int, warmup: int) -> tuple[float, float]:
    harness = Harness({})
    query = urlencode({"file": item["file"], "runtime": item["runtime"], "runs": runs, "warmup": warmup})
    with BundleServer(bundle, harness) as server, headless(f"{server.url}overhead.html?{query}", find_chromium()):
        body, answer = harness.next_post(600)
        answer.put({"stop": True})
    return statistics.median(body["tk_ms"]), statistics.median(body["minimal_ms"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--loads", type=int, default=5)
    parser.add_argument("--runs", type=int, default=300)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tk-overhead-"))
    try:
        bundle = work / "bundle"
        shutil.copytree(args.bundle, bundle, copy_function=os.link)
        shutil.copyfile(HERE / "web" / "overhead.html", bundle / "overhead.html")
        machine = machine_info()
        print(
            f"Chromium {chromium_version(find_chromium())}, {machine['cpu']}, {machine['cores']} cores, "
            f"CPU flags: {' '.join(cpu_flags())}"
        )
        print("| model | runtime | p50 tk page ms | p50 minimal ms | ratio (median of loads) | per load |")
        print("|---|---|---|---|---|---|")
        for model in load_web(bundle)["models"]:
            item = {"file": model["file"], "runtime": model["runtime"]}
            pairs = [one_load(bundle, item, args.runs, args.warmup) for _ in range(args.loads)]
            ratios = [a / b for a, b in pairs]
            print(
                f"| {item['file']} | {item['runtime']} | {statistics.median(a for a, _ in pairs):.3f} | "
                f"{statistics.median(b for _, b in pairs):.3f} | {statistics.median(ratios):.3f} | "
                f"{' '.join(f'{r:.2f}' for r in ratios)} |",
                flush=True,
            )
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
