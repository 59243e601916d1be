"""How domain code speaks, shows progress and finds the data: one small frozen object, passed down.

A command's CLI builds one Context (say: lines on the terminal; progress: rich bars on a
terminal; data_root: --data-root) and hands it to the one domain function it calls, which passes
it on. Without one, domain code is silent: SILENT says nothing, shows no progress and reads the
images where the run recorded them, so a script or a test calls `train(recipe)` and gets data
back, not output. Only cli/ prints (httpie's `env` in context.py is the model).
Standard library only: core/ and edge/ import it on the device path.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from .errors import Say
from .progress import NO_PROGRESS, Progress


def silent(_message: str) -> None:
    """The say of a context nobody listens to (scripts, tests, --json)."""


@dataclass(frozen=True)
class Context:
    say: Say = silent  # one line of news at a time ("export success: model.onnx (1.2 MB)")
    progress: Progress = NO_PROGRESS  # tasks with totals, advanced as work is done (core/progress.py)
    data_root: Optional[Path] = None  # the dataset's folder on this machine, if it moved since training

    def but(self, **changes) -> "Context":
        """This context with some fields replaced, e.g. `ctx.but(say=silent)`."""
        return dataclasses.replace(self, **changes)


SILENT = Context()
