"""`tk import`: a classifier trained elsewhere becomes an ordinary run folder.

The model (.keras, legacy .h5 or SavedModel: foreign.py) is wrapped the way tk builds its own,
`image 0..255 -> Preprocess -> the model -> head`: Preprocess applies the input range the user
states (never guessed: a wrong one shows as accuracy near chance, said at the end), and the head
applies softmax when the model outputs logits (read from its output layer, else from its scores
on the test images), or passes probabilities through. So every artifact export writes takes RGB
0..255 and outputs probabilities, as tk's own do, and export, verify, bench, report, pack and
explain work on the run unchanged: model.keras, manifest.json (classes, preprocessing, sha256,
where the model came from), split.json, labels.txt, recipe.yaml (export/verify/bench settings),
metrics.json (test accuracy). Everything is checked before anything is written; the run is built
in a temporary folder beside the runs and swapped in, and a previous run of that name is moved
aside (core/runs.archive_run), never deleted.
"""

from __future__ import annotations

import functools
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from .. import __version__
from ..core.context import SILENT, Context
from ..core.errors import TkError
from ..core.images import INTERPOLATION, load_batch
from ..core.io import atomic_path, check_writable, now, write_json_atomic, write_text_atomic
from ..core.lock import run_lock
from ..core.metrics import classification_metrics
from ..core.recipe import Recipe, recipe_from_dict
from ..core.runs import (
    REFERENCE,
    RUNS_DIR,
    SPLIT,
    SplitDataset,
    archive_run,
    preprocessing_record,
    reference_entry,
    save_manifest,
    save_split,
)
from .foreign import ForeignModel

# --input-range -> the Preprocess layer's mode (train/backbones.py): what the model's own training fed it.
INPUT_RANGES = {"0..255": "raw", "0..1": "unit", "-1..1": "tf", "caffe": "caffe", "torch": "torch"}
RANGE_HELP = {
    "0..255": "RGB pixels as they are",
    "0..1": "pixels / 255",
    "-1..1": "pixels / 127.5 - 1 (keras.applications mobilenet*, inception*, xception preprocess_input)",
    "caffe": "BGR minus the ImageNet means (VGG, ResNet50 preprocess_input)",
    "torch": "(pixels / 255 - ImageNet mean) / std (DenseNet, PyTorch models)",
}
BACKBONE = "imported"  # manifest "backbone" and recipe model.backbone of an imported run
BATCH = 32


@dataclass
class ImportResult:
    run_dir: Path
    metrics: dict[str, Any]  # classification_metrics on the test split
    output: str  # probabilities | logits (softmax added)
    output_from: str
    chance: float
    warnings: list[str] = field(default_factory=list)
    archived: Optional[Path] = None

    def to_json(self) -> dict[str, Any]:
        return {
            "run": str(self.run_dir),
            "test": self.metrics,
            "output": self.output,
            "output_from": self.output_from,
            "chance": self.chance,
            "warnings": self.warnings,
            "archived": str(self.archived) if self.archived else None,
        }


def parse_size(text: Optional[str]) -> Optional[tuple[int, int]]:
    """--image-size: 224 or 224x160 (height x width)."""
    if not text:
        return None
    parts = text.lower().replace("*", "x").split("x")
    try:
        size = tuple(int(p) for p in parts)
    except ValueError:
        size = ()
    if len(size) not in (1, 2) or not all(16 <= v <= 4096 for v in size):
        raise TkError(f"--image-size: expected HEIGHTxWIDTH in pixels, e.g. 224x224 (got {text!r})")
    return (size[0], size[-1])


def import_model(
    model_path: Path,
    data: Path,
    input_range: str,
    labels_file: Optional[Path] = None,
    name: Optional[str] = None,
    image_size: Optional[tuple[int, int]] = None,
    runs_dir: Path = RUNS_DIR,
    overrides: Sequence[str] = (),
    ctx: Context = SILENT,
) -> ImportResult:
    """Check the model and the data, wrap the model, measure its test accuracy, write the run."""
    if input_range not in INPUT_RANGES:
        raise TkError(
            f"--input-range: {input_range!r} is not one of {', '.join(INPUT_RANGES)} "
            "(the pixel scaling the model was trained with)"
        )
    model_path, data = Path(model_path), Path(data)
    recipe = _recipe(name or _name_of(model_path), data, overrides)
    dataset = _dataset(data, labels_file, recipe)
    foreign = _open(model_path, image_size)
    if foreign.classes != len(dataset.classes):
        source = f"{labels_file} lists" if labels_file else f"{data} has class folders for"
        raise TkError(
            f"{model_path}: the model outputs {foreign.classes} classes, but {source} {len(dataset.classes)} "
            f"({', '.join(dataset.classes[:10])}{', ...' if len(dataset.classes) > 10 else ''}); "
            + (
                "give the label file of this model"
                if labels_file
                else "pass --labels FILE (its classes in output order)"
            )
        )
    height, width = foreign.size
    ctx.say(f"importing {model_path} ({foreign.format}, input {height}x{width}, {foreign.classes} classes)")
    test_paths = dataset.paths("test")
    images = load_batch(test_paths, foreign.size)  # decoded as verify and the devices decode them
    scores = _scores(foreign.model, INPUT_RANGES[input_range], images)
    output, output_from = _output_kind(foreign, scores)
    model = wrap(foreign.model, foreign.size, INPUT_RANGES[input_range], foreign.classes, logits=output == "logits")
    probs = _softmax(scores) if output == "logits" else scores
    labels = np.asarray(dataset.labels("test"))
    metrics = classification_metrics(labels, probs, dataset.classes)
    chance = 1.0 / foreign.classes
    warnings = _warnings(metrics["accuracy"], chance, input_range, probs, dataset)
    result = ImportResult(Path(runs_dir) / recipe.name, metrics, output, output_from, chance, warnings)
    parts = dict(result=result, recipe=recipe, dataset=dataset, foreign=foreign, model=model, input_range=input_range)
    write = functools.partial(_write_files, **parts)
    result.archived = _swap_in(result.run_dir, write, ctx)
    return result


def _name_of(model_path: Path) -> str:
    stem = model_path.resolve().name if model_path.is_dir() else model_path.stem
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", stem).strip("_.") or "imported"


def _recipe(name: str, data: Path, overrides: Sequence[str]) -> Recipe:
    """The run's recipe: where its data is and how to export, verify and bench it (no training)."""
    from ..core.overrides import apply_overrides

    raw = {"name": name, "data": {"root": str(data.resolve())}, "model": {"backbone": BACKBONE}}
    try:
        return recipe_from_dict(apply_overrides(raw, overrides))
    except TkError as exc:
        raise TkError(f"{'--set' if overrides else '--name'}: {exc}") from None


def _dataset(data: Path, labels_file: Optional[Path], recipe: Recipe) -> SplitDataset:
    from ..data.splits import discover, discover_labelled

    if labels_file is None:
        return discover(recipe.data, recipe.seed, complete=False)
    return discover_labelled(data, read_labels_file(labels_file), recipe.data.strict)


def read_labels_file(path: Path) -> list[str]:
    """One class name a line, in the model's output order (blank lines at the end ignored)."""
    path = Path(path)
    if not path.is_file():
        raise TkError(f"--labels: file not found: {path} (one class name a line, in the model's output order)")
    try:
        lines = path.read_bytes().decode("utf-8").splitlines()
    except UnicodeDecodeError as exc:
        raise TkError(f"--labels: {path} is not UTF-8 text (byte {exc.start}); save it as UTF-8") from None
    while lines and not lines[-1].strip():
        lines.pop()
    labels = [line.strip() for line in lines]
    if len(labels) < 2 or not all(labels):
        raise TkError(f"--labels: {path} needs one non-empty class name a line, 2 or more (got {len(labels)} lines)")
    duplicate = next((x for x in labels if labels.count(x) > 1), None)
    if duplicate:
        raise TkError(f"--labels: {path} names {duplicate!r} twice; each output needs its own name")
    return labels


def _open(model_path: Path, image_size: Optional[tuple[int, int]]) -> ForeignModel:
    from .foreign import load_foreign

    return load_foreign(model_path, image_size)


def _scores(model, mode: str, images: np.ndarray) -> np.ndarray:
    """The model's own output on the test images, fed as its training fed it (mode)."""
    from ..train.backbones import preprocess_layer

    scale = preprocess_layer(mode)
    chunks = [np.asarray(model(scale(images[i : i + BATCH]), training=False)) for i in range(0, len(images), BATCH)]
    return np.concatenate(chunks).astype(np.float32)


def _output_kind(foreign: ForeignModel, scores: np.ndarray) -> tuple[str, str]:
    """probabilities or logits: the output layer says, else its scores do (non-negative rows that
    sum to 1 on every test image are probabilities; logits almost never are)."""
    if foreign.output is not None:
        return foreign.output, foreign.output_from
    rows = scores.sum(axis=1)
    distribution = bool(np.all(scores >= -1e-6) and np.allclose(rows, 1.0, atol=1e-3))
    kind = "probabilities" if distribution else "logits"
    how = "sum to 1" if distribution else "do not sum to 1"
    return kind, f"{foreign.output_from}; its scores on the {len(scores)} test images {how}"


def _softmax(scores: np.ndarray) -> np.ndarray:
    shifted = scores - scores.max(axis=1, keepdims=True)
    e = np.exp(shifted)
    return e / e.sum(axis=1, keepdims=True)


def wrap(model, size: tuple[int, int], mode: str, classes: int, logits: bool):
    """RGB 0..255 -> Preprocess(mode) -> model -> head (softmax for logits): tk's own model shape,
    so every exported artifact takes what tk's do, and explain finds backbone and head."""
    import keras

    from ..train.backbones import preprocess_layer

    if isinstance(model, keras.Sequential):  # as a functional model, explain can probe its layers
        model = keras.Model(model.inputs[0], model.outputs[0], name=model.name)
    image = keras.Input((*size, 3), name="image")
    scores = keras.Input((classes,), name="scores")
    # Softmax made explicit for logits; probabilities pass through (the head is there either way).
    last = keras.layers.Softmax(name="softmax") if logits else keras.layers.Identity(name="probabilities")
    # tk's names, unless the imported model has taken one (layer names are unique in a model).
    pre_name, head_name = (
        ("preprocess", "head") if model.name not in ("preprocess", "head") else ("tk_preprocess", "tk_head")
    )
    head = keras.Model(scores, last(scores), name=head_name)
    features = model(preprocess_layer(mode, name=pre_name)(image), training=False)
    return keras.Model(image, head(features), name="classifier")


def _warnings(accuracy: float, chance: float, input_range: str, probs: np.ndarray, dataset: SplitDataset) -> list[str]:
    """Near-chance accuracy (a wrong --input-range shows this way) and outputs that vary too little."""
    from .verify import degenerate_warnings

    warnings = []
    if accuracy < chance + 0.25 * (1 - chance):
        others = ", ".join(r for r in INPUT_RANGES if r != input_range)
        warnings.append(
            f"test accuracy {accuracy:.3f} is near chance ({chance:.3f} for {len(dataset.classes)} classes): "
            f"was the model trained on --input-range {input_range} ({RANGE_HELP[input_range]})? "
            f"Others: {others}; also check the class order (--labels)"
        )
    warnings += degenerate_warnings(probs, dataset.classes)
    present = {y for _, y in dataset.splits["test"]}
    if len(present) < len(dataset.classes):
        warnings.append(
            f"the test images cover {len(present)} of the model's {len(dataset.classes)} classes: "
            "accuracy and parity are measured on those classes only"
        )
    if dataset.test_is_validation and dataset.layout == "folder" and dataset.splits["train"] == dataset.splits["test"]:
        warnings.append(
            "one folder of test images: int8 calibration (tk export) samples these test images too; "
            "give train/ and test/ folders to keep them apart"
        )
    return warnings


def _swap_in(run_dir: Path, write: Callable[[Path], None], ctx: Context) -> Optional[Path]:
    """`write` the run into a temporary folder beside the runs, then swap it in under the run's
    lock; a previous run of the name is moved aside (returned), never deleted."""
    runs_dir = run_dir.parent
    check_writable(runs_dir)
    with run_lock(run_dir, "tk import", ctx):
        for leftover in runs_dir.glob(f".{run_dir.name}.import-*"):  # a killed import's
            shutil.rmtree(leftover, ignore_errors=True)
        work = Path(tempfile.mkdtemp(prefix=f".{run_dir.name}.import-", dir=runs_dir))
        try:
            write(work)
            archived = archive_run(run_dir)
            work.rename(run_dir)
        except BaseException:
            shutil.rmtree(work, ignore_errors=True)
            raise
    return archived


def _write_files(
    work: Path,
    result: ImportResult,
    recipe: Recipe,
    dataset: SplitDataset,
    foreign: ForeignModel,
    model,
    input_range: str,
) -> None:
    import yaml

    with atomic_path(work / REFERENCE, suffix=".keras") as tmp:
        model.save(tmp)
    save_split(dataset, work / SPLIT)
    write_text_atomic(work / "labels.txt", "\n".join(dataset.classes) + "\n")
    header = (
        f"# Written by tk import {foreign.path}: how this run is exported, verified and benched.\n"
        "# Not trained by tk: `tk train` cannot repeat it (model.backbone: imported).\n"
    )
    kept = ("name", "seed", "data", "model", "export", "verify", "bench")
    raw = {k: v for k, v in recipe.to_dict().items() if k in kept}
    raw["model"] = {"backbone": BACKBONE}  # the rest of the section is about building a model: none here
    write_text_atomic(work / "recipe.yaml", header + yaml.safe_dump(raw, sort_keys=False))
    imported = {
        "source": str(foreign.path.resolve()),
        "format": foreign.format,
        "sha256": foreign.sha256,
        "input_range": input_range,
        "output": result.output,
        "output_from": result.output_from,
        "softmax_added": result.output == "logits",
    }
    write_json_atomic(
        work / "metrics.json",
        {"test": result.metrics, "phases": [], "imported": imported, "warnings": result.warnings},
    )
    save_manifest(work, _manifest(recipe, dataset, foreign, imported, result, work))


def _manifest(recipe, dataset, foreign, imported, result, work: Path) -> dict[str, Any]:
    stamp = now()
    return {
        "name": recipe.name,
        "tk_version": __version__,
        "created": stamp,
        "trained": stamp,  # what "the latest run" sorts by: the import is this run's training
        "recipe": None,
        "backbone": BACKBONE,
        "imported": imported,
        "classes": dataset.classes,
        "preprocessing": preprocessing_record(foreign.size, INPUT_RANGES[imported["input_range"]], INTERPOLATION),
        "metrics": {"test_accuracy": result.metrics["accuracy"]},
        "artifacts": {REFERENCE: reference_entry(work / REFERENCE, foreign.size, len(dataset.classes), "tensorflow")},
    }
