"""Every recipe key with its type, default and meaning (`tk keys`), and tk train's shortcuts.

Types and defaults are read from the schema (core/recipe.py's dataclasses), so they cannot drift
from what load_recipe accepts; the one-line meanings live here, beside them, and a test checks
that every key of the schema has one and that no meaning names a key the schema lacks.
Standard library and PyYAML only.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from dataclasses import dataclass
from typing import Any, Literal, Optional, Sequence

from .errors import TkError
from .formats import QUANTIZATIONS, tolerance_kind

MEANINGS: dict[str, str] = {
    "name": "the run's name: exported/<name>/ (default: the recipe file's name)",
    "seed": "seeds the split, the weights' initialisation, shuffling and augmentation",
    "data.root": "the dataset folder: class folders, or train/validation/test of them",
    "data.layout": "presplit: train/validation/test folders; folder: one folder split by fractions; auto: detect",
    "data.split.train": "fraction of each class for training (layout folder)",
    "data.split.validation": "fraction of each class for validation: best checkpoint, early stopping",
    "data.split.test": "fraction of each class held out for the test metrics, verify and bench",
    "data.synth.classes": "synthetic data made when data.root is missing: number of classes",
    "data.synth.per_class": "synthetic data: images per class",
    "data.synth.size": "synthetic data: image side in pixels",
    "data.source.url": "where tk data fetch downloads the dataset archive from",
    "data.source.sha256": "the archive's sha256; the download is checked against it",
    "data.source.subdir": "the folder inside the archive that holds the class folders",
    "data.source.max_bytes": "refuse an archive that unpacks to more bytes than this",
    "data.source.max_members": "refuse an archive with more files than this",
    "data.strict": "fail on a corrupt or non-image file instead of skipping it",
    "model.backbone": "the conv base: a keras.applications backbone (listed below), or mini_vgg from scratch",
    "model.weights": "imagenet (downloaded once by Keras), none (random init) or a weights file path",
    "model.image_size": "input side in pixels; the pretrained weights exist for the backbone's own sizes",
    "model.feature_layer": "cut the backbone at this layer (tk layers RECIPE); default: the backbone's usual one",
    "model.alpha": "width multiplier of MobileNet/MobileNetV2/V3 (0.35, 0.5, 0.75, 1.0 have ImageNet weights)",
    "model.minimalistic": "MobileNetV3's minimalistic variant: no squeeze-excite or hard-swish (cheaper on devices)",
    "model.head.pooling": "avg: global average pooling of the features; flatten keeps where things are",
    "model.head.dense": "widths of the head's hidden Dense layers ([] for none)",
    "model.head.dropout": "dropout before each Dense of the head",
    "train.mode": "features: cached base features, head only; augment: frozen base end to end; scratch: all layers",
    "train.epochs": "epochs of the first phase (features, augment or scratch)",
    "train.batch_size": "images per training step",
    "train.learning_rate": "learning rate of the first phase",
    "train.optimizer": "the first phase's and fine-tuning's optimizer",
    "train.augment.flip": "random flips during end-to-end training and fine-tuning",
    "train.augment.rotation": "random rotation, as a fraction of a full turn",
    "train.augment.zoom": "random zoom in or out, as a fraction of the image",
    "train.augment.contrast": "random contrast change, as a fraction",
    "train.fine_tune.epochs": "fine-tuning epochs after feature extraction (0: no fine-tuning)",
    "train.fine_tune.unfreeze_from": "fine-tune from this backbone layer to the end (tk layers RECIPE)",
    "train.fine_tune.unfreeze_last": "or fine-tune the backbone's last N layers",
    "train.fine_tune.learning_rate": "fine-tuning learning rate: small, so the pretrained weights move little",
    "train.early_stopping": "stop a phase after this many epochs without a better val_loss (0: never)",
    "train.mixed_precision": "auto: bfloat16/float16 on a GPU, float32 on a CPU; or force one",
    "train.feature_engine": "what runs the frozen base over the images: tflite (fast on a CPU) or keras",
    "train.backend": "the Keras 3 backend (KERAS_BACKEND overrides it)",
    "train.distribute": "data_parallel: split every batch over the local accelerators",
    "train.lr_schedule.name": "constant, or cosine decay to 0 after a linear warm-up",
    "train.lr_schedule.warmup_epochs": "cosine: epochs of linear warm-up from 0",
    "train.class_weight": "balanced: weigh each class by n / (k * count) in the loss",
    "train.label_smoothing": "targets (1 - s) * one_hot + s / k",
    "export.formats": "what tk export writes by default: savedmodel, tflite, onnx",
    "export.quantize": "quantizations tk export writes by default: none, float16, dynamic, int8",
    "export.calibration_samples": "training images that calibrate int8 (TFLite and ONNX), class-stratified",
    "export.onnx_opset": "the ONNX opset tf2onnx converts to",
    "export.int8_io": "the input and output type of the int8 .tflite",
    "export.metadata.author": "TFLite metadata: author",
    "export.metadata.version": "TFLite metadata: version (default: the date the run was trained)",
    "export.metadata.license": "TFLite metadata: license",
    "export.metadata.description": "TFLite metadata: description (default: backbone, classes, quantization)",
    "export.int8_budget.max_accuracy_drop": "int8 budget: at most this accuracy loss against the Keras model "
    "(validation split); the fastest int8 within it",
    "export.int8_budget.min_agreement": "int8 budget: at least this top-1 agreement with the Keras model",
    "export.int8_budget.max_latency_ratio": "int8 budget: a variant with float ops must run within this share "
    "of float32's p50 (null: no cap)",
    "export.int8_fallback.enabled": "keep the int8 .tflite's most sensitive layers float until it passes verify",
    "export.int8_fallback.max_float_layers": "int8 fallback: at most this many float layers (null: no limit)",
    "export.int8_fallback.max_size_ratio": "int8 fallback: largest model, as a multiple of the plain int8 file",
    "export.onnx_int8_activations": "ONNX int8 activation type: uint8 (fast on x86) or int8 (ARM)",
    "export.onnx_int8_calibration": "ONNX int8 calibration method",
    "verify.split": "the held-out images verify compares the artifacts on",
    "verify.confident_margin": "top-1 minus top-2 probability from which the reference counts as confident",
    "bench.threads": "thread counts tk bench measures each artifact at",
    "bench.runs": "timed batch-1 predictions per artifact and thread count (null: adaptive, see precision)",
    "bench.min_runs": "adaptive runs: at least this many timed predictions",
    "bench.max_runs": "adaptive runs: at most this many",
    "bench.precision": "adaptive runs: stop when the p50's 95% interval is within this fraction of it",
    "bench.warmup": "untimed predictions before timing",
    "bench.batch": "batch size of the throughput figure",
    "log.tensorboard": "TensorBoard event files in RUN/logs/<phase>/ (tensorboard --logdir RUN/logs)",
    "log.mlflow": "MLflow logging: auto (when MLFLOW_TRACKING_URI is set), true (always), false",
    "log.mlflow_tracking_uri": "the MLflow tracking URI (default: MLFLOW_TRACKING_URI)",
    "log.mlflow_experiment": "the MLflow experiment (default: the recipe's name)",
}
_THRESHOLD_MEANINGS = {
    "max_abs_diff": "largest absolute difference of any probability from the Keras model's",
    "min_agreement": "smallest share of images whose top-1 label matches the Keras model's",
    "max_accuracy_drop": "largest loss of test accuracy against the Keras model",
    "min_confident_agreement": "smallest top-1 agreement on the images the Keras model is confident about",
}
for _kind in dict.fromkeys(tolerance_kind(q) for q in QUANTIZATIONS):
    for _name, _text in _THRESHOLD_MEANINGS.items():
        MEANINGS[f"verify.thresholds.{_kind}.{_name}"] = f"{_kind} artifacts: {_text} (null: not checked)"


@dataclass(frozen=True)
class RecipeKey:
    key: str  # dotted path, as in --set
    type: str  # as a person writes it in YAML
    default: str  # YAML text
    meaning: str

    def to_json(self) -> dict[str, str]:
        return dataclasses.asdict(self)


def recipe_keys(prefix: str = "", limits: Optional[dict[str, Any]] = None) -> list[RecipeKey]:
    """Every leaf key of the recipe schema (verify.thresholds per kind), in schema order.

    limits: tk's parity limits per kind (edge/parity.LIMITS, which core cannot import), shown as
    the thresholds' defaults; without them a threshold's default reads "tk's limit"."""
    from .recipe import Recipe

    found: list[RecipeKey] = []
    _walk(Recipe, "", found, None, limits or {})
    return [k for k in found if not prefix or k.key == prefix or k.key.startswith(prefix.rstrip(".") + ".")]


def _walk(cls: type, path: str, found: list[RecipeKey], instance: Any, limits: dict[str, Any]) -> None:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        if f.name == "source_path":
            continue
        key = f"{path}{f.name}"
        tp = hints[f.name]
        default = _default(f, instance)
        section = _section_type(tp)
        if section is not None:
            _walk(section, key + ".", found, default if dataclasses.is_dataclass(default) else None, limits)
        elif typing.get_origin(tp) is dict:  # verify.thresholds: overrides per kind of tk's limits
            from .sections import Threshold

            for kind in dict.fromkeys(tolerance_kind(q) for q in QUANTIZATIONS):
                _walk_limits(Threshold, f"{key}.{kind}.", found, limits.get(kind))
        else:
            shown = "the file's name" if key == "name" else _yaml(default)
            found.append(RecipeKey(key, _type_text(tp), shown, MEANINGS.get(key, "")))


def _walk_limits(cls: type, path: str, found: list[RecipeKey], limit: Any) -> None:
    hints = typing.get_type_hints(cls)
    for f in dataclasses.fields(cls):
        key = f"{path}{f.name}"
        shown = _yaml(getattr(limit, f.name)) if limit is not None else "tk's limit"
        found.append(RecipeKey(key, _type_text(hints[f.name]), shown, MEANINGS.get(key, "")))


def _default(f: dataclasses.Field, instance: Any) -> Any:
    if instance is not None:
        return getattr(instance, f.name)
    if f.default is not dataclasses.MISSING:
        return f.default
    if f.default_factory is not dataclasses.MISSING:
        return f.default_factory()
    return None  # required (only `name`)


def _section_type(tp: Any):
    """The dataclass of a section (Optional sections too), or None for a value."""
    if dataclasses.is_dataclass(tp):
        return tp
    if typing.get_origin(tp) in (typing.Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        if len(inner) == 1 and dataclasses.is_dataclass(inner[0]):
            return inner[0]
    return None


def _type_text(tp: Any) -> str:
    origin, args = typing.get_origin(tp), typing.get_args(tp)
    if origin in (typing.Union, types.UnionType):
        inner = [a for a in args if a is not type(None)]
        return " | ".join(_type_text(a) for a in inner) + (" | null" if type(None) in args else "")
    if origin is Literal:
        return "|".join(_yaml(a) for a in args)
    if origin is tuple:
        return f"list of {_type_text(args[0])}"
    return {int: "int", float: "number", str: "text", bool: "true|false"}.get(tp, getattr(tp, "__name__", str(tp)))


def _yaml(value: Any) -> str:
    if value is None:
        return "null"
    if value is True or value is False:
        return "true" if value else "false"
    if isinstance(value, tuple):
        return "[" + ", ".join(_yaml(v) for v in value) + "]"
    if dataclasses.is_dataclass(value):
        return "{}"
    if value == "":
        return '""'
    return str(value) if not isinstance(value, float) else f"{value:g}"


@dataclass(frozen=True)
class Shortcut:
    """A `tk train` option that is sugar for `--set KEY=VALUE`."""

    option: str
    key: str
    metavar: str
    text: str

    @property
    def help(self) -> str:
        return f"{self.text} (sets {self.key})."


# The keys people change most, named as Keras and Ultralytics users expect them.
SHORTCUTS = (
    Shortcut("--epochs", "train.epochs", "N", "Epochs of the first phase (features, augment or scratch)"),
    Shortcut("--image-size", "model.image_size", "PX", "Input side in pixels"),
    Shortcut("--batch-size", "train.batch_size", "N", "Images per training step"),
    Shortcut("--backbone", "model.backbone", "NAME", "The conv base, e.g. mobilenet_v2, efficientnet_b0, mini_vgg"),
    Shortcut("--weights", "model.weights", "imagenet|none|FILE", "Pretrained weights, random init, or a file"),
    Shortcut("--lr", "train.learning_rate", "RATE", "Learning rate of the first phase"),
    Shortcut("--mode", "train.mode", "features|augment|scratch", "Cached features, frozen base end to end, or all"),
)
# `--scratch`: MiniVGGNet from random weights, no download (the offline way to train a folder).
# At 64 px and with the from-scratch head's dropout; an option of its own overrides any of these.
SCRATCH = (
    "model.backbone=mini_vgg",
    "model.weights=none",
    "train.mode=scratch",
    "train.fine_tune.epochs=0",
    "train.fine_tune.unfreeze_from=null",
    "model.image_size=64",
    "model.head.dropout=0.5",
)


def with_shortcuts(sets: Sequence[str], given: dict[str, Any], scratch: bool = False) -> list[str]:
    """--set items for the shortcuts given ({option: value}, None = not given), after --scratch's and
    the --set ones. A key set two ways with two values is an error, not a silent pick."""
    from .overrides import parse_set

    explicit: dict[str, tuple[str, Any]] = {}
    for item in sets:
        parts, value = parse_set(item)
        explicit[".".join(parts)] = (f"--set {item}", value)
    items = [i for i in (SCRATCH if scratch else ()) if i.partition("=")[0] not in explicit]
    items += list(sets)
    by_option = {s.option: s for s in SHORTCUTS}
    for option, value in given.items():
        if value is None:
            continue
        shortcut = by_option[option]
        item = f"{shortcut.key}={value}"
        _, parsed = parse_set(item)
        if shortcut.key in explicit and explicit[shortcut.key][1] != parsed:
            raise TkError(f"{option} {value} and {explicit[shortcut.key][0]} set {shortcut.key} twice; give one")
        explicit[shortcut.key] = (f"{option} {value}", parsed)
        items = [i for i in items if i.partition("=")[0].strip() != shortcut.key] + [item]
    return items
