"""`tk export --quantize int8` with export.int8_fallback: int8 that passes the int8 gate.

The gate is verify's own: the int8 thresholds of the recipe (verify.thresholds.int8), judged
against the Keras reference. The search judges candidates on the VALIDATION split, so that
`tk verify`, which judges the test split, stays an independent check of the chosen model (a
model tuned until it passes on the test split would pass it by construction). The layers come
from int8_fallback.search (TFLite's QuantizationDebugger ranks them, its denylist keeps them
float). What it cost, in size and in batch-1 latency (a quick LiteRT p50, not a benchmark), goes
into the manifest entry.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.errors import TkError
from ..core.images import load_batch
from ..core.metrics import accuracy
from ..core.recipe import Threshold
from ..core.runs import SPLIT, check_files_exist, load_split
from ..edge.predictors import TFLiteModel
from .converters import tflite_from_saved_model
from .int8_fallback import search
from .verify import check, compare

if TYPE_CHECKING:
    from .exporter import ExportJob

GATE_SPLIT = "validation"
# A quick p50: enough runs to rank two models on one machine; `tk bench` measures properly.
LATENCY_WARMUP, LATENCY_RUNS = 5, 50


def int8_with_fallback(job: "ExportJob", workdir: Path) -> tuple[bytes, dict[str, Any]]:
    """The int8 flatbuffer to write, and what the manifest records about its fallback."""
    settings = job.section.int8_fallback
    threshold = job.recipe.verify.thresholds.get("int8", Threshold())
    images, labels = _gate_images(job)
    reference = np.asarray(job.model.predict(images, verbose=0, batch_size=32))
    ref_accuracy = accuracy(labels, reference)
    margin = job.recipe.verify.confident_margin
    candidate = workdir / "int8-candidate.tflite"

    def passes(model: bytes) -> tuple[bool, dict[str, Any]]:
        candidate.write_bytes(model)
        probs = TFLiteModel(candidate).run(images)
        result = compare(reference, probs, labels, ref_accuracy, margin)
        failures = check(result, threshold)
        return not failures, {k: result[k] for k in ("agreement", "confident_agreement", "accuracy", "max_abs_diff")}

    plain = tflite_from_saved_model(job.saved_model, "int8", job.representative, job.section.int8_io)
    plain_ok, plain_result = passes(plain)
    if plain_ok:
        job.say(f"int8 fallback: not needed, plain int8 passes the int8 gate on {len(images)} {GATE_SPLIT} images")
        return plain, {"split": GATE_SPLIT, "images": int(len(images)), "passed": True, "float_layers": [],
                       "tried": [{"float_layers": 0, "size_bytes": len(plain), "passed": True, **plain_result}]}
    job.say(f"int8 fallback: plain int8 fails the int8 gate on {len(images)} {GATE_SPLIT} images "
            f"(agreement {plain_result['agreement']:.1%}); keeping the most sensitive layers in float")
    found = search(job.saved_model, job.representative, job.section.int8_io, passes,
                   max_size_bytes=int(len(plain) * settings.max_size_ratio),
                   max_float_layers=settings.max_float_layers)
    chosen, plain_size = found["model"], len(plain)
    record = {
        "split": GATE_SPLIT, "images": int(len(images)), "passed": found["passed"],
        "float_layers": found["float_layers"],
        "tried": [{"float_layers": 0, "size_bytes": plain_size, "passed": False, "converter": True, **plain_result},
                  *found["tried"]],
        "max_float_layers": settings.max_float_layers, "max_size_ratio": settings.max_size_ratio,
        "size_bytes": {"int8": plain_size, "chosen": len(chosen)},
        "size_ratio": round(len(chosen) / plain_size, 3),
        "latency_p50_ms": {"int8": _p50_ms(plain, images[0], workdir), "chosen": _p50_ms(chosen, images[0], workdir)},
    }
    candidate.unlink(missing_ok=True)
    cost = (f"{len(found['float_layers'])} layer(s) kept float, {plain_size / 1e6:.2f} -> {len(chosen) / 1e6:.2f} MB, "
            f"p50 {record['latency_p50_ms']['int8']:.2f} -> {record['latency_p50_ms']['chosen']:.2f} ms")
    if found["passed"]:
        job.say(f"int8 fallback: the gate passes with {cost}")
    else:
        job.say(f"warning: int8 fallback reached its budget (export.int8_fallback) before the gate passed: {cost}; "
                "tk verify will fail this model (raise max_size_ratio / max_float_layers, or ship float16)")
    return chosen, record


def _gate_images(job: "ExportJob") -> tuple[np.ndarray, np.ndarray]:
    items = load_split(job.run_dir / SPLIT).splits.get(GATE_SPLIT, [])
    if not items:
        raise TkError(f"{job.run_dir}/{SPLIT}: the {GATE_SPLIT} split is empty, so int8 fallback has nothing to "
                      "judge int8 on; re-run tk train with a validation split, or set export.int8_fallback.enabled: false")
    paths = [p for p, _ in items]
    check_files_exist(paths, job.run_dir)
    return load_batch(paths, job.size), np.asarray([y for _, y in items])


def _p50_ms(model: bytes, image: np.ndarray, workdir: Path) -> float:
    """Median batch-1 latency on one thread (what a small device gives one model)."""
    path = workdir / "int8-latency.tflite"
    path.write_bytes(model)
    runner = TFLiteModel(path, num_threads=1)
    batch = image[None]
    for _ in range(LATENCY_WARMUP):
        runner.run(batch)
    times = []
    for _ in range(LATENCY_RUNS):
        start = time.perf_counter()
        runner.run(batch)
        times.append(time.perf_counter() - start)
    path.unlink(missing_ok=True)
    return round(float(np.median(times)) * 1e3, 3)
