"""How long `tk bench` times a prediction: a fixed count (--runs N), or until the median is known.

Adaptive (the default): after `min_runs` timed batch-1 predictions, stop as soon as the 95%
confidence interval of the median (distribution-free: order statistics n/2 -+ 0.98 sqrt(n)) lies
within `precision` of it, or at `max_runs`, or after `max_seconds`. A quiet CPU settles in the
minimum; a noisy one keeps measuring until the p50 means something, within the caps.
Throughput is timed the same way per batch. numpy only (the device path runs this).
"""

from __future__ import annotations

import math
import time
from dataclasses import asdict, dataclass
from typing import Any, Callable, Optional

import numpy as np


@dataclass(frozen=True)
class RunPlan:
    fixed: Optional[int] = None  # --runs N: exactly N, as before
    min_runs: int = 20
    max_runs: int = 300
    precision: float = 0.02  # the p50's 95% interval within +-2% of it
    max_seconds: float = 5.0  # per row: on a noisy machine, stop here (after min_runs) rather than at max_runs

    def to_json(self) -> dict[str, Any]:
        return asdict(self)

    def describe(self) -> str:
        if self.fixed is not None:
            return f"{self.fixed} runs"
        return f"runs until p50 is within {self.precision:.0%} ({self.min_runs}..{self.max_runs})"

    def setting(self) -> Any:
        """What a bench row records as its `runs` setting: N, or the adaptive rule as text."""
        return self.fixed if self.fixed is not None else f"auto {self.min_runs}..{self.max_runs} {self.precision:g}"


def median_interval(values) -> tuple[float, float, float]:
    """(low, median, high): the 95% distribution-free confidence interval of the median."""
    ordered = np.sort(np.asarray(values, dtype=np.float64))
    n = len(ordered)
    half = 0.98 * math.sqrt(n)  # 1.96 / 2 * sqrt(n)
    low = ordered[max(int(math.floor(n / 2 - half)), 0)]
    high = ordered[min(int(math.ceil(n / 2 + half)), n - 1)]
    return float(low), float(np.median(ordered)), float(high)


def settled(values, precision: float) -> bool:
    low, median, high = median_interval(values)
    return median > 0 and max(median - low, high - median) <= precision * median


def timed_runs(call: Callable[[], Any], plan: RunPlan, check_every: int = 5) -> list[float]:
    """Milliseconds of each timed call, per the plan."""
    if plan.fixed is not None:
        return [_time(call) for _ in range(plan.fixed)]
    values: list[float] = []
    deadline = time.perf_counter() + plan.max_seconds
    while len(values) < plan.max_runs:
        values.append(_time(call))
        n = len(values)
        if n >= plan.min_runs and n % check_every == 0:
            if settled(values, plan.precision) or time.perf_counter() > deadline:
                break
    return values


def batch_throughput(call: Callable[[], Any], batch: int, plan: RunPlan) -> float:
    """Images per second at batch size `batch`: runs // 5 calls for a fixed plan (as before), else
    at least 3 calls and until the calls' median settles, within a fifth of the row's caps."""
    if plan.fixed is not None:
        calls = max(2, plan.fixed // 5)
        start = time.perf_counter()
        for _ in range(calls):
            call()
        return batch * calls / (time.perf_counter() - start)
    small = RunPlan(
        min_runs=3, max_runs=max(3, plan.max_runs // 5), precision=plan.precision, max_seconds=plan.max_seconds / 5
    )
    times = timed_runs(call, small, check_every=1)
    return batch * 1000.0 * len(times) / sum(times)


def _time(call: Callable[[], Any]) -> float:
    start = time.perf_counter()
    call()
    return (time.perf_counter() - start) * 1000


def cpu_ms_p50(call: Callable[[], Any], runs: int = 50, warmup: int = 5) -> float:
    """Median CPU milliseconds this process spends per call: export's quick ranking of int8 variants
    on one thread. CPU time, not wall time: on a loaded machine wall time measures the queue for a
    core, and two variants timed a second apart would be ranked by the load, not by their cost.
    Not a benchmark (`tk bench` times wall clock, p50/p90/p99)."""
    for _ in range(warmup):
        call()
    times = []
    for _ in range(runs):
        start = time.process_time()
        call()
        times.append(time.process_time() - start)
    return round(float(np.median(times)) * 1e3, 3)
