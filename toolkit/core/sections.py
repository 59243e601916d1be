"""The recipe sections the device path reads: verify (parity limits, which a bundle carries) and
bench (its defaults). Part of the recipe (recipe.py nests them), apart from it so that tk predict,
tk verify BUNDLE and tk bench on a device file check and use them without importing YAML and the
rest of the recipe (benchmarks/BENCHMARKS.md, "Device CLI start").
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from typing import Any, Literal, Optional

from .errors import TkError, suggest
from .formats import QUANTIZATIONS, tolerance_kind
from .typed import build


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


# What a recipe may set each limit to. Outside these a check passes anything (an agreement of 50% on
# two classes is a coin; probabilities never differ by more than 1), which is no check at all.
LIMIT_RANGES = {
    "max_abs_diff": (0.0, 0.5),
    "min_agreement": (0.5, 1.0),
    "max_accuracy_drop": (0.0, 0.5),
    "min_confident_agreement": (0.5, 1.0),
}


def check_verify(section: VerifySection, where: str = "verify") -> None:
    """verify.thresholds overrides: known kinds and keys, finite values in LIMIT_RANGES, and never an
    override that leaves a kind without an agreement check (fail closed: no check is no pass)."""
    kinds = [tolerance_kind(q) for q in QUANTIZATIONS]
    keys = [f.name for f in dataclasses.fields(Threshold)]
    for kind, given in section.thresholds.items():
        if kind not in kinds:
            raise TkError(
                f"{where}.thresholds: unknown kind {kind!r}{suggest(kind, kinds)}; allowed: {', '.join(kinds)}"
            )
        for key, value in given.items():
            if key not in keys:
                raise TkError(
                    f"{where}.thresholds.{kind}.{key}: unknown key{suggest(key, keys)}; allowed keys: {', '.join(keys)}"
                )
            low, high = LIMIT_RANGES[key]
            if value is not None and not low <= value <= high:
                raise TkError(
                    f"{where}.thresholds.{kind}.{key}: must be in [{low:g}, {high:g}] (got {value!r}); "
                    "outside it the check passes anything"
                )
        if "min_agreement" in given and given["min_agreement"] is None and given.get("min_confident_agreement") is None:
            raise TkError(
                f"{where}.thresholds.{kind}: min_agreement: null leaves no agreement check; set "
                "min_confident_agreement (e.g. 0.99) to gate on confident images instead"
            )


def verify_section(raw: Any, where: str = "verify") -> VerifySection:
    """A verify section on its own (a bundle carries its run's), checked as a recipe's is."""
    section = build(VerifySection, raw if raw is not None else {}, where)
    if not 0 <= section.confident_margin < 1:
        raise TkError(f"{where}.confident_margin: must be in [0, 1) (got {section.confident_margin!r})")
    check_verify(section, where)
    return section


@dataclass(frozen=True)
class BenchSection:
    threads: tuple[int, ...] = (1, 2)
    # null: adaptive, timed until the p50's 95% confidence interval is within `precision` of it
    # (min_runs..max_runs, edge/timing.py); N: exactly N runs. A fixed 300 (the old default) took
    # 9 s a row for MobileNetV2 and still moved 10% between benches on a shared 2-core VM.
    runs: Optional[int] = None
    min_runs: int = 20
    max_runs: int = 300
    precision: float = 0.02
    warmup: int = 5
    batch: int = 8
