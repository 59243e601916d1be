"""How close to a tie a trained model's predictions are: the top-1 minus top-2 probability of the
Keras reference on a run's held-out split, through tk's own preprocessing (core.images.load_batch).

int8 flips a prediction only where this margin is smaller than its rounding error, so whether an
int8 agreement figure means anything depends on this distribution (issue 17: "a set with wide
margins proves nothing"). Usage, from the repository root with the training venv:
    python benchmarks/margins.py RUN [--split test|validation]
"""

from __future__ import annotations

import argparse
from pathlib import Path

import numpy as np

from toolkit.core.images import load_batch
from toolkit.core.runs import REFERENCE, SPLIT, load_manifest, load_split
from toolkit.edge.parity import top1_margin
from toolkit.export.reference import KerasPredictor


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--split", default="test", choices=["test", "validation"])
    args = parser.parse_args()
    manifest = load_manifest(args.run)
    split = load_split(args.run / SPLIT)
    paths, labels = split.paths(args.split), np.asarray(split.labels(args.split))
    size = tuple(manifest["preprocessing"]["size"])
    model = KerasPredictor(args.run / REFERENCE, manifest)
    probs = np.concatenate([model.predict(load_batch(paths[i : i + 32], size)) for i in range(0, len(paths), 32)])
    margin = top1_margin(probs)
    accuracy = float(np.mean(probs.argmax(1) == labels))
    print(
        f"{args.run.name} {args.split}: {len(paths)} images, accuracy {accuracy:.3f}; top-1/top-2 margin "
        f"median {np.median(margin):.3f}, 10th percentile {np.percentile(margin, 10):.3f}; "
        f"under 0.2: {int(np.sum(margin < 0.2))}, under 0.05: {int(np.sum(margin < 0.05))}, "
        f"under 0.02: {int(np.sum(margin < 0.02))}"
    )


if __name__ == "__main__":
    main()
