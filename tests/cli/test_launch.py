"""The console script (cli/launch.py): `tk predict`'s fast parser and its Typer command cannot drift.

Both read cli/predict.py's OPTIONS table; these tests check that the Typer command declares
exactly the table's options, and that every command line the fast parser accepts gives the
values Typer would give. What the fast parser refuses goes to Typer, so it needs no second check.
"""

from __future__ import annotations

from pathlib import Path

import pytest
import typer

from toolkit.cli import predict
from toolkit.cli.app import app
from toolkit.cli.launch import main
from toolkit.cli.lines import version_line

pytestmark = pytest.mark.edge  # the console script is the device's entry too


def _predict_command():  # Typer's (vendored) click command
    return typer.main.get_command(app).commands["predict"]


def test_the_typer_command_declares_the_tables_options():
    params = _predict_command().params
    options = {p.name: p for p in params if p.param_type_name == "option"}
    assert sorted(options) == sorted(o.dest for o in predict.OPTIONS)
    for option in predict.OPTIONS:
        param = options[option.dest]
        assert param.opts == [option.flag] and not param.secondary_opts, option
        assert param.is_flag == (option.metavar is None), option
        assert param.default == option.default, option
        assert param.help == option.help, option
        if option.metavar is not None:
            assert param.metavar == option.metavar and not param.multiple, option
    arguments = [(p.name, p.nargs, p.required) for p in params if p.param_type_name == "argument"]
    assert arguments == [("artifact", 1, True), ("images", -1, True)]


@pytest.mark.parametrize(
    "argv",
    [
        ["m.tflite", "a.jpg"],
        ["m.tflite", "a.jpg", "b.png", "dir"],
        ["m.onnx", "a.jpg", "--top-k", "3"],
        ["--top-k=2", "m.onnx", "a.jpg"],
        ["m.onnx", "--json", "a.jpg", "--threads", "4"],
        ["m.onnx", "a.jpg", "--top-k", "1", "--top-k", "5"],  # the last one wins
        ["m.onnx", "a.jpg", "--top-k", "0"],  # a value the domain refuses, not the parser
        ["m.onnx", "a.jpg", "--threads", "-1"],
    ],
)
def test_what_the_fast_parser_accepts_typer_reads_the_same(argv):
    given = predict.parse(argv)
    assert given is not None
    ctx = _predict_command().make_context("predict", list(argv))
    assert given == ctx.params


@pytest.mark.parametrize(
    "argv",
    [
        [],
        ["m.tflite"],  # no image
        ["--help"],
        ["m.tflite", "a.jpg", "--help"],
        ["m.tflite", "a.jpg", "--topk", "2"],  # a typo: Typer's usage error names it
        ["m.tflite", "a.jpg", "--top-k"],  # no value
        ["m.tflite", "a.jpg", "--top-k", "two"],
        ["m.tflite", "a.jpg", "--top-k", "2.0"],
        ["m.tflite", "a.jpg", "--json=yes"],
        ["m.tflite", "--", "-a.jpg"],
        ["m.tflite", "-"],
    ],
)
def test_what_the_fast_parser_refuses_goes_to_typer(argv):
    assert predict.parse(argv) is None


def test_version_is_the_same_line_on_both_paths(capsys):
    assert main(["--version"]) == 0
    fast = capsys.readouterr().out
    from typer.testing import CliRunner

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
