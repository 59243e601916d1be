"""OpenVINO IR as an optional format: export (fp32, fp16 weights, int8 through NNCF), rt_info, verify,
bench and pack of both files, and the bad inputs (missing/truncated/swapped .bin, several outputs)."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_one_line_error
from typer.testing import CliRunner

from toolkit.cli.app import app
from toolkit.core.errors import TkError
from toolkit.core.formats import DEFAULT_FORMATS, FORMATS
from toolkit.core.io import sha256_file
from toolkit.core.recipe import recipe_from_dict
from toolkit.core.runs import load_manifest
from toolkit.edge.bench import format_row
from toolkit.edge.openvino import OpenVINOPredictor, import_openvino
from toolkit.edge.predictors import load_predictor

runner = CliRunner()
IRS = ("model_float32.xml", "model_float16.xml", "model_int8.xml")


def _copy(run: Path, tmp_path: Path) -> Path:
    return Path(shutil.copytree(run, tmp_path / run.name))


def test_openvino_is_optional_all_and_recipe_defaults_leave_it_out(synth_root):
    assert not FORMATS["openvino"].default and "openvino" not in DEFAULT_FORMATS
    recipe = recipe_from_dict({"name": "x", "data": {"root": str(synth_root)}})
    assert "openvino" not in recipe.export.formats
    from toolkit.export.exporter import plan

    pairs = plan(["all"], ["all"], recipe.export)
    assert {f.name for f, _ in pairs} == set(DEFAULT_FORMATS)
    named = plan(["openvino"], ["all"], recipe.export)
    assert [(f.name, q) for f, q in named] == [("openvino", "none"), ("openvino", "float16"), ("openvino", "int8")]


def test_ir_is_exported_with_its_bin_hashed_and_the_contract_in_rt_info(openvino_run):
    manifest = load_manifest(openvino_run)
    ov = import_openvino()
    for file in IRS:
        entry = manifest["artifacts"][file]
        xml, weights = openvino_run / file, openvino_run / file.replace(".xml", ".bin")
        assert entry["format"] == "openvino" and entry["sha256"] == sha256_file(xml)
        assert entry["companions"] == {
            weights.name: {"sha256": sha256_file(weights), "size_bytes": weights.stat().st_size}
        }
        assert entry["size_bytes"] == xml.stat().st_size + weights.stat().st_size
        assert entry["input"]["shape"][1:] == [*manifest["preprocessing"]["size"], 3]
        assert entry["output"]["shape"] == [None, len(manifest["classes"])]
        from toolkit.export.openvino_ir import read_rt_info

        info = read_rt_info(ov.Core().read_model(str(xml)))
        assert info["labels"] == manifest["classes"]
        assert info["preprocessing"] == manifest["preprocessing"]
        assert info["model_info"]["model_type"] == "Classification"  # OpenVINO Model API's keys
        assert info["model_info"]["labels"].split() == manifest["classes"]
        assert info["model_info"]["mean_values"] == "0 0 0" and info["model_info"]["scale_values"] == "1 1 1"
    sizes = {f: manifest["artifacts"][f]["size_bytes"] for f in IRS}
    assert sizes["model_float16.xml"] < 0.6 * sizes["model_float32.xml"]  # fp16-compressed weights
    assert sizes["model_int8.xml"] < 0.4 * sizes["model_float32.xml"]
    assert manifest["artifacts"]["model_int8.xml"]["calibration"]["split"] == "train"


def test_every_ir_passes_verify_and_records_what_openvino_ran(openvino_run):
    from toolkit.export.verify import verify_run

    report = verify_run(openvino_run, list(IRS))
    assert report["passed"], report
    assert report["artifacts"]["model_float32.xml"]["max_abs_diff"] < 1e-4
    predictor = load_predictor(openvino_run / "model_float32.xml", num_threads=1)
    info = predictor.runtime_info()
    # tk asks for f32 (the float32 gate cannot hold under bf16); the compiled model says what ran.
    assert info["inference_precision"] == "f32" and info["threads"] == 1 and info["runtime"] == "openvino"


def test_bench_rows_carry_precision_and_threads(openvino_run, tmp_path):
    run = _copy(openvino_run, tmp_path)
    result = runner.invoke(
        app, ["bench", str(run / "model_int8.xml"), "--threads", "1,2", "--runs", "5", "--warmup", "1"]
    )
    assert result.exit_code == 0, result.output
    assert "CPU flags" in " ".join(result.output.split())  # the machine's flags beside its figures
    rows = json.loads((run / "bench.json").read_text())["rows"]
    assert format_row(rows[0])[0] == "model_int8.xml [f32]"
    assert [(r["threads"], r["runtime"]["threads"]) for r in rows] == [(1, 1), (2, 2)]
    assert all(r["runtime"]["inference_precision"] == "f32" and r["accuracy"] is not None for r in rows)
    assert isinstance(json.loads((run / "bench.json").read_text())["machine"]["cpu_flags"], list)


def test_pack_copies_both_files_and_the_bundle_runs(openvino_run, tmp_path):
    bundle = tmp_path / "bundle"
    result = runner.invoke(app, ["pack", str(openvino_run), str(bundle), "--format", "openvino", "--samples", "6"])
    assert result.exit_code == 0, result.output
    assert sorted(p.name for p in bundle.glob("model_*")) == sorted([*IRS, *(f.replace(".xml", ".bin") for f in IRS)])
    probs = load_predictor(bundle / "model_float32.xml").predict_files(
        [p for p in (bundle / "samples").rglob("*") if p.is_file()]
    )
    assert probs.shape == (6, len(load_manifest(openvino_run)["classes"]))


def test_a_missing_truncated_or_swapped_bin_is_one_line(openvino_run, tmp_path):
    run = _copy(openvino_run, tmp_path)
    (run / "model_float32.bin").unlink()
    result = runner.invoke(app, ["predict", str(run / "model_float32.xml"), str(run / "labels.txt")])
    assert_one_line_error(result, "model_float32.bin: missing", "copy both")
    result = runner.invoke(app, ["pack", str(run), str(tmp_path / "b"), "--format", "openvino"])
    assert result.exit_code == 1 and "Traceback" not in result.output  # after its "pack FILE" progress line
    assert result.output.splitlines()[-1].startswith("error: ") and "model_float32.bin: missing" in result.output
    assert not (tmp_path / "b").exists()

    run = _copy(openvino_run, tmp_path / "swap")
    shutil.copyfile(run / "model_float16.bin", run / "model_float32.bin")  # another export's weights
    from toolkit.export.verify import verify_run

    report = verify_run(run, ["model_float32.xml"], check=False)
    assert (
        not report["passed"]
        and "model_float32.bin: sha256 differs" in report["artifacts"]["model_float32.xml"]["error"]
    )

    weights = run / "model_int8.bin"
    weights.write_bytes(weights.read_bytes()[: weights.stat().st_size // 2])
    manifest = load_manifest(run)
    with pytest.raises(TkError, match=r"not a valid OpenVINO IR \(model_int8.bin truncated"):
        OpenVINOPredictor(weights.with_suffix(".xml"), manifest)


def test_an_ir_with_two_outputs_is_one_line(openvino_run, tmp_path):
    ov = import_openvino()
    import openvino.opset13 as ops

    run = _copy(openvino_run, tmp_path)
    image = ops.parameter([-1, 32, 32, 3], np.float32, name="image")
    pooled = ops.reduce_mean(image, [1, 2], keep_dims=False)
    model = ov.Model([ops.result(pooled), ops.result(ops.softmax(pooled, 1))], [image])
    ov.save_model(model, str(run / "model_float32.xml"), compress_to_fp16=False)
    with pytest.raises(TkError, match="model has 2 outputs"):
        OpenVINOPredictor(run / "model_float32.xml", load_manifest(run))


@pytest.mark.parametrize("key, value", [("min_agreement", 1.5), ("max_accuracy_drop", -0.1), ("min_agreement", "high")])
def test_an_int8_budget_outside_0_1_is_one_line(trained_run, key, value):
    result = runner.invoke(
        app, ["train", str(trained_run / "recipe.yaml"), "--set", f"export.int8_budget.{key}={value}"]
    )
    assert_one_line_error(result, f"export.int8_budget.{key}")
