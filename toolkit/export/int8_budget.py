"""int8 within a budget (export.int8_budget), on every runtime: the fastest int8 variant that keeps
accuracy and agreement with the float model within the budget, or plain int8 recorded as failed.

The budget is judged against the Keras reference on the VALIDATION split: disjoint from the train
images int8 calibrates on, and from the test split `tk verify` judges, so verify stays an
independent check. Per runtime, the variants are the runtime's own way of keeping a few ops float:

- LiteRT: the selective float fallback (export/int8_fallback.py; TFLite's QuantizationDebugger).
- ONNX Runtime: quantize_static's nodes_to_exclude, nodes ranked by their own quantization error
  (onnxruntime.quantization.qdq_loss_debug: the SQNR of each tensor before and after its Q/DQ pair,
  on calibration images), 1, 2, 4, ... of the worst left float.
- OpenVINO: NNCF's quantize_with_accuracy_control, given the budget as its metric and max drop.

Each variant's cost is recorded: which ops stayed float, size, a quick one-thread p50 against plain
int8 and float32, agreement and accuracy delta, within export.int8_fallback's caps (max_size_ratio
of the plain int8 file, max_float_layers ops) and the latency cap (export.int8_budget.
max_latency_ratio of float32's p50): a variant that meets the budget only by running as slowly as
float32 is refused, and plain int8 is kept, marked failed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, Callable, Optional

import numpy as np

from ..core.errors import TkError
from ..core.images import load_batch
from ..core.io import size_bytes
from ..core.metrics import accuracy
from ..core.recipe import Int8BudgetSection
from ..core.runs import SPLIT, check_files_exist
from ..core.sections import Threshold
from ..edge.parity import check, compare
from ..edge.timing import cpu_ms_p50

if TYPE_CHECKING:
    from .job import ExportJob

BUDGET_SPLIT = "validation"
LATENCY_WARMUP, LATENCY_RUNS = 5, 50  # a quick CPU-time p50 to rank variants; `tk bench` measures properly
RANKING_IMAGES = 32  # calibration images the ONNX per-node error is measured on


def budget_threshold(budget: Int8BudgetSection) -> Threshold:
    return Threshold(min_agreement=budget.min_agreement, max_accuracy_drop=budget.max_accuracy_drop)


class Judge:
    """The budget's verdict on a model's probabilities over the validation split."""

    def __init__(self, job: "ExportJob"):
        items = job.split.splits.get(BUDGET_SPLIT, [])
        if not items:
            raise TkError(
                f"{job.run_dir}/{SPLIT}: the {BUDGET_SPLIT} split is empty, so the int8 budget has no images "
                "disjoint from calibration to judge on; re-run tk train with a validation split, or remove "
                "export.int8_budget"
            )
        paths = [p for p, _ in items]
        check_files_exist(paths, job.run_dir, job.split)
        self.images, self.labels = load_batch(paths, job.size), np.asarray([y for _, y in items])
        self.reference = np.asarray(job.model.predict(self.images, verbose=0, batch_size=32))
        self.ref_accuracy = accuracy(self.labels, self.reference)
        self.budget = job.section.int8_budget
        self.threshold = budget_threshold(self.budget)
        self.margin = job.recipe.verify.confident_margin

    def __call__(self, probs: np.ndarray) -> tuple[bool, dict[str, Any]]:
        result = compare(self.reference, probs, self.labels, self.ref_accuracy, self.margin)
        failures = check(result, self.threshold)
        return not failures, {
            "agreement": result["agreement"],
            "accuracy": result["accuracy"],
            "accuracy_delta": result["accuracy_delta"],
            "failures": failures,
        }

    def record(self) -> dict[str, Any]:
        return {
            "budget": {"max_accuracy_drop": self.budget.max_accuracy_drop, "min_agreement": self.budget.min_agreement},
            "split": BUDGET_SPLIT,
            "images": int(len(self.images)),
            "reference_accuracy": self.ref_accuracy,
        }


def judge_of(job: "ExportJob") -> Judge:
    """The export's one Judge: the validation images are decoded and the reference run once per export."""
    if getattr(job, "budget_judge", None) is None:
        job.budget_judge = Judge(job)
    return job.budget_judge


def p50_ms(run: Callable[[np.ndarray], Any], image: np.ndarray) -> float:
    """Median CPU ms of one batch-1 prediction on one thread (see edge.timing.cpu_ms_p50)."""
    batch = image[None]
    return cpu_ms_p50(lambda: run(batch), LATENCY_RUNS, LATENCY_WARMUP)


def over_latency_cap(
    judge: Judge, chosen: Callable[[np.ndarray], Any], float32: Callable[[np.ndarray], Any]
) -> Optional[dict[str, Any]]:
    """None when a variant that keeps ops float is fast enough (or there is no cap); else what was
    measured, for its `tried` entry. Quick one-thread p50s of CPU time (steady under load), float32
    timed between two of the variant's so that a change in between weighs on both sides."""
    ratio = judge.budget.max_latency_ratio
    if ratio is None:
        return None
    image = judge.images[0]
    first, reference, second = p50_ms(chosen, image), p50_ms(float32, image), p50_ms(chosen, image)
    variant = min(first, second)
    if variant <= ratio * reference:
        return None
    return {"over_latency_cap": True, "p50_ms": variant, "float32_p50_ms": reference, "max_latency_ratio": ratio}


def summary(
    judge: Judge,
    variants: dict[str, tuple[Callable[[np.ndarray], np.ndarray], int]],
    chosen_ok: bool,
    float_ops: list[str],
    method: str,
    tried: list[dict[str, Any]],
) -> dict[str, Any]:
    """The manifest record: variants {"float32"|"int8"|"chosen": (predict on one thread, size)}."""
    record = {**judge.record(), "method": method, "passed": bool(chosen_ok), "float_ops": float_ops, "tried": tried}
    image = judge.images[0]
    record["size_bytes"] = {name: int(size) for name, (_, size) in variants.items()}
    record["p50_ms_1_thread"] = {name: p50_ms(run, image) for name, (run, _) in variants.items()}
    for name in ("int8", "chosen"):
        _, details = judge(
            np.concatenate([variants[name][0](judge.images[i : i + 32]) for i in range(0, len(judge.images), 32)])
        )
        record.setdefault("agreement", {})[name] = details["agreement"]
        record.setdefault("accuracy_delta", {})[name] = details["accuracy_delta"]
    return record


def say_result(job: "ExportJob", runtime: str, record: dict[str, Any]) -> None:
    ops, sizes, p50 = record["float_ops"], record["size_bytes"], record["p50_ms_1_thread"]
    cost = (
        f"{len(ops)} op(s) float, {sizes['chosen'] / 1e6:.2f} MB (int8 {sizes['int8'] / 1e6:.2f}), p50 "
        f"{p50['chosen']:.2f} CPU ms (int8 {p50['int8']:.2f}, float32 {p50['float32']:.2f}; 1 thread), agreement "
        f"{record['agreement']['chosen']:.1%}, accuracy {record['accuracy_delta']['chosen']:+.3f} on "
        f"{record['images']} {record['split']} images"
    )
    slow = next((t for t in record["tried"] if t.get("over_latency_cap")), None)
    slow_ops = slow.get("float_ops", slow.get("float_layers")) if slow else None
    if record["passed"]:
        job.ctx.say(f"int8 budget ({runtime}): met with {cost}")
    elif slow:
        job.ctx.say(
            f"warning: int8 budget ({runtime}): the variant that meets export.int8_budget keeps "
            f"{slow_ops} op(s) float and costs p50 {slow['p50_ms']:.2f} CPU ms against float32's "
            f"{slow['float32_p50_ms']:.2f} (over max_latency_ratio {slow['max_latency_ratio']}): no faster "
            f"than float32; kept plain int8, marked failed: {cost}"
        )
    else:
        job.ctx.say(
            f"warning: int8 budget ({runtime}): no variant within export.int8_fallback's caps meets "
            f"export.int8_budget; kept plain int8, marked failed: {cost}"
        )


# --- LiteRT: the selective float fallback -------------------------------------------------------


def tflite_within_budget(job: "ExportJob") -> tuple[bytes, dict[str, Any]]:
    """int8_gate's float fallback judged by the budget; the .tflite bytes and the budget record."""
    from ..edge.predictors import TFLiteModel
    from .int8_gate import int8_with_fallback

    judge = judge_of(job)
    chosen, fallback = int8_with_fallback(job, threshold=judge.threshold)
    work = job.workdir / "tflite-budget"
    work.mkdir(exist_ok=True)
    # The writers' own float32 and plain int8 when the export writes them: converted once per job.
    files = {"float32": job.tflite("none"), "chosen": chosen}
    files["int8"] = chosen if not fallback["float_layers"] else job.tflite("int8")
    variants = {}
    for name, model in files.items():
        (work / f"{name}.tflite").write_bytes(model)
        variants[name] = (TFLiteModel(work / f"{name}.tflite", num_threads=1).run, len(model))
    passed, float_layers = fallback["passed"], list(fallback["float_layers"])
    slow = over_latency_cap(judge, variants["chosen"][0], variants["float32"][0]) if passed and float_layers else None
    if slow:
        fallback["tried"].append({"float_layers": len(float_layers), "size_bytes": len(chosen), **slow})
        chosen, variants["chosen"], passed, float_layers = files["int8"], variants["int8"], False, []
    record = summary(
        judge,
        variants,
        passed,
        float_layers,
        "TFLite QuantizationDebugger denylist (int8 float fallback), ranked by relative int8 error",
        fallback["tried"],
    )
    say_result(job, "LiteRT", record)
    return chosen, {"int8_budget": record, "fallback": fallback}


# --- ONNX Runtime: nodes_to_exclude, ranked by qdq_loss_debug ------------------------------------


# An activation's rounding happens at the Q/DQ pair after it, but ONNX Runtime fuses Conv+Relu: the
# unit to keep float is the compute op with the activations that follow it.
ACTIVATIONS = ("Relu", "Clip", "LeakyRelu", "Sigmoid", "HardSigmoid", "HardSwish", "Tanh")


def onnx_node_ranking(
    prepared: Path, plain_int8: Path, calibration: np.ndarray, work: Path
) -> list[tuple[list[str], float]]:
    """([node names of the prepared model], SQNR in dB of their output's int8 rounding), worst first.

    qdq_loss_debug's qdq_err compares each activation before and after its QuantizeLinear/
    DequantizeLinear pair in the int8 model: the error that tensor's quantization adds, measured on
    calibration images. Each score goes to the node producing the tensor, grouped with the compute op
    it follows (Relu -> the Conv before it), so that excluding a group keeps that computation float.
    """
    import onnx
    from onnxruntime.quantization.qdq_loss_debug import (
        collect_activations,
        compute_activation_error,
        create_activation_matching,
        modify_model_output_intermediate_tensors,
    )

    from .onnx_int8 import _Reader

    augmented_q, augmented_f = work / "debug-int8.onnx", work / "debug-float.onnx"
    modify_model_output_intermediate_tensors(str(plain_int8), str(augmented_q))
    modify_model_output_intermediate_tensors(str(prepared), str(augmented_f))
    model = onnx.load(str(prepared))
    name = model.graph.input[0].name
    images = calibration[:RANKING_IMAGES]
    quantized = collect_activations(str(augmented_q), _Reader(name, images))
    floats = collect_activations(str(augmented_f), _Reader(name, images))
    errors = compute_activation_error(create_activation_matching(quantized, floats))
    producer = {out: node for node in model.graph.node for out in node.output}
    groups: dict[tuple[str, ...], float] = {}
    for tensor, error in errors.items():
        node, sqnr = producer.get(tensor), error.get("qdq_err")
        if node is None or sqnr is None or not np.isfinite(sqnr):
            continue
        members = [node.name]
        while node.op_type in ACTIVATIONS and node.input and node.input[0] in producer:
            node = producer[node.input[0]]
            members.insert(0, node.name)
        key = tuple(members)
        groups[key] = min(float(sqnr), groups.get(key, float("inf")))
    return sorted(((list(k), v) for k, v in groups.items()), key=lambda item: item[1])


def onnx_within_budget(job: "ExportJob", float_file: Path, out: Path, quantize: Callable[..., dict]) -> dict[str, Any]:
    """Write the fastest ONNX int8 within the budget to `out` (plain int8 when none is); return the record.

    `quantize(out, nodes_to_exclude)` writes one int8 variant (calibrated once, onnx_int8's cache)."""
    from ..edge.predictors import OnnxPredictor
    from .onnx_int8 import prepared_model

    judge, settings = judge_of(job), job.section.int8_fallback
    work = job.workdir / "onnx-int8"  # the folder `quantize` keeps its prepared model and ranges in
    work.mkdir(exist_ok=True)
    manifest = {"classes": job.labels, "preprocessing": job.manifest["preprocessing"]}

    def run(path: Path):
        return OnnxPredictor(path, manifest, num_threads=1).predict

    def verdict(path: Path) -> tuple[bool, dict[str, Any]]:
        return judge(run(path)(judge.images))

    plain = work / "int8-plain.onnx"
    fields = quantize(plain, ())
    ok, details = verdict(plain)
    tried = [{"float_ops": 0, "size_bytes": size_bytes(plain), "passed": ok, **details}]
    chosen, excluded = plain, []
    if not ok:
        ranked = [
            group for group, _ in onnx_node_ranking(prepared_model(float_file, work), plain, job.calibration, work)
        ]
        limit = min(settings.max_float_layers or len(ranked), len(ranked))
        max_size = size_bytes(plain) * settings.max_size_ratio
        k = 1
        while k <= limit:
            candidate = work / f"int8-exclude-{k}.onnx"
            nodes = [name for group in ranked[:k] for name in group]
            quantize(candidate, nodes)
            if size_bytes(candidate) > max_size:
                tried.append({"float_ops": k, "size_bytes": size_bytes(candidate), "over_size_budget": True})
                break
            ok, details = verdict(candidate)
            tried.append({"float_ops": k, "size_bytes": size_bytes(candidate), "passed": ok, **details})
            if ok:
                chosen, excluded = candidate, nodes
                break
            k = limit if k < limit <= 2 * k else 2 * k
    if chosen is not plain:
        slow = over_latency_cap(judge, run(chosen), run(float_file))
        if slow:
            tried.append({"float_ops": len(excluded), "size_bytes": size_bytes(chosen), **slow})
            chosen, excluded = plain, []
    record = summary(
        judge,
        {
            "float32": (run(float_file), size_bytes(float_file)),
            "int8": (run(plain), size_bytes(plain)),
            "chosen": (run(chosen), size_bytes(chosen)),
        },
        chosen is not plain or bool(tried[0]["passed"]),
        excluded,
        "onnxruntime quantize_static nodes_to_exclude, ranked by qdq_loss_debug qdq_err (SQNR)",
        tried,
    )
    chosen.replace(out)
    say_result(job, "ONNX Runtime", record)
    return {**fields, "int8_budget": record}
