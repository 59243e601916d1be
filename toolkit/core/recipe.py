"""The recipe: a YAML file turned into a frozen, typed Recipe with one section per command.

Validation happens here, before any work: unknown keys (listing the allowed ones, with a typo
suggestion), wrong types and impossible values fail with one line naming the key path and the
value, e.g. `train.epochs: must be > 0 (got -1)`. Checks that need the backbone itself (does
`feature_layer` exist?) happen in backbones.py, still before any training starts.
This module must stay importable without TensorFlow.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal, Optional, Sequence

import yaml

from .caps import SYNTH_MAX_PER_CLASS, SYNTH_MAX_SIZE
from .errors import TkError, suggest
from .formats import DEFAULT_FORMATS, EXPORT_FORMATS, QUANTIZATIONS
from .sections import BenchSection, Threshold, VerifySection, check_verify  # noqa: F401 (Threshold: the recipe's)
from .typed import build, show

# The ONNX opsets tf2onnx 1.17 converts to (inclusive).
ONNX_OPSETS = (9, 21)


@dataclass(frozen=True)
class SplitFractions:
    train: float = 0.7
    validation: float = 0.15
    test: float = 0.15


@dataclass(frozen=True)
class SynthSection:
    """Procedural data made on the fly when `data.root` is missing (offline demos, tests)."""

    classes: int = 3
    per_class: int = 60
    size: int = 64


@dataclass(frozen=True)
class SourceSection:
    """Where `tk data fetch` downloads the dataset from."""

    url: str = ""
    sha256: Optional[str] = None
    # Folder inside the extracted archive that holds the class folders (e.g. "flower_photos").
    subdir: Optional[str] = None
    # Caps on what the archive may unpack to (a 2 MB archive can claim 2 GB): tf_flowers is
    # 218 MB in 3,670 files; raise these for a bigger dataset.
    max_bytes: int = 20 * 2**30
    max_members: int = 2_000_000


@dataclass(frozen=True)
class DataSection:
    root: str = "data"
    # auto: train/validation/test subfolders if present, else one folder split by fractions.
    layout: Literal["auto", "presplit", "folder"] = "auto"
    split: SplitFractions = field(default_factory=SplitFractions)
    synth: Optional[SynthSection] = None
    source: Optional[SourceSection] = None
    strict: bool = False


@dataclass(frozen=True)
class HeadSection:
    # flatten is the classic VGG16 head (Flatten, Dense 256, Dropout 0.5); avg is smaller.
    pooling: Literal["avg", "flatten"] = "avg"
    dense: tuple[int, ...] = (256,)
    dropout: float = 0.5


@dataclass(frozen=True)
class ModelSection:
    backbone: str = "mobilenet_v2"
    # imagenet (Keras' download and cache), none (random init), or a path to a weights file.
    weights: str = "imagenet"
    image_size: int = 224
    feature_layer: Optional[str] = None
    # Width multiplier of the MobileNets (fewer filters: smaller, faster); MobileNetV3's
    # minimalistic variant drops squeeze-excite and hard-swish (cheaper ops on small devices).
    # Which backbone takes which: train/backbones.py (BackboneSpec.accepts), checked before training.
    alpha: Optional[float] = None
    minimalistic: Optional[bool] = None
    head: HeadSection = field(default_factory=HeadSection)


@dataclass(frozen=True)
class AugmentSection:
    flip: Literal["horizontal", "vertical", "horizontal_and_vertical", "none"] = "horizontal"
    rotation: float = 0.1
    zoom: float = 0.1
    contrast: float = 0.0


@dataclass(frozen=True)
class FineTuneSection:
    epochs: int = 0
    # Unfreeze from this layer of the backbone to its end, or the last N layers; not both.
    unfreeze_from: Optional[str] = None
    unfreeze_last: Optional[int] = None
    # Fine-tuning moves pretrained weights: keep the step small (1e-5 order).
    learning_rate: float = 1e-5


@dataclass(frozen=True)
class LrSchedule:
    """constant: the phase's learning rate throughout. cosine: linear warm-up from 0 over
    warmup_epochs, then cosine decay to 0 over the phase's remaining steps (MediaPipe Model
    Maker's default); each phase (features/scratch, then finetune at its own lower rate) gets its own."""

    name: Literal["constant", "cosine"] = "constant"
    warmup_epochs: int = 0


@dataclass(frozen=True)
class TrainSection:
    # features: run the frozen base once, cache features, train the head (fast).
    # augment: frozen base inside the model, augmentation in front, trained end to end.
    # scratch: every layer trainable from the start (MiniVGGNet, or weights: none).
    mode: Literal["features", "augment", "scratch"] = "features"
    epochs: int = 10
    batch_size: int = 32
    learning_rate: float = 1e-3
    optimizer: Literal["adam", "rmsprop", "sgd"] = "adam"
    augment: AugmentSection = field(default_factory=AugmentSection)
    fine_tune: FineTuneSection = field(default_factory=FineTuneSection)
    # Stop a phase when val_loss has not improved for this many epochs (0: never).
    early_stopping: int = 0
    # auto: bfloat16 on GPUs that have it, float16 on older ones, float32 on a CPU (train/backend.py);
    # true and false (older recipes) mean mixed_float16 and float32.
    mixed_precision: Literal["auto", "float32", "mixed_float16", "mixed_bfloat16", True, False] = "auto"
    # Feature extraction engine: tflite runs the frozen base through LiteRT (several times
    # faster on a CPU than Keras), keras runs it through model.predict.
    feature_engine: Literal["tflite", "keras"] = "tflite"
    # Keras 3 backend to train on. KERAS_BACKEND in the environment overrides it (a one-off switch
    # without editing the recipe); jax and torch never import TensorFlow (export still needs it).
    backend: Literal["tensorflow", "jax", "torch"] = "tensorflow"
    # data_parallel: every local accelerator (or, for tests, virtual CPU device) gets a slice of each
    # batch: keras.distribution.DataParallel on JAX, tf.distribute.MirroredStrategy on TensorFlow.
    distribute: Literal["none", "data_parallel"] = "none"
    # `lr_schedule: cosine` or `{name: cosine, warmup_epochs: 1}`.
    lr_schedule: LrSchedule = field(default_factory=LrSchedule)
    # balanced: class c weighs n / (k * count_c) in the loss (train split counts), for imbalanced folders.
    class_weight: Literal["none", "balanced"] = "none"
    # Targets become (1 - s) * one_hot + s / k: a softer, better-calibrated classifier.
    label_smoothing: float = 0.0


@dataclass(frozen=True)
class MetadataSection:
    """What every .tflite carries as TFLite metadata (MediaPipe Tasks and app developers read it)."""

    author: str = "tk"
    version: Optional[str] = None  # default: the date the run was trained
    license: Optional[str] = None
    description: Optional[str] = None  # default: "<backbone> image classifier, <N> classes (<quantization>)"


@dataclass(frozen=True)
class Int8FallbackSection:
    """TFLite int8 that fails verify.thresholds.int8 (judged on the validation split) keeps its
    most quantization-sensitive layers float, 1, 2, 4, ... of them, within a budget. Off by
    default: it re-quantizes the model several times (export/int8_gate.py)."""

    enabled: bool = False
    max_float_layers: Optional[int] = None  # None: as many as it takes
    # Largest fallback model, as a multiple of the plain int8 file (float32 is ~4x).
    max_size_ratio: float = 2.0


@dataclass(frozen=True)
class Int8BudgetSection:
    """How much int8 may cost against the float (Keras) model, on every runtime: at most
    max_accuracy_drop of accuracy and/or at least min_agreement top-1 agreement, judged on the
    validation split (disjoint from the train images int8 calibrates on). With either set, each
    int8 artifact is the fastest variant found within it (export/int8_budget.py): LiteRT keeps layers
    float, ONNX Runtime excludes nodes, OpenVINO runs NNCF's accuracy control; within the size cap
    of export.int8_fallback (max_size_ratio, max_float_layers) and of max_latency_ratio. Nothing
    within it: plain int8, recorded as failed."""

    max_accuracy_drop: Optional[float] = None
    min_agreement: Optional[float] = None
    # A variant that keeps ops float must run at most this share of float32's quick p50, or it buys
    # nothing float32 does not give (on a low-margin model the budget is met only near all-float).
    max_latency_ratio: Optional[float] = 0.9

    @property
    def active(self) -> bool:
        return self.max_accuracy_drop is not None or self.min_agreement is not None


@dataclass(frozen=True)
class ExportSection:
    # A format whose row says default=False (core/formats.py) is exported only when named here.
    formats: tuple[str, ...] = DEFAULT_FORMATS
    quantize: tuple[str, ...] = QUANTIZATIONS
    # int8 calibration images (TFLite and ONNX), class-stratified from train. 50/100/200/500 gave the
    # same agreement within one test image (BENCHMARKS.md, issue 9); 200 still sees >= 20 per class up to
    # 10 classes on varied photos, at a one-off linear cost (ONNX: 53 s, MobileNetV2 224, 2 cores).
    calibration_samples: int = 200
    onnx_opset: int = 17
    int8_io: Literal["int8", "uint8"] = "uint8"
    metadata: MetadataSection = field(default_factory=MetadataSection)
    int8_fallback: Int8FallbackSection = field(default_factory=Int8FallbackSection)
    # uint8: 1.7x faster than int8 on x86 VNNI (unsigned x signed bytes); int8: onnxruntime's advice for ARM.
    onnx_int8_activations: Literal["uint8", "int8"] = "uint8"
    # Percentile clips each activation's 0.001% tails: better parity than MinMax on both models
    # measured (benchmarks/BENCHMARKS.md), at ~10x the calibration time (53 s for 200 images, MobileNetV2 224).
    onnx_int8_calibration: Literal["Percentile", "MinMax", "Entropy"] = "Percentile"
    int8_budget: Int8BudgetSection = field(default_factory=Int8BudgetSection)


@dataclass(frozen=True)
class LogSection:
    """Training logs: TensorBoard event files in RUN/logs/ (every backend); MLflow when asked."""

    tensorboard: bool = True
    # auto: when MLFLOW_TRACKING_URI is set and mlflow is installed; true: always (mlflow required);
    # false: never. The run's params, per-epoch metrics, files, and later verify and bench results.
    mlflow: Literal["auto", True, False] = "auto"
    mlflow_tracking_uri: Optional[str] = None  # default: MLFLOW_TRACKING_URI, else mlflow's own default
    mlflow_experiment: Optional[str] = None  # default: the recipe's name


@dataclass(frozen=True)
class Recipe:
    name: str
    seed: int = 42
    data: DataSection = field(default_factory=DataSection)
    model: ModelSection = field(default_factory=ModelSection)
    train: TrainSection = field(default_factory=TrainSection)
    export: ExportSection = field(default_factory=ExportSection)
    verify: VerifySection = field(default_factory=VerifySection)
    bench: BenchSection = field(default_factory=BenchSection)
    log: LogSection = field(default_factory=LogSection)
    source_path: Optional[str] = None

    def to_dict(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out.pop("source_path")
        return _plain(out)


# Values that cannot be expressed by type alone: (path, predicate, requirement).
_RULES: list[tuple[str, Any, str]] = [
    ("train.epochs", lambda v: v > 0, "must be > 0"),
    ("train.batch_size", lambda v: v > 0, "must be > 0"),
    ("train.learning_rate", lambda v: v > 0, "must be > 0"),
    ("train.early_stopping", lambda v: v >= 0, "must be >= 0"),
    ("train.fine_tune.epochs", lambda v: v >= 0, "must be >= 0"),
    ("train.lr_schedule.warmup_epochs", lambda v: v >= 0, "must be >= 0"),
    ("train.label_smoothing", lambda v: 0 <= v < 1, "must be in [0, 1)"),
    ("train.fine_tune.learning_rate", lambda v: v > 0, "must be > 0"),
    ("train.fine_tune.unfreeze_last", lambda v: v is None or v > 0, "must be > 0"),
    ("train.augment.rotation", lambda v: 0 <= v <= 1, "must be in [0, 1] (fraction of a turn)"),
    ("train.augment.zoom", lambda v: 0 <= v < 1, "must be in [0, 1)"),
    ("train.augment.contrast", lambda v: 0 <= v <= 1, "must be in [0, 1]"),
    ("model.image_size", lambda v: 32 <= v <= 1024, "must be between 32 and 1024 pixels"),
    ("model.alpha", lambda v: v is None or v > 0, "must be > 0"),
    ("model.head.dropout", lambda v: 0 <= v < 1, "must be in [0, 1)"),
    ("model.head.dense", lambda v: all(n > 0 for n in v), "every layer width must be > 0"),
    ("data.synth.classes", lambda v: v >= 2, "must be >= 2"),
    (
        "data.synth.per_class",
        lambda v: 5 <= v <= SYNTH_MAX_PER_CLASS,
        f"must be 5..{SYNTH_MAX_PER_CLASS} (each split needs images)",
    ),
    ("data.synth.size", lambda v: 16 <= v <= SYNTH_MAX_SIZE, f"must be 16..{SYNTH_MAX_SIZE}"),
    ("export.calibration_samples", lambda v: v > 0, "must be > 0"),
    (
        "export.onnx_opset",
        lambda v: ONNX_OPSETS[0] <= v <= ONNX_OPSETS[1],
        f"must be between {ONNX_OPSETS[0]} and {ONNX_OPSETS[1]}",
    ),
    ("export.int8_fallback.max_float_layers", lambda v: v is None or v > 0, "must be > 0"),
    ("export.int8_fallback.max_size_ratio", lambda v: v >= 1, "must be >= 1 (a multiple of the int8 size)"),
    ("verify.confident_margin", lambda v: 0 <= v < 1, "must be in [0, 1)"),
    ("export.int8_budget.max_accuracy_drop", lambda v: v is None or 0 <= v <= 1, "must be in [0, 1]"),
    ("export.int8_budget.min_agreement", lambda v: v is None or 0 <= v <= 1, "must be in [0, 1]"),
    (
        "export.int8_budget.max_latency_ratio",
        lambda v: v is None or 0 < v <= 10,
        "must be in (0, 10] (a share of float32's p50), or null for no cap",
    ),
    ("data.source.max_bytes", lambda v: v is None or v > 0, "must be > 0"),
    ("data.source.max_members", lambda v: v is None or v > 0, "must be > 0"),
    ("bench.runs", lambda v: v is None or v > 0, "must be > 0 (or null: adaptive)"),
    ("bench.min_runs", lambda v: v >= 5, "must be >= 5 (a median needs a few runs)"),
    ("bench.precision", lambda v: 0 < v < 1, "must be in (0, 1): 0.02 is +-2% of the p50"),
    ("bench.warmup", lambda v: v >= 0, "must be >= 0"),
    ("bench.batch", lambda v: v > 0, "must be > 0"),
    ("bench.threads", lambda v: len(v) > 0 and all(t > 0 for t in v), "must list thread counts > 0"),
    ("seed", lambda v: 0 <= v <= 2**32 - 1, "must be a whole number in [0, 4294967295]"),
]


def load_recipe(path: str | Path, overrides: Sequence[str] = ()) -> Recipe:
    """Read and validate a recipe file; raise TkError naming the key on any problem.

    overrides: `key=value` items (`tk ... --set`), applied before validation (core/overrides.py)."""
    path = Path(path)
    if path.is_dir():
        raise TkError(f"{path}: is a folder, not a recipe (pass a YAML file, e.g. recipes/quickstart.yaml)")
    if not path.is_file():
        raise TkError(f"recipe not found: {path} (pass a YAML file, e.g. recipes/quickstart.yaml)")
    try:
        with open(path, "rb") as fh:  # at most the cap: /dev/zero and /proc files say size 0
            data = fh.read(MAX_RECIPE_BYTES + 1)
    except OSError as exc:  # /proc/self/mem (EIO), a file of another user (EACCES)
        raise TkError(f"{path}: cannot be read ({exc.strerror or exc}); pass a recipe YAML file") from None
    if len(data) > MAX_RECIPE_BYTES:
        raise TkError(f"{path}: larger than {MAX_RECIPE_BYTES // 1024} KiB; a recipe is a short YAML file")
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TkError(f"{path}: not UTF-8 text (byte {exc.start}); save the recipe as UTF-8") from None
    try:
        raw = _safe_load_bounded(text, path)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark else ""
        raise TkError(f"{path}{where}: not valid YAML ({getattr(exc, 'problem', exc)})") from None
    if not isinstance(raw, dict):
        raise TkError(f"{path}: a recipe is a mapping of sections (data, model, train, ...)")
    raw.setdefault("name", path.stem)
    if overrides:
        from .overrides import apply_overrides

        raw = apply_overrides(raw, overrides)
    try:
        recipe = recipe_from_dict(raw)
    except TkError as exc:
        raise TkError(f"{path}: {exc}") from None
    return dataclasses.replace(recipe, source_path=str(path))


MAX_RECIPE_BYTES = 1 << 20  # a real recipe is a few KiB
MAX_YAML_NODES = 10_000  # a real recipe has ~100 values; aliases can expand a few lines to 10**9
MAX_YAML_DEPTH = 64  # a real recipe nests 4 levels (verify.thresholds.int8.min_agreement)
_TOO_DEEP = f"nested more than {MAX_YAML_DEPTH} levels deep; a recipe is a few levels of sections"


def _safe_load_bounded(text: str, path: Path) -> Any:
    """yaml.safe_load, refusing documents whose aliases expand past MAX_YAML_NODES (billion laughs)."""
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        _expanded_size(node, {}, set(), path)
        return loader.construct_document(node)
    except RecursionError:  # PyYAML composes nested nodes recursively: thousands of levels overflow it
        raise TkError(f"{path}: {_TOO_DEEP}") from None
    finally:
        loader.dispose()


def _expanded_size(node: yaml.Node, sizes: dict[int, int], open_: set[int], path: Path, depth: int = 0) -> int:
    if depth > MAX_YAML_DEPTH:
        raise TkError(f"{path}: {_TOO_DEEP}")
    if id(node) in sizes:
        return sizes[id(node)]
    if id(node) in open_:
        raise TkError(f"{path}: a YAML alias refers to itself; write the values out")
    open_.add(id(node))
    children = (
        [n for pair in node.value for n in pair]
        if isinstance(node, yaml.MappingNode)
        else (node.value if isinstance(node, yaml.SequenceNode) else [])
    )
    size = 1
    for child in children:
        size += _expanded_size(child, sizes, open_, path, depth + 1)
        if size > MAX_YAML_NODES:
            raise TkError(
                f"{path}: YAML aliases expand to over {MAX_YAML_NODES} values (an alias bomb?); write the values out"
            )
    open_.discard(id(node))
    sizes[id(node)] = size
    return size


def recipe_from_dict(raw: dict[str, Any]) -> Recipe:
    raw = _with_short_forms({k: v for k, v in raw.items() if k != "source_path"})
    recipe = build(Recipe, raw, "")
    _check_rules(recipe)
    return recipe


def _with_short_forms(raw: dict[str, Any]) -> dict[str, Any]:
    """`lr_schedule: cosine` means `{name: cosine}`; `class_weight: null` means none."""
    train = raw.get("train")
    if not isinstance(train, dict):
        return raw
    train = dict(train)
    if isinstance(train.get("lr_schedule"), str):
        train["lr_schedule"] = {"name": train["lr_schedule"]}
    if "class_weight" in train and train["class_weight"] is None:
        train["class_weight"] = "none"
    return {**raw, "train": train}


def _check_rules(recipe: Recipe) -> None:
    for key, ok, requirement in _RULES:
        value: Any = recipe
        for part in key.split("."):
            value = getattr(value, part, None) if value is not None else None
        if value is None and key.startswith("data.synth"):
            continue
        if not ok(value):
            raise TkError(f"{key}: {requirement} (got {show(value)})")
    split = recipe.data.split
    parts = (split.train, split.validation, split.test)
    if any(p < 0 for p in parts) or split.train <= 0 or abs(sum(parts) - 1) > 1e-6:
        raise TkError(f"data.split: fractions must be >= 0, train > 0, and sum to 1 (got {show(parts)})")
    ft = recipe.train.fine_tune
    if ft.unfreeze_from and ft.unfreeze_last:
        raise TkError("train.fine_tune: give unfreeze_from or unfreeze_last, not both")
    if ft.epochs and not (ft.unfreeze_from or ft.unfreeze_last):
        raise TkError("train.fine_tune: epochs > 0 needs unfreeze_from (a layer name) or unfreeze_last (N)")
    if recipe.bench.max_runs < recipe.bench.min_runs:
        raise TkError(
            f"bench.max_runs: must be >= bench.min_runs ({recipe.bench.min_runs}) (got {recipe.bench.max_runs})"
        )
    schedule = recipe.train.lr_schedule
    if schedule.warmup_epochs and schedule.name != "cosine":
        raise TkError(f"train.lr_schedule.warmup_epochs: needs name: cosine (got name {schedule.name!r})")
    if schedule.warmup_epochs >= recipe.train.epochs:
        raise TkError(
            f"train.lr_schedule.warmup_epochs: must be < train.epochs ({recipe.train.epochs}) "
            f"so the schedule decays (got {schedule.warmup_epochs})"
        )
    if ft.epochs and recipe.train.mode == "scratch":
        raise TkError(
            "train.fine_tune: fine-tuning follows feature extraction; mode scratch trains every layer already"
        )
    for fmt in recipe.export.formats:
        if fmt not in EXPORT_FORMATS:
            raise TkError(
                f"export.formats: unknown format {fmt!r}{suggest(fmt, EXPORT_FORMATS)}; "
                f"allowed: {', '.join(EXPORT_FORMATS)}"
            )
    for q in recipe.export.quantize:
        if q not in QUANTIZATIONS:
            raise TkError(
                f"export.quantize: unknown quantization {q!r}{suggest(q, QUANTIZATIONS)}; "
                f"allowed: {', '.join(QUANTIZATIONS)}"
            )
    check_verify(recipe.verify)
    if not recipe.name.replace("-", "").replace("_", "").replace(".", "").isalnum():
        raise TkError(f"name: use letters, digits, '-', '_' or '.' (got {recipe.name!r})")
    from .run_names import run_name_problem

    problem = run_name_problem(recipe.name)
    if problem:
        shown = recipe.name if len(recipe.name) <= 60 else recipe.name[:57] + "..."
        raise TkError(f"name: {problem}; choose another name for the recipe (got {shown!r})")


def _plain(obj: Any) -> Any:
    if isinstance(obj, dict):
        return {k: _plain(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_plain(v) for v in obj]
    return obj
