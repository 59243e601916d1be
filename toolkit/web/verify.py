"""`tk verify BUNDLE --web`: run every model of a web bundle on its browser runtime, over the device
check set, in headless Chromium, and judge each against the reference with verify's limits.

Each (file, runtime) pair of web.json gets a verdict bound to the bytes it judged: the file's
sha256 as read now (a file whose sha256 differs from the manifest's fails, whatever its outputs),
the check set's pixels and reference hashes, the limits and tk's version. The verdicts are the
target "browser" of BUNDLE/device_parity.json, beside the native device's target, with Chromium's
version, each runtime's version, SIMD and thread count, the machine and its CPU flags. A pair the
page could not load or run fails: the gate fails closed.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Optional

import numpy as np

from .. import __version__
from ..core import schemas
from ..core.context import SILENT, Context
from ..core.errors import TkError
from ..core.io import check_writable, now, sha256_file, write_json_atomic
from ..core.metrics import accuracy
from ..core.runs import MANIFEST, load_manifest
from ..edge.device_verify import DEVICE_PARITY
from ..edge.machine import cpu_flags, machine_info
from ..edge.parity import judge, kind_of, limits_dict, limits_for
from ..edge.verdicts import bundle_facts
from .checkset import CheckSet, bundle_checkset
from .chromium import chromium_version, find_chromium
from .harness import drive
from .pack import WEB_JSON

TARGET = "browser"


def load_web(bundle: Path) -> dict[str, Any]:
    path = Path(bundle) / WEB_JSON
    if not path.is_file():
        raise TkError(f"{bundle}: no {WEB_JSON}, so not a web bundle; make one with tk pack RUN DIR --web")
    try:
        web = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TkError(f"{path}: not valid JSON ({exc}); re-pack with tk pack --web") from None
    if not isinstance(web, dict) or not isinstance(web.get("models"), list) or not web["models"]:
        raise TkError(f"{path}: no 'models' list; re-pack with tk pack --web")
    return web


def check_local(bundle: Path, web: dict[str, Any]) -> None:
    """The runtimes must be in the bundle: headless Chromium here has no network for a CDN."""
    remote = [k for k, r in web.get("runtimes", {}).items() if not str(r.get("module", "")).startswith("./")]
    if remote:
        raise TkError(
            f"{bundle}: loads {', '.join(remote)} from a CDN, which a local check cannot reach; pack a copy "
            "without --cdn to verify (same pinned versions, same bytes as the integrity hashes)"
        )


def verify_web(
    bundle: Path, files: Optional[list[str]] = None, ctx: Context = SILENT, timeout_s: float = 900
) -> dict[str, Any]:
    """Judge every browser (file, runtime) pair of the bundle; record and return the report."""
    bundle = Path(bundle)
    manifest, web = load_manifest(bundle), load_web(bundle)
    check_local(bundle, web)
    checkset = bundle_checkset(bundle, manifest)
    check_writable(bundle)  # device_parity.json goes there: a read-only bundle fails now, not after the runs
    version = chromium_version(find_chromium())
    # --artifact model.tflite also takes its batch-1 copy (the same model, on LiteRT.js)
    origin = {copy: c.get("of") for copy, c in batch1_copies(manifest).items()}
    models = [m for m in web["models"] if files is None or {m["file"], origin.get(m["file"])} & set(files)]
    if not models:
        raise TkError(f"--artifact: none of {', '.join(files or [])} is a model of {bundle / WEB_JSON}")
    ctx.say(f"verifying {len(models)} model(s) of {bundle} in Chromium {version} on {checkset.meta['count']} images")
    results: dict[str, dict[str, Any]] = {}

    def on_post(body: dict[str, Any]) -> dict[str, Any]:
        model = next((m for m in models if (m["file"], m["runtime"]) == (body.get("file"), body.get("runtime"))), None)
        if model is None:
            return {"ok": False}
        results[model["file"]] = _verdict(bundle, model, manifest, checkset, body)
        ctx.say(_line(model["file"], results[model["file"]]))
        return {"ok": True}

    job = {"mode": "verify", "items": [{"file": m["file"], "runtime": m["runtime"]} for m in models]}
    job["checkset"] = {"pixels": checkset.pixels_url, "count": checkset.meta["count"]}
    done = drive(bundle, job, on_post, timeout_s=timeout_s)
    for model in models:  # a pair the page never reported on fails
        if model["file"] not in results:
            results[model["file"]] = _failed(bundle, model, manifest, "the page did not report on it")
            ctx.say(_line(model["file"], results[model["file"]]))
    return _record(bundle, version, done.get("environment", {}), checkset, results)


def _failed(bundle: Path, model: dict, manifest: dict, why: str) -> dict[str, Any]:
    return {**_binding(bundle, model, manifest), "passed": False, "error": why, "failures": [why]}


def batch1_copies(manifest: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """The batch-1 copies tk pack --web made: {copy: {"of": original, "sha256", ...}}."""
    return ((manifest.get("bundle") or {}).get("web") or {}).get("batch1") or {}


def _binding(bundle: Path, model: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
    path = bundle / model["file"]
    copy = batch1_copies(manifest).get(model["file"])
    recorded = copy if copy else manifest["artifacts"].get(model["file"], {})
    return {
        "runtime": model["runtime"],
        "format": model["format"],
        "quantization": model["quantization"],
        "sha256": sha256_file(path) if path.is_file() else None,
        "manifest_sha256": recorded.get("sha256"),
        **({"batch1_of": copy["of"]} if copy else {}),
        "tk_version": __version__,
    }


def _verdict(bundle, model, manifest, checkset: CheckSet, body) -> dict[str, Any]:
    """edge/parity.py's judge, with tk's limits for the file's kind (a batch-1 copy: its original's)."""
    binding = _binding(bundle, model, manifest)
    binding.update(
        reference_sha256=checkset.meta.get("reference_sha256"), images_sha256=checkset.meta.get("pixels_sha256")
    )
    if body.get("kind") == "error":
        return {**binding, "passed": False, "error": str(body.get("error"))[:300], "failures": ["could not run"]}
    probs = np.asarray(body.get("probabilities") or [], dtype=np.float64)
    if probs.shape != checkset.reference.shape:
        why = f"{probs.shape} outputs from the page, expected {checkset.reference.shape}"
        return {**binding, "passed": False, "error": why, "failures": [why]}
    judged = binding.get("batch1_of", model["file"])
    try:
        kind = kind_of(judged, manifest["artifacts"].get(judged)).kind
        section = bundle_facts(manifest, bundle).section
        limits = limits_for(kind, section)
    except TkError as exc:  # no limit applies: fails closed
        return {**binding, "passed": False, "error": str(exc), "failures": [str(exc)]}
    ref_accuracy = accuracy(checkset.labels, checkset.reference)
    result = judge(checkset.reference, probs, checkset.labels, ref_accuracy, limits, section.confident_margin)
    verdict = {**binding, "kind": kind, **result, "limits": limits_dict(limits), "load_ms": body.get("load_ms")}
    if binding["sha256"] != binding["manifest_sha256"]:  # changed after pack: fails, whatever it outputs
        verdict["failures"] = [f"sha256 differs from {MANIFEST} (changed after pack)", *verdict["failures"]]
        verdict["passed"] = False
    return verdict


def _line(file: str, r: dict[str, Any]) -> str:
    mark = "✓" if r["passed"] else "✗"
    head = f"{mark} {file} on {r['runtime']}"
    if "max_abs_diff" not in r:
        return f"{head}: {r.get('error') or '; '.join(r['failures'])}"
    text = f"{head}: max diff {r['max_abs_diff']:.2e}, agreement {r['agreement']:.1%}, accuracy {r['accuracy']:.3f}"
    return text + ("" if r["passed"] else f" -- {'; '.join(r['failures'])}")


def _record(bundle: Path, version: str, env: dict, checkset: CheckSet, results: dict) -> dict[str, Any]:
    """Write the browser target into device_parity.json (the other targets kept); return the report."""
    runtimes = env.get("runtimes", {}) if isinstance(env.get("runtimes"), dict) else {}
    target = {
        "runtime": f"Chromium {version}",
        "versions": {"chromium": version, **{k: str(v.get("version")) for k, v in runtimes.items()}},
        "runtimes": runtimes,
        "cross_origin_isolated": env.get("cross_origin_isolated"),
        "user_agent": env.get("user_agent"),
        "machine": machine_info(),
        "cpu_flags": cpu_flags(),
        "time": now(),
        "checkset": {k: checkset.meta.get(k) for k in ("count", "pixels_sha256", "reference_sha256")},
        "passed": all(r["passed"] for r in results.values()),
        "artifacts": results,
    }
    path = bundle / DEVICE_PARITY
    recorded = _read_device_parity(path)
    recorded["targets"][TARGET] = target
    write_json_atomic(path, recorded)
    return {"bundle": str(bundle), "target": TARGET, "file": str(path), **target}


def _read_device_parity(path: Path) -> dict[str, Any]:
    """The other targets' results (edge/device_verify.py writes the native device's), read through
    core/schemas.py; a damaged file is one line naming it."""
    if not path.is_file():
        return {"format": 1, "targets": {}}
    return dict(schemas.load_device_parity(path))
