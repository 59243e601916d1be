"""`tk predict` once, for its two front ends: the Typer command in app.py (help, `python -m
toolkit`'s tests through CliRunner) and the console script's fast path (cli/launch.py).

The fast path exists because Typer 0.29 coerces every parameter through pydantic, and importing
Typer, click, rich and pydantic costs more than the whole 1.3x budget of a one-image prediction
against a hand-written runtime script (benchmarks/BENCHMARKS.md, "Device CLI start"). So the
options are one table here: app.py's Typer signature reads its flags, metavars, helps and defaults
from it, `parse` reads the same table, and tests/cli/test_launch.py checks that the Typer command
and the table agree. `parse` takes only a command line it understands fully; anything else
(--help, a typo, a bad value) goes to Typer, whose usage errors stay the only ones.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

from ..core.errors import TkError
from .lines import JSON_HELP


@dataclass(frozen=True)
class Option:
    flag: str
    dest: str  # the keyword of `run` (and of the Typer command)
    help: str
    metavar: Optional[str] = None  # None: a flag, True when given
    default: Any = None


OPTIONS = (
    Option("--top-k", "top_k", "Labels to show per image.", metavar="K", default=1),
    Option("--json", "as_json", JSON_HELP, default=False),
    Option(
        "--threads",
        "threads",
        "Runtime threads (default: the runtime's own choice, all cores).",
        metavar="N",
    ),
)
BY_DEST = {o.dest: o for o in OPTIONS}
_INT = re.compile(r"-?[0-9]+")  # what both parsers read the same way (Typer's int takes more)


def parse(argv: Sequence[str]) -> Optional[dict[str, Any]]:
    """`run`'s keywords for the arguments after `predict`, or None when Typer should answer.

    Every value option here is an int; like click, an option's value is the next argument, or
    follows `=`; the last of a repeated option wins."""
    by_flag = {o.flag: o for o in OPTIONS}
    given: dict[str, Any] = {o.dest: o.default for o in OPTIONS}
    positional: list[str] = []
    args = iter(argv)
    for arg in args:
        if not arg.startswith("-") or arg == "-":
            positional.append(arg)
            continue
        flag, eq, value = arg.partition("=")
        option = by_flag.get(flag)
        if option is None:  # --help, --, a typo: Typer's help and usage errors
            return None
        if option.metavar is None:
            if eq:
                return None
            given[option.dest] = True
            continue
        if not eq:
            value = next(args, None)
        if value is None or not _INT.fullmatch(value):
            return None
        given[option.dest] = int(value)
    if len(positional) < 2 or "-" in positional:  # "-" (stdin) is Typer's to refuse
        return None
    return {"artifact": Path(positional[0]), "images": [Path(p) for p in positional[1:]], **given}


def run(
    artifact: Path,
    images: list[Path],
    top_k: int,
    as_json: bool,
    threads: Optional[int],
    say: Callable[[str], None],
    tell: Callable[[str], None],
) -> None:
    """Predict and print: predictions (or the JSON) through `say` on stdout, notes, warnings and
    skipped files through `tell` on stderr. Raises TkError when some inputs were not images."""
    from ..core.io import json_text
    from ..edge.predict import bad_files_line, format_prediction
    from ..edge.predict import predict as run_predict
    from ..edge.verdicts import packed_warning

    echo = None if as_json else (lambda p: say(format_prediction(p)))
    bad: list[tuple[str, str]] = []

    def skipped(file: str, why: str) -> None:  # reported as met, on stderr; the rest go on
        bad.append((file, why))
        if len(bad) > 1:  # the first one is named in the closing error line
            tell(f"skipped: {file}: {why}")

    warning = packed_warning(artifact)
    if warning:
        tell(f"warning: {warning}")
    results = run_predict(
        artifact,
        images,
        k=top_k,
        threads=threads,
        on_prediction=echo,
        on_bad=skipped,
        on_note=lambda text: tell(f"note: {text}"),  # stderr: stdout holds the predictions only
    )
    if as_json:
        say(json_text([p.to_json() for p in results]))
    if bad:  # exit 1: a script must not take a partial answer for a whole one
        raise TkError(bad_files_line(bad, len(results)))
