"""How long work reports how far it got, without printing: a task with a total and advances.

Domain functions take `progress: Progress = NO_PROGRESS` and wrap their loops in
`with progress.task("decoding train images", len(paths)) as task: ... task.advance(n)`.
The CLI passes a rich implementation (cli/progress.py) when it talks to a terminal; everyone
else (tests, scripts, --json, pipes) gets the no-op, so domain code never decides whether or
how progress is shown. Stdlib only: core/ and edge/ import this on the device path.
"""

from __future__ import annotations

import contextlib
from typing import ContextManager, Iterator, Optional, Protocol, Sequence, TypeVar

T = TypeVar("T")


class Task(Protocol):
    def advance(self, n: float = 1, note: str = "") -> None:
        """`n` more units done; `note` (e.g. "412 img/s  loss 0.31") replaces the last one shown."""


class Progress(Protocol):
    def task(self, description: str, total: Optional[float] = None) -> ContextManager[Task]:
        """A unit of work with `total` steps (None: unknown), shown until the block ends."""


class _NoTask:
    def advance(self, n: float = 1, note: str = "") -> None:
        pass


class _NoProgress:
    def task(self, description: str, total: Optional[float] = None) -> ContextManager[Task]:
        return contextlib.nullcontext(_NoTask())


NO_PROGRESS: Progress = _NoProgress()


def tracked(progress: Progress, description: str, items: Sequence[T]) -> Iterator[T]:
    """`items`, one task over them, advanced as each is done: progress for a loop, changed in its
    `for` line only."""
    with progress.task(description, len(items)) as task:
        for item in items:
            yield item
            task.advance(1)
