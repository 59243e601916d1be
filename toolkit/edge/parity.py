"""The parity gate's judgement, TensorFlow-free: tk's limits table and the comparison of an
artifact's probabilities with the reference model's, shared by `tk verify` on the workstation,
`tk verify BUNDLE` on the device and the browser check.

It fails closed. An artifact is judged by the kind tk's own table gives its file name (the format
row's file per quantization, core/formats.py), never by what a manifest says; a manifest that
disagrees, a name tk does not write, or limits that check nothing are failures, not passes. The
limits are LIMITS below, with a recipe's verify.thresholds overrides (checked as the recipe is
loaded: finite, in range, never leaving a kind without an agreement check).
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
from dataclasses import dataclass
from typing import Any, Optional, Sequence

import numpy as np

from ..core.errors import TkError
from ..core.formats import FORMATS, Format, identify, tolerance_kind
from ..core.metrics import accuracy
from ..core.sections import Threshold, VerifySection

# tk's limits per kind: float formats agree on every image and differ by ~1e-5 (float16 by ~1e-3);
# quantized ones agree on >= 98% of images and lose at most 1 point of accuracy.
LIMITS: dict[str, Threshold] = {
    "float32": Threshold(max_abs_diff=1e-4, min_agreement=1.0),
    "float16": Threshold(max_abs_diff=1e-2, min_agreement=0.995),
    "dynamic": Threshold(min_agreement=0.98, max_accuracy_drop=0.01),
    "int8": Threshold(min_agreement=0.98, max_accuracy_drop=0.01),
}
# Below this spread (max - min over images of any class probability) the reference's outputs are
# nearly constant, and matching them says little about the artifact.
MIN_SPREAD = 0.05


@dataclass(frozen=True)
class Kind:
    """What an artifact is, by tk's table: its format row, quantization and limits kind."""

    format: Format
    quantization: str
    kind: str


def kind_of(file: str, entry: Optional[dict[str, Any]] = None) -> Kind:
    """The kind tk's table gives this file name; TkError when the name is not tk's or the manifest
    entry says otherwise (a re-labelled file must not be judged by a looser kind)."""
    found = identify(file)
    if found is None:
        known = ", ".join(n for f in FORMATS.values() if f.exported for n in f.files.values())
        raise TkError(f"{file}: not a file name tk exports ({known}), so no limit applies to it: re-export with tk")
    fmt, quantization = found
    kind = tolerance_kind(quantization)
    entry = entry or {}
    for key, expected in (("format", fmt.name), ("quantization", quantization), ("tolerance", kind)):
        said = entry.get(key)
        if said is not None and said != expected:
            raise TkError(
                f"{file}: the manifest says {key} {said!r}, but tk's table makes this file {expected!r}; "
                "a changed manifest is not judged by its own word: re-export with tk export"
            )
    return Kind(fmt, quantization, kind)


def limits_for(kind: str, section: VerifySection) -> Threshold:
    """tk's limits for a kind with the recipe's overrides; TkError if none apply or none check agreement."""
    base = LIMITS.get(kind)
    if base is None:
        raise TkError(f"no parity limits for kind {kind!r} in tk's table ({', '.join(LIMITS)}); re-export with tk")
    merged = dataclasses.replace(base, **section.thresholds.get(kind, {}))
    if merged.min_agreement is None and merged.min_confident_agreement is None:
        raise TkError(
            f"verify.thresholds.{kind}: no agreement limit is left, so the check would pass anything; "
            "set min_agreement or min_confident_agreement"
        )
    return merged


def limits_dict(limits: Threshold) -> dict[str, Optional[float]]:
    return dataclasses.asdict(limits)


def compare(
    reference: np.ndarray, probs: np.ndarray, labels: np.ndarray, ref_accuracy: float, confident_margin: float = 0.2
) -> dict[str, Any]:
    if probs.shape != reference.shape:
        raise TkError(f"artifact outputs {probs.shape} but the reference outputs {reference.shape}; re-run tk export")
    if not len(probs):
        raise TkError("no images to compare on: a check on nothing is no check")
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
        "max_abs_diff": _finite_or_none(diff.max()),
        "mean_abs_diff": _finite_or_none(diff.mean()),
        "accuracy": acc,
        "accuracy_delta": acc - ref_accuracy,
        # NaN compares False with every limit, so non-finite outputs are counted and failed outright.
        "non_finite_outputs": int(np.size(probs) - np.isfinite(probs).sum()),
        "non_finite_reference": int(np.size(reference) - np.isfinite(reference).sum()),
    }


def _finite_or_none(value: float) -> Optional[float]:
    return float(value) if np.isfinite(value) else None


def top1_margin(probs: np.ndarray) -> np.ndarray:
    """Top-1 minus top-2 probability per image: how sure the model is of its decision."""
    if probs.shape[1] < 2:
        return np.ones(len(probs))
    top2 = np.sort(probs, axis=1)[:, -2:]
    return top2[:, 1] - top2[:, 0]


def check(result: dict[str, Any], threshold: Threshold) -> list[str]:
    """The limits this result breaks, each as a short phrase. A figure a set limit needs but the
    result lacks (None: never measured, or NaN) breaks it: a check that cannot run is a failure."""
    failures = []
    eps = 1e-12  # agreement 1.0 must pass at exactly 1.0
    if result.get("non_finite_outputs"):
        failures.append(f"{result['non_finite_outputs']} NaN/Inf outputs")
    if result.get("non_finite_reference"):
        failures.append(
            f"{result['non_finite_reference']} NaN/Inf outputs from model.keras (retrain: lower train.learning_rate)"
        )
    if threshold.max_abs_diff is not None:
        value = result.get("max_abs_diff")
        if not _number(value) or value > threshold.max_abs_diff:
            failures.append(f"max diff {_shown(value, '.2e')} > {threshold.max_abs_diff:.0e}")
    if threshold.min_agreement is not None:
        value = result.get("agreement")
        if not _number(value) or value < threshold.min_agreement - eps:
            failures.append(f"agreement {_shown(value, '.1%')} < {threshold.min_agreement:.1%}")
    if threshold.min_confident_agreement is not None:
        confident = result.get("confident_agreement")
        if confident is None:
            failures.append(f"no confident image (margin >= {result.get('confident_margin', 0):.2f}) to judge")
        elif not _number(confident) or confident < threshold.min_confident_agreement - eps:
            failures.append(f"confident agreement {_shown(confident, '.1%')} < {threshold.min_confident_agreement:.1%}")
    if threshold.max_accuracy_drop is not None:
        delta = result.get("accuracy_delta")
        if not _number(delta) or -delta > threshold.max_accuracy_drop + eps:
            drop = -delta if _number(delta) else None
            failures.append(f"accuracy drop {_shown(drop, '.1%')} > {threshold.max_accuracy_drop:.1%}")
    return failures


def _number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and bool(np.isfinite(value))


def _shown(value: Any, fmt: str) -> str:
    return format(value, fmt) if _number(value) else "not measured"


def judge(
    reference: np.ndarray,
    probs: np.ndarray,
    labels: np.ndarray,
    ref_accuracy: float,
    limits: Threshold,
    confident_margin: float,
) -> dict[str, Any]:
    """compare() and check(): the figures, the failures, and passed (True only with no failure)."""
    result = compare(reference, probs, labels, ref_accuracy, confident_margin)
    result["failures"] = check(result, limits)
    result["passed"] = not result["failures"]
    return result


def images_digest(images: np.ndarray) -> str:
    """sha256 of decoded pixels as uint8 (N, H, W, 3), C order: the bytes a check set's pixels.u8
    holds. load_batch's float32 pixels are whole numbers 0..255, so the conversion is exact."""
    pixels = np.ascontiguousarray(np.clip(np.round(images), 0, 255).astype(np.uint8))
    return hashlib.sha256(pixels.tobytes()).hexdigest()


def split_digest(items: Sequence[Sequence[Any]]) -> str:
    """sha256 of a split's [relative path, label] list as split.json records it: which images were checked."""
    return hashlib.sha256(json.dumps([[str(p), int(y)] for p, y in items]).encode()).hexdigest()


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
    """One ✓/✗ line: the figures beside the limits they were held to (Optimum's validation style)."""
    threshold = Threshold(**(result.get("limits") or {}))
    mark = "✓" if result["passed"] else "✗"
    if "error" in result or not _number(result.get("agreement")):
        return f"{mark} {file} ({result['kind']}): {result.get('error') or '; '.join(result.get('failures', []))}"
    return (
        f"{mark} {file} ({result['kind']}): max diff: {_shown(result.get('max_abs_diff'), '.2e')} "
        f"(atol: {_limit(threshold.max_abs_diff, '.0e')}), mean diff: {_shown(result.get('mean_abs_diff'), '.2e')}, "
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
