"""core.progress: the no-op default and the loop helper domain code reports through."""

from __future__ import annotations

import pytest
from fake_progress import RecordingProgress

from toolkit.core.progress import NO_PROGRESS, tracked

pytestmark = pytest.mark.edge


def test_no_progress_accepts_every_call_and_shows_nothing(capsys):
    with NO_PROGRESS.task("anything", 3) as task:
        task.advance()
        task.advance(2, note="fast")
    with NO_PROGRESS.task("no total") as task:
        task.advance(0)
    assert list(tracked(NO_PROGRESS, "loop", [1, 2])) == [1, 2]
    assert capsys.readouterr() == ("", "")


def test_tracked_advances_after_each_item_and_ends_with_the_loop():
    progress = RecordingProgress()
    seen = []
    for item in tracked(progress, "bench a.tflite", ["x", "y", "z"]):
        seen.append((item, progress.tasks[0].done))  # the item is being worked on: not counted yet
    assert seen == [("x", 0), ("y", 1), ("z", 2)]
    assert progress.summary() == [("bench a.tflite", 3, 3)] and progress.tasks[0].closed


def test_tracked_ends_its_task_when_the_loop_raises():
    progress = RecordingProgress()
    with pytest.raises(RuntimeError):
        for _ in tracked(progress, "bench", [1, 2, 3]):
            raise RuntimeError("child failed")
    assert progress.tasks[0].closed and progress.tasks[0].done == 0
