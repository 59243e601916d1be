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

from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..core.errors import TkError
from ..core.images import load_batch
from ..core.io import format_size
from ..core.metrics import accuracy
from ..core.quiet import silenced_stderr
from ..core.runs import SPLIT, check_files_exist
from ..core.sections import Threshold
from ..edge.parity import check, compare, limits_for
from ..edge.predictors import TFLiteModel
from ..edge.timing import cpu_ms_p50
from .int8_fallback import search
from .job import ExportJob

GATE_SPLIT = "validation"
# A quick p50: enough runs to rank two models on one machine; `tk bench` measures properly.
LATENCY_WARMUP, LATENCY_RUNS = 5, 50


class Gate:
    """verify's int8 judgement of candidate models on the gate split; remembers the best one."""

    def __init__(self, job: ExportJob, threshold: Optional[Threshold] = None):
        self.images, self.labels = _gate_images(job)
        self.reference = np.asarray(job.model.predict(self.images, verbose=0, batch_size=32))
        self.ref_accuracy = accuracy(self.labels, self.reference)
        # export.int8_budget's limits when set (int8_budget.py), else verify's own int8 gate
        self.threshold = threshold or limits_for("int8", job.recipe.verify)
        self.margin = job.recipe.verify.confident_margin
        self.path = job.workdir / "int8-candidate.tflite"  # the export's temp folder, not the run
        self.calls = 0
        self.best: Optional[tuple[tuple, int, bytes]] = None  # (rank, call index, model)

    def __call__(self, model: bytes) -> tuple[bool, dict[str, Any]]:
        self.path.write_bytes(model)
        probs = TFLiteModel(self.path).run(self.images)
        result = compare(self.reference, probs, self.labels, self.ref_accuracy, self.margin)
        ok = not check(result, self.threshold)
        # Passing first, then agreement; among equals the smaller file.
        rank = (ok, result["agreement"], result["confident_agreement"] or 0.0, -len(model))
        if self.best is None or rank > self.best[0]:
            self.best = (rank, self.calls, model)
        self.calls += 1
        return ok, {k: result[k] for k in ("agreement", "confident_agreement", "accuracy", "max_abs_diff")}


def int8_with_fallback(job: ExportJob, threshold: Optional[Threshold] = None) -> tuple[bytes, dict[str, Any]]:
    """The int8 flatbuffer to write, and what the manifest records about its fallback.

    threshold: the limits to meet (default: verify.thresholds.int8).

    Within budget and still failing, it keeps the best candidate tried (by agreement), which may
    be plain int8: a bigger, slower model that agrees no better is no fallback.
    """
    settings = job.section.int8_fallback
    gate = Gate(job, threshold)
    where = f"{len(gate.images)} {GATE_SPLIT} images"
    plain = job.tflite("int8")
    plain_ok, plain_result = gate(plain)
    tried = [{"float_layers": 0, "size_bytes": len(plain), "passed": plain_ok, "converter": True, **plain_result}]
    record: dict[str, Any] = {
        "split": GATE_SPLIT,
        "images": int(len(gate.images)),
        "passed": plain_ok,
        "float_layers": [],
        "tried": tried,
    }
    if plain_ok:
        job.ctx.say(f"int8 fallback: not needed, plain int8 passes the int8 gate on {where}")
        return plain, record
    job.ctx.say(
        f"int8 fallback: plain int8 fails the int8 gate on {where} (agreement "
        f"{plain_result['agreement']:.1%}); keeping the most sensitive layers in float"
    )
    with silenced_stderr():  # the quantizer's settings and LiteRT's delegate lines, once per try
        found = search(
            job.saved_model,
            job.representative,
            job.section.int8_io,
            gate,
            max_size_bytes=int(len(plain) * settings.max_size_ratio),
            max_float_layers=settings.max_float_layers,
        )
    gate.path.unlink(missing_ok=True)
    _, index, chosen = gate.best
    layers = 0 if index == 0 else found["tried"][index - 1]["float_layers"]  # call 0 was plain
    if layers == 0:
        chosen = plain  # the converter's own int8, not the debugger's equivalent
    record.update(
        passed=bool(gate.best[0][0]),
        float_layers=found["ranked"][:layers],
        tried=tried + found["tried"],
        max_float_layers=settings.max_float_layers,
        max_size_ratio=settings.max_size_ratio,
        size_bytes={"int8": len(plain), "chosen": len(chosen)},
        size_ratio=round(len(chosen) / len(plain), 3),
        latency_p50_ms={
            "int8": _p50_ms(plain, gate.images[0], job.workdir),
            "chosen": _p50_ms(chosen, gate.images[0], job.workdir),
        },
    )
    cost = (
        f"{layers} layer(s) kept float, {format_size(len(plain))} -> {format_size(len(chosen))}, p50 "
        f"{record['latency_p50_ms']['int8']:.2f} -> {record['latency_p50_ms']['chosen']:.2f} ms (1 thread)"
    )
    if record["passed"]:
        job.ctx.say(f"int8 fallback: the gate passes with {cost}")
    else:
        job.ctx.say(
            f"warning: int8 fallback spent its budget (export.int8_fallback) before the gate passed; kept the "
            f"best-agreeing try: {cost}; tk verify will fail it (raise max_size_ratio or max_float_layers, "
            "gate on confident images with verify.thresholds.int8.min_confident_agreement, or ship float16)"
        )
    return chosen, record


def _gate_images(job: ExportJob) -> tuple[np.ndarray, np.ndarray]:
    split = job.split
    items = split.splits.get(GATE_SPLIT, [])
    if not items:
        raise TkError(
            f"{job.run_dir}/{SPLIT}: the {GATE_SPLIT} split is empty, so int8 fallback has nothing to "
            "judge int8 on; re-run tk train with a validation split, or set export.int8_fallback.enabled: false"
        )
    paths = [p for p, _ in items]
    check_files_exist(paths, job.run_dir, split)
    return load_batch(paths, job.size), np.asarray([y for _, y in items])


def _p50_ms(model: bytes, image: np.ndarray, workdir: Path) -> float:
    """Median CPU ms of one batch-1 prediction on one thread (what a small device gives one model)."""
    path = workdir / "int8-latency.tflite"
    path.write_bytes(model)
    runner = TFLiteModel(path, num_threads=1)
    batch = image[None]
    p50 = cpu_ms_p50(lambda: runner.run(batch), LATENCY_RUNS, LATENCY_WARMUP)
    path.unlink(missing_ok=True)
    return p50
