"""OpenVINO IR for `tk export --format openvino`: float32, float16-compressed weights, int8 (NNCF).

The IR is converted with `openvino.convert_model` from the SavedModel every other format converts
from. Keras' own `model.export(format="openvino")` traces the same TensorFlow function through the
same TensorFlow frontend, and converting the ONNX file adds tf2onnx's graph in between: all three
verified alike and ran within noise of each other (benchmarks/BENCHMARKS.md, "OpenVINO"), so tk
takes the one source that needs neither a traced Keras call nor the ONNX export.

int8 is NNCF's post-training quantization on the same calibration images as the TFLite and ONNX
int8 (ExportJob.calibration, a class-stratified train sample); with an int8 budget
(export.int8_budget) it is NNCF's `quantize_with_accuracy_control`, judged against the Keras
reference on the validation split (export/int8_budget.py).

The labels and the preprocessing contract go into the IR's rt_info: under "model_info" in the
layout of OpenVINO's Model API (model_type, labels, mean/scale values, so its ClassificationModel
reads them), and under "tk" as JSON (labels in order, the preprocessing dict of the manifest).
"""

from __future__ import annotations

import contextlib
import io
import json
import logging
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from ..core.errors import TkError
from ..edge.openvino import import_openvino

if TYPE_CHECKING:
    from .job import ExportJob


def convert(saved_model: Path):
    """The float32 ov.Model of a SavedModel's serving signature (dynamic batch, NHWC float32 0..255)."""
    ov = import_openvino()
    return ov.convert_model(str(saved_model))


def add_rt_info(model, labels: list[str], preprocessing: dict[str, Any], quantization: str) -> None:
    """Labels and the preprocessing contract, where OpenVINO's Model API and a tk reader find them."""
    # tk's models take 0..255 RGB and scale inside the graph: mean 0, scale 1, no channel swap.
    model.set_rt_info("Classification", ["model_info", "model_type"])
    model.set_rt_info(" ".join(label.replace(" ", "_") for label in labels), ["model_info", "labels"])
    model.set_rt_info("0 0 0", ["model_info", "mean_values"])
    model.set_rt_info("1 1 1", ["model_info", "scale_values"])
    model.set_rt_info("False", ["model_info", "reverse_input_channels"])
    model.set_rt_info("False", ["model_info", "embedded_processing"])
    size = preprocessing.get("size", [None, None])
    model.set_rt_info(f"{size[1]} {size[0]}", ["model_info", "orig_width_height"])
    model.set_rt_info(json.dumps(labels), ["tk", "labels"])
    model.set_rt_info(json.dumps(preprocessing, sort_keys=True), ["tk", "preprocessing"])
    model.set_rt_info(quantization, ["tk", "quantization"])


def read_rt_info(model) -> dict[str, Any]:
    """tk's labels and preprocessing back from an IR's rt_info (what add_rt_info wrote)."""

    def text(*path: str) -> str:
        return model.get_rt_info(list(path)).astype(str)

    return {
        "labels": json.loads(text("tk", "labels")),
        "preprocessing": json.loads(text("tk", "preprocessing")),
        "quantization": text("tk", "quantization"),
        "model_info": {k: text("model_info", k) for k in ("model_type", "labels", "mean_values", "scale_values")},
    }


def import_nncf():
    """nncf (the int8 IR's quantizer), or one line naming the extra; never with its telemetry."""
    import_openvino()  # first: it keeps openvino_telemetry unimportable, so NNCF uses its no-op stub
    try:
        import nncf
    except ImportError:
        raise TkError(
            "an int8 OpenVINO IR is quantized by NNCF, which is not installed: pip install "
            "'tk-edge[openvino-export]' (or export --format openvino --quantize none,float16)"
        ) from None
    return nncf


def calibration_dataset(images: np.ndarray):
    """An nncf.Dataset over images (N, H, W, 3) float32 0..255, one image per inference."""
    nncf = import_nncf()

    return nncf.Dataset(list(images), lambda image: image[None].astype(np.float32, copy=False))


@contextlib.contextmanager
def nncf_quietly():
    """NNCF draws rich progress bars on stdout and logs INFO lines; only tk's CLI talks to the user."""
    nncf = import_nncf()

    from ..core.quiet import silenced_stderr

    nncf.set_log_level(logging.ERROR)
    with silenced_stderr(), contextlib.redirect_stdout(io.StringIO()):
        yield


def quantize_int8(model, calibration: np.ndarray):
    """NNCF post-training quantization (MinMax ranges, fast bias correction), as plain as TFLite/ONNX int8."""
    nncf = import_nncf()

    with nncf_quietly():
        return nncf.quantize(model, calibration_dataset(calibration), subset_size=len(calibration))


def write_ir(model, tmp_xml: Path, run_dir: Path, file: str, workdir: Path, compress_to_fp16: bool) -> None:
    """Save the IR: the .xml to `tmp_xml` (the exporter renames it into place), the .bin beside the run's
    file name. The .bin is renamed first: a crash between the two renames leaves a .bin whose sha256
    the manifest does not have, which every reader refuses (it never pairs with the old .xml silently)."""
    ov = import_openvino()
    stage = workdir / "ir" / file
    stage.parent.mkdir(parents=True, exist_ok=True)
    ov.save_model(model, str(stage), compress_to_fp16=compress_to_fp16)
    shutil.move(str(stage), str(tmp_xml))
    stage.with_suffix(".bin").replace(run_dir / Path(file).with_suffix(".bin").name)


def ir_io(model) -> dict[str, Any]:
    """The manifest's input/output of an IR: shape (dynamic dims as None) and dtype."""

    def describe(port) -> dict[str, Any]:
        shape = [d.get_length() if d.is_static else None for d in port.get_partial_shape()]
        return {"shape": shape, "dtype": np.dtype(port.get_element_type().to_dtype()).name}

    return {"input": describe(model.inputs[0]), "output": describe(model.outputs[0])}


def write_openvino(job: "ExportJob", quantization: str, tmp: Path) -> dict[str, Any]:
    """The exporter's writer for --format openvino (WRITERS["openvino"])."""
    from ..core.formats import FORMATS, tolerance_kind

    ov_float = convert(job.saved_model)
    extra: dict[str, Any] = {"converter": "openvino.convert_model(SavedModel)"}
    model = ov_float
    if quantization == "int8":
        budget = job.section.int8_budget
        if budget.active:
            model, extra["int8_budget"] = openvino_within_budget(job, ov_float)
        else:
            model = quantize_int8(ov_float, job.calibration)
        extra["calibration"] = job.calibration_record()
        extra["quantization_details"] = {"tool": "nncf", "mode": "post-training, int8 weights and activations"}
    elif quantization == "float16":
        extra["quantization_details"] = {"weights": "float16 (compressed; the CPU plugin computes in f32 or bf16)"}
    add_rt_info(model, job.labels, job.manifest["preprocessing"], tolerance_kind(quantization))
    file = FORMATS["openvino"].file_name(quantization)
    write_ir(model, tmp, job.run_dir, file, job.workdir, compress_to_fp16=quantization == "float16")
    return {**ir_io(model), **extra, "rt_info": {"model_info": "OpenVINO Model API", "tk": ["labels", "preprocessing"]}}


# --- OpenVINO: NNCF's quantize_with_accuracy_control ---------------------------------------------


def _quantized_ops(model) -> set[str]:
    """Names of the ops that take a FakeQuantize output (what NNCF quantized)."""
    ops = set()
    for node in model.get_ops():
        for port in node.inputs():
            if port.get_source_output().get_node().get_type_name() == "FakeQuantize":
                if node.get_type_name() != "FakeQuantize":
                    ops.add(node.get_friendly_name())
    return ops


def openvino_within_budget(job: "ExportJob", ov_float) -> tuple[Any, dict[str, Any]]:
    """The fastest int8 ov.Model within the budget (plain int8 when none is), and its record.

    NNCF takes one metric and one max drop: tk gives it the budget's slack, min(agreement - min_agreement,
    max_accuracy_drop - accuracy drop), whose float value is min(1 - min_agreement, max_accuracy_drop):
    a drop of at most that much is exactly "both limits hold". It returns per-image probabilities too,
    so NNCF ranks the quantized ops by how much they change the outputs.
    """
    from ..edge.openvino import compile_config
    from .int8_budget import judge_of, over_latency_cap, say_result, summary

    nncf = import_nncf()
    import openvino as ov
    from nncf.quantization.advanced_parameters import AdvancedAccuracyRestorerParameters

    judge, settings = judge_of(job), job.section.int8_fallback
    budget = judge.budget
    labels, reference = judge.labels, judge.reference
    ref_top1 = reference.argmax(1)

    def slack(indices: list[int], probs: np.ndarray) -> float:
        top1 = probs.argmax(1)
        terms = []
        if budget.min_agreement is not None:
            terms.append(float(np.mean(top1 == ref_top1[indices])) - budget.min_agreement)
        if budget.max_accuracy_drop is not None:
            drop = float(np.mean(ref_top1[indices] == labels[indices]) - np.mean(top1 == labels[indices]))
            terms.append(budget.max_accuracy_drop - drop)
        return min(terms)

    def validate(compiled, items) -> tuple[float, list]:
        indices, outputs = [], []
        for index, image in items:
            indices.append(index)
            outputs.append(np.asarray(compiled(image[None])[0]))
        return slack(indices, np.concatenate(outputs)), [[o] for o in outputs]

    plain = quantize_int8(ov_float, job.calibration)  # what tk writes without a budget
    core = ov.Core()

    def run(model):
        compiled = core.compile_model(model, "CPU", compile_config(1))
        return lambda images: np.asarray(compiled(images.astype(np.float32))[0])

    def weight_bytes(model) -> int:
        path = job.workdir / "ov-size.xml"
        ov.save_model(model, str(path), compress_to_fp16=False)
        return path.stat().st_size + path.with_suffix(".bin").stat().st_size

    ok, details = judge(run(plain)(judge.images))
    tried = [{"float_ops": 0, "size_bytes": weight_bytes(plain), "passed": ok, **details}]
    chosen, float_ops = plain, []
    if not ok:
        validation = nncf.Dataset([(i, image) for i, image in enumerate(judge.images)], lambda item: item[1][None])
        # NNCF judges its candidates in f32 (OVPreparedModel forces it), as tk's predictor runs them.
        with nncf_quietly():
            found = nncf.quantize_with_accuracy_control(
                ov_float,
                calibration_dataset(job.calibration),
                validation,
                validate,
                max_drop=min(
                    1 - budget.min_agreement if budget.min_agreement is not None else 1.0,
                    budget.max_accuracy_drop if budget.max_accuracy_drop is not None else 1.0,
                ),
                subset_size=len(job.calibration),
                advanced_accuracy_restorer_parameters=AdvancedAccuracyRestorerParameters(
                    max_num_iterations=settings.max_float_layers or 2**31 - 1
                ),
            )
        found_ok, details = judge(run(found)(judge.images))
        reverted = sorted(_quantized_ops(plain) - _quantized_ops(found))
        tried.append({"float_ops": len(reverted), "size_bytes": weight_bytes(found), "passed": found_ok, **details})
        if tried[-1]["size_bytes"] > tried[0]["size_bytes"] * settings.max_size_ratio:
            tried[-1]["over_size_budget"] = found_ok = False
        slow = over_latency_cap(judge, run(found), run(ov_float)) if found_ok and reverted else None
        if slow:
            tried[-1].update(slow)
            found_ok = False
        if found_ok:
            chosen, float_ops, ok = found, reverted, True
    record = summary(
        judge,
        {
            "float32": (run(ov_float), weight_bytes(ov_float)),
            "int8": (run(plain), tried[0]["size_bytes"]),
            "chosen": (run(chosen), weight_bytes(chosen)),
        },
        ok,
        float_ops,
        "nncf.quantize_with_accuracy_control (metric: the budget's slack, ranking by output change)",
        tried,
    )
    say_result(job, "OpenVINO", record)
    return chosen, record
