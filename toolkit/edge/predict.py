"""`tk predict`: labels and probabilities for image files, from any artifact and its manifest.

This is the device command: for .tflite and .onnx it imports numpy, Pillow and the runtime only
(never TensorFlow), so it runs on the base install on a Raspberry Pi. Folders are expanded to
their image files (sorted, recursively) and predicted in batches. A bare .tflite/.onnx (no
manifest beside it) is labelled by what it carries (edge/bare.py); what it lacks is one note.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator, Optional, Sequence

import numpy as np

from ..core.caps import check_threads
from ..core.errors import TkError
from ..core.images import BadImage, is_image_name, load_image_into
from ..core.runs import MANIFEST, load_manifest
from .predictors import Predictor, load_predictor


@dataclass
class Prediction:
    file: str
    top: list[tuple[str, float]]  # (label, probability), most likely first

    def to_json(self) -> dict:
        return {
            "file": self.file,
            "label": self.top[0][0],
            "probability": self.top[0][1],
            "top": [{"label": label, "probability": p} for label, p in self.top],
        }


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
    order = np.argsort(-probs, kind="stable")[: max(1, min(k, len(labels)))]
    return [(labels[i], float(probs[i])) for i in order]


BadFile = Callable[[str, str], None]  # (file, reason) for an input that is not a readable image


def predict_paths(
    predictor: Predictor, files: Sequence[Path], k: int = 1, batch: int | None = None, on_bad: BadFile | None = None
) -> Iterator[Prediction]:
    """Predictions `batch` images at a time (default: the runtime's measured batch size, feed.py),
    each decoded (images.load_image_into, like training) straight into one reused batch buffer. A
    file that is not a readable image goes to `on_bad` and the others are still predicted; without
    `on_bad` it is a TkError naming it.

    The last, partial batch runs padded to the full one (the rows it does not fill are dropped):
    OpenVINO's first call at a new shape costs a re-plan (MobileNetV2 224, batch 4 -> 1-3: 10-14 ms
    more than the call, against 2-5 ms for the padded rows; BENCHMARKS.md "No regression
    elsewhere"); TFLite resizes for less than either. Fewer files than a batch run as one batch of
    their own."""
    batch = min(batch or predictor.batch_size, max(len(files), 1))
    buffer = np.zeros((batch, *predictor.size, 3), np.float32)
    good: list[Path] = []
    for path in files:
        try:
            load_image_into(path, predictor.size, buffer[len(good)])
        except BadImage as exc:
            if on_bad is None:
                raise TkError(f"{path}: {exc}; pass JPEG, PNG, BMP or GIF images") from None
            on_bad(str(path), str(exc))
            continue
        good.append(path)
        if len(good) == batch:
            yield from _predictions(predictor, good, buffer, k)
            good = []
    if good:
        yield from _predictions(predictor, good, buffer, k)


def _predictions(predictor: Predictor, files: list[Path], pixels: np.ndarray, k: int) -> Iterator[Prediction]:
    probs = predictor.predict(pixels)[: len(files)]  # a new array: the buffer is refilled after this
    for path, row in zip(files, probs, strict=True):
        yield Prediction(str(path), top_k(row, predictor.labels, k))


def predict(
    artifact: str | Path,
    inputs: Sequence[str | Path],
    k: int = 1,
    threads: int | None = None,
    on_prediction: Callable[[Prediction], None] | None = None,
    on_bad: BadFile | None = None,
    on_note: Callable[[str], None] | None = None,
) -> list[Prediction]:
    """Load the artifact (manifest + sha256 checked) and predict every input image.

    Unreadable files go to `on_bad` as they are met and the rest are predicted (the caller says
    so at the end: see bad_files_line); without `on_bad` the first one is a TkError. `on_note`
    gets what a bare model file lacks (no labels: class indices), once, before any prediction.
    """
    if k < 1:
        raise TkError(f"--top-k: must be >= 1 (got {k})")
    if threads is not None:
        check_threads([threads])
    files = expand_inputs(inputs)
    predictor = load_predictor(artifact, num_threads=threads, spin=False)  # decoding runs between calls
    for note in predictor.notes if on_note else ():
        on_note(note)
    out = []
    for prediction in predict_paths(predictor, files, k, on_bad=on_bad):
        out.append(prediction)
        if on_prediction:
            on_prediction(prediction)
    return out


def packed_warning(artifact: Path) -> Optional[str]:
    """What the device must be told before using an artifact packed without a passing verify (here, not
    in verdicts.py: `tk predict` then imports no verify machinery, 9 ms of its start)."""
    artifact = Path(artifact)
    folder = artifact.parent
    try:
        manifest = load_manifest(folder) if os.path.lexists(folder / MANIFEST) else {}
    except TkError:
        return None  # the predictor's own loading names what is wrong with the manifest
    entry = manifest.get("artifacts", {}).get(artifact.name) if "bundle" in manifest else None
    if entry is None or entry.get("verified") is not False:
        return None
    return (
        f"{artifact.name} was packed without passing tk verify (tk pack --allow-unverified): "
        f"{entry.get('verdict') or 'verified: false'}; its predictions are not proven to match the trained model"
    )


def bad_files_line(bad: Sequence[tuple[str, str]], predicted: int) -> str:
    """The closing line when some inputs were not images (each was reported as it was met)."""
    first, why = bad[0]
    return (
        f"{len(bad)} of {len(bad) + predicted} files are not readable images (first: {first}: {why}); "
        f"the other {predicted} were predicted; pass JPEG, PNG, BMP or GIF images"
    )


def format_prediction(prediction: Prediction) -> str:
    return f"{prediction.file}: " + ", ".join(f"{label} {p:.3f}" for label, p in prediction.top)
