"""Recipe schema: bad recipes fail before any work with one line naming the key and the value."""

from __future__ import annotations

from pathlib import Path

import pytest

from toolkit.core.errors import TkError
from toolkit.core.recipe import Recipe, load_recipe, recipe_from_dict

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes").glob("*.yaml"))


def error_of(raw: dict) -> str:
    with pytest.raises(TkError) as info:
        recipe_from_dict({"name": "t", **raw})
    return str(info.value)


def test_defaults_fill_a_minimal_recipe():
    recipe = recipe_from_dict({"name": "t"})
    assert isinstance(recipe, Recipe)
    assert recipe.train.epochs > 0 and recipe.data.layout == "auto"
    assert recipe.to_dict()["train"]["epochs"] == recipe.train.epochs


def test_unknown_key_lists_allowed_keys_and_suggests():
    message = error_of({"train": {"epoch": 5}})
    assert message.startswith("train.epoch: unknown key")
    assert "did you mean 'epochs'?" in message
    assert "allowed keys:" in message and "batch_size" in message and "learning_rate" in message


def test_unknown_top_level_section():
    message = error_of({"trian": {}})
    assert "trian" in message and "'train'" in message and "allowed keys" in message


@pytest.mark.parametrize(
    "raw, expected",
    [
        ({"train": {"epochs": "ten"}}, "train.epochs: must be a whole number (got 'ten')"),
        ({"train": {"epochs": 2.5}}, "train.epochs: must be a whole number (got 2.5)"),
        ({"train": {"learning_rate": "fast"}}, "train.learning_rate: must be a number (got 'fast')"),
        ({"data": {"strict": "yes"}}, "data.strict: must be true or false (got 'yes')"),
        ({"train": {"mode": "magic"}}, "train.mode: must be one of features, augment, scratch (got 'magic')"),
        ({"model": "vgg16"}, "model: must be a mapping (got 'vgg16')"),
    ],
)
def test_wrong_type_names_key_and_value(raw, expected):
    assert error_of(raw) == expected


def test_negative_epochs_message():
    assert error_of({"train": {"epochs": -1}}) == "train.epochs: must be > 0 (got -1)"


def test_yaml_float_written_as_exponent_is_a_number():
    # YAML 1.1 reads 1e-5 (no dot) as a string: the schema must still take it as a float.
    assert (
        recipe_from_dict({"name": "t", "train": {"fine_tune": {"learning_rate": "1e-5"}}}).train.fine_tune.learning_rate
        == 1e-5
    )


@pytest.mark.parametrize(
    "split",
    [
        {"train": 0.5, "validation": 0.2, "test": 0.2},
        {"train": 0.0, "validation": 0.5, "test": 0.5},
        {"train": 1.2, "validation": -0.1, "test": -0.1},
    ],
)
def test_split_fractions_must_sum_to_one(split):
    message = error_of({"data": {"split": split}})
    assert message.startswith("data.split: fractions must be >= 0, train > 0, and sum to 1")
    assert str(split["train"]) in message


def test_split_without_test_is_allowed():
    recipe = recipe_from_dict({"name": "t", "data": {"split": {"train": 0.8, "validation": 0.2, "test": 0.0}}})
    assert recipe.data.split.test == 0.0


def test_fine_tune_both_unfreeze_options_is_an_error():
    message = error_of({"train": {"fine_tune": {"epochs": 3, "unfreeze_from": "block5_conv1", "unfreeze_last": 4}}})
    assert "train.fine_tune" in message and "not both" in message


def test_fine_tune_needs_one_unfreeze_option():
    message = error_of({"train": {"fine_tune": {"epochs": 3}}})
    assert "train.fine_tune" in message and "unfreeze_from" in message and "unfreeze_last" in message


def test_fine_tune_options_without_epochs_are_fine():
    recipe = recipe_from_dict({"name": "t", "train": {"fine_tune": {"unfreeze_last": 4}}})
    assert recipe.train.fine_tune.unfreeze_last == 4 and recipe.train.fine_tune.epochs == 0


def test_unknown_export_format_suggests():
    message = error_of({"export": {"formats": ["tflight"]}})
    assert "export.formats" in message and "'tflite'" in message and "savedmodel, tflite, onnx" in message


def test_yaml_syntax_error_names_file_and_line(tmp_path):
    path = tmp_path / "broken.yaml"
    path.write_text("name: broken\ntrain:\n  epochs: 3\n  batch_size: [16\n")
    with pytest.raises(TkError) as info:
        load_recipe(path)
    message = str(info.value)
    assert str(path) in message and "not valid YAML" in message
    assert " line " in message


def test_yaml_error_line_is_the_bad_line(tmp_path):
    path = tmp_path / "tabs.yaml"
    path.write_text("name: tabs\ntrain:\n  epochs: 3\n\tbatch_size: 16\n")
    with pytest.raises(TkError, match=r"line 4"):
        load_recipe(path)


def test_load_recipe_errors_name_the_file(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  epochs: -1\n")
    with pytest.raises(TkError) as info:
        load_recipe(path)
    assert str(info.value) == f"{path}: train.epochs: must be > 0 (got -1)"


def test_missing_recipe_file(tmp_path):
    with pytest.raises(TkError, match="recipe not found"):
        load_recipe(tmp_path / "nope.yaml")


def test_recipe_that_is_not_a_mapping(tmp_path):
    path = tmp_path / "list.yaml"
    path.write_text("- a\n- b\n")
    with pytest.raises(TkError, match="mapping"):
        load_recipe(path)


def test_name_defaults_to_file_stem(tmp_path):
    path = tmp_path / "my_recipe.yaml"
    path.write_text("train: {epochs: 2}\n")
    recipe = load_recipe(path)
    assert recipe.name == "my_recipe" and recipe.source_path == str(path)


def test_shipped_recipes_exist():
    assert any(p.name == "quickstart.yaml" for p in RECIPES)


@pytest.mark.parametrize("path", RECIPES, ids=[p.name for p in RECIPES])
def test_every_shipped_recipe_loads(path):
    from toolkit.train.backbones import BACKBONES  # the registry is data: no TensorFlow import

    recipe = load_recipe(path)
    # The run folder is named after the recipe: keep the file and the name in step.
    assert recipe.name == path.stem
    assert recipe.model.backbone in BACKBONES
    assert recipe.data.root


@pytest.mark.parametrize(
    "raw, expected",
    [
        ({"export": {"int8_fallback": {"max_size_ratio": 0.5}}}, "export.int8_fallback.max_size_ratio: must be >= 1"),
        (
            {"export": {"int8_fallback": {"max_float_layers": 0}}},
            "export.int8_fallback.max_float_layers: must be > 0 (got 0)",
        ),
        ({"export": {"int8_fallback": {"enable": True}}}, "did you mean 'enabled'?"),
        ({"export": {"onnx_int8_activations": "int4"}}, "export.onnx_int8_activations: must be one of uint8, int8"),
        (
            {"export": {"onnx_int8_calibration": "minmax"}},
            "export.onnx_int8_calibration: must be one of Percentile, MinMax",
        ),
        ({"verify": {"confident_margin": 1.5}}, "verify.confident_margin: must be in [0, 1) (got 1.5)"),
        ({"export": {"int8_budget": {"max_latency_ratio": 0}}}, "export.int8_budget.max_latency_ratio: must be in (0"),
        ({"export": {"int8_budget": {"max_latency_ratio": float("nan")}}}, "export.int8_budget.max_latency_ratio"),
        (
            {"verify": {"thresholds": {"int8": {"min_confident_agreement": 2}}}},
            "verify.thresholds.int8.min_confident_agreement: must be in [0.5, 1] (got 2.0)",
        ),
        # Limits that check nothing are refused: they would pass any artifact.
        ({"verify": {"thresholds": {"int8": {"min_agreement": 0.0}}}}, "min_agreement: must be in [0.5, 1] (got 0.0)"),
        ({"verify": {"thresholds": {"float32": {"max_abs_diff": 1e9}}}}, "max_abs_diff: must be in [0, 0.5]"),
        ({"verify": {"thresholds": {"int8": {"max_accuracy_drop": 1.0}}}}, "max_accuracy_drop: must be in [0, 0.5]"),
        ({"verify": {"thresholds": {"int8": {"min_agreement": None}}}}, "leaves no agreement check"),
        ({"verify": {"thresholds": {"int8": {"min_agreemnt": 0.9}}}}, "did you mean 'min_agreement'?"),
        ({"verify": {"thresholds": {"int4": {"min_agreement": 0.9}}}}, "unknown kind 'int4'"),
        ({"verify": {"thresholds": {"int8": {"min_agreement": float("nan")}}}}, "must be a finite number"),
        ({"verify": {"thresholds": {"int8": "strict"}}}, "verify.thresholds.int8: must be a mapping"),
    ],
)
def test_int8_and_metadata_keys_are_checked(raw, expected):
    assert expected in error_of(raw)


def test_confident_threshold_merges_with_the_defaults():
    from toolkit.edge.parity import limits_for

    recipe = recipe_from_dict({"name": "t", "verify": {"thresholds": {"int8": {"min_confident_agreement": 0.99}}}})
    assert recipe.verify.thresholds == {"int8": {"min_confident_agreement": 0.99}}  # only what the recipe says
    int8 = limits_for("int8", recipe.verify)
    assert int8.min_confident_agreement == 0.99 and int8.min_agreement == 0.98  # tk's value stays strict
    assert recipe.export.metadata.author == "tk" and not recipe.export.int8_fallback.enabled


@pytest.mark.parametrize(
    "text, key",
    [
        ("train:\n  learning_rate: .inf\n", "train.learning_rate"),
        ("train:\n  learning_rate: -.inf\n", "train.learning_rate"),
        ("data:\n  split:\n    train: .nan\n", "data.split.train"),
        ("train:\n  learning_rate: 'nan'\n", "train.learning_rate"),
    ],
)
def test_non_finite_floats_are_refused(tmp_path, text, key):
    path = tmp_path / "r.yaml"
    path.write_text("name: t\n" + text)
    with pytest.raises(TkError, match=rf"r.yaml: {key}: must be a finite number"):
        load_recipe(path)


@pytest.mark.parametrize("seed", ["1e23", "4294967296", "-1"])
def test_seed_must_fit_32_bits(tmp_path, seed):
    path = tmp_path / "r.yaml"
    path.write_text(f"name: t\nseed: {seed}\n")
    with pytest.raises(TkError, match=r"seed: must be a whole number"):
        load_recipe(path)


def test_a_yaml_alias_bomb_is_refused_fast(tmp_path):
    lines = ['a0: &a0 ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]']
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 9)]
    path = tmp_path / "bomb.yaml"
    path.write_text("\n".join(lines).replace("a0:", "x0:") + "\nname: *a8\n")  # 10**9 strings
    with pytest.raises(TkError, match=r"bomb.yaml: YAML aliases expand to over 10000 values"):
        load_recipe(path)


def test_a_self_referring_alias_is_refused(tmp_path):
    path = tmp_path / "loop.yaml"
    path.write_text("name: &a [*a]\n")
    with pytest.raises(TkError, match="loop.yaml"):
        load_recipe(path)


def test_small_anchors_still_work(tmp_path):
    path = tmp_path / "r.yaml"
    path.write_text("name: t\nseed: &s 7\nbench:\n  runs: *s\n")
    recipe = load_recipe(path)
    assert (recipe.seed, recipe.bench.runs) == (7, 7)


def test_a_non_utf8_recipe_is_one_line(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(TkError, match=r"latin1.yaml: not UTF-8 text \(byte 9\)"):
        load_recipe(path)


def test_a_recipe_path_that_is_a_folder_says_so(tmp_path):
    with pytest.raises(TkError, match="is a folder, not a recipe"):
        load_recipe(tmp_path)


@pytest.mark.parametrize(
    "train, expected",
    [
        ({"lr_schedule": "cosin"}, "train.lr_schedule.name: must be one of constant, cosine (got 'cosin')"),
        (
            {"lr_schedule": {"name": "constant", "warmup_epochs": 1}},
            "train.lr_schedule.warmup_epochs: needs name: cosine",
        ),
        (
            {"lr_schedule": {"name": "cosine", "warmup_epochs": 10}, "epochs": 10},
            "train.lr_schedule.warmup_epochs: must be < train.epochs (10)",
        ),
        (
            {"lr_schedule": {"name": "cosine", "warmup_epochs": -1}},
            "train.lr_schedule.warmup_epochs: must be >= 0 (got -1)",
        ),
        (
            {"lr_schedule": {"name": "cosine", "warmup": 1}},
            "train.lr_schedule.warmup: unknown key (did you mean 'warmup_epochs'?)",
        ),
        ({"class_weight": "balancd"}, "train.class_weight: must be one of none, balanced (got 'balancd')"),
        ({"label_smoothing": 1.0}, "train.label_smoothing: must be in [0, 1) (got 1.0)"),
    ],
)
def test_training_knob_errors_name_the_key(train, expected):
    with pytest.raises(TkError) as err:
        recipe_from_dict({"name": "t", "train": train})
    assert expected in str(err.value) and "\n" not in str(err.value)


def test_training_knob_short_forms():
    train = recipe_from_dict(
        {"name": "t", "train": {"lr_schedule": "cosine", "class_weight": None, "label_smoothing": 0.1}}
    ).train
    assert (train.lr_schedule.name, train.lr_schedule.warmup_epochs) == ("cosine", 0)
    assert train.class_weight == "none" and train.label_smoothing == 0.1
    again = recipe_from_dict(
        {
            "name": "t",
            **{
                "train": recipe_from_dict(
                    {"name": "t", "train": {"lr_schedule": {"name": "cosine", "warmup_epochs": 2}}}
                ).to_dict()["train"]
            },
        }
    )
    assert again.train.lr_schedule.warmup_epochs == 2  # the written-out recipe.yaml loads back


@pytest.mark.parametrize(
    "name, words",
    [
        ("foo.partial", "'.partial'"),
        ("foo.old", "'.old'"),
        ("foo.lock", "'.lock'"),
        (".foo", "start with '.'"),
        ("foo-20260102-100000", "-YYYYMMDD-HHMMSS"),
        ("foo-20260102-100000-2", "-YYYYMMDD-HHMMSS"),
        ("x" * 101, "at most 100 characters"),
    ],
)
def test_run_names_cannot_collide_with_tks_own_names(name, words):
    """Issue 20: a recipe named foo.partial was accepted, and training foo then deleted its run."""
    message = error_of({"name": name})
    assert message.startswith("name: ") and words in message and "choose another name" in message


def test_names_like_tks_own_are_fine_inside(tmp_path):
    for name in ("partial", "foo.partial.v2", "run-2026", "a.b-c_d"):
        assert recipe_from_dict({"name": name}).name == name


@pytest.mark.parametrize("depth", [65, 900, 3000])
def test_deeply_nested_recipes_are_one_line(tmp_path, depth):
    """Issue 20: 1,500-3,000 levels ended in RecursionError."""
    path = tmp_path / "deep.yaml"
    path.write_text("train: " + "{a: " * depth + "1" + "}" * depth + "\n")
    with pytest.raises(TkError, match="nested more than 64 levels deep"):
        load_recipe(path)
    if depth > 500:  # shallower values parse, and are refused by type
        with pytest.raises(TkError, match="--set train.epochs: the value is nested"):
            load_recipe(RECIPES[0], ["train.epochs=" + "[" * depth + "]" * depth])


def test_unreadable_and_endless_recipe_files_are_one_line(tmp_path):
    with pytest.raises(TkError, match="cannot be read"):
        load_recipe(Path("/proc/self/mem"))  # is_file() says yes; reading it is EIO
    big = tmp_path / "big.yaml"
    big.write_text("# " + "x" * (2 << 20))
    with pytest.raises(TkError, match="larger than 1024 KiB"):
        load_recipe(big)
