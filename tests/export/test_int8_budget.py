"""int8 within a budget (export.int8_budget) on LiteRT, ONNX Runtime and OpenVINO: each int8 artifact is
the variant the search chose, judged on the validation split against the Keras model, and its record
(ops kept float, size, p50, agreement, accuracy delta) says what it cost; plain int8 when nothing fits."""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
import yaml

from toolkit.core.images import load_batch
from toolkit.core.runs import load_manifest, load_split
from toolkit.edge.predictors import load_predictor
from toolkit.export.reference import load_keras_model

INT8 = ("model_int8.tflite", "model_int8.onnx", "model_int8.xml")


@pytest.fixture(scope="module")
def budget_run(exported_run, tmp_path_factory) -> Path:
    """exported_run with a strict budget (every validation image agrees, no accuracy lost) and few
    calibration images (3: coarse ranges, so plain int8 has something to lose), exported int8."""
    from toolkit.export.exporter import export_run

    run = Path(shutil.copytree(exported_run, tmp_path_factory.mktemp("budget") / exported_run.name))
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    recipe["export"].update(
        calibration_samples=3,
        int8_budget={"min_agreement": 1.0, "max_accuracy_drop": 0.0},
        int8_fallback={"enabled": False, "max_size_ratio": 4.0},
    )
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    export_run(run, formats=["tflite", "onnx", "openvino"], quantizations=["int8"])
    return run


@pytest.mark.parametrize("file", INT8)
def test_each_runtime_records_its_search_and_the_written_file_is_what_it_judged(budget_run, file):
    record = load_manifest(budget_run)["artifacts"][file]["int8_budget"]
    assert record["budget"] == {"max_accuracy_drop": 0.0, "min_agreement": 1.0}
    split = load_split(budget_run / "split.json")
    assert record["split"] == "validation" and record["images"] == len(split.paths("validation"))
    for key in ("size_bytes", "p50_ms_1_thread"):
        assert set(record[key]) == {"float32", "int8", "chosen"} and all(v > 0 for v in record[key].values())
    assert record["size_bytes"]["int8"] < record["size_bytes"]["float32"]
    # The file tk wrote, run by the device predictor on the validation images, is the variant judged.
    images = load_batch(split.paths("validation"), tuple(load_manifest(budget_run)["preprocessing"]["size"]))
    reference = np.asarray(load_keras_model(budget_run / "model.keras").predict(images, verbose=0))
    probs = load_predictor(budget_run / file).predict_batched(images)
    agreement = float(np.mean(probs.argmax(1) == reference.argmax(1)))
    assert agreement == pytest.approx(record["agreement"]["chosen"], abs=1.5 / len(images))
    labels = np.asarray(split.labels("validation"))
    drop = float(np.mean(reference.argmax(1) == labels) - np.mean(probs.argmax(1) == labels))
    meets = record["agreement"]["chosen"] >= 1.0 and -record["accuracy_delta"]["chosen"] <= 1e-12
    assert record["passed"] == meets, record
    if record["passed"]:
        assert agreement >= 1.0 - 1.5 / len(images) and drop <= 1.5 / len(images)
    if not record["passed"] or not record["float_ops"]:  # plain int8 kept
        assert record["size_bytes"]["chosen"] == record["size_bytes"]["int8"]
    else:  # some ops stayed float: the file grew, within the cap
        assert record["size_bytes"]["int8"] < record["size_bytes"]["chosen"] <= 4.0 * record["size_bytes"]["int8"]
    assert record["tried"] and all("size_bytes" in t for t in record["tried"])


def test_onnx_nodes_are_ranked_by_their_own_error_and_excluded_ones_stay_float(int8_inputs, tmp_path):
    import onnx

    from toolkit.export.int8_budget import onnx_node_ranking
    from toolkit.export.onnx_int8 import prepared_model, quantize_onnx_int8

    work = tmp_path / "work"
    plain = tmp_path / "plain.onnx"
    quantize_onnx_int8(int8_inputs.onnx, int8_inputs.calibration, plain, method="MinMax", work=work)
    ranked = onnx_node_ranking(prepared_model(int8_inputs.onnx, work), plain, int8_inputs.calibration, work)
    nodes = {n.name: n for n in onnx.load(str(prepared_model(int8_inputs.onnx, work))).graph.node}
    assert len(ranked) > 3 and all(name in nodes for group, _ in ranked for name in group)
    assert [score for _, score in ranked] == sorted(score for _, score in ranked)  # worst (lowest SQNR) first
    # A Relu's error goes to its Conv too: the group is the computation to keep float.
    group = next(g for g, _ in ranked if [nodes[n].op_type for n in g] == ["Conv", "Relu"])
    conv = group[0]
    excluded = tmp_path / "excluded.onnx"
    quantize_onnx_int8(
        int8_inputs.onnx, int8_inputs.calibration, excluded, method="MinMax", nodes_to_exclude=group, work=work
    )
    graph = onnx.load(str(excluded)).graph
    producers = {out: node.op_type for node in graph.node for out in node.output}
    (kept,) = [n for n in graph.node if n.name == conv]
    # Its weights stay a float initializer (ONNX Runtime cannot fuse it into an int8 QLinearConv).
    initializers = {i.name for i in graph.initializer}
    assert kept.input[1] in initializers and producers.get(kept.input[1]) is None
    (plain_conv,) = [n for n in onnx.load(str(plain)).graph.node if n.name == conv]
    plain_producers = {out: node.op_type for node in onnx.load(str(plain)).graph.node for out in node.output}
    assert plain_producers[plain_conv.input[1]] == "DequantizeLinear"
    assert excluded.stat().st_size > plain.stat().st_size


def test_when_nothing_meets_the_budget_plain_int8_is_kept_and_marked_failed(exported_run, tmp_path, monkeypatch):
    """A budget no int8 can meet (here: probabilities within 1e-9 of the float model's, on top of 100%
    agreement): every runtime searches within its caps (2 ops float), then keeps plain int8, says so,
    and records it as failed; the files are still written (tk verify then fails them, as today)."""
    from toolkit.core.context import Context
    from toolkit.core.recipe import Threshold
    from toolkit.export import int8_budget
    from toolkit.export.exporter import export_run

    monkeypatch.setattr(
        int8_budget, "budget_threshold", lambda b: Threshold(max_abs_diff=1e-9, min_agreement=b.min_agreement)
    )
    run = Path(shutil.copytree(exported_run, tmp_path / exported_run.name))
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    recipe["export"].update(int8_budget={"min_agreement": 1.0}, int8_fallback={"enabled": False, "max_float_layers": 2})
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    said: list[str] = []
    export_run(run, formats=["tflite", "onnx", "openvino"], quantizations=["int8"], ctx=Context(say=said.append))
    artifacts = load_manifest(run)["artifacts"]
    for file, runtime in zip(INT8, ("LiteRT", "ONNX Runtime", "OpenVINO"), strict=True):
        record = artifacts[file]["int8_budget"]
        assert record["passed"] is False and record["float_ops"] == [], (file, record)
        assert record["size_bytes"]["chosen"] == record["size_bytes"]["int8"]
        assert len(record["tried"]) >= 2, (file, record["tried"])  # it searched before giving up
        assert any(line.startswith(f"warning: int8 budget ({runtime}): no variant") for line in said), said
    onnx_tries = artifacts["model_int8.onnx"]["int8_budget"]["tried"]
    assert [t["float_ops"] for t in onnx_tries] == [0, 1, 2]  # 1, then 2 groups float: the cap
    assert onnx_tries[2]["size_bytes"] > onnx_tries[0]["size_bytes"]


def test_the_latency_cap_measures_the_variant_around_float32():
    """A variant costlier than max_latency_ratio x float32's p50 is over the cap; a cheap one, or no cap,
    is not. The cap compares CPU time, so a variant that sleeps costs nothing: the stand-ins spin."""
    import time
    from types import SimpleNamespace

    from toolkit.export.int8_budget import over_latency_cap

    def sleeper(ms):  # burns `ms` of this process's CPU
        def run(batch):
            end = time.process_time() + ms / 1e3
            while time.process_time() < end:
                pass

        return run

    judge = SimpleNamespace(budget=SimpleNamespace(max_latency_ratio=0.9), images=np.zeros((2, 4, 4, 3), np.float32))
    slow = over_latency_cap(judge, sleeper(4), sleeper(1))
    assert slow and slow["over_latency_cap"] and slow["p50_ms"] > 0.9 * slow["float32_p50_ms"] > 0, slow
    assert slow["max_latency_ratio"] == 0.9
    assert over_latency_cap(judge, sleeper(0), sleeper(4)) is None
    judge.budget.max_latency_ratio = None
    assert over_latency_cap(judge, sleeper(4), sleeper(1)) is None


@pytest.mark.parametrize(
    "fmt, file, runtime, scripted",
    [
        # LiteRT's search is int8_gate's fallback: plain int8 fails it twice (converter, debugger), then
        # the first variant with a float layer passes.
        ("tflite", "model_int8.tflite", "LiteRT", ("toolkit.export.int8_gate", 2)),
        # ONNX Runtime's: the budget's judge fails plain int8, then the first excluded group passes.
        ("onnx", "model_int8.onnx", "ONNX Runtime", ("toolkit.export.int8_budget", 1)),
    ],
)
def test_a_variant_that_meets_the_budget_but_is_not_faster_than_float32_is_refused(
    exported_run, tmp_path, monkeypatch, fmt, file, runtime, scripted
):
    """The budget's verdicts are scripted (this easy model passes int8 outright); the cap is real and
    set so low (1e-6 of float32's p50) that any variant with a float op is over it: plain int8 is
    written, recorded as failed, with the refused variant's figures in `tried`, and said."""
    import importlib

    from toolkit.core.context import Context
    from toolkit.export.exporter import export_run

    module, fails = scripted
    verdicts = iter([["scripted: plain int8 fails"]] * fails)
    monkeypatch.setattr(importlib.import_module(module), "check", lambda result, threshold: next(verdicts, []))
    run = Path(shutil.copytree(exported_run, tmp_path / exported_run.name))
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    recipe["export"].update(
        int8_budget={"min_agreement": 0.9, "max_latency_ratio": 1e-6},
        int8_fallback={"enabled": False, "max_size_ratio": 4.0},
    )
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    said: list[str] = []
    export_run(run, formats=[fmt], quantizations=["int8"], ctx=Context(say=said.append))
    record = load_manifest(run)["artifacts"][file]["int8_budget"]
    assert record["passed"] is False and record["float_ops"] == [], record
    assert record["size_bytes"]["chosen"] == record["size_bytes"]["int8"]  # plain int8 was written
    (refused,) = [t for t in record["tried"] if t.get("over_latency_cap")]
    assert refused["p50_ms"] > 1e-6 * refused["float32_p50_ms"] > 0 and refused["max_latency_ratio"] == 1e-6
    assert any(line.startswith(f"warning: int8 budget ({runtime}): the variant that meets") for line in said), said
    assert any("no faster than float32; kept plain int8, marked failed" in line for line in said), said
