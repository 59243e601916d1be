"""Progress of export, verify and bench: right totals and advances reported to core.progress, and
on the command line bars only on a terminal, never under --json or in a pipe (CliRunner)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fake_progress import RecordingProgress
from typer.testing import CliRunner

from toolkit.cli.app import app
from toolkit.core.context import Context
from toolkit.core.runs import load_split
from toolkit.edge.bench import BenchSettings, bench_run
from toolkit.export.exporter import export_run
from toolkit.export.verify import verify_run

runner = CliRunner()
TINY = BenchSettings(threads=(1, 2), runs=2, warmup=0, batch=2)
# What a rich bar leaves in text: cursor hiding, carriage returns, bar and spinner glyphs.
BAR_MARKS = ("\x1b[?25l", "\r", "━", "⠋")


@pytest.fixture(scope="module")
def exported(trained_run, tmp_path_factory):
    """A copy of trained_run with two TFLite artifacts, and what their export reported."""
    run = Path(shutil.copytree(trained_run, tmp_path_factory.mktemp("progress") / trained_run.name))
    progress = RecordingProgress()
    export_run(run, formats=["tflite"], quantizations=["none", "float16"], ctx=Context(progress=progress))
    return run, progress


def test_export_is_one_task_per_artifact(exported):
    _, progress = exported
    assert progress.summary() == [
        ("export: SavedModel every format converts from", None, 0),
        ("export 1/2: model_float32.tflite (tflite, float32)", 1, 1),
        ("export 2/2: model_float16.tflite (tflite, float16)", 1, 1),
    ]
    assert all(t.closed for t in progress.tasks)


def test_verify_counts_images_per_artifact(exported):
    run, _ = exported
    progress = RecordingProgress()
    verify_run(run, ctx=Context(progress=progress))
    count = len(load_split(run / "split.json").splits["test"])
    assert [t[1:] for t in progress.summary()] == [(None, 0), (count, count), (count, count), (count, count)]
    assert [t.description for t in progress.tasks[1:]] == [
        "verify: reference model.keras",
        "verify: model_float32.tflite",
        "verify: model_float16.tflite",
    ]
    assert all(t.closed for t in progress.tasks)


def test_bench_is_a_task_per_artifact_advanced_per_thread_setting(exported):
    run, _ = exported
    progress = RecordingProgress()
    report = bench_run(run, TINY, only=["model_float32.tflite", "model_float16.tflite"], ctx=Context(progress=progress))
    assert len(report["rows"]) == 4
    tests = report["rows"][0]["test_count"]
    assert tests and sorted(progress.summary()) == [
        ("bench model_float16.tflite (threads 1,2)", 2, 2),
        ("bench model_float32.tflite (threads 1,2)", 2, 2),
        (f"bench: decoding {tests} test images", tests, tests),  # once, for both artifacts
    ]


@pytest.mark.parametrize(
    "command",
    [
        ["verify", "{run}", "--artifact", "model_float16.tflite"],
        ["bench", "{run}/model_float16.tflite", "--threads", "1", "--runs", "2"],
    ],
)
def test_cli_shows_no_progress_when_not_a_terminal(exported, command):
    run, _ = exported
    result = runner.invoke(app, [arg.format(run=run) for arg in command])
    assert result.exit_code == 0, result.output
    assert not any(mark in result.output for mark in BAR_MARKS), repr(result.output)


def test_cli_bars_on_a_terminal_go_to_stderr_and_never_under_json(exported, monkeypatch):
    from rich.console import Console

    import toolkit.cli.common as cli

    run, _ = exported
    # What the CLI's consoles are on a terminal (CliRunner's streams are not one).
    monkeypatch.setattr(cli, "console", Console(force_terminal=True, highlight=False))
    monkeypatch.setattr(cli, "err_console", Console(stderr=True, force_terminal=True, highlight=False))
    args = ["bench", str(run / "model_float16.tflite"), "--threads", "1", "--runs", "2", "--warmup", "0"]
    shown = runner.invoke(app, args)
    assert shown.exit_code == 0, shown.output
    assert "bench model_float16.tflite (threads 1)" in shown.stderr and "━" in shown.stderr
    assert "━" not in shown.stdout and "model_float16.tflite" in shown.stdout  # the table
    quiet = runner.invoke(app, [*args, "--json"])
    assert quiet.exit_code == 0, quiet.output
    assert not any(mark in quiet.output for mark in BAR_MARKS), repr(quiet.output)
    assert json.loads(quiet.stdout)["rows"]
