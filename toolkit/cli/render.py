"""Everything tk shows a person: tables, result lines, the ship choice. The only module that
builds rich renderables; domain code returns data and one-line progress messages.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any, Sequence

from ..core.io import format_size
from ..edge.bench import BROWSER_NOTE, RATIO_HEADER, format_row, table_headers


def rows_table(rows: Sequence[dict[str, Any]], title: str = "", machine_column: bool = False):
    """A rich table of bench rows (the terminal view; report.py renders the same rows as Markdown)."""
    from rich import box
    from rich.table import Table

    table = Table(
        title=title or None,
        box=box.SIMPLE_HEAD,
        caption="* the Keras reference; cold s: process "
        "start to first prediction; RSS: peak resident memory then; p50..p99: batch 1",
    )
    headers = table_headers(rows, machine_column)
    if RATIO_HEADER in headers:
        table.caption += f"; {BROWSER_NOTE}"
    for h in headers:
        table.add_column(
            h, justify="left" if h in ("machine", "artifact") else "right", no_wrap=h in ("machine", "artifact")
        )
    for r in rows:
        table.add_row(*format_row(r, machine_column, RATIO_HEADER in headers))
    return table


def keys_table(keys: Sequence[Any]):
    """The recipe keys (core/recipe_keys.RecipeKey) as a rich table."""
    from rich import box
    from rich.table import Table

    table = Table(box=box.SIMPLE_HEAD, caption="set one in a recipe file, or for one run: tk train ... --set KEY=VALUE")
    for name in ("key", "type", "default", "meaning"):
        table.add_column(name, overflow="fold")
    for key in keys:
        table.add_row(key.key, key.type, key.default, key.meaning)
    return table


def ship_line(best: dict[str, Any]) -> str:
    accuracy = best.get("accuracy")
    skipped = best.get("skipped") or []
    return (
        f"ship: {best['file']} ({format_size(best.get('size_bytes') or 0)}, p50 {best['p50_ms']:.2f} ms at "
        f"{best['threads']} thread(s), accuracy {'-' if accuracy is None else format(accuracy, '.3f')}; "
        f"chosen among the {best.get('among', '?')} artifact(s) this call measured on {best.get('machine', '?')})"
        + (f"; not considered, as they did not pass tk verify: {'; '.join(skipped)}" if skipped else "")
    )


def import_lines(result) -> list[str]:
    """What tk import says when done: test accuracy (per class, for a few classes), then warnings."""
    m = result.metrics
    how = "softmax added" if result.output == "logits" else "kept"
    lines = [
        f"test accuracy {m['accuracy']:.4f} on {m['count']} images (chance {result.chance:.3f}); "
        f"model output: {result.output} ({how}: {result.output_from})"
    ]
    if len(m["per_class"]) <= 20:
        lines += [
            f"  {name:>16}: precision {c['precision']:.3f}  recall {c['recall']:.3f}  ({c['support']} images)"
            for name, c in m["per_class"].items()
            if c["support"]
        ]
    lines += [f"warning: {w}" for w in result.warnings]
    if result.archived is not None:
        lines.append(f"kept the previous run as {result.archived}")
    lines.append(f"run written to {result.run_dir}; next: tk export {result.run_dir} && tk verify {result.run_dir}")
    return lines


def survey_table(report: dict[str, Any]) -> list[Any]:
    """Rich renderables for the terminal: counts table, sizes, bad files, warnings."""
    from rich.table import Table
    from rich.text import Text

    out: list[Any] = []
    how = "detected" if report["layout_requested"] == "auto" else "from the recipe"
    out.append(
        Text(
            f"{report['root']}: layout {report['layout']} ({how}), {len(report['classes'])} classes, "
            f"{report['images']} images"
        )
    )
    table = Table(title="images per class and split")
    table.add_column("class")
    splits = list(report["counts"])
    for split in splits:
        label = f"{split} (= validation)" if split == "test" and report["test_is_validation"] else split
        table.add_column(label, justify="right")
    for name in report["classes"]:
        table.add_row(name, *(str(report["counts"][s][name]) for s in splits))
    table.add_row("total", *(str(report["totals"][s]) for s in splits), style="bold")
    out.append(table)
    sizes = report["sizes"]
    if sizes["count"]:
        w, h = sizes["width"], sizes["height"]
        modes = ", ".join(f"{m} {n}" for m, n in sizes["modes"].items())
        out.append(
            Text(
                f"image size (w x h): min {w['min']}x{h['min']}, median {w['median']:g}x{h['median']:g}, "
                f"max {w['max']}x{h['max']}; modes: {modes}"
            )
        )
    if report["bad_files"]:
        bad = Table(title=f"{len(report['bad_files'])} bad file(s)")
        bad.add_column("file")
        bad.add_column("reason")
        for item in report["bad_files"]:
            bad.add_row(_short(item["path"], report["root"]), item["reason"])
        out.append(bad)
    for warning in report["warnings"]:
        out.append(Text(f"warning: {warning}", style="yellow"))
    if not report["warnings"]:
        out.append(Text("no problems found", style="green"))
    return out


def _short(path: str, root: str) -> str:
    try:
        return str(Path(path).relative_to(root))
    except ValueError:
        return path
