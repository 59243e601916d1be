"""A core.progress.Progress that records what domain code reports, for tests to check totals."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from typing import Optional


@dataclass
class RecordedTask:
    description: str
    total: Optional[float]
    advances: list[float] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    closed: bool = False

    @property
    def done(self) -> float:
        return sum(self.advances)

    def advance(self, n: float = 1, note: str = "") -> None:
        assert not self.closed, f"{self.description}: advanced after its block ended"
        assert n >= 0, f"{self.description}: advanced by {n}"
        self.advances.append(n)
        if note:
            self.notes.append(note)
        if self.total is not None:
            # 1e-9: byte counts advanced in MB (a download) add up with float rounding
            assert self.done <= self.total + 1e-9, f"{self.description}: {self.done} done of {self.total}"


class RecordingProgress:
    def __init__(self):
        self.tasks: list[RecordedTask] = []

    @contextlib.contextmanager
    def task(self, description: str, total: Optional[float] = None):
        task = RecordedTask(description, total)
        self.tasks.append(task)
        try:
            yield task
        finally:
            task.closed = True

    def named(self, fragment: str) -> list[RecordedTask]:
        return [t for t in self.tasks if fragment in t.description]

    def summary(self) -> list[tuple[str, Optional[float], float]]:
        return [(t.description, t.total, t.done) for t in self.tasks]
