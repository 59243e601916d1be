"""tk verify: does every exported artifact predict what the trained Keras model predicts?

Each artifact and the reference (the run's model.keras) run on the same held-out images (the run's
own split, decoded once through images.load_batch, exactly as training decoded them) and are
compared: top-1 agreement, max/mean absolute difference of the probabilities, accuracy of each and
the accuracy delta. Each artifact is judged by the thresholds of its kind (float32, float16,
dynamic, int8) from the run's recipe (verify.thresholds). Every artifact is checked and reported
(one ✓/✗ line each, a table, parity.json, metrics in manifest.json) before ParityError names the
failures, so one bad artifact does not hide the state of the others.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from .errors import ParityError, TkError
from .manifest import load_manifest, now, record_metrics, write_json_atomic
from .recipe import Threshold, VerifySection, load_recipe

Say = Callable[[str], None]
REFERENCE = "model.keras"
PARITY_FILE = "parity.json"
BATCH = 32
# Below this spread (max - min over images of any class probability) the reference's outputs are
# nearly constant, and matching them says little about the artifact.
MIN_SPREAD = 0.05


def verify_run(run_dir: Path, files: Optional[Sequence[str]] = None, say: Say = print,
               show: Optional[Callable[[Any], None]] = None, num_threads: Optional[int] = None) -> dict[str, Any]:
    """Compare artifacts with the reference; write parity.json; raise ParityError if any fails.

    `show` receives the rich table (the CLI prints it); `say` gets the one-line results.
    """
    from .data import load_split
    from .export import check_files_exist
    from .images import load_batch
    from .runtime import load_predictor

    run_dir = Path(run_dir)
    manifest = load_manifest(run_dir)
    section = _verify_section(run_dir)
    artifacts = _select(manifest, files, run_dir)
    split = load_split(run_dir / "split.json")
    items = split.splits.get(section.split, [])
    if not items:
        raise TkError(f"{run_dir}/split.json: the {section.split} split is empty; set verify.split "
                      "in the recipe to a split with images (test or validation)")
    check_files_exist([p for p, _ in items], run_dir)
    labels = np.asarray([y for _, y in items])
    size = tuple(manifest["preprocessing"]["size"])
    images = load_batch([p for p, _ in items], size)  # decoded once, shared by every model
    say(f"verifying {len(artifacts)} artifact(s) of {run_dir} on {len(items)} {section.split} images")

    reference = _predict(load_predictor(run_dir / REFERENCE, num_threads), images)
    ref_accuracy = _accuracy(labels, reference)
    warnings = degenerate_warnings(reference, manifest["classes"])
    for warning in warnings:
        say(f"warning: {warning}")

    results: dict[str, dict[str, Any]] = {}
    for file, entry in artifacts.items():
        kind = entry.get("tolerance") or _kind(entry)
        threshold = section.thresholds.get(kind, Threshold())
        try:
            probs = _predict(load_predictor(run_dir / file, num_threads), images)
            result = {"kind": kind, **compare(reference, probs, labels, ref_accuracy)}
        except TkError as exc:  # a corrupt or changed file: a failed artifact, not a stop
            result = {"kind": kind, "passed": False, "error": str(exc), "failures": [str(exc)]}
        else:
            result["failures"] = check(result, threshold)
            result["passed"] = not result["failures"]
        result["thresholds"] = _threshold_dict(threshold)
        result["sha256"] = entry.get("sha256")
        results[file] = result
        say(result_line(file, result, threshold))
        record_metrics(run_dir, file, "verify", {**result, "split": section.split, "count": len(items),
                                                 "reference_accuracy": ref_accuracy, "measured": now()})

    reference_sha = manifest["artifacts"].get(REFERENCE, {}).get("sha256")
    report = {
        "run": str(run_dir), "split": section.split, "count": len(items), "measured": now(),
        "reference": {"file": REFERENCE, "sha256": reference_sha, "accuracy": ref_accuracy, "warnings": warnings},
        "artifacts": results, "passed": all(r["passed"] for r in results.values()),
    }
    if show is not None:
        show(render_table(report))
    # parity.json holds the latest result of every artifact: `--artifact X` keeps the others'
    # results as long as neither they, the reference nor the split changed since.
    merged = {**_earlier_results(run_dir, report, manifest), **results}
    write_json_atomic(run_dir / PARITY_FILE, {**report, "artifacts": merged,
                                             "passed": all(r["passed"] for r in merged.values())})
    failed = [f for f, r in results.items() if not r["passed"]]
    if failed:
        raise ParityError(f"{len(failed)} of {len(results)} artifacts fail parity: "
                          + "; ".join(f"{f} ({', '.join(results[f]['failures'])})" for f in failed)
                          + f"; details in {run_dir / PARITY_FILE} (re-export a changed file with tk export {run_dir}, "
                            "or loosen verify.thresholds in the recipe if the loss is acceptable)")
    say(f"all {len(results)} artifacts match the reference; wrote {run_dir / PARITY_FILE}")
    return report


def _earlier_results(run_dir: Path, report: dict[str, Any], manifest: dict[str, Any]) -> dict[str, dict]:
    path = run_dir / PARITY_FILE
    try:
        earlier = json.loads(path.read_text()) if path.is_file() else {}
    except json.JSONDecodeError:
        return {}
    if earlier.get("split") != report["split"] or earlier.get("reference", {}).get("sha256") != report["reference"]["sha256"]:
        return {}
    current = manifest.get("artifacts", {})
    return {f: r for f, r in earlier.get("artifacts", {}).items()
            if f in current and r.get("sha256") and r.get("sha256") == current[f].get("sha256")}


def _verify_section(run_dir: Path) -> VerifySection:
    path = run_dir / "recipe.yaml"
    return load_recipe(path).verify if path.is_file() else VerifySection()


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
            raise TkError(f"--artifact {name}: not an exported artifact of {run_dir}; "
                          f"exported: {', '.join(exported) or 'none (run tk export)'}")
        chosen[file] = exported[file]
    return chosen


def _kind(entry: dict[str, Any]) -> str:
    """Tolerance kind for entries that do not record it: float32 unless quantized."""
    quantization = entry.get("quantization", "none")
    return "float32" if quantization == "none" else quantization


def _predict(predictor, images: np.ndarray) -> np.ndarray:
    return np.concatenate([predictor.predict(images[i:i + BATCH]) for i in range(0, len(images), BATCH)])


def _accuracy(labels: np.ndarray, probs: np.ndarray) -> float:
    return float(np.mean(np.argmax(probs, axis=1) == labels))


def compare(reference: np.ndarray, probs: np.ndarray, labels: np.ndarray, ref_accuracy: float) -> dict[str, float]:
    if probs.shape != reference.shape:
        raise TkError(f"artifact outputs {probs.shape} but the reference outputs {reference.shape}; re-run tk export")
    diff = np.abs(probs.astype(np.float64) - reference.astype(np.float64))
    accuracy = _accuracy(labels, probs)
    return {
        "agreement": float(np.mean(np.argmax(probs, 1) == np.argmax(reference, 1))),
        "max_abs_diff": float(diff.max()), "mean_abs_diff": float(diff.mean()),
        "accuracy": accuracy, "accuracy_delta": accuracy - ref_accuracy,
    }


def check(result: dict[str, float], threshold: Threshold) -> list[str]:
    """The thresholds this result breaks, each as a short phrase."""
    failures = []
    eps = 1e-12  # agreement 1.0 must pass at exactly 1.0
    if threshold.max_abs_diff is not None and result["max_abs_diff"] > threshold.max_abs_diff:
        failures.append(f"max diff {result['max_abs_diff']:.2e} > {threshold.max_abs_diff:.0e}")
    if threshold.min_agreement is not None and result["agreement"] < threshold.min_agreement - eps:
        failures.append(f"agreement {result['agreement']:.1%} < {threshold.min_agreement:.1%}")
    drop = -result["accuracy_delta"]
    if threshold.max_accuracy_drop is not None and drop > threshold.max_accuracy_drop + eps:
        failures.append(f"accuracy drop {drop:.1%} > {threshold.max_accuracy_drop:.1%}")
    return failures


def degenerate_warnings(reference: np.ndarray, classes: Sequence[str]) -> list[str]:
    """Why parity against this reference proves little, if it does."""
    warnings = []
    predicted = np.unique(np.argmax(reference, axis=1))
    if len(reference) > 1 and len(predicted) == 1:
        warnings.append(f"the reference predicts {classes[int(predicted[0])]!r} for all {len(reference)} images; "
                        "parity with a one-class model proves little (train longer, check the data)")
    spread = float(np.ptp(reference, axis=0).max()) if len(reference) > 1 else 0.0
    if len(reference) > 1 and spread < MIN_SPREAD:
        warnings.append(f"the reference's probabilities barely change between images (spread {spread:.2g}); "
                        "parity with near-constant outputs proves little")
    return warnings


def _threshold_dict(threshold: Threshold) -> dict[str, Optional[float]]:
    return {"max_abs_diff": threshold.max_abs_diff, "min_agreement": threshold.min_agreement,
            "max_accuracy_drop": threshold.max_accuracy_drop}


def _limit(value: Optional[float], fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def result_line(file: str, result: dict[str, Any], threshold: Threshold) -> str:
    mark = "✓" if result["passed"] else "✗"
    if "error" in result:
        return f"{mark} {file} ({result['kind']}): {result['error']}"
    return (f"{mark} {file} ({result['kind']}): max diff: {result['max_abs_diff']:.2e} "
            f"(atol: {_limit(threshold.max_abs_diff, '.0e')}), mean diff: {result['mean_abs_diff']:.2e}, "
            f"agreement: {result['agreement']:.1%} (min: {_limit(threshold.min_agreement, '.1%')}), "
            f"accuracy: {result['accuracy']:.3f} (delta {result['accuracy_delta']:+.3f}, "
            f"max drop: {_limit(threshold.max_accuracy_drop, '.3f')})"
            + ("" if result["passed"] else f" -- {'; '.join(result['failures'])}"))


def render_table(report: dict[str, Any]):
    from rich import box
    from rich.table import Table

    table = Table(title=f"parity on {report['count']} {report['split']} images "
                        f"(reference accuracy {report['reference']['accuracy']:.3f})",
                  box=box.SIMPLE_HEAD, show_edge=False, padding=(0, 1, 0, 0))
    for column in ("artifact", "kind", "agree", "max diff", "mean diff", "acc", "delta", ""):
        table.add_column(column, justify="left" if column in ("artifact", "kind") else "right", no_wrap=True)
    for file, r in report["artifacts"].items():
        mark = "[green]✓[/green]" if r["passed"] else "[red]✗[/red]"
        if "error" in r:
            table.add_row(file, r["kind"], "-", "-", "-", "-", "-", mark)
            continue
        table.add_row(file, r["kind"], f"{r['agreement']:.1%}", f"{r['max_abs_diff']:.2e}",
                      f"{r['mean_abs_diff']:.2e}", f"{r['accuracy']:.3f}", f"{r['accuracy_delta']:+.3f}", mark)
    return table
