"""bench.json files of several machines in one comparison: rows tagged by machine, only comparable
timings in one table, and rows of another model kept apart.

A merged file measured the same model when it names the same reference sha256 (bench.json records
the model.keras its artifacts came from); a file of an older tk that names none counts as this
model's only when every row's artifact sha256 is one of this run's. Anything else is another
model's: its rows go in a table of their own unless the caller mixes models on purpose.
"""

from __future__ import annotations

from collections import Counter
from pathlib import Path
from typing import Any, Optional, Sequence

from ..core import schemas
from ..edge.bench import machine_label
from ..edge.bench_rows import row_settings, upgrade_rows

TIMING_KEYS = ("runs", "warmup", "batch")


def load_bench(path: Path) -> dict[str, Any]:
    """One bench.json, checked by its schema (core/schemas.py)."""
    return schemas.load_bench(Path(path))


def same_model(bench: dict[str, Any], reference: Optional[str], shas: set[str]) -> bool:
    """Whether a bench file measured artifacts of the model whose reference sha256 is given."""
    named = bench.get("reference_sha256")
    if named is not None:
        return named == reference
    measured = {r.get("sha256") for r in bench.get("rows", []) if not r.get("reference")}
    return bool(measured) and None not in measured and measured <= shas


def merge_benches(benches: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """All rows of several bench.json files, each tagged with its machine (numbered if two files share one)."""
    per_file = [upgrade_rows(b, machine_label(b["machine"])) for b in benches]
    files_per_label = Counter(label for rows in per_file for label in {r["machine"] for r in rows})
    seen: Counter = Counter()
    out = []
    for rows in per_file:
        number = {}
        for label in dict.fromkeys(r["machine"] for r in rows):
            seen[label] += 1
            number[label] = f"{label} #{seen[label]}" if files_per_label[label] > 1 else label
        out += [{**row, "machine": number[row["machine"]], "machine_label": row["machine"]} for row in rows]
    return out


def comparable_rows(rows: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows timed like the first one, the others). Across machines only the timing settings must
    match: each machine's accuracy sample is named beside it (a Pi may hold a smaller test sample)."""
    if not rows:
        return [], []
    timing = row_timing(rows[0])
    same = [r for r in rows if row_timing(r) == timing]
    return same, [r for r in rows if row_timing(r) != timing]


def row_timing(row: dict[str, Any]) -> dict[str, Any]:
    """The timing settings of a row: an adaptive row's runs setting, not the count it took."""
    settings = row_settings(row)
    return {k: settings.get(k) for k in TIMING_KEYS}


def machine_facts(benches: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    facts: dict[str, dict[str, Any]] = {}
    for bench in benches:
        facts.update(bench.get("machines") or {machine_label(bench["machine"]): bench["machine"]})
    return facts


def latency_points(rows: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Per machine and artifact, the row at its fastest thread count (with an accuracy)."""
    best: dict[tuple[str, str], dict[str, Any]] = {}
    for row in rows:
        if row.get("accuracy") is None:
            continue
        key = (row["machine"], row["file"])
        if key not in best or row["p50_ms"] < best[key]["p50_ms"]:
            best[key] = row
    return [
        {
            "label": r["file"],
            "machine": r["machine"],
            "p50_ms": r["p50_ms"],
            "accuracy": r["accuracy"],
            "reference": r.get("reference", False),
            "parity": r.get("parity"),
        }
        for r in best.values()
    ]
