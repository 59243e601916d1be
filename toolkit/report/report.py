"""`tk report`: REPORT.md in the run folder, from what the other commands wrote there.

The gate's verdict first (every artifact's re-derived verdict: edge/verdicts.py), then training
curves (phases/*/curves.png), test metrics (metrics.json), the artifacts (manifest.json), the parity
table (parity.json, when tk verify ran), the bench table (bench.json, when tk bench ran) and a
latency-vs-accuracy plot. bench.json files from other machines (`--merge pi/bench.json`) join the
same table with a machine column, so a laptop and a Pi compare side by side; a file that measured
another model goes in a table of its own unless `--mix-models`. Every file is read through its
schema (core/schemas.py), and every name from one is escaped (core/text.py). Sections whose inputs
are missing say which command makes them. Links are relative: the folder can move.
"""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Any, Optional, Sequence

from ..core import schemas
from ..core.context import SILENT, Context
from ..core.io import check_writable, now, write_text_atomic
from ..core.paths import confine
from ..core.runs import REFERENCE, load_manifest
from ..core.text import md
from ..edge.bench import BENCH_JSON, BROWSER_NOTE, PARITY_CELLS, RATIO_HEADER, format_row, machine_label, table_headers
from ..edge.bench_rows import describe_runs, describe_settings, set_aside_note
from ..edge.verdicts import PARITY_FILE, RunGate, run_verdicts
from .benches import (  # noqa: F401 (load_bench, merge_benches, latency_points: the report's API)
    TIMING_KEYS,
    comparable_rows,
    latency_points,
    load_bench,
    machine_facts,
    merge_benches,
    row_timing,
    same_model,
)

REPORT = "REPORT.md"
PLOT = "bench_latency_accuracy.png"
PARITY_JSON = PARITY_FILE


def _own(path: Path, run_dir: Path) -> Path:
    """One of the run's own files, read only if it is inside the run (never a link out of it)."""
    return confine(run_dir, os.path.relpath(path, run_dir), path, "copy the real file into the run folder")


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def _number(value: Any, fmt: str) -> str:
    return "n/a" if value is None else format(value, fmt)


def _gate(gate: RunGate) -> list[str]:
    """The verdict at the top: passed only when every exported artifact passed on these bytes."""
    verdicts = gate.verdicts
    if not verdicts:
        return ["**Gate: nothing exported yet** (`tk export`, then `tk verify`).", ""]
    if not gate.gated:
        return [
            f"**Gate: ? not run**: `tk verify` has not judged the {len(verdicts)} artifact(s); none is "
            "proven to predict what the trained model predicts.",
            "",
        ]
    passed = [f for f, v in verdicts.items() if v.passed]
    if len(passed) == len(verdicts):
        return [
            f"**Gate: ✓ passed**: all {len(verdicts)} artifacts passed `tk verify` on the bytes in this folder.",
            "",
        ]
    others = "; ".join(f"{md(f)}: {md(v.text())}" for f, v in verdicts.items() if not v.passed)
    return [
        f"**Gate: ✗ failed**: {len(passed)} of {len(verdicts)} artifacts passed `tk verify` on these bytes "
        f"({', '.join(md(f) for f in passed) or 'none'}); `tk pack` packs only those. {others}.",
        "",
    ]


def _training(run_dir: Path) -> list[str]:
    out = ["## Training", ""]
    imported = load_manifest(run_dir).get("imported")
    if isinstance(imported, dict):  # tk import: trained elsewhere
        softmax = "; tk added the softmax" if imported.get("softmax_added") else ""
        return out + [
            f"Not trained by tk: imported by `tk import` from `{imported.get('source')}` "
            f"({imported.get('format')}, sha256 `{str(imported.get('sha256', ''))[:12]}`), input range "
            f"{imported.get('input_range')} as stated, output {imported.get('output')}{softmax}.",
            "",
        ]
    phases = sorted(p for p in (run_dir / "phases").glob("*") if p.is_dir()) if (run_dir / "phases").is_dir() else []
    if not phases:
        return out + ["No phase folders (phases/*/) in this run.", ""]
    for phase in phases:
        out.append(f"### {md(phase.name)}")
        history_path = phase / "history.json"
        if os.path.lexists(history_path):
            history = schemas.load_history(_own(history_path, run_dir))
            val = [v for v in history.get("val_accuracy") or [] if v is not None]
            if val:
                out.append(f"{len(val)} epochs, best validation accuracy {max(val):.3f}.")
        if (phase / "curves.png").is_file() and not (phase / "curves.png").is_symlink():
            out += ["", f"![{md(phase.name)} curves]({_link(f'phases/{phase.name}/curves.png')})"]
        out.append("")
    return out


def _test_metrics(run_dir: Path, classes: list[str]) -> list[str]:
    out = ["## Test metrics", ""]
    if not os.path.lexists(run_dir / "metrics.json"):
        return out + ["No metrics.json (train the run: tk train RECIPE).", ""]
    test = schemas.load_metrics(_own(run_dir / "metrics.json", run_dir))["test"]
    out += [f"Accuracy **{_number(test['accuracy'], '.3f')}** on {test.get('count', '?')} test images.", ""]
    per_class = test.get("per_class", {})
    if per_class:
        rows = [[md(c), f"{m['precision']:.3f}", f"{m['recall']:.3f}", m["support"]] for c, m in per_class.items()]
        out += [_table(["class", "precision", "recall", "support"], rows), ""]
    confusion = test.get("confusion_matrix")
    if confusion:
        names = [md(classes[i]) if i < len(classes) else f"class {i}" for i in range(len(confusion))]
        out += [
            "Confusion matrix (rows: true class, columns: predicted):",
            "",
            _table(["true \\ predicted", *names], [[names[i], *row] for i, row in enumerate(confusion)]),
            "",
        ]
    return out


def _artifacts(manifest: dict[str, Any], gate: RunGate) -> list[str]:
    rows = []
    for f, e in manifest.get("artifacts", {}).items():
        verdict = gate.verdicts.get(f)
        cell = "reference" if f == REFERENCE else PARITY_CELLS.get(verdict.status if verdict else "", "-")
        size = e.get("size_bytes") or 0
        sha = str(e.get("sha256") or "")[:12]
        rows.append(
            [md(f), md(e.get("format", "?")), md(e.get("quantization", "none")), f"{size / 1e6:.2f}", f"`{sha}`", cell]
        )
    return ["## Artifacts", "", _table(["file", "format", "quantization", "MB", "sha256", "parity"], rows), ""]


def _parity(run_dir: Path, gate: RunGate) -> list[str]:
    out = ["## Parity (tk verify)", ""]
    path = run_dir / PARITY_JSON
    if not os.path.lexists(path):
        return out + ["Not run yet: `tk verify` compares every artifact with the Keras model.", ""]
    parity = schemas.load_parity(_own(path, run_dir))
    ref = parity.get("reference", {})
    out += [
        f"On {parity.get('count', '?')} {md(parity.get('split', ''))} images; reference "
        f"{REFERENCE} accuracy {_number(ref.get('accuracy'), '.3f')}. The verdict column is re-derived "
        "now: a result whose artifact, reference, images or limits changed since is stale.",
        "",
    ]
    rows = []
    for file, verdict in gate.verdicts.items():
        r = parity["artifacts"].get(file, {})
        figures = [
            _number(r.get("agreement"), ".1%"),
            _number(r.get("max_abs_diff"), ".2e"),
            _number(r.get("mean_abs_diff"), ".2e"),
            _number(r.get("accuracy"), ".3f"),
            _number(r.get("accuracy_delta"), "+.3f"),
        ]
        rows.append([md(file), md(r.get("kind", "")), *figures, f"{verdict.mark} {md(verdict.text())}"])
    headers = ["artifact", "kind", "agreement", "max diff", "mean diff", "accuracy", "delta", "verdict"]
    out += [_table(headers, rows), ""]
    for warning in ref.get("warnings", []):
        out.append(f"> warning: {md(warning)}")
    return out + [""]


def _row_parity(row: dict[str, Any], gate: RunGate) -> Optional[str]:
    """A bench row's verdict: its file's, when the row measured the bytes that are here now."""
    if row.get("reference"):
        return None
    verdict = gate.verdicts.get(row["file"])
    if verdict is None or not gate.gated:
        return "not verified"
    return verdict.status if row.get("sha256") and row["sha256"] == gate.shas.get(row["file"]) else "stale"


def _bench_table(benches: list[dict[str, Any]], gate: RunGate) -> tuple[list[str], list[dict[str, Any]]]:
    """A comparable table of these files' rows, with each row's verdict; and the rows shown."""
    rows, left_out = comparable_rows(merge_benches(benches))
    if not rows:
        return ["The bench files hold no rows: run `tk bench` again.", ""], []
    for row in rows:
        row["parity"] = _row_parity(row, gate)
    several = len({r["machine"] for r in rows}) > 1
    facts = machine_facts(benches)
    timing = row_timing(rows[0])
    out = [
        f"Every row below: {describe_runs(timing.get('runs'))} (timed, batch 1) after {timing.get('warmup')} "
        f"warm-up, throughput at batch {timing.get('batch')}.",
        "",
    ]
    for machine in dict.fromkeys(r["machine"] for r in rows):
        mine = [r for r in rows if r["machine"] == machine]
        m = facts.get(mine[0]["machine_label"], {})
        versions = ", ".join(f"{md(k)} {md(v)}" for k, v in (m.get("versions") or {}).items())
        times = sorted({str(r.get("measured_at")) for r in mine})
        when = times[0] if len(times) == 1 else f"{times[0]} .. {times[-1]} ({len(times)} calls)"
        memory = f", {m['memory_gb']} GB RAM" if m.get("memory_gb") else ""
        out.append(
            f"- **{md(machine)}**: {md(m.get('cpu'))}{memory}, {md(m.get('os'))}, Python {md(m.get('python'))}; "
            f"{versions}; load average {m.get('load_avg')}; {describe_settings(mine[0])}; measured {md(when)}"
        )
    headers = table_headers(rows, several)  # with "x native" when browser rows (tk bench --web) are here
    cells = [[md(c) for c in format_row(r, several, RATIO_HEADER in headers)] for r in rows]
    out += ["", _table(headers, cells), ""]
    if RATIO_HEADER in headers:
        out += [f"{BROWSER_NOTE[0].upper()}{BROWSER_NOTE[1:]}.", ""]
    if left_out:
        out.append(
            f"- note: {set_aside_note(left_out, 'in these bench files')}; this table is timed as above: "
            "bench every machine with the same --runs, --warmup and --batch to compare them"
        )
    return out, rows


def _bench(run_dir: Path, benches: list[dict[str, Any]], apart: list, title: str, gate: RunGate) -> list[str]:
    out = ["## Bench (tk bench)", ""]
    if not benches:
        return out + ["Not run yet: `tk bench` measures size, cold start, memory, latency and accuracy.", ""]
    table, rows = _bench_table(benches, gate)
    out += table
    if rows:
        out += [
            "`*` the Keras reference. cold s: process start to first prediction (a fresh process); RSS MB: "
            "its peak resident memory then; p50/p90/p99: batch-1 latency in ms; img/s: throughput at the batch "
            "size above; acc: test-split accuracy; parity: the artifact's verdict now (stale: measured on other "
            "bytes than this folder's).",
            "",
        ]
    set_aside = sum(len(b.get("other_rows", [])) for b in benches)
    if set_aside:
        out.append(
            f"- note: {set_aside} row(s) from earlier bench calls with other settings not shown "
            "(bench.json keeps them under other_rows)"
        )
    for bench in benches:
        out += [
            f"- note ({md(machine_label(bench['machine']))}): {md(n)}"
            for n in bench.get("notes", [])
            if "with other settings not shown" not in n
        ]
    points = latency_points(rows)
    if points:
        from .plots import plot_latency_accuracy

        plot_latency_accuracy(points, run_dir / PLOT, title)
        out += ["", f"![latency vs accuracy]({PLOT})"]
    return out + [""] + _apart(apart, gate)


def _apart(apart: list[tuple[Path, dict[str, Any]]], gate: RunGate) -> list[str]:
    """Bench files of another model: their own table, never the plot or the ship comparison."""
    out = []
    for path, bench in apart:
        named = bench.get("reference_sha256")
        table, _ = _bench_table([bench], gate)
        out += [
            f"### Another model: {md(path)}",
            "",
            f"Kept apart: it measured artifacts of another model (reference sha256 "
            f"{md(str(named)[:12]) if named else 'not recorded, artifacts not this run’s'}); "
            "`tk report --merge FILE --mix-models` puts it in the table above.",
            "",
            *table,
        ]
    return out


def _explain(run_dir: Path) -> list[str]:
    folder = run_dir / "explain"
    usable = folder.is_dir() and not folder.is_symlink()
    images = sorted(p for p in folder.glob("*.png") if not p.is_symlink()) if usable else []
    if not images:
        return []
    out = ["## Explain (tk explain)", ""]
    for image in images:
        out += [f"### {md(image.stem)}", "", f"![{md(image.stem)}]({_link(f'explain/{image.name}')})", ""]
    return out


def _link(path: str) -> str:
    """A relative link target: as is when plain, else escaped inside <...> (spaces, brackets, ...)."""
    return path if re.fullmatch(r"[A-Za-z0-9._/-]+", path) else f"<{md(path)}>"


def write_report(run_dir: Path, merge: Sequence[Path] = (), ctx: Context = SILENT, mix_models: bool = False) -> Path:
    """Write RUN/REPORT.md (and the latency plot) from the files in the run folder."""
    run_dir = Path(run_dir)
    manifest = load_manifest(run_dir)
    check_writable(run_dir)
    gate = run_verdicts(run_dir)
    name = manifest.get("name", run_dir.name)
    benches = [load_bench(_own(run_dir / BENCH_JSON, run_dir))] if os.path.lexists(run_dir / BENCH_JSON) else []
    apart = []
    shas = {s for s in gate.shas.values() if s}
    for path in merge:
        bench = load_bench(Path(path))
        if mix_models or same_model(bench, gate.reference_sha256, shas):
            benches.append(bench)
        else:
            apart.append((Path(path), bench))
    size = manifest["preprocessing"]["size"]
    lines = [
        f"# {md(name)}",
        "",
        *_gate(gate),
        f"Backbone {md(manifest.get('backbone', '?'))}, input {size[0]}x{size[1]} RGB, classes: "
        f"{', '.join(md(c, 80) for c in manifest['classes'])}. Report written {now()} by `tk report`.",
        "",
    ]
    if mix_models and merge:
        lines += ["> note: `--mix-models`: the bench table may mix rows of other models.", ""]
    lines += _training(run_dir)
    lines += _test_metrics(run_dir, manifest["classes"])
    lines += _artifacts(manifest, gate)
    lines += _parity(run_dir, gate)
    lines += _bench(run_dir, benches, apart, f"{name}: latency vs accuracy", gate)
    lines += _explain(run_dir)
    path = run_dir / REPORT
    write_text_atomic(path, "\n".join(lines).rstrip() + "\n")
    ctx.say(f"wrote {path}")
    return path


def report_for(
    target: Optional[str], runs_dir: Path, merge: Sequence[Path], ctx: Context = SILENT, mix_models: bool = False
) -> Path:
    from ..core.runs import resolve_run

    return write_report(resolve_run(target, runs_dir, ctx), merge, ctx, mix_models)
