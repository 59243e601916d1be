"""The CLI's rich progress: a bar on a terminal, nothing elsewhere, lines kept above the bars."""

from __future__ import annotations

from io import StringIO

import pytest
from rich.console import Console

from toolkit.cli import progress as cli_progress
from toolkit.cli.progress import RichProgress, live_console, progress_for
from toolkit.core.progress import NO_PROGRESS, tracked


def _terminal() -> Console:
    return Console(force_terminal=True, file=StringIO(), width=120, highlight=False)  # as the CLI's


def test_a_terminal_console_renders_a_transient_bar_with_counts_and_notes():
    err = _terminal()
    bars = RichProgress(err)
    with bars.task("decoding train images", 40) as task:
        task.advance(10, note="812 img/s")
        bars.bars.refresh()
        assert live_console() is err
    out = err.file.getvalue()
    assert "decoding train images" in out and "━" in out and "10/40" in out and "812 img/s" in out
    assert out.endswith("\x1b[?25h") or "\x1b[2K" in out  # transient: the bar is erased at the end
    assert live_console() is None and bars.bars is None  # the last task ended: bars off the screen


def test_a_task_without_total_shows_no_count():
    err = _terminal()
    bars = RichProgress(err)
    with bars.task("export: SavedModel every format converts from"):
        bars.bars.refresh()
    out = err.file.getvalue()
    assert "SavedModel" in out and "/" not in out.split("SavedModel")[1].split("\n")[0].replace("0:00:00", "")


def test_cli_lines_print_through_the_bars_console_while_they_are_live(monkeypatch):
    import toolkit.cli.common as app

    out, err = _terminal(), _terminal()
    monkeypatch.setattr(app, "console", out)
    with progress_for(out, err) as bars:
        for _ in tracked(bars, "bench model.tflite (threads 1,2)", [1, 2]):
            app.say("bench run/model.tflite  threads 1")
    assert "bench run/model.tflite  threads 1" in err.file.getvalue()  # above the bars, not under them
    assert out.file.getvalue() == ""
    app.say("after")
    assert out.file.getvalue() == "after\n"


@pytest.mark.parametrize(
    "out_terminal, err_terminal, as_json", [(False, True, False), (True, False, False), (True, True, True)]
)
def test_no_bars_unless_both_streams_are_terminals_and_not_json(out_terminal, err_terminal, as_json):
    def console(terminal):
        return Console(force_terminal=terminal, file=StringIO())

    with progress_for(console(out_terminal), console(err_terminal), as_json) as bars:
        assert bars is NO_PROGRESS


def test_bars_left_open_by_an_exception_are_closed_with_the_command():
    err = _terminal()
    with pytest.raises(KeyboardInterrupt):
        with progress_for(_terminal(), err) as bars:
            context = bars.task("[scratch] epoch 1/3", 8)  # what a Keras callback holds open
            context.__enter__().advance(2)
            raise KeyboardInterrupt
    assert live_console() is None and cli_progress._live == []
    out = err.file.getvalue()
    assert "[scratch] epoch 1/3" in out and "2/8" in out  # brackets are text, not rich markup
    assert "\x1b[?25h" in out.split("2/8")[-1]  # stopped after the last draw: the cursor is shown again
