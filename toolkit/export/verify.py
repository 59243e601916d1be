"""tk verify: does every exported artifact predict what the trained Keras model predicts?

Each artifact and the reference (the run's model.keras) run on the same held-out images (the run's
own split, decoded once through images.load_batch, exactly as training decoded them) and are
compared: top-1 agreement, max/mean absolute difference of the probabilities, accuracy of each and
the accuracy delta. Each artifact is judged by the thresholds of its kind (float32, float16,
dynamic, int8) from the run's recipe (verify.thresholds). Every artifact is checked and reported
(one ✓/✗ line each, parity.json, metrics in manifest.json) before ParityError names the
failures, so one bad artifact does not hide the state of the others.
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..core.context import SILENT, Context
from ..core.errors import ParityError, TkError
from ..core.formats import tolerance_kind
from ..core.images import load_batch
from ..core.io import check_writable, now, write_json_atomic
from ..core.metrics import accuracy
from ..core.recipe import Threshold, VerifySection
from ..core.runs import REFERENCE, SPLIT, check_files_exist, load_manifest, load_split, record_metrics, run_recipe
from ..edge.machine import machine_info, machine_label
from ..edge.predictors import BATCH, load_predictor

PARITY_FILE = "parity.json"
# Below this spread (max - min over images of any class probability) the reference's outputs are
# nearly constant, and matching them says little about the artifact.
MIN_SPREAD = 0.05


def verify_run(
    run_dir: Path,
    files: Optional[Sequence[str]] = None,
    num_threads: Optional[int] = None,
    check: bool = True,
    ctx: Context = SILENT,
) -> dict[str, Any]:
    """Compare artifacts with the reference, record the results, raise ParityError if any fails
    (with check=False, return the failing report instead: the CLI's --json prints it first).

    `ctx.say` gets one ✓/✗ line per artifact as it is judged (Optimum's validation style);
    `ctx.progress` one task per model run (the reference, then each artifact), advanced per image;
    ctx.data_root is where the images are if the dataset moved (--data-root).
    """
    run_dir = Path(run_dir)
    check_writable(run_dir)  # a read-only run folder fails now, not after every artifact has run
    report = compare_run(run_dir, files, num_threads, ctx)
    persist(run_dir, report)
    _log_to_mlflow(run_dir, report, ctx)
    if check:
        raise_on_failure(run_dir, report)
    if report["passed"]:
        ctx.say(f"all {len(report['artifacts'])} artifacts match the reference; wrote {run_dir / PARITY_FILE}")
    return report


def compare_run(
    run_dir: Path,
    files: Optional[Sequence[str]],
    num_threads: Optional[int] = None,
    ctx: Context = SILENT,
) -> dict[str, Any]:
    """Run the reference and each artifact on the held-out split; the report, nothing written."""
    manifest = load_manifest(run_dir)
    section = _verify_section(run_dir)
    artifacts = _select(manifest, files, run_dir)
    split = load_split(run_dir / SPLIT, ctx.data_root)  # --data-root: the dataset moved
    items = split.splits.get(section.split, [])
    if not items:
        raise TkError(
            f"{run_dir}/{SPLIT}: the {section.split} split is empty; set verify.split "
            "in the recipe to a split with images (test or validation)"
        )
    check_files_exist([p for p, _ in items], run_dir, split)
    labels = np.asarray([y for _, y in items])
    with ctx.progress.task(f"verify: decoding {len(items)} {section.split} images"):
        images = load_batch([p for p, _ in items], tuple(manifest["preprocessing"]["size"]))  # decoded once
    ctx.say(f"verifying {len(artifacts)} artifact(s) of {run_dir} on {len(items)} {section.split} images")

    with ctx.progress.task(f"verify: reference {REFERENCE}", len(images)) as task:
        reference = _predict(load_predictor(run_dir / REFERENCE, num_threads), images, task)
    ref_accuracy = accuracy(labels, reference)
    warnings = degenerate_warnings(reference, manifest["classes"])
    for warning in warnings:
        ctx.say(f"warning: {warning}")
    results = {}
    for file, entry in artifacts.items():
        with ctx.progress.task(f"verify: {file}", len(images)) as task:
            results[file] = _judge(
                run_dir / file, entry, section, reference, labels, ref_accuracy, images, num_threads, task
            )
        ctx.say(result_line(file, results[file]))
    return {
        "run": str(run_dir),
        "split": section.split,
        "count": len(items),
        "measured": now(),
        # bench takes an artifact's accuracy from here when it benches the same file on this machine
        "machine": machine_label(machine_info()),
        "reference": {
            "file": REFERENCE,
            "sha256": manifest["artifacts"].get(REFERENCE, {}).get("sha256"),
            "accuracy": ref_accuracy,
            "warnings": warnings,
        },
        "artifacts": results,
        "passed": all(r["passed"] for r in results.values()),
    }


def _judge(
    path: Path,
    entry: dict[str, Any],
    section: VerifySection,
    reference: np.ndarray,
    labels: np.ndarray,
    ref_accuracy: float,
    images: np.ndarray,
    num_threads: Optional[int],
    task=None,
) -> dict[str, Any]:
    kind = entry.get("tolerance") or tolerance_kind(entry.get("quantization", "none"))
    threshold = section.thresholds.get(kind, Threshold())
    try:
        probs = _predict(load_predictor(path, num_threads), images, task)
        result = {"kind": kind, **compare(reference, probs, labels, ref_accuracy, section.confident_margin)}
    except TkError as exc:  # a corrupt or changed file: a failed artifact, not a stop
        result = {"kind": kind, "passed": False, "error": str(exc), "failures": [str(exc)]}
    else:
        result["failures"] = check(result, threshold)
        result["passed"] = not result["failures"]
    return {**result, "thresholds": dataclasses.asdict(threshold), "sha256": entry.get("sha256")}


def _predict(predictor, images: np.ndarray, task=None) -> np.ndarray:
    """predict_batched, a batch at a time, advancing `task` by the images done."""
    chunks = []
    for start in range(0, len(images), BATCH):
        chunks.append(predictor.predict_batched(images[start : start + BATCH]))
        if task is not None:
            task.advance(len(chunks[-1]))
    return np.concatenate(chunks) if chunks else predictor.predict_batched(images)


def _log_to_mlflow(run_dir: Path, report: dict[str, Any], ctx: Context) -> None:
    """Each artifact's parity figures (1 passed, 0 failed) and parity.json, when training logged to MLflow."""
    from ..train.tracking import log_results

    figures = {"passed": float(report["passed"])}
    for file, result in report["artifacts"].items():
        for key in ("passed", "agreement", "max_abs_diff", "accuracy", "accuracy_delta"):
            if isinstance(result.get(key), (int, float)):
                figures[f"{file}/{key}"] = float(result[key])
    log_results(run_dir, "verify", figures, [run_dir / PARITY_FILE], ctx)


def persist(run_dir: Path, report: dict[str, Any]) -> None:
    """Each artifact's result into the manifest; parity.json with the latest result of every artifact."""
    for file, result in report["artifacts"].items():
        record_metrics(
            run_dir,
            file,
            "verify",
            {
                **result,
                "split": report["split"],
                "count": report["count"],
                "reference_accuracy": report["reference"]["accuracy"],
                "measured": report["measured"],
                "machine": report.get("machine"),
            },
        )
    # `--artifact X` keeps the others' results as long as neither they, the reference nor the
    # split changed since.
    merged = {**_earlier_results(run_dir, report, load_manifest(run_dir)), **report["artifacts"]}
    write_json_atomic(
        run_dir / PARITY_FILE, {**report, "artifacts": merged, "passed": all(r["passed"] for r in merged.values())}
    )


def raise_on_failure(run_dir: Path, report: dict[str, Any], reasons: bool = True) -> None:
    """ParityError naming the failing artifacts; reasons=False when the ✗ lines already said why."""
    results = report["artifacts"]
    failed = [f for f, r in results.items() if not r["passed"]]
    if failed:
        named = (
            "; ".join(f"{f} ({', '.join(results[f]['failures'])})" for f in failed) if reasons else ", ".join(failed)
        )
        raise ParityError(
            f"{len(failed)} of {len(results)} artifacts fail parity: {named}; details in "
            f"{run_dir / PARITY_FILE} (re-export a changed file with tk export {run_dir}, "
            "or loosen verify.thresholds in the recipe if the loss is acceptable)"
        )


def _earlier_results(run_dir: Path, report: dict[str, Any], manifest: dict[str, Any]) -> dict[str, dict]:
    path = run_dir / PARITY_FILE
    try:
        earlier = json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}
    if (
        earlier.get("split") != report["split"]
        or earlier.get("reference", {}).get("sha256") != report["reference"]["sha256"]
    ):
        return {}
    current = manifest.get("artifacts", {})
    return {
        f: r
        for f, r in earlier.get("artifacts", {}).items()
        if f in current and r.get("sha256") and r.get("sha256") == current[f].get("sha256")
    }


def _verify_section(run_dir: Path) -> VerifySection:
    return run_recipe(run_dir).verify


def _select(manifest: dict[str, Any], files: Optional[Sequence[str]], run_dir: Path) -> dict[str, dict]:
    exported = {f: e for f, e in manifest.get("artifacts", {}).items() if f != REFERENCE}
    if not files:
        if not exported:
            raise TkError(f"{run_dir}: no exported artifacts in manifest.json; export first (tk export {run_dir})")
        return exported
    chosen = {}
    for name in files:
        file = Path(name).name
        if file not in exported:
            raise TkError(
                f"--artifact {name}: not an exported artifact of {run_dir}; "
                f"exported: {', '.join(exported) or 'none (run tk export)'}"
            )
        chosen[file] = exported[file]
    return chosen


def compare(
    reference: np.ndarray, probs: np.ndarray, labels: np.ndarray, ref_accuracy: float, confident_margin: float = 0.2
) -> dict[str, Any]:
    if probs.shape != reference.shape:
        raise TkError(f"artifact outputs {probs.shape} but the reference outputs {reference.shape}; re-run tk export")
    diff = np.abs(probs.astype(np.float64) - reference.astype(np.float64))
    acc = accuracy(labels, probs)
    same = np.argmax(probs, 1) == np.argmax(reference, 1)
    confident = top1_margin(reference) >= confident_margin
    return {
        "agreement": float(np.mean(same)),
        # None when no image is confident: there is nothing to judge (check() then fails a set minimum).
        "confident_agreement": float(np.mean(same[confident])) if confident.any() else None,
        "confident_count": int(confident.sum()),
        "confident_margin": confident_margin,
        "max_abs_diff": float(diff.max()),
        "mean_abs_diff": float(diff.mean()),
        "accuracy": acc,
        "accuracy_delta": acc - ref_accuracy,
        # NaN compares False with every limit, so non-finite outputs are counted and failed outright.
        "non_finite_outputs": int(np.size(probs) - np.isfinite(probs).sum()),
        "non_finite_reference": int(np.size(reference) - np.isfinite(reference).sum()),
    }


def top1_margin(probs: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 probability per image: how sure the model is of its decision."""
    if probs.shape[1] < 2:
        return np.ones(len(probs))
    top2 = np.sort(probs, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def check(result: dict[str, float], threshold: Threshold) -> list[str]:
    """The thresholds this result breaks, each as a short phrase."""
    failures = []
    eps = 1e-12  # agreement 1.0 must pass at exactly 1.0
    if result.get("non_finite_outputs"):
        failures.append(f"{result['non_finite_outputs']} NaN/Inf outputs")
    if result.get("non_finite_reference"):
        failures.append(
            f"{result['non_finite_reference']} NaN/Inf outputs from model.keras (retrain: lower train.learning_rate)"
        )
    if threshold.max_abs_diff is not None and result["max_abs_diff"] > threshold.max_abs_diff:
        failures.append(f"max diff {result['max_abs_diff']:.2e} > {threshold.max_abs_diff:.0e}")
    if threshold.min_agreement is not None and result["agreement"] < threshold.min_agreement - eps:
        failures.append(f"agreement {result['agreement']:.1%} < {threshold.min_agreement:.1%}")
    if threshold.min_confident_agreement is not None:
        confident = result.get("confident_agreement")
        if confident is None:
            failures.append(f"no confident image (margin >= {result.get('confident_margin', 0):.2f}) to judge")
        elif confident < threshold.min_confident_agreement - eps:
            failures.append(f"confident agreement {confident:.1%} < {threshold.min_confident_agreement:.1%}")
    drop = -result["accuracy_delta"]
    if threshold.max_accuracy_drop is not None and drop > threshold.max_accuracy_drop + eps:
        failures.append(f"accuracy drop {drop:.1%} > {threshold.max_accuracy_drop:.1%}")
    return failures


def degenerate_warnings(reference: np.ndarray, classes: Sequence[str]) -> list[str]:
    """Why parity against this reference proves little, if it does."""
    warnings = []
    predicted = np.unique(np.argmax(reference, axis=1))
    if len(reference) > 1 and len(predicted) == 1:
        warnings.append(
            f"the reference predicts {classes[int(predicted[0])]!r} for all {len(reference)} images; "
            "parity with a one-class model proves little (train longer, check the data)"
        )
    spread = float(np.ptp(reference, axis=0).max()) if len(reference) > 1 else 0.0
    if len(reference) > 1 and spread < MIN_SPREAD:
        warnings.append(
            f"the reference's probabilities barely change between images (spread {spread:.2g}); "
            "parity with near-constant outputs proves little"
        )
    return warnings


def _limit(value: Optional[float], fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def result_line(file: str, result: dict[str, Any]) -> str:
    threshold = Threshold(**result["thresholds"])
    mark = "✓" if result["passed"] else "✗"
    if "error" in result:
        return f"{mark} {file} ({result['kind']}): {result['error']}"
    return (
        f"{mark} {file} ({result['kind']}): max diff: {result['max_abs_diff']:.2e} "
        f"(atol: {_limit(threshold.max_abs_diff, '.0e')}), mean diff: {result['mean_abs_diff']:.2e}, "
        f"agreement: {result['agreement']:.1%} (min: {_limit(threshold.min_agreement, '.1%')}), "
        + _confident_text(result, threshold)
        + f"accuracy: {result['accuracy']:.3f} (delta {result['accuracy_delta']:+.3f}, "
        f"max drop: {_limit(threshold.max_accuracy_drop, '.3f')})"
        + ("" if result["passed"] else f" -- {'; '.join(result['failures'])}")
    )


def _confident_text(result: dict[str, Any], threshold: Threshold) -> str:
    if "confident_count" not in result:  # a result recorded before verify measured it
        return ""
    value = result.get("confident_agreement")
    shown = "—" if value is None else f"{value:.1%}"
    return (
        f"confident agreement: {shown} of {result['confident_count']} "
        f"(min: {_limit(threshold.min_confident_agreement, '.1%')}), "
    )
