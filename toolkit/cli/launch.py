"""The `tk` console script (and `python -m toolkit`): what must start fast, without Typer.

`tk --version` and well-formed command lines of the device commands (`tk predict`, `tk verify
BUNDLE`, `tk bench`; their tables in device.py) run here; everything else, help and usage errors
included, goes to the Typer app (app.py) unchanged. Typer imports click and
rich and coerces every parameter through pydantic: about 0.14 s before a command runs, more than
the whole budget of a one-image device prediction (benchmarks/BENCHMARKS.md, "Device CLI start").
"""

from __future__ import annotations

import sys
from typing import Callable, Optional, Sequence


def main(argv: Optional[Sequence[str]] = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    if args == ["--version"]:
        from .lines import version_line

        print(version_line())
        return 0
    if args and args[0] in ("predict", "verify", "bench"):
        from . import lines

        run = _fast(args[0], args[1:])
        if run is not None:
            return lines.guarded(run, lambda line: lines.tell(line, "red"))
    from .app import app

    return app(args=args, prog_name="tk")


def _fast(command: str, argv: list[str]) -> Optional[Callable[[], None]]:
    """The device command this command line runs without Typer, or None: Typer's to answer (help,
    usage errors, `tk verify RUN` on a workstation, which needs TensorFlow anyway)."""
    from . import device, lines

    if command == "predict":
        given = device.PREDICT.parse(argv)
        return given and (lambda: device.predict(**given, say=lines.say, tell=lines.tell))
    if command == "bench":
        given = device.BENCH.parse(argv)
        return given and (lambda: device.bench(**given, say=lines.say))
    given = device.VERIFY.parse(argv)
    bundle = given and not given["web"] and device.bundle_given(given["run"], given["runs_dir"])
    if not bundle:
        return None
    return lambda: device.verify_bundle_command(
        bundle, given["artifacts"], given["as_json"], given["data_root"], lines.say
    )
