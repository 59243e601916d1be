"""--resume refuses a recipe edited in ways that change what the saved state means."""

from __future__ import annotations

import pytest
from helpers import interrupt_at_epoch, small_recipe

from toolkit.core.context import Context
from toolkit.core.errors import TkError
from toolkit.train.checkpoints import check_resumable, prepare_partial


def test_resume_names_the_changed_keys_and_allows_epochs(tmp_path):
    work = tmp_path / "r.partial"
    said: list[str] = []
    prepare_partial(work, small_recipe("r", tmp_path, train={"epochs": 3}), resume=False, ctx=Context(say=said.append))
    longer = small_recipe("r", tmp_path, train={"epochs": 9, "early_stopping": 2}, export={"formats": ["onnx"]})
    check_resumable(work, longer, Context(say=said.append))  # how long to train and what follows: allowed
    edited = small_recipe("r", tmp_path, train={"learning_rate": 0.01}, model={"image_size": 48})
    with pytest.raises(TkError) as info:
        check_resumable(work, edited, Context(say=said.append))
    line = str(info.value)
    assert "model.image_size (32 -> 48)" in line and "train.learning_rate (0.001 -> 0.01)" in line
    assert "train.epochs" in line and "without --resume" in line and "\n" not in line


def test_resume_cleans_tmp_files_and_a_fresh_run_discards_the_partial(tmp_path):
    work = tmp_path / "r.partial"
    recipe = small_recipe("r", tmp_path)
    prepare_partial(work, recipe, resume=False)
    stale = work / "phases" / "scratch" / "backup" / ".tk-tmp-a1.tmp.weights.h5"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half")
    said: list[str] = []
    prepare_partial(work, recipe, resume=True, ctx=Context(say=said.append))
    assert not stale.exists() and any("interrupted write" in s for s in said)
    assert stale.parent.is_dir()
    prepare_partial(work, recipe, resume=False)
    assert not (work / "phases").exists() and (work / "recipe.yaml").is_file()


def test_a_partial_run_of_an_older_tk_resumes_with_a_note(tmp_path):
    work = tmp_path / "r.partial"
    work.mkdir()
    said: list[str] = []
    check_resumable(work, small_recipe("r", tmp_path), Context(say=said.append))
    assert "cannot check" in said[0]


def test_a_truncated_resume_backup_falls_back_to_the_best_checkpoint(synth_root, feature_cache, tmp_path, monkeypatch):
    import json

    from toolkit.train.phases import train

    recipe = small_recipe("truncated", synth_root, train={"epochs": 3})
    resume_training = interrupt_at_epoch(monkeypatch, 2)
    with pytest.raises(TkError, match="--resume"):
        train(recipe, runs_dir=tmp_path)
    phase = tmp_path / "truncated.partial" / "phases" / "scratch"
    latest = phase / "backup" / "latest.weights.h5"
    latest.write_bytes(latest.read_bytes()[: latest.stat().st_size // 2])  # as an older tk left it on a full disk
    best_epoch = json.loads((phase / "best.json").read_text())["epoch"]

    resume_training()
    said: list[str] = []
    result = train(recipe, runs_dir=tmp_path, resume=True, ctx=Context(say=said.append))
    note = next(s for s in said if "does not load" in s)
    assert str(latest) in note and f"best checkpoint (epoch {best_epoch}" in note
    epochs = [s for s in said if s.startswith("[scratch] epoch")]
    assert epochs[0].startswith(f"[scratch] epoch {best_epoch + 1}/3")
    assert len(json.loads((result.run_dir / "phases" / "scratch" / "history.json").read_text())["loss"]) == 3


def test_resume_through_the_cli_refuses_an_edited_recipe_in_one_line(synth_root, tmp_path):
    import yaml
    from typer.testing import CliRunner

    from toolkit.cli.app import app

    recipe = small_recipe("edited", synth_root, train={"epochs": 3})
    prepare_partial(tmp_path / "runs" / "edited.partial", recipe, resume=False)
    edited = small_recipe("edited", synth_root, train={"epochs": 3, "batch_size": 8})
    path = tmp_path / "edited.yaml"
    path.write_text(yaml.safe_dump(edited.to_dict()))
    result = CliRunner().invoke(app, ["train", str(path), "--runs-dir", str(tmp_path / "runs"), "--resume"])
    assert result.exit_code == 1 and "Traceback" not in result.output
    last = result.output.strip().splitlines()[-1]
    assert last.startswith("error: --resume") and "train.batch_size (16 -> 8)" in last
    assert not (tmp_path / "runs" / ".edited.lock").exists()  # released on the way out


@pytest.mark.parametrize(
    "change, words",
    [
        ("add", "1 image(s) added (first: circle/extra.jpg)"),
        ("remove", "1 image(s) removed (first: circle/circle_0000.jpg)"),
        ("modify", "1 image(s) modified since (first: square/square_0001.jpg)"),
        ("class", "classes ['circle', 'square'] -> ['circle', 'squares']"),
    ],
)
def test_resume_refuses_a_changed_dataset_naming_what_changed(tmp_path, change, words):
    """Issue 20: --resume did not notice that the dataset changed under the saved weights."""
    import os
    import shutil
    import time

    from toolkit.core.recipe import DataSection
    from toolkit.core.runs import save_split
    from toolkit.data.splits import discover
    from toolkit.data.synth import make_synthetic_dataset
    from toolkit.train.checkpoints import check_same_data

    root = make_synthetic_dataset(tmp_path / "data", classes=2, per_class=8, size=16, seed=0)
    work = tmp_path / "r.partial"
    save_split(discover(DataSection(root=str(root)), seed=1), work / "split.json")
    os.utime(work / "split.json", (time.time() - 60, time.time() - 60))  # the run started a minute ago
    for image in root.rglob("*.jpg"):
        os.utime(image, (time.time() - 120, time.time() - 120))
    check_same_data(work, discover(DataSection(root=str(root)), seed=1))  # unchanged: resumes
    if change == "add":
        shutil.copy(root / "circle" / "circle_0001.jpg", root / "circle" / "extra.jpg")
        os.utime(root / "circle" / "extra.jpg", (time.time() - 120, time.time() - 120))
    elif change == "remove":
        (root / "circle" / "circle_0000.jpg").unlink()
    elif change == "modify":
        (root / "square" / "square_0001.jpg").write_bytes((root / "square" / "square_0002.jpg").read_bytes())
    else:
        (root / "square").rename(root / "squares")
    with pytest.raises(TkError) as info:
        check_same_data(work, discover(DataSection(root=str(root)), seed=1))
    line = str(info.value)
    assert line.startswith("--resume: the data changed since") and words in line and "\n" not in line
    assert "without --resume" in line
