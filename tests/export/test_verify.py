"""tk verify: exported artifacts against the Keras reference on the run's held-out images."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

from toolkit.cli.app import app
from toolkit.core.context import Context
from toolkit.core.errors import ParityError
from toolkit.core.recipe import load_recipe
from toolkit.core.runs import load_manifest, record_artifact
from toolkit.edge.parity import degenerate_warnings, limits_for
from toolkit.export.verify import verify_run

ARTIFACTS = [
    "saved_model",
    "model_float32.tflite",
    "model_float16.tflite",
    "model_dynamic.tflite",
    "model_int8.tflite",
    "model.onnx",
    "model_int8.onnx",
]


@pytest.fixture(scope="module")
def parity_report(exported_run):
    lines: list[str] = []
    report = verify_run(exported_run, ctx=Context(say=lines.append))
    return report, lines


@pytest.mark.parametrize("file", ARTIFACTS)
def test_each_format_is_within_its_thresholds(parity_report, exported_run, file):
    report, lines = parity_report
    test_split = json.loads((exported_run / "split.json").read_text())["splits"]["test"]
    assert report["split"] == "test" and report["count"] == len(test_split) > 0
    result = report["artifacts"][file]
    threshold = limits_for(result["kind"], load_recipe(exported_run / "recipe.yaml").verify)
    assert result["passed"], result
    if threshold.max_abs_diff is not None:
        assert result["max_abs_diff"] <= threshold.max_abs_diff
    if threshold.min_agreement is not None:
        assert result["agreement"] >= threshold.min_agreement
    if threshold.max_accuracy_drop is not None:
        assert -result["accuracy_delta"] <= threshold.max_accuracy_drop
    assert any(line.startswith(f"✓ {file} ") and "max diff: " in line for line in lines)
    # The same figures are in parity.json and in the manifest entry.
    assert json.loads((exported_run / "parity.json").read_text())["artifacts"][file] == result
    recorded = load_manifest(exported_run)["artifacts"][file]["metrics"]["verify"]
    assert recorded["max_abs_diff"] == result["max_abs_diff"] and recorded["passed"]


def test_the_kinds_follow_the_formats(parity_report):
    kinds = {f: r["kind"] for f, r in parity_report[0]["artifacts"].items()}
    assert kinds == {
        "saved_model": "float32",
        "model_float32.tflite": "float32",
        "model.onnx": "float32",
        "model_float16.tflite": "float16",
        "model_dynamic.tflite": "dynamic",
        "model_int8.tflite": "int8",
        "model_int8.onnx": "int8",
    }


def test_cli_verify_one_artifact_keeps_the_others_results(parity_report, exported_run):
    result = CliRunner().invoke(app, ["verify", str(exported_run), "--artifact", "model.onnx"])
    assert result.exit_code == 0, result.output
    assert "✓ model.onnx (float32): max diff: " in result.output
    assert "all 1 artifacts match the reference" in result.output
    saved = json.loads((exported_run / "parity.json").read_text())
    assert set(saved["artifacts"]) == set(ARTIFACTS) and saved["passed"]  # the other five kept


def _copy_run(run: Path, tmp_path: Path) -> Path:
    copy = tmp_path / run.name
    shutil.copytree(run, copy)
    return copy


def _broken_model(run: Path, how: str):
    """The run's model with noised weights, or without its in-graph scaling (wrong preprocessing)."""
    import keras

    from toolkit.train.backbones import ensure_custom_objects

    ensure_custom_objects()
    model = keras.saving.load_model(str(run / "model.keras"), compile=False)
    if how == "weights":
        rng = np.random.default_rng(0)
        for layer in model.layers[2:]:
            for weight in layer.weights:
                value = np.asarray(weight)
                if weight.trainable and value.ndim > 1:
                    weight.assign(value + rng.normal(0, value.std() + 1e-3, value.shape).astype(value.dtype))
        return model
    inputs = keras.Input(model.inputs[0].shape[1:])
    x = inputs
    for layer in model.layers[1:]:
        if layer.name != "preprocess":  # feeds 0..255 where the network expects 0..1
            x = layer(x)
    return keras.Model(inputs, x)


@pytest.mark.parametrize("how, file", [("weights", "model.onnx"), ("preprocessing", "model_float32.tflite")])
def test_a_broken_artifact_fails_verify(exported_run, tmp_path, how, file):
    import onnx

    from toolkit.export.converters import export_saved_model, onnx_from_saved_model, tflite_from_saved_model

    run = _copy_run(exported_run, tmp_path)
    export_saved_model(_broken_model(run, how), tmp_path / "broken_sm")
    if file.endswith(".onnx"):
        onnx.save(onnx_from_saved_model(tmp_path / "broken_sm", opset=17), str(run / file))
    else:
        (run / file).write_bytes(tflite_from_saved_model(tmp_path / "broken_sm"))
    entry = load_manifest(run)["artifacts"][file]
    record_artifact(run, {k: v for k, v in entry.items() if k not in ("sha256", "size_bytes", "created")})

    result = CliRunner().invoke(app, ["verify", str(run)])
    assert result.exit_code == 1
    assert f"✗ {file} (float32): max diff: " in result.output
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and f"1 of {len(ARTIFACTS)} artifacts fail parity" in errors[0] and file in errors[0]
    assert "Traceback" not in result.output
    report = json.loads((run / "parity.json").read_text())
    assert not report["passed"] and not report["artifacts"][file]["passed"]
    assert all(r["passed"] for f, r in report["artifacts"].items() if f != file)


@pytest.mark.parametrize(
    "file, message", [("model_int8.tflite", "not a valid .tflite model"), ("model.onnx", "not a valid .onnx model")]
)
def test_a_truncated_artifact_is_a_clear_error(exported_run, tmp_path, file, message):
    run = _copy_run(exported_run, tmp_path)
    data = (run / file).read_bytes()
    (run / file).write_bytes(data[: len(data) // 3])
    runner = CliRunner()

    result = runner.invoke(app, ["verify", str(run), "--artifact", file])
    assert result.exit_code == 1
    assert "sha256 differs" in result.output  # changed after export: caught by the manifest's hash

    # Written truncated by a broken export (the manifest matches it): the loader says what is wrong.
    entry = load_manifest(run)["artifacts"][file]
    record_artifact(run, {k: v for k, v in entry.items() if k not in ("sha256", "size_bytes", "created")})
    result = runner.invoke(app, ["verify", str(run), "--artifact", file])
    assert result.exit_code == 1
    errors = [line for line in result.output.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and file in errors[0] and message not in errors[0]  # said once, on the ✗ line
    assert sum(message in line for line in result.output.splitlines()) == 1
    assert f"✗ {file}" in result.output and "Traceback" not in result.output


def test_thresholds_come_from_the_recipe(exported_run, tmp_path):
    run = _copy_run(exported_run, tmp_path)
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    recipe["verify"].setdefault("thresholds", {})["float16"] = {"max_abs_diff": 1e-12}
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    with pytest.raises(ParityError, match=r"model_float16.tflite \(max diff .* > 1e-12\)"):
        verify_run(run, files=["model_float16.tflite"])


def test_unknown_artifact_and_unexported_run(exported_run, trained_run):
    result = CliRunner().invoke(app, ["verify", str(exported_run), "--artifact", "model.pt"])
    assert result.exit_code == 1 and "--artifact model.pt: not an exported artifact" in result.output
    assert "model.onnx" in result.output  # lists what is there
    result = CliRunner().invoke(app, ["verify", str(trained_run)])
    assert result.exit_code == 1 and "no exported artifacts" in result.output


def test_degenerate_reference_is_flagged():
    classes = ["a", "b", "c"]
    one_class = np.tile([0.2, 0.7, 0.1], (10, 1)) + np.linspace(0, 0.2, 10)[:, None] * [1, -1, 0]
    assert any("predicts 'b' for all 10 images" in w for w in degenerate_warnings(one_class, classes))
    constant = np.full((10, 3), 1 / 3) + np.linspace(0, 1e-3, 10)[:, None] * [1, 0, -1]
    assert any("barely change" in w for w in degenerate_warnings(constant, classes))
    healthy = np.eye(3)[np.arange(10) % 3] * 0.9 + 0.1 / 3
    assert degenerate_warnings(healthy, classes) == []


def test_confident_agreement_counts_only_confident_flips():
    from toolkit.core.recipe import Threshold
    from toolkit.edge.parity import check, compare, top1_margin

    # Images 0-1: the reference is 90/10 sure; images 2-3: 51/49. The artifact flips 1 and 3.
    reference = np.array([[0.9, 0.1], [0.9, 0.1], [0.51, 0.49], [0.51, 0.49]])
    artifact = np.array([[0.8, 0.2], [0.4, 0.6], [0.52, 0.48], [0.49, 0.51]])
    labels = np.array([0, 0, 0, 0])
    np.testing.assert_allclose(top1_margin(reference), [0.8, 0.8, 0.02, 0.02])
    result = compare(reference, artifact, labels, 1.0, confident_margin=0.2)
    assert result["agreement"] == 0.5 and result["confident_agreement"] == 0.5
    assert result["confident_count"] == 2
    only_the_unsure_flip = artifact.copy()
    only_the_unsure_flip[1] = [0.85, 0.15]
    result = compare(reference, only_the_unsure_flip, labels, 1.0, confident_margin=0.2)
    assert result["agreement"] == 0.75 and result["confident_agreement"] == 1.0
    # The default gate stays strict; a recipe can gate on confident images instead.
    assert check(result, Threshold(min_agreement=0.98)) == ["agreement 75.0% < 98.0%"]
    assert check(result, Threshold(min_confident_agreement=0.98)) == []
    nothing_sure = compare(reference[2:], artifact[2:], labels[2:], 1.0, confident_margin=0.5)
    assert nothing_sure["confident_agreement"] is None and nothing_sure["confident_count"] == 0
    assert check(nothing_sure, Threshold(min_confident_agreement=0.9)) == [
        "no confident image (margin >= 0.50) to judge"
    ]


def test_verify_reports_confident_agreement_and_the_recipe_gates_on_it(exported_run, tmp_path, parity_report):
    report, lines = parity_report
    result = report["artifacts"]["model_int8.tflite"]
    assert result["confident_margin"] == 0.2 and result["confident_count"] > 0
    assert 0.0 <= result["confident_agreement"] <= 1.0
    assert any(line.startswith("✓ model_int8.tflite") and "confident agreement: " in line for line in lines)
    run = _copy_run(exported_run, tmp_path)
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    recipe["verify"].update(confident_margin=0.0)  # every image counts: confident agreement == agreement
    recipe["verify"].setdefault("thresholds", {})["int8"] = {
        "min_agreement": None,
        "max_accuracy_drop": None,
        "min_confident_agreement": 1.0,
    }
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    try:
        verify_run(run, files=["model_int8.tflite"])
    except ParityError as exc:
        assert "confident agreement" in str(exc) and "< 100.0%" in str(exc)
    judged = json.loads((run / "parity.json").read_text())["artifacts"]["model_int8.tflite"]
    assert judged["limits"]["min_confident_agreement"] == 1.0
    assert judged["confident_agreement"] == judged["agreement"] and judged["confident_count"] == report["count"]
    assert judged["passed"] == (judged["agreement"] == 1.0)


def test_nan_or_inf_outputs_fail_every_threshold_set():
    """NaN compares False with any limit: 'max diff: nan' used to pass with a ✓."""
    from toolkit.core.recipe import Threshold
    from toolkit.edge.parity import check, compare

    reference = np.array([[0.9, 0.1], [0.2, 0.8]], dtype=np.float32)
    labels = np.array([0, 1])
    broken = reference.copy()
    broken[1, 0] = np.nan
    broken[0, 1] = np.inf
    result = compare(reference, broken, labels, 1.0)
    assert result["non_finite_outputs"] == 2
    assert check(result, Threshold(max_abs_diff=1e-3))[0] == "2 NaN/Inf outputs"
    assert check(result, Threshold()) == ["2 NaN/Inf outputs"]
    nan_reference = compare(broken, reference, labels, 1.0)
    assert any("model.keras" in f for f in check(nan_reference, Threshold()))
