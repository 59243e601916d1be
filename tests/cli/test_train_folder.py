"""`tk train DIR`: transfer learning from MobileNetV2 pretrained on ImageNet by default; offline, one
line that says how to train from scratch; a failed run leaves no recipe behind."""

from __future__ import annotations

import json
import urllib.error

import pytest
import yaml
from helpers import assert_one_line_error
from typer.testing import CliRunner

from toolkit.cli.app import app
from toolkit.core.recipe import load_recipe
from toolkit.data.folder_recipe import write_folder_recipe
from toolkit.data.synth import make_synthetic_dataset

runner = CliRunner()


@pytest.fixture
def pets(tmp_path, monkeypatch):
    root = make_synthetic_dataset(tmp_path / "pets", classes=2, per_class=10, size=24, seed=0)
    monkeypatch.chdir(tmp_path)
    return root


def test_the_default_recipe_is_pretrained_mobilenet_v2_then_fine_tuning(pets):
    path, _ = write_folder_recipe(pets)
    recipe = load_recipe(path)
    assert (recipe.model.backbone, recipe.model.weights, recipe.model.image_size) == ("mobilenet_v2", "imagenet", 224)
    assert recipe.train.mode == "features" and recipe.train.fine_tune.epochs > 0
    assert recipe.train.fine_tune.unfreeze_from == "block_13_expand" and recipe.train.fine_tune.learning_rate <= 1e-4
    assert "mobilenet_v2 pretrained on ImageNet, 224 px, mode features, then fine-tuning" in path.read_text()


def test_a_failed_train_of_a_folder_leaves_no_recipe(pets, tmp_path):
    result = runner.invoke(app, ["train", str(pets), "--weights", str(tmp_path / "nope.h5")])
    lines = result.output.splitlines()
    assert result.exit_code == 1 and "Traceback" not in result.output, result.output
    assert lines[-2] == "removed pets.yaml: the run did not finish"
    assert lines[-1].startswith("error: model.weights: file not found")
    assert not list(tmp_path.glob("*.yaml"))
    # with the mistake fixed, the next try is not blocked by a recipe the failed one left
    assert_one_line_error(runner.invoke(app, ["data", "inspect", "pets.yaml"]), "recipe not found: pets.yaml")


def test_offline_the_line_says_how_to_train_from_scratch_and_no_recipe_stays(pets, tmp_path, monkeypatch):
    """The real ImageNet path, with the download made to fail as it does without internet."""

    def no_network(url, *args, **kwargs):
        raise urllib.error.URLError("[Errno -3] Temporary failure in name resolution")

    monkeypatch.setattr("keras.src.utils.file_utils.urlretrieve", no_network)
    monkeypatch.setenv("KERAS_HOME", str(tmp_path / "keras_home"))
    result = runner.invoke(app, ["train", str(pets), "--image-size", "96", "--runs-dir", str(tmp_path / "runs")])
    lines = [line for line in result.output.splitlines() if line.startswith("error: ")]
    assert result.exit_code == 1 and len(lines) == 1 and "Traceback" not in result.output, result.output
    assert "cannot download ImageNet weights for mobilenet_v2" in lines[0]
    assert "mobilenet_v2_weights_tf_dim_ordering_tf_kernels_1.0_96_no_top.h5" in lines[0]
    assert "tk train ... --scratch" in lines[0]
    assert not list(tmp_path.glob("*.yaml")) and not (tmp_path / "runs" / "pets").exists()


@pytest.mark.slow
def test_the_default_trains_features_then_fine_tuning_from_local_weights(pets, tmp_path, feature_cache):
    """MobileNetV2 from a weights file (ImageNet's cannot be downloaded here), at alpha 0.35 and 96 px
    to keep it small: the default recipe's two phases run, and the recipe stays for the next run."""
    import keras

    weights = tmp_path / "mnv2.weights.h5"
    keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(96, 96, 3), alpha=0.35).save_weights(
        weights
    )
    args = ["train", str(pets), "--weights", str(weights), "--image-size", "96", "--set", "model.alpha=0.35"]
    args += ["--epochs", "2", "--set", "train.fine_tune.epochs=1", "--runs-dir", str(tmp_path / "runs"), "--json"]
    result = runner.invoke(app, args)
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert out["phases"] == ["features", "finetune"] and out["recipe"] == "pets.yaml"
    written = yaml.safe_load((tmp_path / "pets.yaml").read_text())
    assert written["model"] == {
        "backbone": "mobilenet_v2",
        "weights": str(weights),
        "image_size": 96,
        "head": {"pooling": "avg", "dense": [], "dropout": 0.2},
        "alpha": 0.35,
    }
