"""The latency-vs-accuracy chart of `tk report` (matplotlib headless, files only)."""

from __future__ import annotations

from pathlib import Path

from ..core.io import atomic_path
from ..train.curves import pyplot


def plot_latency_accuracy(points: list[dict], path: Path, title: str) -> None:
    """Batch-1 p50 latency (log x) against test accuracy, one point per artifact and machine.

    points: {"label", "machine", "p50_ms", "accuracy", "reference"}; each machine gets a marker,
    so a laptop's and a Pi's formats sit on one chart. (Used by report.py.)
    """
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(8, 5))
    machines = list(dict.fromkeys(p["machine"] for p in points))
    markers = "osD^v<>ph*"
    for i, machine in enumerate(machines):
        mine = sorted((p for p in points if p["machine"] == machine), key=lambda p: p["p50_ms"])
        ax.scatter([p["p50_ms"] for p in mine], [p["accuracy"] for p in mine], marker=markers[i % len(markers)],
                   s=60, label=machine, alpha=0.8)
        for k, p in enumerate(mine):
            # staggered offsets: formats with equal accuracy and close latency would print on top of each other
            ax.annotate(p["label"] + (" (ref)" if p.get("reference") else ""), (p["p50_ms"], p["accuracy"]),
                        textcoords="offset points", xytext=(5, 4 + 9 * (k % 3)), fontsize=7)
    ax.set_xscale("log")
    ax.margins(x=0.12, y=0.25)  # room for the labels above the top points
    ax.set_xlabel("batch-1 latency p50 (ms, log scale; best thread count)")
    ax.set_ylabel("test accuracy")
    ax.grid(alpha=0.3, which="both")
    if len(machines) > 1:
        ax.legend(fontsize=8)
    ax.set_title(title)
    fig.tight_layout()
    with atomic_path(Path(path), suffix=".png") as tmp:
        fig.savefig(tmp, dpi=100, format="png")
    plt.close(fig)
