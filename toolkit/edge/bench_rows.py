"""Which bench rows may stand in one table: rows carry their settings, machine and time; a new bench
replaces the rows it re-measures, and rows measured with other settings are kept apart, not mixed in.

Settings that change the numbers: timed runs, warm-up, throughput batch, and the test sample
accuracy was measured on (its size). Thread count is a column of the table, not a setting: one
call measures several. A row is replaced by a later one of the same artifact file, machine and
thread count; a row whose artifact no longer has the sha256 it was measured with (re-exported
since) describes a file that is gone and is dropped.
"""

from __future__ import annotations

from collections import Counter
from typing import Any, Iterable, Optional, Sequence

from ..core.formats import sort_key

SETTING_KEYS = ("runs", "warmup", "batch", "test_count")


def row_settings(row: dict[str, Any]) -> dict[str, Any]:
    """The settings a row was measured with. `runs` is the setting (N, or the adaptive rule as
    "auto MIN..MAX PRECISION"), not how many runs an adaptive row took (its own `runs`)."""
    out = {k: row.get(k) for k in SETTING_KEYS}
    if "runs_setting" in row:
        out["runs"] = row["runs_setting"]
    return out


def describe_settings(settings: dict[str, Any]) -> str:
    """'20 runs after 5 warm-up, throughput at batch 8, accuracy on 40 test images'."""
    count = settings.get("test_count")
    accuracy = f"accuracy on {count} test images" if count else "accuracy not measured"
    runs = describe_runs(settings.get("runs"))
    return f"{runs} after {settings.get('warmup')} warm-up, throughput at batch {settings.get('batch')}, {accuracy}"


def describe_runs(runs: Any) -> str:
    """'300 runs', or for the adaptive setting 'runs until p50 is known to 2% (20..300)'."""
    if isinstance(runs, str) and runs.startswith("auto "):
        bounds, precision = runs.split()[1:3]
        return f"runs until p50 is known to {float(precision):.0%} ({bounds})"
    return f"{runs} runs"


def row_order(row: dict[str, Any]) -> tuple:
    return (
        *sort_key(row.get("format"), row.get("quantization"), row.get("file", "")),
        row.get("machine") or "",
        row.get("threads", 0),
    )


def _key(row: dict[str, Any]) -> tuple:
    return row.get("file"), row.get("machine"), row.get("threads")


def merge_rows(
    old: Iterable[dict[str, Any]], new: Sequence[dict[str, Any]], current_sha: dict[str, Optional[str]]
) -> tuple[list[dict[str, Any]], int]:
    """The new rows plus the old ones they do not re-measure; and how many old rows were stale.

    current_sha: file -> sha256 of the artifacts the manifest lists now. An old row of a file not in
    it, or measured on other bytes (or by an older tk that recorded no sha256), is stale.
    """
    measured = {_key(r) for r in new}
    kept, stale = [], 0
    for row in old:
        if _key(row) in measured:
            continue
        if row.get("file") not in current_sha or row.get("sha256") != current_sha[row.get("file")]:
            stale += 1
            continue
        kept.append(row)
    return sorted([*kept, *new], key=row_order), stale


def split_comparable(
    rows: Iterable[dict[str, Any]], settings: dict[str, Any]
) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows measured with these settings, the others)."""
    same, other = [], []
    for row in rows:
        (same if row_settings(row) == settings else other).append(row)
    return same, other


def set_aside_note(other: Sequence[dict[str, Any]], where: str = "from earlier calls") -> Optional[str]:
    """'3 rows from earlier calls with other settings not shown (runs 30: 2, runs 10: 1)'."""
    if not other:
        return None
    kinds = Counter(", ".join(f"{k} {v}" for k, v in row_settings(r).items()) for r in other)
    detail = "; ".join(f"{kind}: {n}" for kind, n in kinds.most_common())
    return f"{len(other)} row(s) {where} with other settings not shown ({detail})"


def earlier_note(rows: Sequence[dict[str, Any]], fresh: Sequence[dict[str, Any]]) -> Optional[str]:
    """Rows shown that this call did not measure (same settings, an earlier call): say when they were.

    By key, not by time: two calls within one second share a timestamp."""
    measured = {(r["file"], r.get("machine"), r["threads"]) for r in fresh}
    earlier = [r for r in rows if (r["file"], r.get("machine"), r["threads"]) not in measured]
    if not earlier:
        return None
    times = sorted({str(r.get("measured_at")) for r in earlier})
    span = times[0] if len(times) == 1 else f"{times[0]} .. {times[-1]}"
    return f"{len(earlier)} row(s) with the same settings from earlier calls ({span}) shown with this call's"


def upgrade_rows(bench: dict[str, Any], label: str) -> list[dict[str, Any]]:
    """Rows of a bench.json, each with its machine label and time (files of older tk versions had neither)."""
    return [
        {**row, "machine": row.get("machine") or label, "measured_at": row.get("measured_at") or bench.get("created")}
        for row in bench.get("rows", [])
    ]
