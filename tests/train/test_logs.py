"""Training logs: TensorBoard event files in every run folder; MLflow when installed and asked
(log.mlflow, or MLFLOW_TRACKING_URI), tested against a local file-store tracking URI."""

from __future__ import annotations

import importlib.util
import json

import pytest
from helpers import read_scalars, small_recipe
from typer.testing import CliRunner

from toolkit.core.errors import TkError

needs_mlflow = pytest.mark.skipif(importlib.util.find_spec("mlflow") is None, reason="mlflow not installed")


def test_every_run_has_tensorboard_curves_matching_its_history(trained_run):
    history = json.loads((trained_run / "phases" / "scratch" / "history.json").read_text())
    train = read_scalars(trained_run / "logs" / "scratch" / "train")
    validation = read_scalars(trained_run / "logs" / "scratch" / "validation")
    assert [step for step, _ in train["epoch_loss"]] == list(range(len(history["loss"])))
    assert [v for _, v in train["epoch_loss"]] == pytest.approx(history["loss"])
    assert [v for _, v in train["epoch_accuracy"]] == pytest.approx(history["accuracy"])
    assert [v for _, v in validation["epoch_loss"]] == pytest.approx(history["val_loss"])
    assert "epoch_learning_rate" in train


@pytest.fixture
def file_store(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # mlflow 3 keeps the file store behind this
    return f"file://{tmp_path / 'mlruns'}"


@needs_mlflow
@pytest.mark.slow
def test_mlflow_gets_params_epochs_files_then_export_verify_and_bench(
    synth_root, tmp_path, feature_cache, file_store, monkeypatch
):
    from mlflow.tracking import MlflowClient

    from toolkit.cli.app import app
    from toolkit.train.phases import train

    monkeypatch.setenv("MLFLOW_TRACKING_URI", file_store)  # asked by the environment (log.mlflow: auto)
    recipe = small_recipe("tracked", synth_root, train={"epochs": 2})
    run = train(recipe, runs_dir=tmp_path / "runs").run_dir
    record = json.loads((run / "mlflow.json").read_text())
    client = MlflowClient(file_store)
    logged = client.get_run(record["run_id"])
    assert logged.info.status == "FINISHED" and logged.info.run_name == "tracked"
    assert logged.data.params["train.epochs"] == "2" and logged.data.params["model.backbone"] == "mini_vgg"
    history = json.loads((run / "phases" / "scratch" / "history.json").read_text())
    losses = client.get_metric_history(record["run_id"], "scratch/loss")
    assert [m.value for m in sorted(losses, key=lambda m: m.step)] == pytest.approx(history["loss"])
    assert logged.data.metrics["test/accuracy"] == pytest.approx(
        json.loads((run / "metrics.json").read_text())["test"]["accuracy"]
    )
    files = {a.path for a in client.list_artifacts(record["run_id"])}
    assert {"model.keras", "metrics.json", "recipe.yaml", "phases", "tensorboard"} <= files

    runner = CliRunner()
    for args in (
        ["export", str(run), "--format", "tflite", "--quantize", "none"],
        ["verify", str(run)],
        ["bench", str(run / "model_float32.tflite"), "--threads", "1", "--runs", "3", "--warmup", "0"],
    ):
        result = runner.invoke(app, args)
        assert result.exit_code == 0, result.output
        assert f"MLflow: {args[0]} results logged to run {record['run_id']}" in result.output
    metrics = client.get_run(record["run_id"]).data.metrics
    assert metrics["verify/model_float32.tflite/agreement"] == 1.0 and metrics["verify/passed"] == 1.0
    assert metrics["bench/model_float32.tflite/threads1/p50_ms"] > 0
    files = {a.path for a in client.list_artifacts(record["run_id"], "export")}
    assert "export/model_float32.tflite" in files
    assert {a.path for a in client.list_artifacts(record["run_id"], "verify")} == {"verify/parity.json"}
    assert {a.path for a in client.list_artifacts(record["run_id"], "bench")} == {"bench/bench.json"}


def test_no_mlflow_unless_asked(synth_root, monkeypatch):
    from toolkit.train.tracking import wanted_uri

    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    assert wanted_uri(small_recipe("x", synth_root)) is None
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    assert wanted_uri(small_recipe("x", synth_root, log={"mlflow": False})) is None


def test_asked_for_mlflow_without_it_installed(synth_root, monkeypatch):
    from toolkit.train import tracking

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "mlflow" else real(name, *a))
    with pytest.raises(TkError, match=r"log.mlflow: true needs mlflow, which is not installed: pip install"):
        tracking.wanted_uri(small_recipe("x", synth_root, log={"mlflow": True}))
    said = []
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:1")
    from toolkit.core.context import Context

    assert tracking.wanted_uri(small_recipe("x", synth_root), Context(say=said.append)) is None
    assert "mlflow is not installed" in said[0]


@needs_mlflow
def test_an_unusable_tracking_uri_is_one_line_before_training(synth_root, tmp_path, monkeypatch):
    from toolkit.train.tracking import MlflowTracker

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    recipe = small_recipe("x", synth_root, log={"mlflow": True, "mlflow_tracking_uri": f"file://{tmp_path}/m"})
    with pytest.raises(TkError, match=r"log.mlflow: cannot log to the MLflow tracking URI file://") as info:
        MlflowTracker.start(recipe, tmp_path / "work", resume=False)
    assert "\n" not in str(info.value)
