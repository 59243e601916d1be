"""tk's page against each runtime's own minimal example: does the page add latency? (issue 25 item 5)

For every (model, runtime) of a web bundle, alternately (A B A B ...): tk's page in its bench mode
(what `tk bench --web` times: pixels -> runtime input, the runtime's call, output -> probabilities)
and benchmarks/web/minimal.html (the runtime's README example: run() on a prepared input). Same
Chromium flags, same server (COOP/COEP), same threads, same pixels, same warm-up and run count. The
figure is p50(tk page) / p50(minimal) per pair; the median over the pairs is reported.

    python benchmarks/web_page_overhead.py BUNDLE [--pairs 5] [--runs 200] [--warmup 20]
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

from toolkit.edge.machine import machine_info  # noqa: E402
from toolkit.web.chromium import chromium_version, cpu_flags, find_chromium, headless  # noqa: E402
from toolkit.web.harness import drive  # noqa: E402
from toolkit.web.server import BundleServer, Harness  # noqa: E402
from toolkit.web.verify import load_web  # noqa: E402


def tk_page(bundle: Path, item: dict, runs: int, warmup: int) -> float:
    latencies: list[float] = []

    def on_post(body):
        latencies.extend(body.get("latencies_ms", []))
        return {"ok": True}

    job = {"mode": "bench", "items": [item], "checkset": {"pixels": "checkset/pixels.u8", "count": 1},
           "warmup": warmup, "runs": runs, "rounds": 1, "accuracy": False}
    drive(bundle, job, on_post, timeout_s=300)
    return statistics.median(latencies)


def minimal_page(bundle: Path, item: dict, runs: int, warmup: int) -> float:
    harness = Harness({})
    query = urlencode({"file": item["file"], "runtime": item["runtime"], "runs": runs, "warmup": warmup})
    with BundleServer(bundle, harness) as server, headless(f"{server.url}minimal.html?{query}", find_chromium()):
        body, answer = harness.next_post(300)
        answer.put({"stop": True})
    return statistics.median(body["latencies_ms"])


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("bundle", type=Path)
    parser.add_argument("--pairs", type=int, default=5)
    parser.add_argument("--runs", type=int, default=200)
    parser.add_argument("--warmup", type=int, default=20)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="tk-overhead-"))
    try:
        bundle = work / "bundle"
        shutil.copytree(args.bundle, bundle, copy_function=os.link)
        shutil.copyfile(HERE / "web" / "minimal.html", bundle / "minimal.html")
        machine = machine_info()
        print(f"Chromium {chromium_version(find_chromium())}, {machine['cpu']}, {machine['cores']} cores, "
              f"CPU flags: {' '.join(cpu_flags())}")
        print("| model | runtime | p50 tk page ms | p50 minimal ms | ratio (median of pairs) | pair ratios |")
        print("|---|---|---|---|---|---|")
        for model in load_web(bundle)["models"]:
            item = {"file": model["file"], "runtime": model["runtime"]}
            pairs = [(tk_page(bundle, item, args.runs, args.warmup), minimal_page(bundle, item, args.runs, args.warmup))
                     for _ in range(args.pairs)]
            ratios = [a / b for a, b in pairs]
            print(f"| {item['file']} | {item['runtime']} | {statistics.median(a for a, _ in pairs):.3f} | "
                  f"{statistics.median(b for _, b in pairs):.3f} | {statistics.median(ratios):.3f} | "
                  f"{' '.join(f'{r:.2f}' for r in ratios)} |", flush=True)
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    main()
