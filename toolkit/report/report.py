"""`tk report`: REPORT.md in the run folder, from what the other commands wrote there.

Training curves (phases/*/curves.png), test metrics (metrics.json), the artifacts (manifest.json),
the parity table (parity.json, when tk verify ran), the bench table (bench.json, when tk bench ran)
and a latency-vs-accuracy plot. bench.json files from other machines (`--merge pi/bench.json`)
join the same table with a machine column, so a laptop and a Pi compare side by side. Sections
whose inputs are missing say which command makes them. Links are relative: the folder can move.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional, Sequence

from ..core.context import SILENT, Context
from ..core.errors import TkError
from ..core.io import check_writable, now, write_text_atomic
from ..core.runs import load_manifest
from ..edge.bench import BENCH_JSON, HEADERS, format_row, machine_label
from ..edge.bench_rows import describe_runs, describe_settings, row_settings, set_aside_note, upgrade_rows

REPORT = "REPORT.md"
PLOT = "bench_latency_accuracy.png"
PARITY_JSON = "parity.json"


def _read_json(path: Path, what: str) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        raise TkError(f"{path}: {what} not found") from None
    except json.JSONDecodeError as exc:
        raise TkError(f"{path}: {what} is not valid JSON ({exc})") from None


def _table(headers: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    lines = ["| " + " | ".join(headers) + " |", "|" + "|".join("---" for _ in headers) + "|"]
    lines += ["| " + " | ".join(str(c) for c in row) + " |" for row in rows]
    return "\n".join(lines)


def load_bench(path: Path) -> dict[str, Any]:
    """One bench.json, its rows tagged with the machine they were measured on."""
    bench = _read_json(path, "bench results")
    if not isinstance(bench, dict) or not isinstance(bench.get("rows"), list) or "machine" not in bench:
        raise TkError(f"{path}: not a tk bench.json (needs machine and rows); run tk bench to make one")
    return bench


def merge_benches(benches: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """All rows of several bench.json files, each tagged with its machine (numbered if two files share one)."""
    from collections import Counter

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


TIMING_KEYS = ("runs", "warmup", "batch")


def comparable_rows(rows: Sequence[dict[str, Any]]) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """(rows timed like the first one, the others). Across machines only the timing settings must
    match: each machine's accuracy sample is named beside it (a Pi may hold a smaller test sample)."""
    if not rows:
        return [], []
    timing = _timing(rows[0])
    same = [r for r in rows if _timing(r) == timing]
    return same, [r for r in rows if _timing(r) != timing]


def _timing(row: dict[str, Any]) -> dict[str, Any]:
    settings = row_settings(row)  # an adaptive row's runs setting, not the count it took
    return {k: settings.get(k) for k in TIMING_KEYS}


def _machine_facts(benches: Sequence[dict[str, Any]]) -> dict[str, dict[str, Any]]:
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
        }
        for r in best.values()
    ]


def _training(run_dir: Path) -> list[str]:
    out = ["## Training", ""]
    phases = sorted(p for p in (run_dir / "phases").glob("*") if p.is_dir()) if (run_dir / "phases").is_dir() else []
    if not phases:
        return out + ["No phase folders (phases/*/) in this run.", ""]
    for phase in phases:
        out.append(f"### {phase.name}")
        history_path = phase / "history.json"
        if history_path.is_file():
            history = json.loads(history_path.read_text())
            val = history.get("val_accuracy") or []
            if val:
                out.append(f"{len(val)} epochs, best validation accuracy {max(val):.3f}.")
        if (phase / "curves.png").is_file():
            out += ["", f"![{phase.name} curves](phases/{phase.name}/curves.png)"]
        out.append("")
    return out


def _test_metrics(run_dir: Path, classes: list[str]) -> list[str]:
    out = ["## Test metrics", ""]
    if not (run_dir / "metrics.json").is_file():
        return out + ["No metrics.json (train the run: tk train RECIPE).", ""]
    test = _read_json(run_dir / "metrics.json", "metrics").get("test", {})
    out += [f"Accuracy **{test.get('accuracy', float('nan')):.3f}** on {test.get('count', '?')} test images.", ""]
    per_class = test.get("per_class", {})
    if per_class:
        out += [
            _table(
                ["class", "precision", "recall", "support"],
                [[c, f"{m['precision']:.3f}", f"{m['recall']:.3f}", m["support"]] for c, m in per_class.items()],
            ),
            "",
        ]
    confusion = test.get("confusion_matrix")
    if confusion:
        out += [
            "Confusion matrix (rows: true class, columns: predicted):",
            "",
            _table(["true \\ predicted", *classes], [[classes[i], *row] for i, row in enumerate(confusion)]),
            "",
        ]
    return out


def _artifacts(manifest: dict[str, Any]) -> list[str]:
    rows = [
        [
            f,
            e.get("format", "?"),
            e.get("quantization", "none"),
            f"{(e.get('size_bytes') or 0) / 1e6:.2f}",
            f"`{str(e.get('sha256', ''))[:12]}`",
        ]
        for f, e in manifest.get("artifacts", {}).items()
    ]
    return ["## Artifacts", "", _table(["file", "format", "quantization", "MB", "sha256"], rows), ""]


def _parity(run_dir: Path) -> list[str]:
    out = ["## Parity (tk verify)", ""]
    path = run_dir / PARITY_JSON
    if not path.is_file():
        return out + ["Not run yet: `tk verify` compares every artifact with the Keras model.", ""]
    parity = _read_json(path, "parity results")
    ref = parity.get("reference", {})
    out += [
        f"On {parity.get('count', '?')} {parity.get('split', '')} images; reference "
        f"{ref.get('file', 'model.keras')} accuracy {ref.get('accuracy', float('nan')):.3f}.",
        "",
    ]
    rows = []
    for file, r in parity.get("artifacts", {}).items():
        if "error" in r:
            rows.append([file, r.get("kind", ""), "-", "-", "-", "-", "-", "✗ " + r["error"]])
            continue
        rows.append(
            [
                file,
                r.get("kind", ""),
                f"{r['agreement']:.1%}",
                f"{r['max_abs_diff']:.2e}",
                f"{r['mean_abs_diff']:.2e}",
                f"{r['accuracy']:.3f}",
                f"{r['accuracy_delta']:+.3f}",
                "✓" if r.get("passed") else "✗ " + "; ".join(r.get("failures", [])),
            ]
        )
    out += [_table(["artifact", "kind", "agreement", "max diff", "mean diff", "accuracy", "delta", "pass"], rows), ""]
    for warning in ref.get("warnings", []):
        out.append(f"> warning: {warning}")
    return out + [""]


def _bench(run_dir: Path, benches: list[dict[str, Any]], title: str) -> list[str]:
    out = ["## Bench (tk bench)", ""]
    if not benches:
        return out + ["Not run yet: `tk bench` measures size, cold start, memory, latency and accuracy.", ""]
    rows, left_out = comparable_rows(merge_benches(benches))
    if not rows:
        return out + ["The bench files hold no rows: run `tk bench` again.", ""]
    several = len({r["machine"] for r in rows}) > 1
    facts = _machine_facts(benches)
    timing = _timing(rows[0])
    out.append(
        f"Every row below: {describe_runs(timing.get('runs'))} (timed, batch 1) after {timing.get('warmup')} warm-up, "
        f"throughput at batch {timing.get('batch')}."
    )
    out.append("")
    for machine in dict.fromkeys(r["machine"] for r in rows):
        mine = [r for r in rows if r["machine"] == machine]
        m = facts.get(mine[0]["machine_label"], {})
        versions = ", ".join(f"{k} {v}" for k, v in m.get("versions", {}).items())
        times = sorted({str(r.get("measured_at")) for r in mine})
        when = times[0] if len(times) == 1 else f"{times[0]} .. {times[-1]} ({len(times)} calls)"
        memory = f", {m['memory_gb']} GB RAM" if m.get("memory_gb") else ""
        out.append(
            f"- **{machine}**: {m.get('cpu')}{memory}, {m.get('os')}, Python {m.get('python')}; {versions}; "
            f"load average {m.get('load_avg')}; {describe_settings(mine[0])}; measured {when}"
        )
    out += [
        "",
        _table((["machine"] if several else []) + list(HEADERS), [format_row(r, several) for r in rows]),
        "",
        "`*` the Keras reference. cold s: process start to first prediction (a fresh process); RSS MB: "
        "its peak resident memory then; p50/p90/p99: batch-1 latency in ms; img/s: throughput at the batch "
        "size above; acc: test-split accuracy.",
        "",
    ]
    set_aside = sum(len(b.get("other_rows", [])) for b in benches)
    if set_aside:
        out.append(
            f"- note: {set_aside} row(s) from earlier bench calls with other settings not shown "
            "(bench.json keeps them under other_rows)"
        )
    if left_out:
        out.append(
            f"- note: {set_aside_note(left_out, 'in these bench files')}; this table is timed as above: "
            "bench every machine with the same --runs, --warmup and --batch to compare them"
        )
    for bench in benches:
        out += [
            f"- note ({machine_label(bench['machine'])}): {n}"
            for n in bench.get("notes", [])
            if "with other settings not shown" not in n
        ]
    points = latency_points(rows)
    if points:
        from .plots import plot_latency_accuracy

        plot_latency_accuracy(points, run_dir / PLOT, title)
        out += ["", f"![latency vs accuracy]({PLOT})"]
    return out + [""]


def _explain(run_dir: Path) -> list[str]:
    folder = run_dir / "explain"
    images = sorted(folder.glob("*.png")) if folder.is_dir() else []
    if not images:
        return []
    out = ["## Explain (tk explain)", ""]
    for image in images:
        out += [f"### {image.stem}", "", f"![{image.stem}](explain/{image.name})", ""]
    return out


def write_report(run_dir: Path, merge: Sequence[Path] = (), ctx: Context = SILENT) -> Path:
    """Write RUN/REPORT.md (and the latency plot) from the files in the run folder."""
    run_dir = Path(run_dir)
    manifest = load_manifest(run_dir)
    check_writable(run_dir)
    name = manifest.get("name", run_dir.name)
    benches = [load_bench(run_dir / BENCH_JSON)] if (run_dir / BENCH_JSON).is_file() else []
    benches += [load_bench(Path(p)) for p in merge]
    size = manifest.get("preprocessing", {}).get("size", ["?", "?"])
    lines = [
        f"# {name}",
        "",
        f"Backbone {manifest.get('backbone', '?')}, input {size[0]}x{size[1]} RGB, classes: "
        f"{', '.join(manifest.get('classes', []))}. Report written {now()} by `tk report`.",
        "",
    ]
    lines += _training(run_dir)
    lines += _test_metrics(run_dir, manifest.get("classes", []))
    lines += _artifacts(manifest)
    lines += _parity(run_dir)
    lines += _bench(run_dir, benches, f"{name}: latency vs accuracy")
    lines += _explain(run_dir)
    path = run_dir / REPORT
    write_text_atomic(path, "\n".join(lines).rstrip() + "\n")
    ctx.say(f"wrote {path}")
    return path


def report_for(target: Optional[str], runs_dir: Path, merge: Sequence[Path], ctx: Context = SILENT) -> Path:
    from ..core.runs import resolve_run

    return write_report(resolve_run(target, runs_dir, ctx), merge, ctx)
