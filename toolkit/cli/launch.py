"""The `tk` console script (and `python -m toolkit`): what must start fast, without Typer.

`tk --version` and a well-formed `tk predict MODEL IMAGE...` are answered here; everything else,
help and usage errors included, goes to the Typer app (app.py) unchanged. Typer imports click and
rich and coerces every parameter through pydantic: about 0.14 s before a command runs, more than
the whole budget of a one-image device prediction (benchmarks/BENCHMARKS.md, "Device CLI start").
"""

from __future__ import annotations

import sys
from typing import Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--version"]:
        from .lines import version_line

        print(version_line())
        return 0
    if args[:1] == ["predict"]:
        from . import predict

        given = predict.parse(args[1:])
        if given is not None:
            from . import lines

            return lines.guarded(
                lambda: predict.run(**given, say=lines.say, tell=lines.tell), lambda line: lines.tell(line, "red")
            )
    from .app import app

    return app(args=args, prog_name="tk")
