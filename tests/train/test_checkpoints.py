"""--resume refuses a recipe edited in ways that change what the saved state means."""

from __future__ import annotations

import pytest
from conftest import small_recipe

from toolkit.core.errors import TkError
from toolkit.train.checkpoints import check_resumable, prepare_partial


def test_resume_names_the_changed_keys_and_allows_epochs(tmp_path):
    work = tmp_path / "r.partial"
    said: list[str] = []
    prepare_partial(work, small_recipe("r", tmp_path, train={"epochs": 3}), resume=False, say=said.append)
    longer = small_recipe("r", tmp_path, train={"epochs": 9, "early_stopping": 2}, export={"formats": ["onnx"]})
    check_resumable(work, longer, said.append)  # how long to train and what follows: allowed
    edited = small_recipe("r", tmp_path, train={"learning_rate": 0.01}, model={"image_size": 48})
    with pytest.raises(TkError) as info:
        check_resumable(work, edited, said.append)
    line = str(info.value)
    assert "model.image_size (32 -> 48)" in line and "train.learning_rate (0.001 -> 0.01)" in line
    assert "train.epochs" in line and "without --resume" in line and "\n" not in line


def test_resume_cleans_tmp_files_and_a_fresh_run_discards_the_partial(tmp_path):
    work = tmp_path / "r.partial"
    recipe = small_recipe("r", tmp_path)
    prepare_partial(work, recipe, resume=False, say=lambda _: None)
    stale = work / "phases" / "scratch" / "backup" / ".latest.weights.h5.a1.tmp.weights.h5"
    stale.parent.mkdir(parents=True)
    stale.write_bytes(b"half")
    said: list[str] = []
    prepare_partial(work, recipe, resume=True, say=said.append)
    assert not stale.exists() and any("interrupted write" in s for s in said)
    assert stale.parent.is_dir()
    prepare_partial(work, recipe, resume=False, say=lambda _: None)
    assert not (work / "phases").exists() and (work / "recipe.yaml").is_file()


def test_a_partial_run_of_an_older_tk_resumes_with_a_note(tmp_path):
    work = tmp_path / "r.partial"
    work.mkdir()
    said: list[str] = []
    check_resumable(work, small_recipe("r", tmp_path), said.append)
    assert "cannot check" in said[0]
