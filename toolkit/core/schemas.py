"""The typed schemas of every JSON file tk reads from a run folder or a bundle: one place, one check.

manifest.json, split.json, parity.json, metrics.json, phases/*/history.json, bench.json,
device_parity.json, checkset/checkset.json and labels.txt are written by tk but read back after
anyone may have edited them. Each has a TypedDict here documenting it and a spec (core/jsonspec.py)
checking what tk reads: types, ranges and sizes (image side, class count, row counts are capped).
load_<file>(path) is the only way tk reads one: a bad file is one TkError naming the file, the key
and the fix, never a traceback in whichever reader met it first. Keys tk does not read pass through
(a newer tk may add some). Standard library only: the device path reads manifests and check sets.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path
from typing import Any, Optional, TypedDict

from . import jsonspec as js
from .errors import TkError

# Caps: far above any real run, far below what exhausts a machine (a 100000 px side is 120 GB an image).
MAX_SIDE = 4096  # pixels, each side of a model's input
MAX_CLASSES = 30_000
MAX_LABEL = 256  # characters in a class name
MAX_ARTIFACTS = 256
MAX_ROWS = 100_000  # bench rows, epochs of a history
MAX_IMAGES = 20_000_000  # images in one split
MAX_CHECKSET = 1000
_MB = 2**20

FIX = {
    "manifest": "restore it from the run (tk export rewrites a run's, tk pack writes a bundle's)",
    "split": "re-run tk train to rewrite it, or copy it again from the run folder",
    "parity": "re-run tk verify to rewrite it",
    "metrics": "restore it from the run, or re-run tk train",
    "history": "restore it from the run, or re-run tk train",
    "bench": "move it aside or delete it (tk bench then writes a new one)",
    "device_parity": "move it aside or delete it (tk verify BUNDLE writes a new one)",
    "checkset": "re-run tk verify on the run, then tk pack again",
    "labels": "restore labels.txt from the run (one class per line, in manifest.json's order)",
    "state": "delete it to start the phase over, or restore it",
}


# --------------------------------------------------------------------------- documented shapes


class Preprocessing(TypedDict, total=False):
    size: list[int]  # [height, width], required
    interpolation: str
    color: str
    input_range: list[float]
    scaling: str
    scaling_in_graph: bool


class Chain(TypedDict, total=False):
    """A bundle entry's provenance: the trained model, the artifact, the verify record that judged it."""

    reference_sha256: Optional[str]
    artifact_sha256: str
    parity: Optional[dict[str, Any]]


class ManifestEntry(TypedDict, total=False):
    file: str  # the key it is listed under
    format: str
    quantization: str
    tolerance: str
    sha256: Optional[str]
    size_bytes: int
    input: dict[str, Any]
    output: dict[str, Any]
    source: dict[str, Any]  # {"file": "model.keras", "sha256": the reference it was exported from}
    metrics: dict[str, Any]  # {"verify": ..., "bench": ...}
    verified: bool  # bundles: False when packed with --allow-unverified
    chain: Chain  # bundles


class Manifest(TypedDict, total=False):
    name: str
    classes: list[str]  # required, in output order
    preprocessing: Preprocessing  # required
    artifacts: dict[str, ManifestEntry]
    backbone: str
    trained: str
    created: str
    bundle: dict[str, Any]  # present in a bundle only
    verify: dict[str, Any]  # bundles: the run recipe's verify overrides


class ParityRecord(TypedDict, total=False):
    kind: str
    passed: bool
    failures: list[str]
    error: str
    agreement: float
    max_abs_diff: float
    accuracy_delta: float
    limits: dict[str, Optional[float]]
    sha256: Optional[str]  # the artifact judged
    reference_sha256: Optional[str]  # the model.keras it was judged against
    images_sha256: str  # the decoded pixels it was judged on
    split_sha256: str  # the split's image list and labels
    tk_version: str


class Parity(TypedDict, total=False):
    split: str
    count: int
    reference: dict[str, Any]
    artifacts: dict[str, ParityRecord]


class BenchRow(TypedDict, total=False):
    file: str
    threads: int
    p50_ms: float
    accuracy: Optional[float]
    sha256: Optional[str]
    machine: str
    measured_at: str


class Bench(TypedDict, total=False):
    machine: dict[str, Any]
    machines: dict[str, dict[str, Any]]
    rows: list[BenchRow]
    other_rows: list[BenchRow]
    notes: list[str]
    reference_sha256: Optional[str]


class CheckSet(TypedDict):
    format: int
    count: int
    height: int
    width: int
    channels: int
    pixels: str
    pixels_sha256: str
    labels: list[int]
    classes: list[str]
    reference_sha256: str
    probabilities: list[list[float]]


class DeviceParity(TypedDict):
    format: int
    targets: dict[str, dict[str, Any]]


# --------------------------------------------------------------------------- specs

_name = js.text(200)
_stamp = js.text(64)
_fraction = js.nullable(js.number(0.0, 1.0))
_count = js.integer(0, MAX_IMAGES)
_CLASS = js.text(MAX_LABEL, nonempty=True)
_classes = js.seq(_CLASS, MAX_CLASSES, min_len=2)
_side = js.integer(1, MAX_SIDE)
_shape = js.seq(js.nullable(js.integer(0, 2**31)), 8)
_io = js.obj({}, {"shape": _shape, "dtype": js.text(32)})
_LIMITS = js.obj(
    {},
    {
        k: js.nullable(js.number(0.0, 1.0))
        for k in ("max_abs_diff", "min_agreement", "max_accuracy_drop", "min_confident_agreement")
    },
)

PARITY_RECORD = js.obj(
    {"kind": js.text(32), "passed": js.boolean},
    {
        "failures": js.seq(js.free_text(), 64),
        "error": js.free_text(),
        "agreement": _fraction,
        "confident_agreement": _fraction,
        "confident_count": js.nullable(_count),
        "max_abs_diff": js.nullable(js.number(0.0)),
        "mean_abs_diff": js.nullable(js.number(0.0)),
        "accuracy": _fraction,
        "accuracy_delta": js.nullable(js.number(-1.0, 1.0)),
        "limits": js.nullable(_LIMITS),
        "sha256": js.nullable(js.SHA256),
        "reference_sha256": js.nullable(js.SHA256),
        "images_sha256": js.SHA256,
        "split_sha256": js.SHA256,
        "tk_version": js.text(64),
        "format": js.text(32),
        "quantization": js.text(32),
        "non_finite_outputs": js.integer(0),
        "runtime": js.text(200),
    },
)

_CHAIN = js.obj(
    {"artifact_sha256": js.SHA256},
    {"reference_sha256": js.nullable(js.SHA256), "parity": js.nullable(PARITY_RECORD)},
)

_ENTRY = js.obj(
    {},
    {
        "file": js.file_name,
        "format": js.text(32),
        "quantization": js.text(32),
        "tolerance": js.text(32),
        "sha256": js.nullable(js.SHA256),
        "size_bytes": js.nullable(js.integer(0)),
        "input": _io,
        "output": _io,
        "source": js.obj({}, {"file": js.text(255), "sha256": js.nullable(js.SHA256)}),
        "metrics": js.obj({}, {"verify": js.obj(), "bench": js.obj()}),
        "verified": js.boolean,
        "verdict": js.free_text(),
        "chain": _CHAIN,
    },
)

MANIFEST = js.obj(
    {
        "classes": _classes,
        "preprocessing": js.obj({"size": js.seq(_side, 2, min_len=2)}),
    },
    {
        "name": _name,
        "artifacts": js.mapping(_ENTRY, MAX_ARTIFACTS, key=js.file_name, what="file names to entries"),
        "backbone": js.text(200),
        "trained": _stamp,
        "created": _stamp,
        "bundle": js.obj(
            {},
            {
                "from_run": _name,
                "samples": _count,
                "reference_sha256": js.nullable(js.SHA256),
                "checkset": js.integer(0, MAX_CHECKSET),
            },
        ),
        "verify": js.obj(),
    },
)

_pair = js.seq(js.anything, 2, min_len=2)
SPLIT = js.obj(
    {"root": js.text(4096), "classes": _classes, "splits": js.mapping(js.seq(_pair, MAX_IMAGES), 8)},
    {
        "format": js.integer(),
        "layout": js.text(32),
        "skipped": js.seq(_pair, MAX_IMAGES),
        "test_is_validation": js.boolean,
    },
)

PARITY = js.obj(
    {"artifacts": js.mapping(PARITY_RECORD, MAX_ARTIFACTS, key=js.file_name, what="file names to results")},
    {
        "split": js.text(32),
        "count": _count,
        "measured": _stamp,
        "reference": js.obj(
            {}, {"sha256": js.nullable(js.SHA256), "accuracy": _fraction, "warnings": js.seq(js.free_text(), 16)}
        ),
        "passed": js.boolean,
    },
)

_PER_CLASS = js.obj({"precision": js.number(0.0, 1.0), "recall": js.number(0.0, 1.0), "support": _count})
METRICS = js.obj(
    {
        "test": js.obj(
            {"accuracy": _fraction},
            {
                "count": _count,
                "per_class": js.mapping(_PER_CLASS, MAX_CLASSES),
                "confusion_matrix": js.seq(js.seq(_count, MAX_CLASSES), MAX_CLASSES),
            },
        )
    },
    {"phases": js.seq(js.text(64), 16), "warnings": js.seq(js.free_text(), 64)},
)

HISTORY = js.mapping(js.seq(js.nullable(js.number()), MAX_ROWS), 64, what="metric names to per-epoch values")

_ms = js.number(0.0)
BENCH_ROW = js.obj(
    {"file": js.file_name, "threads": js.integer(1, 1_000_000), "p50_ms": _ms},
    {
        "format": js.nullable(js.text(32)),
        "quantization": js.nullable(js.text(32)),
        "reference": js.boolean,
        "size_bytes": js.nullable(js.integer(0)),
        "sha256": js.nullable(js.SHA256),
        "runs": js.integer(1),
        "warmup": js.integer(0),
        "batch": js.integer(1),
        "accuracy": _fraction,
        "test_count": js.nullable(_count),
        "measured_at": js.nullable(_stamp),
        "machine": js.nullable(js.text(300)),
        **{k: _ms for k in ("p90_ms", "p99_ms", "mean_ms", "min_ms", "throughput_ips", "cold_start_s", "peak_rss_mb")},
    },
)
_MACHINE = js.obj(
    {},
    {
        **{k: js.nullable(js.text(300)) for k in ("host", "cpu", "os", "arch", "python")},
        "cores": js.nullable(js.integer(0)),
        "logical_cores": js.nullable(js.integer(0)),
        "memory_gb": js.nullable(js.number(0.0)),
        "versions": js.mapping(js.text(64), 64),
        "load_avg": js.nullable(js.seq(js.number(), 3)),
    },
)
BENCH = js.obj(
    {"machine": _MACHINE, "rows": js.seq(BENCH_ROW, MAX_ROWS)},
    {
        "machines": js.mapping(_MACHINE, 1000, what="machine labels to machine facts"),
        "other_rows": js.seq(BENCH_ROW, MAX_ROWS),
        "notes": js.seq(js.free_text(), 1000),
        "created": _stamp,
        "reference_sha256": js.nullable(js.SHA256),
    },
)

_TARGET = js.obj(
    {"artifacts": js.mapping(PARITY_RECORD, MAX_ARTIFACTS, key=js.file_name, what="file names to results")},
    {
        "time": _stamp,
        "machine": _MACHINE,
        "cpu": js.text(300),
        "cpu_flags": js.seq(js.text(64), 256),
        "passed": js.boolean,
    },
)
DEVICE_PARITY = js.obj({"format": js.one_of(1), "targets": js.mapping(_TARGET, 64, what="targets to results")})

CHECKSET = js.obj(
    {
        "format": js.one_of(1),
        "count": js.integer(1, MAX_CHECKSET),
        "height": _side,
        "width": _side,
        "channels": js.one_of(3),
        "pixels": js.file_name,
        "pixels_sha256": js.SHA256,
        "labels": js.seq(js.integer(0, MAX_CLASSES), MAX_CHECKSET, min_len=1),
        "classes": _classes,
        "reference_sha256": js.SHA256,
        "probabilities": js.seq(js.seq(js.number(0.0, 1.0), MAX_CLASSES, min_len=2), MAX_CHECKSET, min_len=1),
    },
)

TRAIN_STATE = js.obj({}, {"epoch": js.integer(0, MAX_ROWS), "val_loss": js.number()})


# --------------------------------------------------------------------------- loaders


def _load(path: Path, spec: js.Spec, kind: str, max_mb: int) -> Any:
    return js.validate(js.read_json_file(path, max_mb * _MB, FIX[kind]), spec, path, FIX[kind])


def _cross(path: Path, kind: str, where: str, problem: str) -> TkError:
    return TkError(f"{path}: {where}: {problem}; {FIX[kind]}")


def load_manifest(path: Path) -> Manifest:
    manifest = _load(path, MANIFEST, "manifest", 64)
    classes = manifest["classes"]
    if len(set(classes)) != len(classes):
        dup = next(c for c in classes if classes.count(c) > 1)
        raise _cross(path, "manifest", "classes", f"{dup!r} is listed twice (labels must be told apart)")
    for key, entry in manifest.get("artifacts", {}).items():
        if entry.get("file", key) != key:
            raise _cross(path, "manifest", f"artifacts[{key!r}].file", f"names {entry['file']!r}, not {key!r}")
    return manifest


def load_split(path: Path) -> dict[str, Any]:
    split = _load(path, SPLIT, "split", 1024)
    last = len(split["classes"]) - 1
    for name, items in split["splits"].items():
        for i, (rel, label) in enumerate(items):
            where = f"splits[{name!r}][{i}]"
            if not isinstance(rel, str) or not rel or len(rel) > 4096:
                raise _cross(path, "split", where, f"the image path must be text (got {rel!r:.60})")
            if isinstance(label, bool) or not isinstance(label, int) or not 0 <= label <= last:
                raise _cross(path, "split", where, f"label must be a class index 0..{last} (got {label!r})")
    return split


def load_parity(path: Path) -> Parity:
    return _load(path, PARITY, "parity", 64)


def load_metrics(path: Path) -> dict[str, Any]:
    return _load(path, METRICS, "metrics", 64)


def load_history(path: Path) -> dict[str, list[Optional[float]]]:
    return _load(path, HISTORY, "history", 64)


def load_bench(path: Path) -> Bench:
    return _load(path, BENCH, "bench", 256)


def load_device_parity(path: Path) -> DeviceParity:
    return _load(path, DEVICE_PARITY, "device_parity", 64)


def load_train_state(path: Path) -> dict[str, Any]:
    return _load(path, TRAIN_STATE, "state", 1)


def load_checkset(path: Path) -> CheckSet:
    checkset = _load(path, CHECKSET, "checkset", 256)
    count, classes = checkset["count"], checkset["classes"]
    if len(checkset["labels"]) != count or len(checkset["probabilities"]) != count:
        raise _cross(path, "checkset", "labels/probabilities", f"must hold one entry per image ({count})")
    if any(y >= len(classes) for y in checkset["labels"]):
        raise _cross(path, "checkset", "labels", f"class indices must be below {len(classes)}")
    if any(len(row) != len(classes) for row in checkset["probabilities"]):
        raise _cross(path, "checkset", "probabilities", f"every row must hold {len(classes)} classes")
    return checkset


def read_labels(path: Path) -> list[str]:
    """labels.txt: one class per line (blank lines ignored); a regular file, capped, UTF-8."""
    fix = FIX["labels"]
    try:
        info = os.lstat(path)
    except FileNotFoundError:
        raise TkError(f"{path}: not found; {fix}") from None
    if not stat.S_ISREG(info.st_mode):
        raise TkError(f"{path}: not a regular file (a folder or a link?); {fix}")
    if info.st_size > 8 * _MB:
        raise TkError(f"{path}: {info.st_size} bytes, more than a label file may hold; {fix}")
    try:
        text = Path(path).read_bytes().decode("utf-8")
    except UnicodeDecodeError as exc:
        raise TkError(f"{path}: not UTF-8 text (byte {exc.start}); {fix}") from None
    return [line.strip() for line in text.splitlines() if line.strip()]
