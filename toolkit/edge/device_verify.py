"""`tk verify BUNDLE`: the parity gate on the device itself, with the device's runtime and CPU.

A workstation's verdict says what its LiteRT or ONNX Runtime build computed on its CPU; a Raspberry
Pi runs another build with other kernels. The bundle carries a check set (edge/checkset.py:
held-out images as decoded pixels with the reference model's probabilities), so here each packed
artifact runs on it with the runtime installed on this machine and is judged by edge/parity.py
with the same limits (tk's table and the run recipe's overrides the bundle carries). The result
goes into BUNDLE/device_parity.json under this machine's label, beside other targets' (a browser
adds "browser"), naming the runtime and its version and the CPU with its flags. Base install only.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .. import __version__
from ..core import schemas
from ..core.context import SILENT, Context
from ..core.errors import ParityError, TkError
from ..core.formats import identify, tolerance_kind
from ..core.io import check_writable, now, tool_versions, write_json_atomic
from ..core.metrics import accuracy
from ..core.runs import load_manifest
from .checkset import CHECKSET_DIR, CHECKSET_JSON, load_checkset
from .machine import cpu_flags, machine_info, machine_label
from .parity import judge, kind_of, limits_dict, limits_for, result_line
from .predictors import Predictor, load_predictor
from .verdicts import Facts, Verdict, bundle_facts, derive, file_sha

DEVICE_PARITY = "device_parity.json"
FORMAT = 1


def runtime_of(predictor: Predictor) -> str:
    """The runtime package that ran it, with its version ("ai-edge-litert 2.1.0", "onnxruntime 1.23.2")."""
    if predictor.kind == "tflite":
        module = type(predictor.model.interpreter).__module__
        package = "ai-edge-litert" if module.startswith("ai_edge_litert") else "tflite-runtime"
    else:
        package = {"onnx": "onnxruntime"}.get(predictor.kind, "tensorflow")
    return f"{package} {tool_versions(package).get(package, '?')}"


def verify_bundle(bundle: Path, num_threads: Optional[int] = None, ctx: Context = SILENT) -> dict[str, Any]:
    """Run every packed artifact on the bundle's check set here; record and return this target's result."""
    bundle = Path(bundle)
    say = ctx.say
    manifest = load_manifest(bundle)
    facts = bundle_facts(manifest, bundle)
    if not os.path.lexists(bundle / CHECKSET_DIR / CHECKSET_JSON):
        raise TkError(
            f"{bundle}: no check set ({CHECKSET_DIR}/{CHECKSET_JSON}), so nothing can be checked on this "
            "device; on the workstation run tk verify RUN, then tk pack RUN DIR again"
        )
    meta, pixels = load_checkset(bundle / CHECKSET_DIR, manifest)
    if meta["reference_sha256"] != facts.reference_sha256:
        raise TkError(
            f"{bundle / CHECKSET_DIR / CHECKSET_JSON}: made with another model than the bundle's; re-pack it (tk pack)"
        )
    check_writable(bundle)
    labels = np.asarray(meta["labels"])
    reference = np.asarray(meta["probabilities"], dtype=np.float32)
    ref_accuracy = accuracy(labels, reference)
    machine, flags = machine_info(), cpu_flags()
    say(
        f"verifying {len(manifest.get('artifacts', {}))} artifact(s) of {bundle} on its {meta['count']} check "
        f"images, on {machine_label(machine)} (CPU flags: {' '.join(flags) or 'unknown'})"
    )
    binding = {
        "reference_sha256": meta["reference_sha256"],
        "images_sha256": meta["pixels_sha256"],
        "tk_version": __version__,
    }
    results = {}
    for file, entry in manifest.get("artifacts", {}).items():
        result = _judge(bundle, file, entry, facts, (reference, labels, ref_accuracy, pixels), num_threads)
        results[file] = {**result, **binding, "sha256": file_sha(bundle, file)}
        say(result_line(file, results[file]) + (f" [{result['runtime']}]" if result.get("runtime") else ""))
    target = {
        "time": now(),
        "machine": machine,
        "cpu": machine["cpu"],
        "cpu_flags": flags,
        "artifacts": results,
        "passed": bool(results) and all(r["passed"] for r in results.values()),
    }
    _record(bundle, machine_label(machine), target)
    return {"bundle": str(bundle), "target": machine_label(machine), "check_images": meta["count"], **target}


def _judge(bundle: Path, file: str, entry: dict, facts: Facts, against: tuple, num_threads: Optional[int]) -> dict:
    reference, labels, ref_accuracy, pixels = against
    found = identify(file)
    kind, limits, runtime = tolerance_kind(found[1]) if found else "unknown", None, None
    try:
        kind = kind_of(file, entry).kind
        limits = limits_for(kind, facts.section)
        predictor = load_predictor(bundle / file, num_threads)
        runtime = runtime_of(predictor)
        probs = predictor.predict_batched(pixels)
        result = {"kind": kind, **judge(reference, probs, labels, ref_accuracy, limits, facts.section.confident_margin)}
    except TkError as exc:  # a changed, corrupt or unloadable file fails here, as it would in use
        result = {"kind": kind, "passed": False, "error": str(exc), "failures": [str(exc)]}
    return {**result, "limits": limits_dict(limits) if limits else None, **({"runtime": runtime} if runtime else {})}


def _record(bundle: Path, label: str, target: dict[str, Any]) -> None:
    path = bundle / DEVICE_PARITY
    earlier = schemas.load_device_parity(path) if os.path.lexists(path) else {"format": FORMAT, "targets": {}}
    write_json_atomic(path, {"format": FORMAT, "targets": {**earlier["targets"], label: target}})


def raise_on_failure(report: dict[str, Any]) -> None:
    failed = [f for f, r in report["artifacts"].items() if not r["passed"]]
    if failed or not report["artifacts"]:
        raise ParityError(
            f"{len(failed)} of {len(report['artifacts'])} artifacts fail parity on this device "
            f"({report['target']}): {', '.join(failed) or 'none packed'}; details in "
            f"{Path(report['bundle']) / DEVICE_PARITY}; a file that changed since pack: copy the bundle again; "
            "one that differs on this CPU: ship another format (see tk bench), or re-export on the workstation"
        )


def device_verdicts(bundle: Path, label: str) -> Optional[tuple[str, dict[str, Verdict]]]:
    """(when, file -> verdict) of this machine's latest tk verify BUNDLE, re-derived against the
    files and the check set now; None when this machine never checked the bundle."""
    bundle = Path(bundle)
    path = bundle / DEVICE_PARITY
    if not os.path.lexists(path):
        return None
    target = schemas.load_device_parity(path)["targets"].get(label)
    if target is None:
        return None
    manifest = load_manifest(bundle)
    facts = bundle_facts(manifest, bundle)
    try:
        meta = schemas.load_checkset(bundle / CHECKSET_DIR / CHECKSET_JSON)
        facts = Facts(meta["reference_sha256"], facts.section, images_sha256=meta["pixels_sha256"])
    except TkError:  # no readable check set: no record can hold (each names the images it ran on)
        facts = Facts(facts.reference_sha256, facts.section, images_sha256="no check set")
    records = target["artifacts"]
    files = manifest.get("artifacts", {})
    return str(target.get("time", "?")), {f: derive(records.get(f), f, file_sha(bundle, f), facts) for f in files}
