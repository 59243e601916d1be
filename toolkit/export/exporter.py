"""tk export: a trained run's model.keras -> SavedModel, TFLite (float32/float16/dynamic/int8), ONNX.

Every format converts from one SavedModel written by `model.export()` with an explicit input
signature (Keras 3 breaks `from_keras_model` and tf2onnx's `from_keras`). Each artifact is written
under a temporary name and renamed when complete, then recorded in manifest.json with what a device
needs to run it (input/output shape and dtype, int8 scale/zero-point) and the tool versions.
A failed conversion is reported with its format and cause; the other formats still export, and
the command fails at the end. Formats are data: core/formats.py names each format's files and
quantizations; WRITERS below holds one converter per exported format.
"""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ..core import schemas
from ..core.context import SILENT, Context
from ..core.errors import TkError, fault_line, suggest
from ..core.formats import DEFAULT_FORMATS, EXPORT_FORMATS, FORMATS, QUANTIZATIONS, Format, tolerance_kind
from ..core.io import atomic_path, check_writable, format_size, remove_leftovers, tool_versions
from ..core.lock import run_lock
from ..core.recipe import ONNX_OPSETS, ExportSection, Recipe
from ..core.runs import (
    MANIFEST,
    REFERENCE,
    load_manifest,
    record_artifact,
    reference_sha256,
    run_recipe,
)
from .job import ExportJob
from .metadata import LABEL_FILE, add_metadata

# --- writers: one per format -------------------------------------------------------------------


def _float_io(shape_in: list, shape_out: list) -> dict[str, Any]:
    return {"input": {"shape": shape_in, "dtype": "float32"}, "output": {"shape": shape_out, "dtype": "float32"}}


def _write_saved_model(job: ExportJob, quantization: str, tmp: Path) -> dict[str, Any]:
    shutil.copytree(job.saved_model, tmp)
    classes = len(job.manifest["classes"])
    return {**_float_io([None, *job.size, 3], [None, classes]), "signature": "serving_default"}


def _write_tflite(job: ExportJob, quantization: str, tmp: Path) -> dict[str, Any]:
    extra: dict[str, Any] = {}
    if quantization == "int8" and job.section.int8_budget.active:
        from .int8_budget import tflite_within_budget

        flatbuffer, extra = tflite_within_budget(job)
    elif quantization == "int8" and job.section.int8_fallback.enabled:
        from .int8_gate import int8_with_fallback

        flatbuffer, extra["fallback"] = int8_with_fallback(job)
    else:
        flatbuffer = job.tflite(quantization)
    tmp.write_bytes(flatbuffer)
    io = tflite_io(tmp)
    if quantization == "int8":
        extra["calibration"] = job.calibration_record()
        _check_raw_pixel_input(io["input"], job.ctx)
    # MediaPipe Tasks and the TFLite Task Library read labels and input normalization from here.
    # Written last: the manifest's sha256 is of this final file.
    info = metadata_info(job, quantization)
    tmp.write_bytes(
        add_metadata(
            flatbuffer,
            **info,
            labels=job.labels,
            input_dtype=io["input"]["dtype"],
            input_quantization=io["input"].get("quantization"),
        )
    )
    normalization = {"mean": [0.0] * 3, "std": [1.0] * 3} if io["input"]["dtype"].startswith("float") else None
    extra["metadata"] = {**info, "labels": LABEL_FILE, "normalization": normalization}
    return {**io, **extra}


def metadata_info(job: ExportJob, quantization: str) -> dict[str, Any]:
    """name, description, version, author and license of a .tflite's metadata (recipe export.metadata)."""
    section = job.section.metadata
    classes = job.manifest["classes"]
    description = section.description or (
        f"{job.manifest.get('backbone', 'tk')} image classifier, {len(classes)} "
        f"classes ({tolerance_kind(quantization)}); input RGB 0..255"
    )
    return {
        "name": job.manifest["name"],
        "description": description,
        "author": section.author,
        "version": section.version or str(job.manifest.get("created", ""))[:10] or "1",
        "license": section.license,
    }


def tflite_io(path: Path) -> dict[str, Any]:
    """Input/output shape (batch as None), dtype and int8 scale/zero-point, read from the model."""
    from ..edge.predictors import interpreter_class

    interpreter = interpreter_class()(model_path=str(path))

    def describe(detail: dict[str, Any]) -> dict[str, Any]:
        shape = [None if d < 0 else int(d) for d in detail["shape_signature"]]
        out: dict[str, Any] = {"shape": shape, "dtype": np.dtype(detail["dtype"]).name}
        if detail["dtype"] != np.float32:
            scale, zero_point = detail["quantization"]
            out["quantization"] = {"scale": float(scale), "zero_point": int(zero_point)}
        return out

    return {
        "input": describe(interpreter.get_input_details()[0]),
        "output": describe(interpreter.get_output_details()[0]),
    }


def _check_raw_pixel_input(info: dict[str, Any], ctx: Context) -> None:
    """With the scaling in the graph, a uint8 input should be the raw pixel (scale 1, zero-point 0)."""
    q = info.get("quantization")
    if not q:
        return
    raw = {"uint8": (1.0, 0), "int8": (1.0, -128)}.get(info["dtype"])
    if raw and (abs(q["scale"] - raw[0]) > 1e-6 or q["zero_point"] != raw[1]):
        ctx.say(
            f"note: int8 input is not the raw pixel (scale {q['scale']:.6g}, zero-point {q['zero_point']}): "
            "the calibration images do not span 0..255; devices must quantize with the manifest's values"
        )


def _write_onnx(job: ExportJob, quantization: str, tmp: Path) -> dict[str, Any]:
    import onnx

    from ..edge.bare import onnx_metadata_props
    from .converters import onnx_io

    proto = job.onnx_float
    extra: dict[str, Any] = {}
    # The labels and preprocessing contract travel inside the file: a bare .onnx names its classes.
    props = onnx_metadata_props(job.manifest["name"], job.labels, job.manifest["preprocessing"])
    if quantization == "int8":  # static QDQ, calibrated on the images TFLite int8 uses
        if job.section.int8_budget.active:
            from .int8_budget import onnx_within_budget

            fields = onnx_within_budget(job, job.onnx_float_file, tmp, job.quantize_onnx)
        else:
            made, fields = job.onnx_int8()  # perhaps prefetched while TFLite converted
            shutil.copyfile(made, tmp)
        extra = {"quantization_details": fields["quantization"], "calibration": job.calibration_record()}
        if "int8_budget" in fields:
            extra["int8_budget"] = fields["int8_budget"]
        io = {"input": fields["input"], "output": fields["output"]}  # read from the written file
        onnx.save(_with_props(onnx.load(str(tmp)), props), str(tmp))  # after the budget search judged it
    else:
        onnx.save(_with_props(proto, props), str(tmp))
        io = onnx_io(proto)
    names = {f"{side}_name": io[side].pop("name") for side in ("input", "output")}
    return {**io, "opset": job.opset, **names, "metadata_props": sorted(props), **extra}


def _write_openvino(job: ExportJob, quantization: str, tmp: Path) -> dict[str, Any]:
    from .openvino_ir import write_openvino

    return write_openvino(job, quantization, tmp)


def _with_props(proto, props: dict[str, str]):
    """A copy of the model with `props` in its metadata_props (others kept, tk's replaced)."""
    import onnx

    out = onnx.ModelProto()
    out.CopyFrom(proto)
    kept = {p.key: p.value for p in out.metadata_props if p.key not in props}
    onnx.helper.set_model_props(out, {**kept, **props})
    return out


# One converter per exported format of core/formats.FORMATS: (job, quantization, temporary path)
# -> the manifest entry's {"input": {...}, "output": {...}, extra keys}.
Writer = Callable[[ExportJob, str, Path], dict[str, Any]]
WRITERS: dict[str, Writer] = {
    "savedmodel": _write_saved_model,
    "tflite": _write_tflite,
    "onnx": _write_onnx,
    "openvino": _write_openvino,
}


def plan(
    formats: Optional[Sequence[str]],
    quantizations: Optional[Sequence[str]],
    section: ExportSection,
    ctx: Context = SILENT,
) -> list[tuple[Format, str]]:
    """(format, quantization) pairs to export; explicit impossible requests are errors."""
    explicit = bool(formats) and "all" not in ",".join(formats).split(",")
    # "all" is every default format: one with default=False is exported only when named.
    names = _expand(formats or section.formats, EXPORT_FORMATS, "--format", everything=DEFAULT_FORMATS)
    quants = _expand(quantizations or section.quantize, QUANTIZATIONS, "--quantize")
    pairs = []
    for name in names:
        fmt = FORMATS[name]
        chosen = [q for q in quants if q in fmt.quantizations]
        if not chosen:
            if explicit:
                able = [n for n in EXPORT_FORMATS if quants[0] in FORMATS[n].quantizations]
                raise TkError(
                    f"--format {name}: exports quantization {', '.join(fmt.quantizations)} only "
                    f"(got --quantize {', '.join(quants)}); {quants[0]} is exported by "
                    f"{', '.join(able)}: --format {able[0]} --quantize {quants[0]}"
                )
            ctx.say(f"skipping {name}: it exports {', '.join(fmt.quantizations)} only (asked: {', '.join(quants)})")
        pairs += [(fmt, q) for q in chosen]
    return pairs


def _expand(
    values: Sequence[str], allowed: Sequence[str], option: str, everything: Optional[Sequence[str]] = None
) -> list[str]:
    out: list[str] = []
    for value in (v.strip() for item in values for v in item.split(",") if v.strip()):
        if value == "all":
            out += [a for a in (allowed if everything is None else everything) if a not in out]
            continue
        if value not in allowed:
            raise TkError(
                f"{option}: unknown value {value!r}{suggest(value, allowed)}; allowed: {', '.join(allowed)}, all"
            )
        if value not in out:
            out.append(value)
    return out


def export_run(
    run_dir: Path,
    formats: Optional[Sequence[str]] = None,
    quantizations: Optional[Sequence[str]] = None,
    opset: Optional[int] = None,
    int8_fallback: Optional[bool] = None,
    ctx: Context = SILENT,
) -> list[dict[str, Any]]:
    """Export the run's model.keras to every requested (format, quantization); return the entries.

    `ctx.progress` gets one task per artifact (done when written), and one while the shared
    SavedModel is written.

    formats/quantizations default to the run recipe's export section, int8_fallback to its
    export.int8_fallback.enabled. ctx.data_root overrides split.json's data root (int8 calibration
    reads training images). Raises TkError after trying every artifact if any failed.
    """
    run_dir = Path(run_dir)
    recipe = run_recipe(run_dir)
    if int8_fallback is not None:
        fallback = dataclasses.replace(recipe.export.int8_fallback, enabled=int8_fallback)
        recipe = dataclasses.replace(recipe, export=dataclasses.replace(recipe.export, int8_fallback=fallback))
    opset = opset or recipe.export.onnx_opset
    if not ONNX_OPSETS[0] <= opset <= ONNX_OPSETS[1]:
        raise TkError(f"--opset: must be between {ONNX_OPSETS[0]} and {ONNX_OPSETS[1]} (got {opset})")
    pairs = plan(formats, quantizations, recipe.export, ctx)
    check_writable(run_dir)
    with run_lock(run_dir, "tk export", ctx):  # one writer per run (a tk train swaps the folder)
        for path in remove_leftovers(run_dir):
            ctx.say(f"removed {path}: left by an interrupted export")
        entries = _export_pairs(run_dir, recipe, opset, pairs, ctx)
    from ..train.tracking import log_results

    log_results(run_dir, "export", {}, [run_dir / e["file"] for e in entries] + [run_dir / MANIFEST], ctx)
    return entries


def _export_pairs(
    run_dir: Path,
    recipe: Recipe,
    opset: int,
    pairs: list[tuple[Format, str]],
    ctx: Context,
) -> list[dict[str, Any]]:
    # Provenance: every artifact names the model it came from, and that is the model tk train recorded.
    source = reference_sha256(run_dir, load_manifest(run_dir))
    job = ExportJob(run_dir, recipe, opset, ctx)
    versions = tool_versions(
        "tensorflow",
        "keras",
        "tf2onnx",
        "onnx",
        *(("openvino", "nncf") if any(f.name == "openvino" for f, _ in pairs) else ()),
    )
    entries, failures = [], []
    try:
        job.model  # noqa: B018 -- every format starts from the model and its SavedModel: fail once
        job.labels = read_labels(run_dir, job.manifest["classes"], job.model.outputs[0].shape[-1])
        try:
            with ctx.progress.task("export: SavedModel every format converts from"):
                job.saved_model  # noqa: B018
        except Exception as exc:
            if isinstance(exc, OSError) and fault_line(exc) is not None:
                raise
            raise TkError(
                f"{run_dir}/{REFERENCE}: model.export() to a SavedModel failed, so no format "
                f"can be exported: {_cause(exc)}"
            ) from None
        _prefetch(job, pairs)
        for number, (fmt, quantization) in enumerate(pairs, 1):
            file = fmt.file_name(quantization)
            try:
                with (
                    ctx.progress.task(
                        f"export {number}/{len(pairs)}: {file} ({fmt.name}, {tolerance_kind(quantization)})", 1
                    ) as task,
                    atomic_path(run_dir / file, suffix=fmt.suffix) as tmp,
                ):
                    info = WRITERS[fmt.name](job, quantization, tmp)
                    task.advance(1)
            except OSError as exc:
                if fault_line(exc) is not None:  # disk full / read-only: every other format would fail too
                    raise
                failures.append(f"{file} ({fmt.name} {quantization}): {_cause(exc)}")
                ctx.say(f"export failed: {file} ({fmt.name}, {tolerance_kind(quantization)}): {_cause(exc)}")
                continue
            except Exception as exc:  # a conversion failure of any kind: report it, export the rest
                cause = _cause(exc)
                failures.append(f"{file} ({fmt.name} {quantization}): {cause}")
                ctx.say(f"export failed: {file} ({fmt.name}, {tolerance_kind(quantization)}): {cause}")
                continue
            entry = record_artifact(
                run_dir,
                {
                    "file": file,
                    "format": fmt.name,
                    "quantization": quantization,
                    "tolerance": tolerance_kind(quantization),
                    **info,
                    "labels": LABEL_FILE,
                    "source": {"file": REFERENCE, "sha256": source},
                    "versions": versions,
                },
            )
            entries.append(entry)
            ctx.say(f"export success: {file} ({format_size(entry['size_bytes'])})")
    except KeyboardInterrupt:  # Ctrl-C: no waiting for a calibration nobody will use
        job.close(wait=False)
        raise
    except BaseException:  # a full disk: the prefetch finishes (or fails) first, then its files go too
        job.close()
        raise
    job.close()
    if failures:
        raise TkError(
            f"export failed for {len(failures)} of {len(pairs)} artifacts: "
            + "; ".join(failures)
            + (" (the others were exported)" if entries else "")
        )
    return entries


def _prefetch(job: ExportJob, pairs: list[tuple[Format, str]]) -> None:
    """Start the plain int8 ONNX model on a second thread when the plan has it and more than it.

    Nothing here is reported: a failure (tf2onnx, the calibration images, the quantizer) is raised
    again where the ONNX writers ask for what failed, and reported there with its format, as
    without the prefetch. The int8 budget's search is not prefetched (it judges as it goes).
    """
    if ("onnx", "int8") not in {(f.name, q) for f, q in pairs} or len(pairs) < 2 or job.section.int8_budget.active:
        return
    try:
        job.prefetch_onnx_int8()
    except Exception as exc:
        if isinstance(exc, OSError) and fault_line(exc) is not None:
            raise


def read_labels(run_dir: Path, classes: Sequence[str], outputs: int) -> list[str]:
    """The run's labels.txt (tk train wrote it), which every .tflite packs: checked against the
    manifest's classes and the model's output size before anything is converted."""
    path = run_dir / LABEL_FILE
    if not os.path.lexists(path):
        raise TkError(
            f"{path}: label file missing (every .tflite packs it); restore it or re-run tk train "
            f"(one class per line, in manifest.json's order: {', '.join(classes)})"
        )
    labels = schemas.read_labels(path)
    if len(labels) != outputs:
        raise TkError(
            f"{path}: {len(labels)} labels, but {run_dir / REFERENCE} outputs {outputs} classes; "
            "the label file and the model come from different trainings: re-run tk train"
        )
    if labels != list(classes):
        raise TkError(
            f"{path}: labels differ from manifest.json's classes ({', '.join(classes)}); "
            "restore labels.txt from the same training run or re-run tk train"
        )
    return labels


def _cause(exc: Exception) -> str:
    """The first informative line of an exception (converter errors run to pages)."""
    if isinstance(exc, TkError):
        return str(exc)
    lines = [line.strip() for line in str(exc).splitlines() if line.strip()]
    text = next((line for line in lines if "error" in line.lower()), lines[0] if lines else "")
    text = text if len(text) <= 300 else text[:297] + "..."
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
