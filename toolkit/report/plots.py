"""The latency-vs-accuracy chart of `tk report` (matplotlib headless, files only)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from ..core.io import atomic_path
from ..core.text import plot_text
from ..train.curves import pyplot

_MARKERS = "osD^v<>ph*"
_NUMBER_FONT = 8
_STEP = 7  # points per offset step: just clear of the largest marker
# Candidate offsets (points) of a point's number, nearest first: the first free one is taken.
_OFFSETS = [
    (dx * r, dy * r)
    for r in (1.2, 2, 3, 4)
    for dx, dy in ((1, 1), (1, -1), (-1, 1), (-1, -1), (1.4, 0), (-1.4, 0), (0, 1.4), (0, -1.4))
]


def _unverified(point: dict) -> bool:
    return not point.get("reference") and point.get("parity") != "passed"


def names_of(machines: list[str]) -> list[str]:
    return [plot_text(m) for m in machines]


def accuracy_limits(accuracies: list[float]) -> tuple[float, float]:
    """y limits that hold every point with a little margin and stay within about [0, 1]."""
    lo, hi = min(accuracies), max(accuracies)
    pad = max(0.02, (hi - lo) * 0.12)
    bottom, top = max(-0.02, lo - pad), min(1.02, hi + pad)
    if top - bottom < 0.1:  # a flat cluster: show at least 0.1 of the axis, still within [0, 1]
        mid = min(max((top + bottom) / 2, 0.05), 0.97)
        bottom, top = max(-0.02, mid - 0.05), min(1.02, mid + 0.05)
    return bottom, top


def _overlaps(box: tuple[float, float, float, float], boxes: list[tuple[float, float, float, float]]) -> bool:
    x0, y0, x1, y1 = box
    return any(x0 < b[2] and b[0] < x1 and y0 < b[3] and b[1] < y1 for b in boxes)


def place_labels(
    xy_px: list[tuple[float, float]], texts: list[str], dpi: float, bounds: tuple[float, float, float, float]
) -> tuple[list[tuple[float, float]], list[tuple]]:
    """Deterministic offsets (points) for each text so no two texts, and no text and point, overlap.

    Returns the offsets and the texts' boxes (pixels). Greedy, in the given order: each text takes
    the nearest candidate offset whose box is free and inside `bounds` (the axes, in pixels); with
    none free it takes the one overlapping least.
    """
    scale = dpi / 72.0
    points = [(x - 6 * scale, y - 6 * scale, x + 6 * scale, y + 6 * scale) for x, y in xy_px]  # the markers
    placed: list[tuple[float, float, float, float]] = []
    offsets = []
    for (x, y), text in zip(xy_px, texts, strict=True):
        w, h = (0.62 * _NUMBER_FONT * len(text) + 2) * scale, (_NUMBER_FONT + 2) * scale
        best, best_hits = _OFFSETS[0], math.inf
        for dx, dy in _OFFSETS:
            cx, cy = x + _STEP * dx * scale, y + _STEP * dy * scale
            box = (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2)
            inside = bounds[0] <= box[0] and box[2] <= bounds[2] and bounds[1] <= box[1] and box[3] <= bounds[3]
            hits = sum(_overlaps(box, [b]) for b in placed + points) + (0 if inside else 100)
            if hits < best_hits:
                best, best_hits, best_box = (dx, dy), hits, box
            if hits == 0:
                break
        placed.append(best_box)
        offsets.append((_STEP * best[0], _STEP * best[1]))
    return offsets, placed


def _latency_ticks(ax) -> None:
    """Plain millisecond tick labels (2, 5, 10, 20 ... or a few within a narrow range), never
    matplotlib's 2.6x10^0 minor labels, which collide when all latencies sit within one decade."""
    from matplotlib.ticker import FixedLocator, FuncFormatter, LogLocator, MaxNLocator, NullFormatter

    left, right = ax.get_xlim()
    if right / left < 10:
        ticks = [t for t in MaxNLocator(5).tick_values(left, right) if left <= t <= right and t > 0]
        ax.xaxis.set_major_locator(FixedLocator(ticks))
    else:
        ax.xaxis.set_major_locator(LogLocator(base=10, subs=(1.0, 2.0, 5.0)))
    ax.xaxis.set_major_formatter(FuncFormatter(lambda v, _: f"{v:g}"))
    ax.xaxis.set_minor_formatter(NullFormatter())


def plot_latency_accuracy(points: list[dict], path: Path, title: str) -> dict[str, Any]:
    """Batch-1 p50 latency (log x) against test accuracy, one point per artifact and machine.

    points: {"label", "machine", "p50_ms", "accuracy", "reference", "parity"}. Each machine gets a
    colour and a marker (legend); each point a number, placed where it collides with no other, and
    the key beside the chart names it: long file names beside clustered points would print over each
    other. A point whose artifact did not pass verify (parity other than "passed"; the reference has
    None) is drawn hollow with a red cross and named so in the key: a fast, accurate-looking point
    that fails the gate must not read as the best one. Names are plot text, never mathtext.
    Returns what was drawn (limits, ticks, number offsets, the unverified points) so tests can check.
    """
    plt = pyplot()
    machines = list(dict.fromkeys(p["machine"] for p in points))
    ordered = sorted(points, key=lambda p: (machines.index(p["machine"]), p["p50_ms"], p["label"]))
    fig = plt.figure(figsize=(11, 5.2), dpi=100)
    ax = fig.add_axes([0.07, 0.12, 0.52, 0.76])
    colours = plt.get_cmap("tab10").colors
    for i, machine in enumerate(machines):
        mine = [p for p in ordered if p["machine"] == machine]
        good = [p for p in mine if not _unverified(p)]
        style = {"marker": _MARKERS[i % len(_MARKERS)], "s": max(30, 110 - 55 * i), "zorder": 3}
        ax.scatter(
            [p["p50_ms"] for p in good],
            [p["accuracy"] for p in good],
            color=colours[i % len(colours)],
            edgecolor="black",
            linewidth=0.5,
            alpha=0.85,
            label=plot_text(machine),
            **style,
        )
        bad = [p for p in mine if _unverified(p)]
        if bad:
            xs, ys = [p["p50_ms"] for p in bad], [p["accuracy"] for p in bad]
            ax.scatter(xs, ys, facecolors="none", edgecolors=colours[i % len(colours)], linewidth=1.2, **style)
            ax.scatter(xs, ys, marker="x", color="red", s=40, linewidth=1.5, zorder=4)
    ax.set_xscale("log")
    latencies = [p["p50_ms"] for p in ordered]
    low, high = min(latencies), max(latencies)
    ax.set_xlim(low / 1.35, high * 1.35)  # log axis: a constant factor of room either side
    _latency_ticks(ax)
    ax.set_ylim(*accuracy_limits([p["accuracy"] for p in ordered]))
    ticks = [t for t in ax.get_yticks() if -1e-9 <= t <= 1.0 + 1e-9 and ax.get_ylim()[0] <= t <= ax.get_ylim()[1]]
    ax.set_yticks(ticks)  # never a tick label above 1.0 (or below 0) in the margin
    ax.set_xlabel("batch-1 latency p50 (ms, log scale; best thread count)")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3, which="both")
    ax.set_title(plot_text(title), fontsize=11)
    numbers = [str(k + 1) for k in range(len(ordered))]
    fig.canvas.draw()  # fixes the transforms the label placement reads
    xy = [tuple(ax.transData.transform((p["p50_ms"], p["accuracy"]))) for p in ordered]
    bbox = ax.get_window_extent()
    offsets, boxes = place_labels(xy, numbers, fig.dpi, (bbox.x0, bbox.y0, bbox.x1, bbox.y1))
    for p, number, offset in zip(ordered, numbers, offsets, strict=True):
        # a hairline to its point: in a cluster the nearest free spot may sit closer to a neighbour
        ax.annotate(
            number,
            (p["p50_ms"], p["accuracy"]),
            textcoords="offset points",
            xytext=offset,
            ha="center",
            va="center",
            fontsize=_NUMBER_FONT,
            fontweight="bold",
            zorder=4,
            arrowprops={"arrowstyle": "-", "lw": 0.5, "color": "0.45", "shrinkA": 4, "shrinkB": 4},
        )
    names = [plot_text(p["label"], 48) + (" (ref)" if p.get("reference") else "") for p in ordered]
    width = max(len(n) for n in names)
    key = [
        f"{n:>2}  {name:<{width}}"
        + (f"  [{machines.index(p['machine']) + 1}]" if len(machines) > 1 else "")
        + f"  {p['p50_ms']:8.2f} ms  acc {p['accuracy']:.3f}"
        + (f"  [{str(p.get('parity') or 'not verified').upper()}]" if _unverified(p) else "")
        for n, name, p in zip(numbers, names, ordered, strict=True)
    ]
    fig.text(
        0.62,
        0.88,
        "key: point, artifact" + (", [machine]" if len(machines) > 1 else "") + ", p50, accuracy\n\n" + "\n".join(key),
        va="top",
        ha="left",
        family="monospace",
        fontsize=8,
        linespacing=1.5,
    )
    handles, _ = ax.get_legend_handles_labels()
    names = [f"[{i + 1}] {plot_text(m)}" for i, m in enumerate(machines)] if len(machines) > 1 else names_of(machines)
    fig.legend(
        handles,
        names,
        loc="lower left",
        bbox_to_anchor=(0.62, 0.02),
        fontsize=8,
        frameon=False,
        title="machine",
        title_fontsize=8,
    )
    drawn = {
        "xlim": ax.get_xlim(),
        "ylim": ax.get_ylim(),
        "yticks": list(ax.get_yticks()),
        "offsets": offsets,
        "label_boxes": boxes,
        "numbers": dict(zip(numbers, ((p["label"], p["machine"]) for p in ordered), strict=True)),
        "unverified": [n for n, p in zip(numbers, ordered, strict=True) if _unverified(p)],
    }
    with atomic_path(Path(path), suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
    return drawn
