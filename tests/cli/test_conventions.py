"""CLI conventions: --version, completion, flags without a <bool>, documented exit codes,
--set overrides, `tk train DIR`, --json that is the only thing on stdout."""

from __future__ import annotations

import json
from importlib.metadata import PackageNotFoundError, version

import pytest
import yaml
from helpers import assert_one_line_error
from typer.testing import CliRunner

from toolkit import __version__
from toolkit.cli.app import app
from toolkit.core.context import Context
from toolkit.core.errors import TkError
from toolkit.core.recipe import load_recipe
from toolkit.data.folder_recipe import write_folder_recipe
from toolkit.data.synth import make_synthetic_dataset

runner = CliRunner()


def command_paths(group=None, prefix: tuple[str, ...] = ()) -> list[list[str]]:
    """Every command of the app, groups included ([] is tk itself): read from the app, never listed."""
    import typer

    group = group if group is not None else typer.main.get_command(app)
    paths = [list(prefix)]
    for name, command in sorted(group.commands.items()):
        if hasattr(command, "commands"):  # a group (typer 0.29 vendors its click)
            paths += command_paths(command, (*prefix, name))
        else:
            paths.append([*prefix, name])
    return paths


COMMANDS = command_paths()


def test_the_command_list_comes_from_the_app():
    assert ["pack"] in COMMANDS and ["data", "fetch"] in COMMANDS and ["explain", "gradcam"] in COMMANDS
    assert len(COMMANDS) >= 16


def test_json_is_one_option_with_one_meaning_everywhere():
    import typer

    helps = {}
    for path in COMMANDS:
        command = typer.main.get_command(app)
        for word in path:
            command = command.commands[word]
        for param in getattr(command, "params", []):
            if "--json" in getattr(param, "opts", []):
                helps[" ".join(path)] = param.help
    assert {"train", "export", "verify", "bench", "predict", "pack", "data inspect"} <= set(helps)
    assert len(set(helps.values())) == 1, helps


def tk(*args):
    return runner.invoke(app, [str(a) for a in args])


def test_version_is_the_installed_package_version():
    result = tk("--version")
    try:
        expected = version("tk-edge")
    except PackageNotFoundError:
        expected = __version__
    assert result.exit_code == 0 and result.output.strip() == f"tk {expected}"


def test_completion_and_exit_codes_are_in_the_top_level_help():
    result = runner.invoke(app, ["--help"], env={"COLUMNS": "200"})
    assert "--install-completion" in result.output and "--show-completion" in result.output
    text = " ".join(result.output.split())
    assert "Exit codes: 0 ok; 1 a failed check" in text and "2 the command line itself could not be parsed" in text


@pytest.mark.parametrize("command", COMMANDS, ids=lambda c: " ".join(c) or "tk")
def test_flags_take_no_value_in_help(command):
    result = runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0
    assert "<bool>" not in result.output and "--help" in result.output


@pytest.mark.parametrize("command", [["train"], ["layers"], ["data", "inspect"], ["data", "fetch"]])
def test_set_is_offered_wherever_a_recipe_is_loaded(command):
    assert "--set" in runner.invoke(app, [*command, "--help"], env={"COLUMNS": "200"}).output


def test_usage_errors_exit_2_and_tk_errors_exit_1(tmp_path):
    assert tk("predict", "--no-such-option").exit_code == 2
    assert_one_line_error(
        tk("bench", tmp_path / "m.onnx", "--threads", "1,x"), "--threads: expected comma-separated integers"
    )


@pytest.fixture
def recipe_file(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: r\ndata: {root: somewhere}\ntrain: {epochs: 5}\n")
    return path


def test_set_overrides_with_yaml_values(recipe_file, tmp_path):
    recipe = load_recipe(
        recipe_file,
        [
            "train.epochs=3",
            "train.lr_schedule=cosine",
            "bench.threads=[1, 4]",
            "data.split.test=0.1",
            "data.split.validation=0.2",
            "data.strict=true",
            f"data.root={tmp_path}",
        ],
    )
    assert recipe.train.epochs == 3 and recipe.train.lr_schedule.name == "cosine"
    assert recipe.bench.threads == (1, 4) and recipe.data.split.test == 0.1 and recipe.data.strict is True
    assert recipe.data.root == str(tmp_path)


@pytest.mark.parametrize(
    "item, fragments",
    [
        ("train.epoch=3", ["r.yaml: train.epoch: unknown key (did you mean 'epochs'?)"]),
        ("train.epochs=-1", ["train.epochs: must be > 0 (got -1)"]),
        ("train.epochs=three", ["train.epochs: must be a whole number (got 'three')"]),
        ("train", ["--set: expected key=value"]),
        ("train.epochs.x=1", ["--set train.epochs.x=1: train.epochs is a value (5), not a section"]),
    ],
)
def test_set_errors_are_the_schema_errors_in_one_line(recipe_file, item, fragments):
    assert_one_line_error(tk("data", "inspect", recipe_file, "--set", item), *fragments)


def test_set_takes_effect_in_data_inspect(recipe_file, tmp_path):
    root = make_synthetic_dataset(tmp_path / "d", classes=2, per_class=5, size=16, seed=0)
    result = tk("data", "inspect", recipe_file, "--set", f"data.root={root}", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.output)["images"] == 10


def test_a_folder_gets_a_default_recipe_written_once(tmp_path, monkeypatch):
    root = make_synthetic_dataset(tmp_path / "my shapes", classes=2, per_class=5, size=16, seed=0)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "recipes").mkdir()
    said = []
    path, wrote = write_folder_recipe(root, ["train.epochs=2"], Context(say=said.append))
    assert path.as_posix() == "recipes/my_shapes.yaml" and "written to recipes/my_shapes.yaml" in said[0] and wrote
    recipe = load_recipe(path)
    assert (recipe.name, recipe.train.epochs, recipe.model.backbone, recipe.data.root) == (
        "my_shapes",
        2,
        "mobilenet_v2",
        str(root),
    )
    # same content: reused, and not ours to remove
    assert write_folder_recipe(root, ["train.epochs=2"], Context(say=said.append)) == (path, False)
    assert "written by an earlier tk train" in said[-1]
    with pytest.raises(TkError, match="exists already and differs"):
        write_folder_recipe(root, ["train.epochs=3"], Context(say=said.append))
    assert load_recipe(path).train.epochs == 2  # never overwritten


def test_a_folder_without_class_folders_is_one_line(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "a.jpg").write_bytes(b"x")
    assert_one_line_error(tk("train", tmp_path / "flat"), "not of class folders")
    assert not list(tmp_path.glob("*.yaml"))


def test_a_bad_set_on_a_folder_writes_nothing(tmp_path, monkeypatch):
    root = make_synthetic_dataset(tmp_path / "d", classes=2, per_class=5, size=16, seed=0)
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(
        tk("train", root, "--set", "train.label_smoothing=1"), "train.label_smoothing: must be in [0, 1)"
    )
    assert not list(tmp_path.glob("*.yaml"))


def test_train_dir_export_verify_json_with_the_training_knobs(tmp_path, monkeypatch, feature_cache):
    """The one training run here: `tk train DIR --scratch` with cosine, balanced weights and smoothing, then
    export and verify, each --json with nothing else on stdout."""
    root = make_synthetic_dataset(tmp_path / "shapes", classes=2, per_class=10, size=24, seed=0)
    monkeypatch.chdir(tmp_path)
    runs = tmp_path / "runs"
    result = runner.invoke(
        app,
        [
            "train",
            str(root),
            "--json",
            "--runs-dir",
            str(runs),
            "--scratch",
            "--epochs",
            "2",
            "--image-size",
            "32",
            "--set",
            "train.lr_schedule={name: cosine, warmup_epochs: 1}",
            "--set",
            "train.class_weight=balanced",
            "--set",
            "train.label_smoothing=0.1",
        ],
    )
    assert result.exit_code == 0, result.output
    trained = json.loads(result.stdout)
    assert trained["run"] == str(runs / "shapes") and trained["phases"] == ["scratch"]
    assert trained["recipe"] == "shapes.yaml" and 0 <= trained["test"]["accuracy"] <= 1
    written = yaml.safe_load((tmp_path / "shapes.yaml").read_text())
    assert written["train"]["lr_schedule"] == {"name": "cosine", "warmup_epochs": 1}
    history = json.loads((runs / "shapes" / "phases" / "scratch" / "history.json").read_text())
    assert len(history["loss"]) == 2

    result = runner.invoke(app, ["export", str(runs / "shapes"), "--format", "tflite", "--quantize", "none", "--json"])
    assert result.exit_code == 0, result.output
    exported = json.loads(result.stdout)
    assert [a["file"] for a in exported["artifacts"]] == ["model_float32.tflite"]

    result = runner.invoke(app, ["verify", str(runs / "shapes"), "--json"])
    assert result.exit_code == 0, result.output
    parity = json.loads(result.stdout)
    assert parity["passed"] and list(parity["artifacts"]) == ["model_float32.tflite"]

    result = runner.invoke(app, ["verify", str(runs / "shapes")])
    lines = [line for line in result.stdout.splitlines() if "model_float32.tflite" in line]
    assert result.exit_code == 0 and len(lines) == 1, result.stdout  # each result printed once


def test_readme_python_api_example_imports_what_exists():
    """The README's example (run by hand: about two minutes) compiles and imports real names; the
    table's functions take the parameters it shows."""
    import ast
    import importlib
    import inspect
    from pathlib import Path

    text = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = text[text.index("## Python API") : text.index("## Tests")]
    code = section[section.index("```python\n") + 10 : section.index("```", section.index("```python\n") + 10)]
    tree = ast.parse(code)
    for node in ast.walk(tree):
        if isinstance(node, ast.ImportFrom) and node.module.startswith("toolkit"):
            module = importlib.import_module(node.module)
            assert all(hasattr(module, alias.name) for alias in node.names), node.module
    for dotted, params in [
        ("toolkit.core.recipe.load_recipe", ["path", "overrides"]),
        ("toolkit.train.phases.train", ["recipe", "runs_dir", "resume", "ctx"]),
        ("toolkit.export.exporter.export_run", ["run_dir", "formats", "quantizations", "ctx"]),
        ("toolkit.export.verify.verify_run", ["run_dir", "files", "ctx"]),
        (
            "toolkit.edge.bench.bench_targets",
            ["targets", "runs_dir", "overrides", "max_latency_ms", "min_accuracy", "ctx"],
        ),
        ("toolkit.edge.predict.predict", ["artifact", "inputs", "k", "threads"]),
    ]:
        module, name = dotted.rsplit(".", 1)
        assert f"`{dotted}(" in section
        signature = inspect.signature(getattr(importlib.import_module(module), name))
        assert all(p in signature.parameters for p in params), (dotted, list(signature.parameters))


def test_train_on_a_missing_path_offers_both_forms(tmp_path):
    assert_one_line_error(tk("train", tmp_path / "nope"), "no such recipe or folder", "a folder of class folders")
