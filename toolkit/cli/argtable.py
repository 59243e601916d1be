"""The device commands' command lines as tables, and the one parser that reads them without Typer.

Typer 0.29 coerces every parameter through pydantic, and importing Typer, click, rich and pydantic
costs more than the whole 1.3x budget of a one-image `tk predict` against a hand-written runtime
script (benchmarks/BENCHMARKS.md, "Device CLI start"). So `tk predict`, `tk verify` and `tk bench`
declare their options once, here, as data: app.py's Typer signatures read each option's flag,
metavar, help and default from the table, the console script's fast path (cli/launch.py) parses
with `Table.parse`, and tests/cli/test_launch.py checks that both read the same command lines the
same way. `parse` takes only what it understands fully: anything else (--help, a typo, a value it
cannot read) returns None and goes to Typer, whose usage errors stay the only ones.

Also here, as they read list options without Typer: `comma_list`, `check_choices`, `thread_counts`.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence

from ..core.caps import check_threads
from ..core.errors import TkError, suggest

_INT = re.compile(r"-?[0-9]+")  # what both parsers read the same way (Typer's int takes more)
_FLOAT = re.compile(r"-?([0-9]+\.?[0-9]*|\.[0-9]+)([eE]-?[0-9]+)?")
_READ = {"int": (_INT, int), "float": (_FLOAT, float), "text": (None, str), "path": (None, Path)}


@dataclass(frozen=True)
class Option:
    flag: str
    dest: str  # the keyword of the command's function
    help: str
    metavar: Optional[str] = None  # None: a flag, True when given
    default: Any = None
    kind: str = "int"  # int, float, text, path; a flag's is ignored
    repeat: bool = False  # a list option: each occurrence adds a value (comma_list splits them)


def list_option(flag: str, dest: str, help: str, metavar: str) -> Option:
    """A comma list that may also repeat: `--format tflite,onnx` or `--format tflite --format onnx`."""
    return Option(flag, dest, help, metavar=metavar, kind="text", repeat=True)


def web_option(help: str) -> Option:
    """--web: the target is a tk pack --web bundle, run in headless Chromium."""
    return Option("--web", "web", help, default=False)


@dataclass(frozen=True)
class Arguments:
    """The positional arguments: `first` takes one (None: none), `rest` the others as a list."""

    first: Optional[str] = None
    first_required: bool = False
    first_kind: str = "text"
    rest: Optional[str] = None
    rest_required: bool = False  # at least one
    rest_kind: str = "text"


@dataclass(frozen=True)
class Table:
    arguments: Arguments
    options: tuple[Option, ...]

    def __getitem__(self, dest: str) -> Option:
        return next(o for o in self.options if o.dest == dest)

    def parse(self, argv: Sequence[str]) -> Optional[dict[str, Any]]:
        """The command function's keywords, or None when Typer should answer. Like click: an
        option's value is the next argument or follows `=`; the last of a repeated option wins,
        a list option gathers them; a list option not given is None, as the Typer command gets it."""
        by_flag = {o.flag: o for o in self.options}
        given: dict[str, Any] = {o.dest: (None if o.repeat else o.default) for o in self.options}
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
            read = _read(value, option.kind)
            if read is None:
                return None
            given[option.dest] = [*(given[option.dest] or []), read] if option.repeat else read
        return self._place(positional, given)

    def _place(self, positional: list[str], given: dict[str, Any]) -> Optional[dict[str, Any]]:
        spec = self.arguments
        if "-" in positional:  # stdin is Typer's to refuse
            return None
        if spec.first is not None:
            if not positional:
                if spec.first_required:
                    return None
                given[spec.first] = None
            else:
                given[spec.first] = _read(positional.pop(0), spec.first_kind)
        if spec.rest is None:
            return given if not positional else None
        if spec.rest_required and not positional:
            return None
        given[spec.rest] = [_read(p, spec.rest_kind) for p in positional] or None
        return given


# Options several commands take, declared once (common.py gives them to the Typer commands).
# One --json for every command: strict JSON on stdout and nothing else; the exit code is what it
# would be without it (a failed check still exits 1, after printing the JSON that says why).
JSON = Option(
    "--json", "as_json", "Print the result as JSON and nothing else on stdout; exit codes unchanged.", default=False
)
DEFAULT_RUNS = Path(os.environ.get("TK_RUNS_DIR", "exported"))
RUNS_DIR = Option("--runs-dir", "runs_dir", "Where run folders live.", metavar="DIR", default=DEFAULT_RUNS, kind="path")
DATA_ROOT = Option(
    "--data-root",
    "data_root",
    "The dataset folder on this machine, if it moved since training (default: the root split.json records).",
    metavar="DIR",
    kind="path",
)


def _read(value: Optional[str], kind: str) -> Any:
    if value is None:
        return None
    pattern, convert = _READ[kind]
    if pattern is not None and not pattern.fullmatch(value):
        return None
    return convert(value)


def comma_list(values: Optional[Iterable[str]]) -> Optional[list[str]]:
    """['tflite,onnx', 'int8'] -> ['tflite', 'onnx', 'int8']; None (not given) stays None."""
    if values is None:
        return None
    items = [part.strip() for value in values for part in str(value).split(",")]
    return [item for item in items if item] or None


def check_choices(option: str, values: Optional[list[str]], allowed: Iterable[str], every: str = "all"):
    """values, each one of allowed (or `every`), else one line naming the bad one; for usage errors
    that must come before a run is looked up (`tk export --quantize int4`)."""
    allowed = list(allowed)
    for value in values or []:
        if value != every and value not in allowed:
            options = ", ".join(allowed) + (f", {every}" if every else "")
            raise TkError(f"{option}: unknown value {value!r}{suggest(value, allowed)}; allowed: {options}")
    return values


def thread_counts(values: Optional[Iterable[str]], option: str = "--threads") -> Optional[tuple[int, ...]]:
    """--threads 1,2 (or repeated) as positive integers; None when not given."""
    items = comma_list(values)
    if items is None:
        return None
    try:
        counts = tuple(int(item) for item in items)
    except ValueError:
        raise TkError(f"{option}: expected comma-separated integers like 1,2,4 (got {','.join(items)!r})") from None
    check_threads(counts, option)  # before the run is looked up
    return counts
