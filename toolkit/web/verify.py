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
from typing import Any, Callable, Optional

import numpy as np

from .. import __version__
from ..core.context import SILENT, Context
from ..core.errors import TkError
from ..core.io import check_writable, now, sha256_file, write_json_atomic
from ..core.runs import MANIFEST, load_manifest
from ..edge.machine import machine_info
from .checkset import CheckSet, load_checkset
from .chromium import chromium_version, cpu_flags, find_chromium
from .harness import drive
from .pack import WEB_JSON

DEVICE_PARITY = "device_parity.json"
TARGET = "browser"
# (manifest entry, reference probabilities, artifact probabilities, labels) -> verdict with at
# least "passed" and "failures"; the one judge verify uses, so the limits are verify's.
Judge = Callable[[dict[str, Any], np.ndarray, np.ndarray, np.ndarray], dict[str, Any]]


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


def _checkset_matches(bundle: Path, checkset: CheckSet, manifest: dict[str, Any]) -> None:
    height, width = manifest["preprocessing"]["size"]
    if (checkset.meta["height"], checkset.meta["width"]) != (height, width):
        raise TkError(f"{checkset.path}: images are not {height}x{width}, the models' input; re-pack the bundle")
    if list(checkset.meta["classes"]) != list(manifest["classes"]):
        raise TkError(f"{checkset.path}: classes differ from {bundle / MANIFEST}; re-pack the bundle")


def verify_web(
    bundle: Path, judge: Judge, files: Optional[list[str]] = None, ctx: Context = SILENT, timeout_s: float = 900
) -> dict[str, Any]:
    """Judge every browser (file, runtime) pair of the bundle; record and return the report."""
    bundle = Path(bundle)
    manifest, web = load_manifest(bundle), load_web(bundle)
    check_local(bundle, web)
    checkset = load_checkset(bundle)
    _checkset_matches(bundle, checkset, manifest)
    check_writable(bundle)  # device_parity.json goes there: a read-only bundle fails now, not after the runs
    version = chromium_version(find_chromium())
    # --artifact model.tflite also takes its batch-1 copy (the same model, on LiteRT.js)
    origin = {f: e.get("batch1_of") for f, e in manifest["artifacts"].items()}
    models = [m for m in web["models"] if files is None or {m["file"], origin.get(m["file"])} & set(files)]
    if not models:
        raise TkError(f"--artifact: none of {', '.join(files or [])} is a model of {bundle / WEB_JSON}")
    ctx.say(f"verifying {len(models)} model(s) of {bundle} in Chromium {version} on {checkset.meta['count']} images")
    results: dict[str, dict[str, Any]] = {}

    def on_post(body: dict[str, Any]) -> dict[str, Any]:
        model = next((m for m in models if (m["file"], m["runtime"]) == (body.get("file"), body.get("runtime"))), None)
        if model is None:
            return {"ok": False}
        results[model["file"]] = _verdict(bundle, model, manifest, checkset, body, judge)
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


def _binding(bundle: Path, model: dict[str, Any], manifest: dict[str, Any]) -> dict[str, Any]:
    path = bundle / model["file"]
    sha = sha256_file(path) if path.is_file() else None
    return {
        "runtime": model["runtime"],
        "format": model["format"],
        "quantization": model["quantization"],
        "sha256": sha,
        "manifest_sha256": manifest["artifacts"].get(model["file"], {}).get("sha256"),
        "tk_version": __version__,
    }


def _verdict(bundle, model, manifest, checkset: CheckSet, body, judge: Judge) -> dict[str, Any]:
    binding = _binding(bundle, model, manifest)
    if body.get("kind") == "error":
        return {**binding, "passed": False, "error": str(body.get("error"))[:300], "failures": ["could not run"]}
    probs = np.asarray(body.get("probabilities") or [], dtype=np.float64)
    if probs.shape != checkset.reference.shape:
        why = f"{probs.shape} outputs from the page, expected {checkset.reference.shape}"
        return {**binding, "passed": False, "error": why, "failures": [why]}
    entry = manifest["artifacts"].get(model["file"], {})
    verdict = {**binding, **judge(entry, checkset.reference, probs, checkset.labels), "load_ms": body.get("load_ms")}
    if binding["sha256"] != binding["manifest_sha256"]:  # changed after pack: fails, whatever it outputs
        verdict["failures"] = [f"sha256 differs from {MANIFEST} (changed after pack)", *verdict.get("failures", [])]
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
    if not path.is_file():
        return {"format": 1, "targets": {}}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise TkError(
            f"{path}: not valid JSON ({exc}); move it aside (its other targets are lost) and verify again"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("targets"), dict):
        raise TkError(f"{path}: no 'targets' mapping; move it aside and verify again")
    return data
