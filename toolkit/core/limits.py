"""Parity limits as types: Threshold (one artifact kind's limits) and VerifySection (a recipe's
verify section). Apart from recipe.py, which validates them and imports YAML, so that the device
path (tk predict, tk verify BUNDLE, tk bench on a device file) reads limits without loading the
recipe machinery (benchmarks/BENCHMARKS.md, "Device CLI start").
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal, Optional


@dataclass(frozen=True)
class Threshold:
    """Parity limits for one artifact kind; None means not checked. tk's own values are the table in
    edge/parity.py (LIMITS); a recipe's verify.thresholds only overrides some of them."""

    max_abs_diff: Optional[float] = None
    min_agreement: Optional[float] = None
    max_accuracy_drop: Optional[float] = None
    # Agreement on the images where the reference is confident (top-1 margin >= verify.confident_margin):
    # a flip on a 51/49 image is not the mistake a flip on a 90/10 one is. A recipe may gate on this
    # instead of min_agreement (set min_agreement: null); by default both stay strict.
    min_confident_agreement: Optional[float] = None


@dataclass(frozen=True)
class VerifySection:
    split: Literal["test", "validation"] = "test"
    # Overrides of tk's limits, per kind (float32, float16, dynamic, int8) and key; null disables a
    # key. What is not named keeps tk's value (edge/parity.py LIMITS): a recipe never sets a limit by
    # leaving it out.
    thresholds: dict[str, dict[str, Optional[float]]] = field(default_factory=dict)
    # Top-1 minus top-2 probability of the reference at and above which an image counts as confident.
    confident_margin: float = 0.2
