"""The parity gate in `tk bench`: each row's verdict, and a ship pick among passed artifacts only.

In a run folder the verdicts come from parity.json (edge/verdicts.py re-derives them against the
files now); in a bundle from each entry's chain, lowered by this machine's own `tk verify BUNDLE`
(device_parity.json) when that failed. Where no verdict exists (no parity.json beside bare
artifacts) bench measures and picks as before, and says nothing was gated.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

from ..core.runs import is_bundle
from .device_verify import device_verdicts
from .machine import machine_info, machine_label
from .verdicts import PARITY_FILE, Verdict, bundle_verdicts, run_verdicts


def verdicts_for(folder: Path) -> tuple[dict[str, Verdict], bool, list[str]]:
    """(file -> verdict, whether the folder is gated, notes) for a run folder or a bundle."""
    folder = Path(folder)
    if is_bundle(folder):
        verdicts = bundle_verdicts(folder)
        notes = [f"{f}: {v.text()}" for f, v in verdicts.items() if not v.passed]
        device = device_verdicts(folder, machine_label(machine_info()))
        if device is None:
            notes.append(f"not checked on this device yet: tk verify {folder} runs the bundle's check set here")
            return verdicts, True, notes
        when, here = device
        failed = [f for f, v in here.items() if not v.passed]
        notes.append(
            f"device parity on this machine ({when}): "
            + (f"{len(failed)} of {len(here)} failed or stale: {', '.join(failed)}" if failed else "all passed")
        )
        for file, verdict in here.items():
            if not verdict.passed and verdicts.get(file, verdict).passed:
                verdicts[file] = Verdict(verdict.status, f"on this device: {verdict.reason}")
        return verdicts, True, notes
    if os.path.lexists(folder / PARITY_FILE):
        return run_verdicts(folder).verdicts, True, []
    return {}, False, []


def mark_rows(rows: list[dict[str, Any]], verdicts: dict[str, Verdict]) -> None:
    """Each row's verdict, for the bench file's sha256 it was measured on (another sha: stale)."""
    for row in rows:
        verdict = verdicts.get(row["file"])
        if row.get("reference"):
            row["parity"] = "reference"
        elif verdict is None:
            row["parity"] = None
        else:
            row["parity"], row["parity_reason"] = verdict.status, verdict.reason


def gate_candidates(reports: Sequence[dict[str, Any]], rows: list[dict[str, Any]]) -> tuple[list[dict], list[str]]:
    """(rows a ship pick may take, "file: why" for each artifact it skipped). Gated reports give
    only passed artifacts; ungated ones (no verdicts anywhere) give every row, as before."""
    gated = {report["run"] for report in reports if report.get("gated")}
    verdicts = {(report["run"], f): v for report in reports for f, v in report.get("verdicts", {}).items()}
    keep, skipped = [], {}
    for row in rows:
        run = row.get("run")
        if row.get("reference") or run not in gated:
            keep.append(row)
            continue
        status, reason = verdicts.get((run, row["file"]), ("not verified", "no verdict"))
        if status == "passed":
            keep.append(row)
        else:
            skipped[row["file"]] = f"{row['file']}: {status}" + (f" ({reason})" if reason else "")
    return keep, list(skipped.values())
