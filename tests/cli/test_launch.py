"""The console script (cli/launch.py): the device commands' fast parser and their Typer commands
cannot drift.

Both read device.py's tables; these tests check that each Typer command declares exactly its
table's options, and that every command line the fast parser accepts gives the function the
values Typer would give it. What the fast parser refuses goes to Typer: no second check needed.
"""

from __future__ import annotations

import functools
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from toolkit.cli import device
from toolkit.cli.app import app
from toolkit.cli.launch import main
from toolkit.cli.lines import version_line

pytestmark = pytest.mark.edge  # the console script is the device's entry too


TABLES = {"predict": device.PREDICT, "verify": device.VERIFY, "bench": device.BENCH}


def _command(name: str):  # Typer's (vendored) click command
    return typer.main.get_command(app).commands[name]


@pytest.mark.parametrize("name", TABLES)
def test_the_typer_command_declares_the_tables_options(name):
    table, params = TABLES[name], _command(name).params
    options = {p.name: p for p in params if p.param_type_name == "option"}
    assert sorted(options) == sorted(o.dest for o in table.options)
    for option in table.options:
        param = options[option.dest]
        assert param.opts == [option.flag] and not param.secondary_opts, option
        assert param.is_flag == (option.metavar is None), option
        assert param.help == option.help and param.multiple == option.repeat, option
        if option.metavar is not None:
            assert param.metavar == option.metavar, option
        if not option.repeat:  # Typer's default for a list option is (); the function gets None
            assert param.default == option.default, option
    spec = table.arguments
    arguments = [(p.name, p.nargs, p.required) for p in params if p.param_type_name == "argument"]
    expected = [(spec.first, 1, spec.first_required)] if spec.first else []
    expected += [(spec.rest, -1, spec.rest_required)] if spec.rest else []
    assert arguments == expected


def _typer_values(monkeypatch, name: str, argv: list[str]) -> dict:
    """The keywords the Typer command's function is called with for `tk NAME ARGV...`."""
    info = next(c for c in app.registered_commands if (c.name or c.callback.__name__) == name)
    seen: dict = {}

    @functools.wraps(info.callback)  # the same signature: Typer reads it through __wrapped__
    def capture(**kwargs):
        seen.update(kwargs)

    monkeypatch.setattr(info, "callback", capture)
    result = CliRunner().invoke(app, [name, *argv])
    assert result.exit_code == 0, result.output
    return seen


@pytest.mark.parametrize(
    "name, argv",
    [
        ("predict", ["m.tflite", "a.jpg"]),
        ("predict", ["m.tflite", "a.jpg", "b.png", "dir"]),
        ("predict", ["m.onnx", "a.jpg", "--top-k", "3"]),
        ("predict", ["--top-k=2", "m.onnx", "a.jpg"]),
        ("predict", ["m.onnx", "--json", "a.jpg", "--threads", "4"]),
        ("predict", ["m.onnx", "a.jpg", "--top-k", "1", "--top-k", "5"]),  # the last one wins
        ("predict", ["m.onnx", "a.jpg", "--top-k", "0"]),  # a value the domain refuses, not the parser
        ("predict", ["m.onnx", "a.jpg", "--threads", "-1"]),
        ("verify", []),
        ("verify", ["bundle"]),
        ("verify", ["bundle", "--json", "--artifact", "a.onnx,b.tflite", "--artifact", "c.tflite"]),
        ("verify", ["--runs-dir", "runs", "--data-root=/data", "name"]),
        ("verify", ["bundle", "--web"]),
        ("bench", []),
        ("bench", ["m.tflite", "m.onnx", "run"]),
        ("bench", ["m.tflite", "--threads", "1,2", "--threads", "4", "--runs", "3", "--warmup", "0", "--batch", "2"]),
        ("bench", ["--format", "tflite", "--format=onnx", "--max-latency-ms", "2.5", "--min-accuracy", ".9"]),
        ("bench", ["--max-latency-ms", "5", "--min-accuracy", "1e-1", "--json", "--runs-dir", "r", "--data-root", "d"]),
        ("bench", ["bundle", "--web"]),
    ],
)
def test_what_the_fast_parser_accepts_typer_reads_the_same(monkeypatch, name, argv):
    given = TABLES[name].parse(argv)
    assert given is not None

    def typed(values: dict) -> dict:  # 3 == 3.0 and Path("a") != "a": compare the types too
        return {k: (type(v), [type(x) for x in v] if isinstance(v, list) else None, v) for k, v in values.items()}

    assert typed(given) == typed(_typer_values(monkeypatch, name, argv))


@pytest.mark.parametrize(
    "name, argv",
    [
        ("predict", []),
        ("predict", ["m.tflite"]),  # no image
        ("predict", ["--help"]),
        ("predict", ["m.tflite", "a.jpg", "--help"]),
        ("predict", ["m.tflite", "a.jpg", "--topk", "2"]),  # a typo: Typer's usage error names it
        ("predict", ["m.tflite", "a.jpg", "--top-k"]),  # no value
        ("predict", ["m.tflite", "a.jpg", "--top-k", "two"]),
        ("predict", ["m.tflite", "a.jpg", "--top-k", "2.0"]),
        ("predict", ["m.tflite", "a.jpg", "--json=yes"]),
        ("predict", ["m.tflite", "--", "-a.jpg"]),
        ("predict", ["m.tflite", "-"]),
        ("verify", ["a", "b"]),  # one run at most
        ("verify", ["--artifact"]),
        ("bench", ["--min-accuracy", "nan"]),
        ("bench", ["--runs", "3.5"]),
        ("bench", ["-h"]),
    ],
)
def test_what_the_fast_parser_refuses_goes_to_typer(name, argv):
    assert TABLES[name].parse(argv) is None


def test_version_is_the_same_line_on_both_paths(capsys):
    assert main(["--version"]) == 0
    fast = capsys.readouterr().out
    result = CliRunner().invoke(app, ["--version"])
    assert result.exit_code == 0 and fast == result.output == version_line() + "\n"


def test_bad_input_on_the_fast_path_is_one_error_line(tmp_path, capsys):
    code = main(["predict", str(tmp_path / "model.tflite"), str(tmp_path / "missing.jpg")])
    captured = capsys.readouterr()
    assert code == 1 and captured.out == ""
    lines = captured.err.splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "missing.jpg" in lines[0], captured.err


def test_a_usage_error_still_comes_from_typer(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["predict", "m.tflite", "a.jpg", "--top-k", "two"])
    assert exit_.value.code == 2 and "--top-k" in capsys.readouterr().err


def test_the_console_script_is_the_launcher():
    text = (Path(__file__).resolve().parents[2] / "pyproject.toml").read_text()
    assert 'tk = "toolkit.cli.launch:main"' in text
