"""The first hour of a new user: recipe keys one can discover (`tk keys`), tk train's shortcuts,
help that shows what an option takes, one list style, usage errors before any run is looked up,
a data folder where a run is expected, `tk pack` with no arguments."""

from __future__ import annotations

import json
import re
import shutil

import pytest
import typer
from helpers import assert_one_line_error
from typer.testing import CliRunner

from toolkit.cli.app import app
from toolkit.cli.options import comma_list, thread_counts
from toolkit.core.errors import TkError
from toolkit.core.recipe import recipe_from_dict
from toolkit.core.recipe_keys import MEANINGS, SCRATCH, SHORTCUTS, recipe_keys, with_shortcuts
from toolkit.data.synth import make_synthetic_dataset

runner = CliRunner()


def tk(*args):
    return runner.invoke(app, [str(a) for a in args], env={"COLUMNS": "200"})


def test_every_recipe_key_has_a_meaning_and_every_meaning_a_key():
    keys = {k.key for k in recipe_keys()}
    assert keys == set(MEANINGS)
    assert {"train.epochs", "model.head.dense", "verify.thresholds.int8.min_agreement"} <= keys
    assert all(k.type and k.default and k.meaning for k in recipe_keys())


def test_keys_types_and_defaults_come_from_the_schema():
    from toolkit.core.recipe import Recipe

    by_key = {k.key: k for k in recipe_keys()}
    default = Recipe(name="x")
    assert (by_key["train.epochs"].type, by_key["train.epochs"].default) == ("int", str(default.train.epochs))
    assert by_key["train.mode"].type == "features|augment|scratch"
    assert by_key["model.alpha"].type == "number | null" and by_key["model.alpha"].default == "null"
    assert by_key["bench.threads"].default == "[1, 2]"
    # tk's parity limits live in edge/parity.py (core cannot import edge): tk keys passes them in
    from toolkit.edge.parity import LIMITS

    limits = {k.key: k for k in recipe_keys("verify.thresholds", LIMITS)}
    assert limits["verify.thresholds.float32.max_abs_diff"].default == str(LIMITS["float32"].max_abs_diff)
    assert limits["verify.thresholds.int8.min_agreement"].type == "number | null"
    assert by_key["verify.thresholds.float32.max_abs_diff"].default == "tk's limit"


def test_tk_keys_prints_a_section_and_json():
    result = tk("keys", "train.fine_tune")
    assert result.exit_code == 0, result.output
    assert "train.fine_tune.unfreeze_from" in result.output and "train.epochs " not in result.output
    listed = json.loads(tk("keys", "model", "--json").stdout)
    assert {k["key"] for k in listed} == {k.key for k in recipe_keys("model")}
    assert "mobilenet_v2" in tk("keys", "model.backbone").output  # the registry's names
    assert_one_line_error(tk("keys", "trian"), "trian: no recipe key starts with it", "train")


def test_each_shortcut_is_sugar_for_set_and_its_help_names_the_key():
    raw = {"name": "x", "data": {"root": "d"}}
    values = {
        "--epochs": 3,
        "--image-size": 96,
        "--batch-size": 8,
        "--backbone": "mini_vgg",
        "--weights": "none",
        "--lr": 0.01,
        "--mode": "scratch",
    }
    assert set(values) == {s.option for s in SHORTCUTS}
    from toolkit.core.overrides import apply_overrides

    for s in SHORTCUTS:
        via_shortcut = with_shortcuts([], {s.option: values[s.option]})
        via_set = [f"{s.key}={values[s.option]}"]
        assert via_shortcut == via_set
        assert recipe_from_dict(apply_overrides(raw, via_shortcut)) == recipe_from_dict(apply_overrides(raw, via_set))
    help_text = " ".join(tk("train", "--help").output.split())
    for s in SHORTCUTS:
        assert f"{s.option} {s.metavar}" in help_text and f"(sets {s.key})" in help_text


def test_a_key_given_two_ways_is_refused_and_scratch_yields_to_explicit_options():
    assert with_shortcuts(["train.epochs=3"], {"--epochs": 3}) == ["train.epochs=3"]
    with pytest.raises(TkError, match="--epochs 4 and --set train.epochs=3 set train.epochs twice"):
        with_shortcuts(["train.epochs=3"], {"--epochs": 4})
    items = with_shortcuts([], {"--image-size": 96}, scratch=True)
    assert "model.image_size=96" in items and "model.image_size=64" not in items
    assert set(SCRATCH) - {"model.image_size=64"} <= set(items)
    recipe = recipe_from_dict(_applied({"name": "x", "data": {"root": "d"}}, with_shortcuts([], {}, scratch=True)))
    assert (recipe.model.backbone, recipe.model.weights, recipe.train.mode) == ("mini_vgg", "none", "scratch")


def _applied(raw, items):
    from toolkit.core.overrides import apply_overrides

    return apply_overrides(raw, items)


def _commands(group=None, prefix=()):
    group = group if group is not None else typer.main.get_command(app)
    for name, command in sorted(group.commands.items()):
        if hasattr(command, "commands"):
            yield from _commands(command, (*prefix, name))
        else:
            yield [*prefix, name], command


COMMANDS = list(_commands())
PYTHON_TYPE = re.compile(r"<(str|int|float|path|bool|list\[|Path)|\{[a-z_]+\}")


@pytest.mark.parametrize("path, command", COMMANDS, ids=lambda c: " ".join(c) if isinstance(c, list) else "")
def test_help_shows_metavars_never_python_types(path, command):
    result = runner.invoke(app, [*path, "--help"], env={"COLUMNS": "200"})
    assert result.exit_code == 0 and not PYTHON_TYPE.search(result.output), result.output
    for param in command.params:
        takes_value = not getattr(param, "is_flag", False) and param.name != "help"
        if takes_value:
            assert param.metavar, f"tk {' '.join(path)}: {param.name} has no metavar"


def test_list_options_take_commas_and_repeats():
    assert comma_list(["tflite,onnx", "int8"]) == ["tflite", "onnx", "int8"] and comma_list(None) is None
    assert thread_counts(["1,2", "4"]) == (1, 2, 4)
    with pytest.raises(TkError, match="--threads: must be >= 1"):
        thread_counts(["0"])


@pytest.mark.parametrize(
    "args, fragment",
    [
        (["export", "no-such-run", "--quantize", "int4"], "--quantize: unknown value 'int4'"),
        (["export", "no-such-run", "--format", "tflite,onxx"], "--format: unknown value 'onxx' (did you mean 'onnx'?)"),
        (["export", "no-such-run", "--opset", "99"], "--opset: must be between"),
        (["pack", "no-such-run", "--format", "keras"], "--format: 'keras' cannot be packed for a device"),
        (["bench", "no-such-run", "--threads", "1,0"], "--threads: must be >= 1"),
    ],
)
def test_usage_errors_come_before_the_run_is_looked_up(tmp_path, args, fragment):
    assert_one_line_error(tk(*args, "--runs-dir", tmp_path), fragment)


def test_predict_threads_takes_one_value(tmp_path):
    assert tk("predict", tmp_path / "m.onnx", tmp_path, "--threads", "1,2").exit_code == 2


@pytest.mark.parametrize("command", ["export", "verify", "bench", "pack", "report"])
def test_a_data_folder_where_a_run_is_expected_says_so(tmp_path, monkeypatch, command):
    make_synthetic_dataset(tmp_path / "pets", classes=2, per_class=5, size=16, seed=0)
    monkeypatch.chdir(tmp_path)
    assert_one_line_error(
        tk(command, "pets", "--runs-dir", tmp_path / "runs"),
        "pets: a folder of images (a dataset), not a trained run",
        "tk train pets",
    )


def test_pack_with_no_arguments_packs_the_latest_run_beside_it(exported_run, tmp_path):
    runs = tmp_path / "runs"
    shutil.copytree(exported_run, runs / exported_run.name, ignore=shutil.ignore_patterns("saved_model"))
    result = tk("pack", "--runs-dir", runs, "--samples", "6", "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    bundle = runs / f"{exported_run.name}-device"
    assert out["dir"] == str(bundle) and (bundle / "manifest.json").is_file()
    assert {a for a in out["artifacts"]} >= {"model_int8.tflite", "model.onnx"}
    # a second pack with no arguments still takes the run (not the bundle beside it), and keeps the bundle
    again = tk("pack", "--runs-dir", runs)
    assert again.exit_code == 1 and f"using the latest run: {runs / exported_run.name}" in again.output
    assert f"error: {bundle}: folder exists" in again.output and "--force" in again.output
    assert (bundle / "manifest.json").is_file()
