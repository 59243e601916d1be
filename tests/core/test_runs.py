"""The run folder's portability and history (core/runs.py): split.json relative to its data root,
older cwd-relative split files, "the latest run" by training time, and archiving on retrain.
Standard library and tiny files only: no model, no TensorFlow."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from toolkit.core.context import Context
from toolkit.core.errors import TkError
from toolkit.core.runs import (
    MANIFEST,
    SPLIT_FORMAT,
    SplitDataset,
    archive_run,
    check_files_exist,
    list_runs,
    load_split,
    resolve_run,
    save_manifest,
    save_split,
)


def _dataset(root: Path) -> SplitDataset:
    """Two classes, three images each, as discover() would list them (paths under root)."""
    items = []
    for k, name in enumerate(("cat", "dog")):
        (root / name).mkdir(parents=True)
        for i in range(3):
            path = root / name / f"{i}.jpg"
            path.write_bytes(b"x")
            items.append((str(path), k))
    return SplitDataset(
        str(root),
        ["cat", "dog"],
        {"train": items[:4], "validation": items[4:], "test": items[4:]},
        skipped=[(str(root / "cat" / "bad.jpg"), "not an image")],
    )


def test_split_json_is_relative_to_an_absolute_root(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    dataset = _dataset(Path("data/pets"))  # relative, as a recipe's data.root usually is
    save_split(dataset, tmp_path / "run" / "split.json")
    raw = json.loads((tmp_path / "run" / "split.json").read_text())
    assert raw["format"] == SPLIT_FORMAT and raw["root"] == str(tmp_path / "data" / "pets")
    assert raw["splits"]["train"][0] == ["cat/0.jpg", 0] and raw["skipped"][0][0] == "cat/bad.jpg"
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    monkeypatch.chdir(elsewhere)
    loaded = load_split(tmp_path / "run" / "split.json")
    assert loaded.paths("train")[0] == str(tmp_path / "data" / "pets" / "cat" / "0.jpg")
    assert all(Path(p).is_file() for s in loaded.splits for p in loaded.paths(s))
    check_files_exist(loaded.paths("test"), tmp_path / "run", loaded)  # nothing missing: no error


def _dataset_json(root: Path) -> dict:
    dataset = SplitDataset(
        str(root),
        ["cat", "dog"],
        {
            s: [(str(root / c / f"{i}.jpg"), k) for k, c in enumerate(("cat", "dog")) for i in range(3)]
            for s in ("train", "validation", "test")
        },
    )
    return {
        "root": dataset.root,
        "classes": dataset.classes,
        "splits": {s: [[p, y] for p, y in items] for s, items in dataset.splits.items()},
    }


def test_moved_dataset_is_one_line_then_found_with_data_root(tmp_path):
    save_split(_dataset(tmp_path / "data"), tmp_path / "run" / "split.json")
    shutil.move(tmp_path / "data", tmp_path / "moved")
    gone = load_split(tmp_path / "run" / "split.json")
    with pytest.raises(TkError) as err:
        check_files_exist(gone.paths("test"), tmp_path / "run")
    message = str(err.value)
    assert "\n" not in message and "dog/1.jpg" in message and str(tmp_path / "data") in message
    assert "--data-root" in message
    moved = load_split(tmp_path / "run" / "split.json", data_root=tmp_path / "moved")
    assert moved.root == str(tmp_path / "moved") and all(Path(p).is_file() for p in moved.paths("train"))
    with pytest.raises(TkError, match="--data-root: folder not found"):
        load_split(tmp_path / "run" / "split.json", data_root=tmp_path / "nowhere")


def test_old_cwd_relative_split_still_loads_or_says_how(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    _dataset(Path("data/pets"))
    (tmp_path / "run").mkdir()
    (tmp_path / "run" / "split.json").write_text(json.dumps(_dataset_json(Path("data/pets"))))  # no "format"
    assert Path(load_split(tmp_path / "run" / "split.json").paths("train")[0]).is_file()  # from the training folder
    monkeypatch.chdir(tmp_path / "run")
    old = load_split(tmp_path / "run" / "split.json")
    with pytest.raises(TkError) as err:
        check_files_exist(old.paths("test"), tmp_path / "run", old)
    assert "older tk" in str(err.value) and "--data-root" in str(err.value) and "\n" not in str(err.value)
    rebased = load_split(tmp_path / "run" / "split.json", data_root=tmp_path / "data" / "pets")
    assert all(Path(p).is_file() for p in rebased.paths("train"))


def test_truncated_split_is_one_line(tmp_path):
    (tmp_path / "split.json").write_text('{"root": "x", "classes": [')
    with pytest.raises(TkError, match="not valid JSON"):
        load_split(tmp_path / "split.json")


def _run(runs: Path, folder: str, trained: str | None, name: str | None = None) -> Path:
    run = runs / folder
    run.mkdir(parents=True)
    manifest = {"name": name or folder, "created": trained}
    if trained:
        manifest["trained"] = trained
    (run / MANIFEST).write_text(json.dumps(manifest))
    return run


def test_latest_is_trained_last_not_touched_last(tmp_path):
    older = _run(tmp_path, "quickstart", "2026-01-01T10:00:00+00:00")
    newer = _run(tmp_path, "flowers", "2026-01-02T10:00:00+00:00")
    manifest = json.loads((older / MANIFEST).read_text())
    save_manifest(older, manifest)  # what tk verify/bench/export do to an older run
    os.utime(older / MANIFEST, (4e9, 4e9))
    said = []
    assert resolve_run(None, tmp_path, Context(say=said.append)) == newer
    assert said == ["using the latest run: " + str(newer) + " (trained 2026-01-02 10:00:00 UTC)"]


def test_latest_prefers_the_stable_name_on_a_tie_and_skips_temp_folders(tmp_path):
    stamp = "2026-01-02T10:00:00+00:00"
    stable = _run(tmp_path, "quickstart", stamp)
    _run(tmp_path, "quickstart-20260102-100000", stamp, name="quickstart")
    _run(tmp_path, "quickstart.partial", "2027-01-01T00:00:00+00:00", name="quickstart")
    assert resolve_run(None, tmp_path) == stable
    assert [p.name for p in list_runs(tmp_path)] == ["quickstart", "quickstart-20260102-100000"]


def test_a_pack_bundle_beside_the_runs_is_not_a_run(tmp_path):
    run = _run(tmp_path, "quickstart", "2026-01-02T10:00:00+00:00")
    bundle = tmp_path / "quickstart-device"  # make demo packs here; its manifest is newer than any run
    bundle.mkdir()
    (bundle / MANIFEST).write_text(
        json.dumps(
            {
                "name": "quickstart",
                "created": "2027-01-01T00:00:00+00:00",
                "bundle": {"source": str(run)},
                "artifacts": {},
            }
        )
    )
    assert list_runs(tmp_path) == [run] and resolve_run(None, tmp_path) == run


def test_old_runs_without_trained_sort_by_created(tmp_path):
    old = _run(tmp_path, "a", None)
    (old / MANIFEST).write_text(json.dumps({"name": "a", "created": "2026-03-01T00:00:00+00:00"}))
    _run(tmp_path, "b", "2026-02-01T00:00:00+00:00")
    assert resolve_run(None, tmp_path) == old


def test_named_runs_and_dot_resolve_and_say_which(tmp_path, monkeypatch):
    run = _run(tmp_path / "exported", "quickstart", "2026-01-01T10:00:00+00:00")
    said = []
    assert resolve_run("quickstart", tmp_path / "exported", Context(say=said.append)) == run
    assert said and "using the run" in said[0] and str(run) in said[0]
    monkeypatch.chdir(run)
    here = resolve_run(".", tmp_path / "nowhere", Context(say=said.append))
    assert here == run and here.name == "quickstart"
    with pytest.raises(TkError, match="no trained run at"):
        resolve_run("nope", tmp_path / "exported", Context(say=said.append))


def test_archive_moves_aside_with_collision_proof_names(tmp_path):
    stamp = "2026-01-02T10:00:00+00:00"
    first = archive_run(_run(tmp_path, "quickstart", stamp))
    assert first == tmp_path / "quickstart-20260102-100000" and (first / MANIFEST).is_file()
    assert not (tmp_path / "quickstart").exists()
    second = archive_run(_run(tmp_path, "quickstart", stamp))
    assert second == tmp_path / "quickstart-20260102-100000-2" and (first / MANIFEST).is_file()
    assert archive_run(tmp_path / "quickstart") is None


def test_stratified_sample_is_balanced_and_deterministic_with_or_without_a_seed():
    from toolkit.core.runs import stratified_sample

    items = (
        [(f"a{i:02d}.jpg", 0) for i in range(50)]
        + [(f"b{i:02d}.jpg", 1) for i in range(5)]
        + [(f"c{i:02d}.jpg", 2) for i in range(30)]
    )
    for seed in (None, 3):
        sample = stratified_sample(items, 20, seed)
        assert sample == stratified_sample(items, 20, seed)
        counts = {c: sum(p.startswith(c) for p, _ in sample) for c in "abc"}
        assert counts == {"a": 8, "b": 5, "c": 7}  # classes take turns; the small one gives all it has
        assert all(p[0] == "abc"[y] for p, y in sample) and [y for _, y in sample[:3]] == [0, 1, 2]
        assert sorted(stratified_sample(items, 1000, seed)) == sorted(items)
    spread = [p for p, y in stratified_sample(items, 20, None) if y == 0]
    assert spread == [f"a{i:02d}.jpg" for i in (0, 6, 12, 18, 25, 31, 37, 43)]  # evenly over the class's list
    assert stratified_sample(items, 20, 3) != stratified_sample(items, 20, 4)  # the seed draws
    assert stratified_sample([], 5) == []


def test_a_folder_whose_manifest_links_elsewhere_is_not_a_run(tmp_path):
    """Issue 20: listing runs reads each manifest; one linked to /dev/zero would be read until memory
    ran out. A link (here to a real manifest, so that a regression fails instead of exhausting the
    machine) or anything but a regular file is not a run's manifest."""
    real = _run(tmp_path / "runs", "real", "2026-01-02T10:00:00+00:00")
    elsewhere = _run(tmp_path, "elsewhere", "2026-01-03T10:00:00+00:00")
    (tmp_path / "runs" / "linked").mkdir()
    (tmp_path / "runs" / "linked" / MANIFEST).symlink_to(elsewhere / MANIFEST)
    (tmp_path / "runs" / "folder" / MANIFEST).mkdir(parents=True)
    assert list_runs(tmp_path / "runs") == [real]
