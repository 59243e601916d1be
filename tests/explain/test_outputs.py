"""Where `tk explain` writes: RUN/explain/ itself, never through a link, with sanitised file names."""

from __future__ import annotations

import pytest

from toolkit.core.errors import TkError
from toolkit.explain.explainer import Explainer, slug


def _explainer(run_dir) -> Explainer:
    return Explainer(run_dir, None, None, None, None, ["a", "b"], (32, 32), "mini_vgg")


def test_explain_writes_into_its_own_folder_never_through_a_link(tmp_path):
    run, outside = tmp_path / "run", tmp_path / "outside"
    run.mkdir()
    outside.mkdir()
    assert _explainer(run).out_dir == run / "explain" and (run / "explain").is_dir()
    (run / "explain").rmdir()
    (run / "explain").symlink_to(outside)
    with pytest.raises(TkError, match="explain: a symbolic link; tk writes only inside"):
        _explainer(run).out_dir  # noqa: B018
    (run / "explain").unlink()
    (run / "explain").write_text("a file")
    with pytest.raises(TkError, match="a file where tk writes a folder"):
        _explainer(run).out_dir  # noqa: B018
    assert list(outside.iterdir()) == []


def test_names_in_explain_file_names_are_sanitised_and_capped():
    assert slug("../../x") == "_.._x" and slug("猫 cat") == "猫 cat"
    assert len(slug("c" * 1000).encode()) <= 80 and "/" not in slug("a/b")
