"""Issue 10 probe: a class with no usable images, or a split missing a class, is never silent.

train/validation missing a class: one-line error before training starts (no run folder). The test
split missing a class: train states it in one line and metrics.json records it.
"""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from helpers import assert_one_line_error, small_recipe
from typer.testing import CliRunner

from toolkit.cli.app import app
from toolkit.data.synth import make_synthetic_dataset

runner = CliRunner()


def tk(*args):
    return runner.invoke(app, [str(a) for a in args])


def write_recipe(path: Path, root: Path, **sections) -> Path:
    path.write_text(yaml.safe_dump(small_recipe(path.stem, root, **sections).to_dict()))
    return path


def _empty_class(root: Path, name: str) -> None:
    """The class folder keeps only a file that is not an image: skipped, so no usable images."""
    for path in (root / name).iterdir():
        path.unlink()
    (root / name / "broken.jpg").write_bytes(b"")


def _presplit(root: Path) -> Path:
    for i, split in enumerate(("train", "validation", "test")):
        make_synthetic_dataset(root / split, classes=2, per_class=8, size=24, seed=i)
    return root


def test_a_class_folder_with_no_usable_images_stops_train_and_inspect_warns(tmp_path):
    root = make_synthetic_dataset(tmp_path / "flat", classes=3, per_class=8, size=24, seed=0)
    _empty_class(root, "square")
    recipe = write_recipe(tmp_path / "gap.yaml", root)
    runs = tmp_path / "runs"
    assert_one_line_error(
        tk("train", recipe, "--runs-dir", runs),
        f"{root / 'square'} has no usable images",
        "1 unusable file(s) skipped",
        "remove the folder",
    )
    assert not runs.exists() or not any(runs.iterdir())  # stopped before training touched anything
    result = tk("data", "inspect", recipe, "--json")
    assert result.exit_code == 0, result.output  # inspect lists the gap instead of stopping
    warnings = "\n".join(json.loads(result.stdout)["warnings"])
    assert "the train split has 0 images of square: training will FAIL" in warnings


def test_a_class_too_small_for_the_validation_fraction_is_an_error(tmp_path):
    root = make_synthetic_dataset(tmp_path / "flat", classes=2, per_class=8, size=24, seed=0)
    for path in sorted((root / "circle").glob("*.jpg"))[2:]:
        path.unlink()  # 2 circles: 0.15 of 2 rounds to no validation image
    assert_one_line_error(
        tk("train", write_recipe(tmp_path / "few.yaml", root), "--runs-dir", tmp_path / "runs"),
        f"{root / 'circle'} has 2 usable image(s)",
        "validation",
        "add images",
    )


@pytest.mark.parametrize("split", ["train", "validation"])
def test_presplit_train_or_validation_missing_a_class_is_an_error(tmp_path, split):
    root = _presplit(tmp_path / "pre")
    _empty_class(root / split, "square")
    assert_one_line_error(
        tk("train", write_recipe(tmp_path / "pre.yaml", root), "--runs-dir", tmp_path / "runs"),
        f"{root / split / 'square'} has no usable images",
        "add images to it",
    )


def test_a_test_split_missing_a_class_trains_but_says_so_and_records_it(tmp_path, feature_cache):
    root = _presplit(tmp_path / "pre")
    shutil.rmtree(root / "test" / "square")  # a missing folder reads as an empty one
    recipe = write_recipe(tmp_path / "notest.yaml", root, train={"epochs": 1})
    runs = tmp_path / "runs"
    result = tk("train", recipe, "--runs-dir", runs)
    assert result.exit_code == 0, result.output
    lines = [line for line in result.output.splitlines() if "the test split has no images of square" in line]
    assert len(lines) == 1 and "1 of 2 classes" in lines[0] and "not comparable" in lines[0], result.output
    metrics = json.loads((runs / "notest" / "metrics.json").read_text())
    assert metrics["test_missing_classes"] == ["square"]
    assert "not comparable" in metrics["warnings"][0]
    assert metrics["test"]["count"] == 8  # circles only
