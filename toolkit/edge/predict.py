"""`tk predict`: labels and probabilities for image files, from any artifact and its manifest.

This is the device command: for .tflite and .onnx it imports numpy, Pillow and the runtime only
(never TensorFlow), so it runs on the base install on a Raspberry Pi. Folders are expanded to
their image files (sorted, recursively) and predicted in batches.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Sequence

import numpy as np

from ..core.errors import TkError
from ..core.images import is_image_name, load_batch
from .predictors import Predictor, load_predictor

BATCH = 32


@dataclass
class Prediction:
    file: str
    top: list[tuple[str, float]]  # (label, probability), most likely first

    def to_json(self) -> dict:
        return {"file": self.file, "label": self.top[0][0], "probability": self.top[0][1],
                "top": [{"label": label, "probability": p} for label, p in self.top]}


def expand_inputs(inputs: Sequence[str | Path]) -> list[Path]:
    """Files as given, folders as their image files; a missing path or an empty folder is an error."""
    files: list[Path] = []
    for item in inputs:
        path = Path(item)
        if path.is_dir():
            found = sorted(p for p in path.rglob("*") if p.is_file() and is_image_name(p))
            if not found:
                raise TkError(f"{path}: no image files in this folder (looked for .jpg, .jpeg, .png, .bmp, .gif)")
            files.extend(found)
        elif path.is_file():
            files.append(path)
        else:
            raise TkError(f"{path}: no such file or folder; pass image files or folders of images")
    if not files:
        raise TkError("no images given; pass image files or folders: tk predict MODEL IMAGE|DIR ...")
    return files


def top_k(probs: np.ndarray, labels: Sequence[str], k: int) -> list[tuple[str, float]]:
    order = np.argsort(-probs, kind="stable")[:max(1, min(k, len(labels)))]
    return [(labels[i], float(probs[i])) for i in order]


def predict_paths(predictor: Predictor, files: Sequence[Path], k: int = 1,
                  batch: int = BATCH) -> Iterator[Prediction]:
    """Predictions batch by batch (decoded through images.load_batch, like training)."""
    for start in range(0, len(files), batch):
        chunk = list(files[start:start + batch])
        probs = predictor.predict(load_batch(chunk, predictor.size))
        for path, row in zip(chunk, probs):
            yield Prediction(str(path), top_k(row, predictor.labels, k))


def predict(artifact: str | Path, inputs: Sequence[str | Path], k: int = 1, threads: int | None = None,
            on_prediction: Callable[[Prediction], None] | None = None) -> list[Prediction]:
    """Load the artifact (manifest + sha256 checked) and predict every input image."""
    if k < 1:
        raise TkError(f"--top-k: must be >= 1 (got {k})")
    files = expand_inputs(inputs)
    predictor = load_predictor(artifact, num_threads=threads)
    out = []
    for prediction in predict_paths(predictor, files, k):
        out.append(prediction)
        if on_prediction:
            on_prediction(prediction)
    return out


def format_prediction(prediction: Prediction) -> str:
    return f"{prediction.file}: " + ", ".join(f"{label} {p:.3f}" for label, p in prediction.top)
