"""Dataset discovery: layouts, deterministic stratified splits, bad files, class-set checks."""

from __future__ import annotations

import os
import shutil
from collections import Counter
from pathlib import Path

import pytest

from toolkit.core.errors import TkError
from toolkit.core.recipe import DataSection, SplitFractions
from toolkit.core.runs import SplitDataset, load_split, save_split
from toolkit.data.splits import discover, stratified_split
from toolkit.data.synth import make_synthetic_dataset


def make_presplit(root: Path, splits=("train", "validation", "test"), classes=2, per_class=6) -> Path:
    for i, split in enumerate(splits):
        make_synthetic_dataset(root / split, classes=classes, per_class=per_class, size=24, seed=i)
    return root


def add_bad_files(folder: Path) -> dict[str, Path]:
    good = next(folder.glob("*.jpg"))
    bad = {
        "empty": folder / "empty.jpg",
        "truncated": folder / "cut.jpg",
        "text": folder / "notes.jpg",
        "suffix": folder / "labels.csv",
    }
    bad["empty"].write_bytes(b"")
    bad["truncated"].write_bytes(good.read_bytes()[:200])
    bad["text"].write_text("not a photo")
    bad["suffix"].write_text("a,b\n")
    return bad


@pytest.fixture()
def folder_root(tmp_path) -> Path:
    return make_synthetic_dataset(tmp_path / "flat", classes=3, per_class=20, size=24, seed=3)


def test_folder_layout_is_detected_and_split_by_fractions(folder_root):
    dataset = discover(DataSection(root=str(folder_root)), seed=1)
    assert dataset.layout == "folder" and not dataset.test_is_validation
    assert dataset.classes == ["circle", "square", "triangle"]
    counts = dataset.counts()
    for name in dataset.classes:  # 20 per class at 0.7/0.15/0.15
        assert (counts["train"][name], counts["validation"][name], counts["test"][name]) == (14, 3, 3)
    every = [p for s in dataset.splits for p in dataset.paths(s)]
    assert len(every) == len(set(every)) == 60  # each image in exactly one split
    assert all(Path(p).parent.name == dataset.classes[y] for s in dataset.splits for p, y in dataset.splits[s])


def test_presplit_layout_is_detected(tmp_path):
    root = make_presplit(tmp_path / "pre", per_class=6)
    dataset = discover(DataSection(root=str(root)), seed=1)
    assert dataset.layout == "presplit" and not dataset.test_is_validation
    assert dataset.classes == ["circle", "square"]
    for split in ("train", "validation", "test"):
        assert len(dataset.splits[split]) == 12
        assert all(f"/{split}/" in p for p in dataset.paths(split))


def test_presplit_accepts_val_alias(tmp_path):
    root = make_presplit(tmp_path / "pre", splits=("train", "val", "test"))
    dataset = discover(DataSection(root=str(root)), seed=1)
    assert all("/val/" in p for p in dataset.paths("validation"))


def test_presplit_without_test_evaluates_on_validation(tmp_path):
    root = make_presplit(tmp_path / "pre", splits=("train", "validation"))
    dataset = discover(DataSection(root=str(root)), seed=1)
    assert dataset.test_is_validation
    assert dataset.splits["test"] == dataset.splits["validation"] and dataset.splits["test"]


def test_presplit_forced_without_split_folders(folder_root):
    with pytest.raises(TkError, match="needs train/ and validation/"):
        discover(DataSection(root=str(folder_root), layout="presplit"), seed=1)


def test_split_is_reproducible_by_seed(folder_root):
    data = DataSection(root=str(folder_root))
    first, again, other = discover(data, seed=5), discover(data, seed=5), discover(data, seed=6)
    assert first.splits == again.splits
    assert first.splits["train"] != other.splits["train"]
    # Another seed changes which images, not how many per class (stratified).
    assert first.counts() == other.counts()


def test_split_does_not_depend_on_listing_order():
    items = [(f"/d/{c}/{i:02d}.jpg", k) for k, c in enumerate("abc") for i in range(10)]
    shuffled = list(reversed(items))
    assert stratified_split(items, 3, 0.6, 0.2, seed=9) == stratified_split(shuffled, 3, 0.6, 0.2, seed=9)


@pytest.mark.parametrize("per_class", [3, 5, 9, 40])
def test_every_class_in_every_split(tmp_path, per_class):
    root = make_synthetic_dataset(tmp_path / "d", classes=4, per_class=per_class, size=16, seed=0)
    dataset = discover(DataSection(root=str(root)), seed=2)
    for split in ("train", "validation", "test"):
        assert set(dataset.labels(split)) == {0, 1, 2, 3}, split


def test_zero_test_fraction_evaluates_on_validation(folder_root):
    data = DataSection(root=str(folder_root), split=SplitFractions(train=0.8, validation=0.2, test=0.0))
    dataset = discover(data, seed=1)
    assert dataset.test_is_validation and dataset.splits["test"] == dataset.splits["validation"]
    assert len(dataset.splits["train"]) + len(dataset.splits["validation"]) == 60


@pytest.mark.parametrize(
    "change, split, named",
    [
        (lambda root: shutil.rmtree(root / "validation" / "square"), "validation", "missing: ['square']"),
        (lambda root: (root / "validation" / "star").mkdir(), "validation", "extra: ['star']"),
    ],
)
def test_class_sets_differing_between_splits_is_an_error(tmp_path, change, split, named):
    root = make_presplit(tmp_path / "pre")
    change(root)
    with pytest.raises(TkError) as info:
        discover(DataSection(root=str(root)), seed=1)
    message = str(info.value)
    assert f"{root / split} differ from train/" in message and named in message


def test_bad_files_are_listed_with_reasons_and_skipped(folder_root):
    bad = add_bad_files(folder_root / "square")
    dataset = discover(DataSection(root=str(folder_root)), seed=1)
    skipped = dict(dataset.skipped)
    assert set(skipped) == {str(p) for p in bad.values()}
    assert skipped[str(bad["empty"])] == "empty file"
    assert "not a readable image" in skipped[str(bad["truncated"])]
    assert "not a readable image" in skipped[str(bad["text"])]
    assert "not an image file" in skipped[str(bad["suffix"])]
    used = {p for s in dataset.splits for p in dataset.paths(s)}
    assert not used & set(skipped) and len(used) == 60


def test_strict_fails_naming_the_file(folder_root):
    bad = add_bad_files(folder_root / "circle")
    with pytest.raises(TkError) as info:
        discover(DataSection(root=str(folder_root), strict=True), seed=1)
    message = str(info.value)
    assert any(str(p) in message for p in bad.values())
    assert "(and 3 more)" in message and "--strict" in message


def test_strict_on_presplit_fails_too(tmp_path):
    root = make_presplit(tmp_path / "pre")
    (root / "validation" / "circle" / "empty.png").write_bytes(b"")
    with pytest.raises(TkError, match="empty.png: empty file"):
        discover(DataSection(root=str(root), strict=True), seed=1)


def test_missing_root_message(tmp_path):
    missing = tmp_path / "nowhere"
    with pytest.raises(TkError) as info:
        discover(DataSection(root=str(missing)), seed=1)
    message = str(info.value)
    assert message.startswith(f"data.root: folder not found: {missing}")


def test_missing_root_with_a_source_points_to_fetch(tmp_path):
    from toolkit.core.recipe import SourceSection

    data = DataSection(root=str(tmp_path / "nowhere"), source=SourceSection(url="https://example.org/x.tgz"))
    with pytest.raises(TkError, match="tk data fetch"):
        discover(data, seed=1)


def test_one_class_is_not_a_classifier(tmp_path):
    root = make_synthetic_dataset(tmp_path / "d", classes=2, per_class=5, size=16)
    shutil.rmtree(root / "square")
    with pytest.raises(TkError, match="at least 2"):
        discover(DataSection(root=str(root)), seed=1)


def test_binary_dataset(tmp_path):
    root = make_synthetic_dataset(tmp_path / "bin", classes=2, per_class=10, size=16, seed=4)
    dataset = discover(DataSection(root=str(root)), seed=1)
    assert dataset.classes == ["circle", "square"]
    assert Counter(dataset.labels("train")) == {0: 7, 1: 7}
    assert set(dataset.labels("validation")) == set(dataset.labels("test")) == {0, 1}


def test_split_round_trips_through_json(tmp_path):
    root = make_presplit(tmp_path / "pre", splits=("train", "validation"))
    dataset = discover(DataSection(root=str(root)), seed=1)
    save_split(dataset, tmp_path / "run" / "split.json")
    loaded = load_split(tmp_path / "run" / "split.json")
    assert isinstance(loaded, SplitDataset)
    assert loaded.splits == dataset.splits and loaded.classes == dataset.classes
    assert loaded.layout == "presplit" and loaded.test_is_validation


def test_load_split_missing_says_train_first(tmp_path):
    with pytest.raises(TkError, match="tk train"):
        load_split(tmp_path / "split.json")


@pytest.mark.parametrize(
    "name, words",
    [
        ("new\nline", "newline"),
        (" cat", "starts or ends with a space"),
        ("cat\t", "control character"),
        ("...", "only dots"),
        (b"caf\xe9", "not valid UTF-8"),
    ],
)
def test_class_folders_that_cannot_be_labels_are_one_line(folder_root, name, words):
    """Issue 20: a newline gave labels.txt more lines than classes, a leading space passed training
    and failed export, '...' was dropped silently."""
    folder = os.path.join(os.fsencode(folder_root), name) if isinstance(name, bytes) else folder_root / name
    os.mkdir(folder)
    shutil.copy(next((folder_root / "circle").glob("*.jpg")), os.path.join(os.fsdecode(folder), "a.jpg"))
    with pytest.raises(TkError) as err:
        discover(DataSection(root=str(folder_root)), seed=1)
    assert words in str(err.value) and "rename the folder" in str(err.value)


def test_class_folders_named_train_and_test_are_classes(tmp_path, monkeypatch):
    """Issue 20: folders named train/test holding images were refused as "not of class folders"."""
    root = tmp_path / "vehicles"
    for k, name in enumerate(("train", "test", "bus")):
        src = make_synthetic_dataset(tmp_path / f"src{k}", classes=2, per_class=6, size=24, seed=k)
        shutil.copytree(src / "circle", root / name)
    dataset = discover(DataSection(root=str(root)), seed=1)
    assert dataset.layout == "folder" and dataset.classes == ["bus", "test", "train"]
    from toolkit.data.folder_recipe import write_folder_recipe

    monkeypatch.chdir(tmp_path)
    assert write_folder_recipe(root)[0].name == "vehicles.yaml"
