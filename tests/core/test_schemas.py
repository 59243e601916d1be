"""core/schemas.py: every run and bundle file tk reads, hand-edited every way we could think of
(empty, truncated, wrong type, NaN, huge, a symlink out, a folder in its place, a key missing, a
cap exceeded) is one TkError naming the file, the key and the fix; never a traceback. Standard
library files only: no model, no TensorFlow."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from toolkit.core import schemas
from toolkit.core.errors import TkError

SHA = "a" * 64
MANIFEST = {
    "name": "run",
    "classes": ["cat", "dog"],
    "preprocessing": {"size": [32, 32]},
    "artifacts": {"model.onnx": {"file": "model.onnx", "format": "onnx", "quantization": "none", "sha256": SHA}},
}
RECORD = {"kind": "float32", "passed": True, "failures": [], "agreement": 1.0, "sha256": SHA}
PARITY = {"split": "test", "count": 3, "artifacts": {"model.onnx": RECORD}}
ROW = {"file": "model.onnx", "threads": 1, "p50_ms": 1.5, "runs": 3, "accuracy": 0.5, "sha256": SHA}
BENCH = {"machine": {"host": "pi", "cores": 4}, "rows": [ROW], "other_rows": [], "machines": {"pi": {"host": "pi"}}}
METRICS = {"test": {"accuracy": 0.9, "count": 3, "per_class": {"cat": {"precision": 1, "recall": 1, "support": 2}}}}
HISTORY = {"loss": [1.0, 0.5], "val_accuracy": [0.4, None]}
SPLIT = {"format": 2, "root": "/data", "classes": ["cat", "dog"], "splits": {"test": [["cat/0.jpg", 0]]}}
CHECKSET = {
    "format": 1,
    "count": 2,
    "height": 4,
    "width": 4,
    "channels": 3,
    "pixels": "pixels.u8",
    "pixels_sha256": SHA,
    "labels": [0, 1],
    "classes": ["cat", "dog"],
    "reference_sha256": SHA,
    "probabilities": [[0.9, 0.1], [0.2, 0.8]],
}
DEVICE = {"format": 1, "targets": {"pi (Cortex-A72, 4 cores)": {"time": "t", "artifacts": {"model.onnx": RECORD}}}}

LOADERS = {
    "manifest.json": (schemas.load_manifest, MANIFEST),
    "parity.json": (schemas.load_parity, PARITY),
    "bench.json": (schemas.load_bench, BENCH),
    "metrics.json": (schemas.load_metrics, METRICS),
    "history.json": (schemas.load_history, HISTORY),
    "split.json": (schemas.load_split, SPLIT),
    "checkset.json": (schemas.load_checkset, CHECKSET),
    "device_parity.json": (schemas.load_device_parity, DEVICE),
}


def _error(load, path: Path) -> str:
    with pytest.raises(TkError) as info:
        load(path)
    line = str(info.value)
    assert "\n" not in line and line.startswith(str(path)), line
    return line


@pytest.mark.edge
@pytest.mark.parametrize("name", LOADERS)
def test_each_file_reads_and_returns_what_it_holds(tmp_path, name):
    load, good = LOADERS[name]
    (tmp_path / name).write_text(json.dumps(good))
    assert load(tmp_path / name) == good


@pytest.mark.edge
@pytest.mark.parametrize("name", LOADERS)
@pytest.mark.parametrize(
    "content, fragment",
    [
        (b"", "empty"),
        (b'{"classes": [', "not valid JSON"),
        (b"[1, 2]", "must "),
        (b'"a string"', "must "),
        (b"null", "must "),
        (b'{"x": NaN}', "NaN, which strict JSON does not allow"),
        (b"\xff\xfe{}", "not UTF-8"),
        (b"[" * 100_000 + b"]" * 100_000, "nested too deeply"),
    ],
    ids=["empty", "truncated", "list", "string", "null", "nan", "latin1", "nesting-bomb"],
)
def test_every_file_damaged_every_way_is_one_line(tmp_path, name, content, fragment):
    load, _ = LOADERS[name]
    (tmp_path / name).write_bytes(content)
    line = _error(load, tmp_path / name)
    assert fragment in line and ";" in line  # what, then the fix


@pytest.mark.edge
@pytest.mark.parametrize("name", LOADERS)
def test_a_folder_a_symlink_out_or_a_huge_file_in_its_place(tmp_path, name):
    load, good = LOADERS[name]
    (tmp_path / name).mkdir()
    assert "a folder where a JSON file belongs" in _error(load, tmp_path / name)
    (tmp_path / name).rmdir()
    outside = tmp_path.parent / f"{tmp_path.name}-elsewhere.json"
    outside.write_text(json.dumps(good))
    (tmp_path / name).symlink_to(outside)
    assert "a symbolic link" in _error(load, tmp_path / name)
    (tmp_path / name).unlink()
    with open(tmp_path / name, "wb") as fh:  # sparse: 2 GB that never touch the disk
        fh.truncate(2**31)
    assert "more than such a file may hold" in _error(load, tmp_path / name)


def _with(base: dict, path: str, value) -> dict:
    """A deep copy of base with the key at the path (a/b/0) set, or removed when value is ...."""
    out = json.loads(json.dumps(base))
    *parents, last = path.split("/")
    node = out
    for key in parents:
        node = node[int(key)] if isinstance(node, list) else node[key]
    if value is ...:
        del node[last]
    elif isinstance(node, list):
        node[int(last)] = value
    else:
        node[last] = value
    return out


CASES = [
    ("manifest.json", "classes", "cat,dog", "classes: must be a list"),
    ("manifest.json", "classes", ["cat"], "classes: must hold 2 to"),
    ("manifest.json", "classes", ["cat", "cat"], "'cat' is listed twice"),
    ("manifest.json", "classes", ["cat", "line\nbreak"], "control character"),
    ("manifest.json", "classes", ["cat", ""], "must not be empty"),
    ("manifest.json", "classes", ["c"] * 2 + [f"k{i}" for i in range(30_001)], "must hold 2 to 30000"),
    ("manifest.json", "preprocessing", ..., "preprocessing: missing"),
    ("manifest.json", "preprocessing/size", [100_000, 100_000], "size[0]: must be between 1 and 4096"),
    ("manifest.json", "preprocessing/size", ["32", 32], "must be a whole number"),
    ("manifest.json", "preprocessing/size", [32], "must hold 2 to 2 items"),
    ("manifest.json", "artifacts", [], "artifacts: must map file names to entries"),
    ("manifest.json", "artifacts/model.onnx", None, "must be an object"),
    ("manifest.json", "artifacts", {"../../victim.txt": {}}, "must be a plain file name"),
    ("manifest.json", "artifacts", {"/etc/passwd": {}}, "must be a plain file name"),
    ("manifest.json", "artifacts", {"model.onnx": {"file": "other.onnx"}}, "names 'other.onnx'"),
    ("manifest.json", "artifacts", {"model.onnx": {"sha256": "abc"}}, "must be a sha256"),
    ("manifest.json", "artifacts", {"model.onnx": {"verified": "yes"}}, "verified: must be true or false"),
    ("parity.json", "artifacts/model.onnx/passed", "false", "passed: must be true or false"),
    ("parity.json", "artifacts/model.onnx/passed", ..., "passed: missing"),
    ("parity.json", "artifacts/model.onnx/agreement", 1e999, "holds Infinity"),
    ("parity.json", "artifacts/model.onnx/agreement", 7, "must be between 0.0 and 1.0"),
    ("parity.json", "artifacts/model.onnx/sha256", 5, "must be text"),
    ("parity.json", "artifacts", {f"m{i}.onnx": RECORD for i in range(300)}, "more than 256"),
    ("bench.json", "rows", ["a row"], "rows[0]: must be an object"),
    ("bench.json", "rows", "rows", "rows: must be a list"),
    ("bench.json", "other_rows", {"x": 1}, "other_rows: must be a list"),
    ("bench.json", "machines", ["pi"], "machines: must map machine labels"),
    ("bench.json", "machine", "pi", "machine: must be an object"),
    ("bench.json", "rows/0/threads", 0, "threads: must be between 1"),
    ("bench.json", "rows/0/p50_ms", "fast", "p50_ms: must be a number"),
    ("bench.json", "rows/0/file", "../x.onnx", "must be a plain file name"),
    ("metrics.json", "test/accuracy", "0.9", "accuracy: must be a number"),
    ("metrics.json", "test", ..., "test: missing"),
    ("metrics.json", "test/per_class/cat/precision", 3, "must be between 0.0 and 1.0"),
    ("history.json", "loss", "1.0", "must be a list"),
    ("history.json", "loss", [1.0] * 100_001, "must hold 0 to 100000"),
    ("split.json", "splits/test/0/1", 7, "label must be a class index 0..1 (got 7)"),
    ("split.json", "splits/test/0/1", -1, "label must be a class index 0..1 (got -1)"),
    ("split.json", "splits/test/0/0", None, "the image path must be text"),
    ("checkset.json", "labels", [0], "one entry per image"),
    ("checkset.json", "labels", [0, 5], "class indices must be below 2"),
    ("checkset.json", "probabilities", [[0.9, 0.1], [0.2]], "must hold 2 to"),
    ("checkset.json", "channels", 4, "must be one of 3"),
    ("checkset.json", "count", 100_000, "must be between 1 and 1000"),
    ("checkset.json", "pixels", "../../etc/passwd", "must be a plain file name"),
    ("device_parity.json", "targets", [], "targets: must map targets"),
    ("device_parity.json", "format", 2, "format: must be one of 1"),
]


@pytest.mark.edge
@pytest.mark.parametrize("name, key, value, fragment", CASES, ids=[f"{c[0]}:{c[1]}:{i}" for i, c in enumerate(CASES)])
def test_wrong_types_ranges_and_caps_name_the_key_and_the_fix(tmp_path, name, key, value, fragment):
    load, good = LOADERS[name]
    (tmp_path / name).write_text(json.dumps(_with(good, key, value)))
    line = _error(load, tmp_path / name)
    assert fragment in line, line
    assert line.rsplit("; ", 1)[-1] == schemas.FIX[name.split(".")[0]]  # the fix for that file


@pytest.mark.edge
def test_labels_txt_is_a_capped_regular_utf8_file(tmp_path):
    path = tmp_path / "labels.txt"
    path.write_text("cat\n\ndog\n")
    assert schemas.read_labels(path) == ["cat", "dog"]
    path.write_bytes(b"\xffcat\n")
    assert "not UTF-8" in _error(schemas.read_labels, path)
    path.unlink()
    path.mkdir()
    assert "not a regular file" in _error(schemas.read_labels, path)


@pytest.mark.edge
def test_a_number_too_big_for_a_float_is_not_infinity(tmp_path):
    path = tmp_path / "parity.json"
    path.write_text(json.dumps(PARITY).replace('"agreement": 1.0', '"agreement": 1e999'))
    assert "artifacts['model.onnx'].agreement: must be a finite number (got inf)" in _error(schemas.load_parity, path)
