"""Progress bars on the terminal: the rich side of core.progress (domain code only counts).

Bars go to stderr and are transient (gone when the work ends, leaving the one-line summaries the
domain code says), and appear only when both stdout and stderr are terminals and the command is
not printing JSON: a pipe, a log file, CliRunner or --json get no progress characters at all.
While bars are live, the CLI's lines are printed through the bars' console (`live_console`), so
rich keeps them above the bars instead of the bars overwriting them.
"""

from __future__ import annotations

import contextlib
from typing import Iterator, Optional

from rich.console import Console
from rich.progress import BarColumn, ProgressColumn, SpinnerColumn, TextColumn, TimeElapsedColumn
from rich.progress import Progress as Bars
from rich.progress import Task as BarTask
from rich.text import Text

from ..core.progress import NO_PROGRESS, Progress

_live: list["RichProgress"] = []  # the RichProgress whose bars are on screen now, if any


class _CountAndEta(ProgressColumn):
    """'12/40  eta 0:07' for a counted task; nothing for one with no total (the spinner says it)."""

    def render(self, task: BarTask) -> Text:
        if task.total is None:
            return Text("")
        remaining = task.time_remaining
        eta = "" if remaining is None else f"  eta {int(remaining) // 60}:{int(remaining) % 60:02d}"
        return Text(f"{int(task.completed)}/{int(task.total)}{eta}", style="progress.download")


class _Task:
    def __init__(self, bars: Bars, task_id):
        self.bars, self.task_id = bars, task_id

    def advance(self, n: float = 1, note: str = "") -> None:
        self.bars.update(self.task_id, advance=n, **({"note": note} if note else {}))


class RichProgress:
    """core.progress.Progress drawn with rich.progress on `console` (stderr)."""

    def __init__(self, console: Console):
        self.console = console
        self.bars: Optional[Bars] = None

    @contextlib.contextmanager
    def task(self, description: str, total: Optional[float] = None) -> Iterator[_Task]:
        if self.bars is None:
            # markup=False: "[scratch] epoch 1/3" is text, not a rich style tag.
            self.bars = Bars(
                SpinnerColumn(),
                TextColumn("{task.description}", markup=False),
                BarColumn(bar_width=30),
                _CountAndEta(),
                TimeElapsedColumn(),
                TextColumn("{task.fields[note]}", markup=False),
                console=self.console,
                transient=True,
            )
            self.bars.start()
            _live.append(self)
        bars = self.bars
        task_id = bars.add_task(description, total=total, note="")
        try:
            yield _Task(bars, task_id)
        finally:
            if bars is self.bars:
                bars.remove_task(task_id)
                if not bars.tasks:  # nothing left to show: take the bars off the screen
                    self.close()

    def close(self) -> None:
        if self.bars is not None:
            self.bars.stop()
            self.bars = None
            if self in _live:
                _live.remove(self)


def live_console() -> Optional[Console]:
    """The console the bars are drawn on while any are live (print through it), else None."""
    return _live[-1].console if _live else None


def wants_progress(out: Console, err: Console, as_json: bool = False) -> bool:
    # is_interactive: a terminal that is not TERM=dumb; TTY_INTERACTIVE=0 turns bars off by hand.
    return not as_json and all(c.is_terminal and c.is_interactive for c in (out, err))


@contextlib.contextmanager
def progress_for(out: Console, err: Console, as_json: bool = False) -> Iterator[Progress]:
    """Bars on `err` for one command (closed however it ends), or the no-op when they'd be noise."""
    if not wants_progress(out, err, as_json):
        yield NO_PROGRESS
        return
    bars = RichProgress(err)
    try:
        yield bars
    finally:
        bars.close()  # a task left open by an exception (a Keras callback's epoch) ends here
