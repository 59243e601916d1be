"""tk verify: does every exported artifact predict what the trained Keras model predicts?

Each artifact and the reference (the run's model.keras) run on the same held-out images (the run's
own split, decoded once through images.load_batch, exactly as training decoded them) and are
compared by edge/parity.py, the judgement the device and the browser share: top-1 agreement,
max/mean absolute difference of the probabilities, accuracy of each and the accuracy delta, held
to tk's limits for the kind its file name has (with the run recipe's verify.thresholds overrides).

It fails closed: a kind, format or quantization tk's table does not know, a manifest that says
otherwise, a reference that is not the model the run recorded, or an artifact exported from
another one is a failure. Each result is bound to what it judged (artifact and reference sha256,
image and split digests, limits, tk's version) so readers can tell when it no longer holds
(edge/verdicts.py). Every artifact is checked and reported (one ✓/✗ line each, parity.json,
metrics in manifest.json) before ParityError names the failures. The check set a device re-runs
(edge/checkset.py) is written from the same reference outputs.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .. import __version__
from ..core import schemas
from ..core.context import SILENT, Context
from ..core.errors import ParityError, TkError
from ..core.formats import identify, tolerance_kind
from ..core.images import load_batch
from ..core.io import check_writable, now, write_json_atomic
from ..core.lock import run_lock
from ..core.metrics import accuracy
from ..core.recipe import VerifySection
from ..core.runs import (
    REFERENCE,
    SPLIT,
    artifact_path,
    check_files_exist,
    load_manifest,
    load_split,
    record_metrics,
    reference_sha256,
    run_recipe,
)
from ..edge.checkset import pick, write_checkset
from ..edge.machine import machine_info, machine_label
from ..edge.parity import (
    degenerate_warnings,
    images_digest,
    judge,
    kind_of,
    limits_dict,
    limits_for,
    result_line,
    split_digest,
)
from ..edge.predictors import BATCH, load_predictor
from ..edge.verdicts import PARITY_FILE, STALE, Facts, derive, file_sha

__all__ = ["PARITY_FILE", "verify_run", "compare_run", "persist", "raise_on_failure", "result_line"]


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
    with run_lock(run_dir, "tk verify", ctx):  # no export or train rewrites the artifacts meanwhile
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
    """Run the reference and each artifact on the held-out split; the report (and the run's check set)."""
    manifest = load_manifest(run_dir)
    section = run_recipe(run_dir).verify
    artifacts = _select(manifest, files, run_dir)
    ref_sha = reference_sha256(run_dir, manifest)
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
    binding = {
        "reference_sha256": ref_sha,
        "images_sha256": images_digest(images),
        "split_sha256": split_digest(schemas.load_split(run_dir / SPLIT)["splits"][section.split]),
        "tk_version": __version__,
    }
    results = {}
    for file, entry in artifacts.items():
        with ctx.progress.task(f"verify: {file}", len(images)) as task:
            against = (reference, labels, ref_accuracy, images, ref_sha)
            result = _judge(run_dir, file, entry, section, against, num_threads, task)
        results[file] = {**result, **binding}
        ctx.say(result_line(file, results[file]))
    chosen = pick(labels)
    write_checkset(
        run_dir,
        images[chosen],
        labels[chosen],
        manifest["classes"],
        reference[chosen],
        ref_sha,
        {"split": section.split, "files": [os.path.basename(items[i][0]) for i in chosen]},
    )
    return {
        "run": str(run_dir),
        "split": section.split,
        "count": len(items),
        "measured": now(),
        # bench takes an artifact's accuracy from here when it benches the same file on this machine
        "machine": machine_label(machine_info()),
        "reference": {"file": REFERENCE, "sha256": ref_sha, "accuracy": ref_accuracy, "warnings": warnings},
        "artifacts": results,
        "passed": all(r["passed"] for r in results.values()),
    }


def _judge(
    run_dir: Path,
    file: str,
    entry: dict[str, Any],
    section: VerifySection,
    against: tuple,
    num_threads: Optional[int],
    task=None,
) -> dict[str, Any]:
    """One artifact's result. Anything that stops the check (an unknown kind, a file changed or
    exported from another model, a corrupt file) is a failed result, not a skipped one."""
    reference, labels, ref_accuracy, images, ref_sha = against
    found = identify(file)
    kind, limits = tolerance_kind(found[1]) if found else "unknown", None
    try:
        kind = kind_of(file, entry).kind
        limits = limits_for(kind, section)
        source = (entry.get("source") or {}).get("sha256")
        if source != ref_sha:
            raise TkError(
                f"exported from another model.keras (source sha256 {str(source)[:12]}, reference "
                f"{ref_sha[:12]}): re-export it (tk export {run_dir})"
            )
        probs = _predict(load_predictor(artifact_path(run_dir, file), num_threads), images, task)
        result = {"kind": kind, **judge(reference, probs, labels, ref_accuracy, limits, section.confident_margin)}
    except TkError as exc:  # a corrupt or changed file: a failed artifact, not a stop
        result = {"kind": kind, "passed": False, "error": str(exc), "failures": [str(exc)]}
    return {
        **result,
        "format": entry.get("format"),
        "quantization": entry.get("quantization"),
        "limits": limits_dict(limits) if limits else None,
        "sha256": file_sha(run_dir, file),
    }


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
    # `--artifact X` keeps the others' results as long as they still hold (edge/verdicts.derive:
    # neither they, the reference, the split nor the limits changed since).
    merged = {**_earlier_results(run_dir, report), **report["artifacts"]}
    write_json_atomic(
        run_dir / PARITY_FILE, {**report, "artifacts": merged, "passed": all(r["passed"] for r in merged.values())}
    )


def raise_on_failure(run_dir: Path, report: dict[str, Any], reasons: bool = True) -> None:
    """ParityError naming the failing artifacts and the fixes that exist; reasons=False when the ✗
    lines already said why."""
    results = report["artifacts"]
    failed = [f for f, r in results.items() if not r["passed"]]
    if failed:
        named = (
            "; ".join(f"{f} ({', '.join(results[f]['failures'])})" for f in failed) if reasons else ", ".join(failed)
        )
        raise ParityError(
            f"{len(failed)} of {len(results)} artifacts fail parity: {named}; details in "
            f"{run_dir / PARITY_FILE}; {fixes(run_dir, [results[f] for f in failed])}"
        )


def fixes(run_dir: Path, failed: Sequence[dict[str, Any]]) -> str:
    """The ways out that exist, as commands and recipe keys, for what failed."""
    out = []
    if any(r.get("kind") == "int8" and "error" not in r for r in failed):
        out += [
            f"keep sensitive layers float: tk export {run_dir} --quantize int8 --int8-fallback",
            "gate on confident images: verify.thresholds.int8 {min_agreement: null, min_confident_agreement: 0.99} "
            f"in {run_dir / 'recipe.yaml'}",
            "calibrate on more images: raise export.calibration_samples there, then tk export again",
        ]
    if any(r.get("kind") != "int8" or "error" in r for r in failed):
        out.append(f"re-export a changed or damaged file: tk export {run_dir}")
    return "fixes: " + "; ".join(out)


def _earlier_results(run_dir: Path, report: dict[str, Any]) -> dict[str, dict]:
    """The results of parity.json for artifacts not judged now, where they still hold."""
    path = run_dir / PARITY_FILE
    if not os.path.lexists(path):
        return {}
    try:
        earlier = schemas.load_parity(path)["artifacts"]
    except TkError:
        return {}  # a damaged parity.json: this call's results replace it
    facts = Facts(
        report["reference"]["sha256"],
        run_recipe(run_dir).verify,
        next((r["split_sha256"] for r in report["artifacts"].values()), None),
    )
    current = load_manifest(run_dir).get("artifacts", {})
    return {
        f: r
        for f, r in earlier.items()
        if f in current and f not in report["artifacts"] and derive(r, f, file_sha(run_dir, f), facts).status != STALE
    }


def _select(manifest: dict[str, Any], files: Optional[Sequence[str]], run_dir: Path) -> dict[str, dict]:
    exported = {f: e for f, e in manifest.get("artifacts", {}).items() if f != REFERENCE}
    for file in exported:  # before anything runs: a name like ../x or /x is refused, not verified
        artifact_path(run_dir, file)
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
