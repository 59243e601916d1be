"""`tk bench`'s measurements of one artifact: a row per thread count, each from a fresh process
(bench_child.py), and its accuracy once: from test images decoded once for every artifact, or
from tk verify's record when verify judged the same file on the same images on this machine.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..core.context import Context
from ..core.progress import tracked
from ..core.runs import REFERENCE, artifact_path
from .bench_child import run_child


def percentiles(values: Sequence[float]) -> dict[str, float]:
    arr = np.asarray(values, dtype=np.float64)
    p50, p90, p99 = np.percentile(arr, [50, 90, 99])
    return {
        "p50_ms": float(p50),
        "p90_ms": float(p90),
        "p99_ms": float(p99),
        "mean_ms": float(arr.mean()),
        "min_ms": float(arr.min()),
    }


def measure_artifact(
    run_dir: Path,
    entry: dict[str, Any],
    settings: Any,  # bench.BenchSettings (bench imports this module)
    image: Optional[str],
    pixels: Optional[Path | list[str]],
    labels: Optional[list[int]],
    call: dict[str, Any],
    ctx: Context,
) -> list[dict[str, Any]]:
    """One row per thread count, each measured in a fresh process. `pixels` is the test images
    decoded once (decoded_test), or their paths when the input size is known only to the model
    (a bare file: its child decodes them at the size the model declares)."""
    file, rows = entry["file"], []
    verified = verified_accuracy(entry, labels, call["machine"])
    if verified is not None:
        pixels = None  # tk verify ran this very file over these test images here: not a second time
    for threads in tracked(
        ctx.progress, f"bench {file} (threads {','.join(map(str, settings.threads))})", list(settings.threads)
    ):
        ctx.say(f"bench {run_dir.resolve().name}/{file}  threads {threads}")
        spec = {
            "artifact": str(artifact_path(run_dir, file)),
            "threads": threads,
            "image": image,
            "warmup": settings.warmup,
            "runs": settings.plan.to_json(),
            "batch": settings.batch,
            # Accuracy does not depend on threads (int8 too: tests/edge/test_bench.py checks it):
            # measured once per artifact, at its largest thread count (the quickest).
            "test": [pixels if isinstance(pixels, list) else str(pixels), labels]
            if pixels is not None and threads == max(settings.threads)
            else None,
            "data_root": str(ctx.data_root) if ctx.data_root else None,
        }
        result = run_child(spec, settings.timeout_s)
        for note in result.pop("notes", []):  # what the child found out (a bare model's labels)
            ctx.say(f"note: {note}")
        latencies = result.pop("latencies_ms")
        rows.append(
            {
                "file": file,
                "format": entry.get("format"),
                "quantization": entry.get("quantization", "none"),
                "reference": file == REFERENCE,
                "threads": threads,
                "size_bytes": entry.get("size_bytes"),
                "sha256": entry.get("sha256"),
                "runs": len(latencies),
                "runs_setting": settings.plan.setting(),
                "accuracy": None,
                "test_count": len(labels) if labels else None,
                **call,
                **percentiles(latencies),
                **result,
            }
        )
    measured = next((r["accuracy"] for r in rows if r.get("accuracy") is not None), verified)
    for row in rows:
        row["accuracy"] = measured
        row["accuracy_from"] = "verify" if verified is not None else "bench"
    return rows


def verified_accuracy(entry: dict[str, Any], labels: Optional[list[int]], machine: str) -> Optional[float]:
    """The artifact's test accuracy as tk verify measured it, when that was this file (sha256), on
    this machine, on the test split bench would use (same count): the same runtime on the same
    images gives the same predictions, so bench need not run them again."""
    record = (entry.get("metrics") or {}).get("verify")
    if not isinstance(record, dict) or not labels:
        return None
    same = (
        record.get("sha256") == entry.get("sha256")
        and record.get("machine") == machine
        and record.get("split") == "test"
        and record.get("count") == len(labels)
        and "error" not in record
    )
    accuracy = record.get("accuracy")
    return float(accuracy) if same and isinstance(accuracy, (int, float)) else None


def decoded_test(paths: list[str], manifest: dict[str, Any], folder: Path, ctx: Context) -> Optional[Path]:
    """The test images decoded once (uint8, at the run's input size) for every artifact's accuracy,
    instead of once per artifact in each measuring process."""
    from ..core.images import load_pixels

    size = (manifest.get("preprocessing") or {}).get("size")
    if not (isinstance(size, list) and len(size) == 2):
        return None
    path = folder / "test.npy"
    out = np.lib.format.open_memmap(path, "w+", np.uint8, (len(paths), int(size[0]), int(size[1]), 3))
    with ctx.progress.task(f"bench: decoding {len(paths)} test images", len(paths)) as task:
        for i, image in enumerate(paths):
            out[i] = load_pixels(image, (int(size[0]), int(size[1])))
            task.advance(1)
    out.flush()
    del out
    return path
