"""`tk pack RUN DIR --web`: the device bundle, plus what a static web host needs to serve it.

On top of what edge/pack.py writes (the artifacts, manifest, labels, samples and the device check
set), DIR gets:

    index.html, tk.js      the page: pick, drop or film an image; ?harness for tk verify/bench --web
    sw.js                  a service worker: once loaded, the page works offline
    web.json               the models, which browser runtime runs each, the runtimes' URLs and versions
    model_*.b1.tflite      a batch-1 copy of each .tflite, for LiteRT.js (manifest: bundle.web.batch1)
    runtime/<name>/...     the runtimes' JS and wasm files (unless --cdn)

No build step: any static host serves the folder as it is (with COOP/COEP headers, threads run).
"""

from __future__ import annotations

import hashlib
import html
import json
import shutil
from pathlib import Path
from typing import Any, Optional, Sequence

from ..core.context import SILENT, Context
from ..core.io import json_text, now, sha256_file, size_bytes
from ..core.runs import MANIFEST, load_manifest
from ..edge.pack import DEFAULT_SAMPLES, pack
from . import runtime
from .batch1 import batch1_name, write_batch1

PAGE = Path(__file__).resolve().parent / "page"
WEB_JSON = "web.json"
PAGE_FILES = ("tk.js", "sw.js")  # index.html is written from its template
# Which browser runtime runs which artifact: MediaPipe and LiteRT.js take .tflite (LiteRT.js the
# batch-1 copy), onnxruntime-web takes .onnx.
RUNTIMES_OF = {"tflite": ("mediapipe", "litert"), "onnx": ("onnxruntime",)}


def web_models(manifest: dict[str, Any]) -> list[dict[str, Any]]:
    """(file, runtime) pairs the page can run, with what each runtime needs to know of the file."""
    models = []
    for file, entry in manifest["artifacts"].items():
        for name in RUNTIMES_OF.get(entry.get("format"), ()):
            runs = batch1_name(file) if name == "litert" else file
            models.append(
                {
                    "file": runs,
                    "runtime": name,
                    "format": entry.get("format"),
                    "quantization": entry.get("quantization", "none"),
                    "input": {k: entry.get("input", {}).get(k) for k in ("dtype", "quantization")},
                    "output": {k: entry.get("output", {}).get(k) for k in ("dtype", "quantization")},
                }
            )
    return models


def _add_batch1_copies(work: Path, manifest: dict[str, Any], ctx: Context) -> dict[str, dict[str, Any]]:
    """Write the batch-1 copies; {copy: {"of": original, "sha256", "size_bytes"}}. Not artifacts of
    the manifest: they are the originals' bytes with one shape word changed, judged (tk verify
    --web) by their original's kind and limits, and bound to their own sha256 here."""
    copies = {}
    for file, entry in manifest["artifacts"].items():
        if entry.get("format") != "tflite":
            continue
        copy = batch1_name(file)
        ctx.say(f"pack {copy} (batch-1 copy of {file}, for LiteRT.js)")
        write_batch1(work / file, work / copy)
        copies[copy] = {"of": file, "sha256": sha256_file(work / copy), "size_bytes": size_bytes(work / copy)}
    return copies


def _write_page(work: Path, manifest: dict[str, Any], runtimes: dict[str, dict]) -> None:
    imports = {"@litertjs/wasm-utils": runtimes["litert-wasm-utils"]["module"]}
    integrity = {r["module"]: r["integrity"] for r in runtimes.values() if r.get("integrity")}
    import_map = {"imports": imports, **({"integrity": integrity} if integrity else {})}
    page = (PAGE / "index.html").read_text(encoding="utf-8")
    # JSON inside <script>: only "</" could end it early, and none of these URLs has one.
    (work / "index.html").write_text(page.replace("__IMPORT_MAP__", json.dumps(import_map)), encoding="utf-8")
    for name in PAGE_FILES:
        shutil.copyfile(PAGE / name, work / name)
    models = web_models(manifest)
    web = {
        "format": 1,
        "name": html.escape(str(manifest.get("name", "model"))),
        "classes": manifest["classes"],
        "size": manifest["preprocessing"]["size"],
        "runtimes": {k: v for k, v in runtimes.items() if k != "litert-wasm-utils"},
        "models": models,
        **_offline(work, models),
    }
    (work / WEB_JSON).write_text(json_text(web) + "\n", encoding="utf-8")


def _offline(work: Path, models: list[dict[str, Any]]) -> dict[str, Any]:
    """What sw.js caches for offline use (the page, the runtimes, the models), and the cache's
    name: a digest of those files, so a re-packed bundle replaces the cache of the old one."""
    files = ["index.html", *PAGE_FILES, *sorted({m["file"] for m in models})]
    if (work / runtime.RUNTIME_DIR).is_dir():
        files += sorted(p.relative_to(work).as_posix() for p in (work / runtime.RUNTIME_DIR).rglob("*") if p.is_file())
    digest = hashlib.sha256("".join(f"{f} {sha256_file(work / f)}\n" for f in files).encode()).hexdigest()[:16]
    return {"offline": ["./", *files, WEB_JSON], "cache": f"tk-{digest}"}


def pack_web(
    run_dir: Path,
    target: Path,
    formats: Optional[Sequence[str]] = None,
    files: Optional[Sequence[str]] = None,
    samples: int = DEFAULT_SAMPLES,
    force: bool = False,
    cdn: bool = False,
    ctx: Context = SILENT,
    allow_unverified: bool = False,
) -> dict[str, Any]:
    """Write the web bundle for a run (atomically, as tk pack does); return what it holds."""
    # Resolved before anything is written: no npm and no --cdn fails here, with nothing touched.
    runtimes = runtime.cdn_runtimes() if cdn else None
    if not cdn:
        runtime.ensure_installed(ctx)

    def finish(work: Path) -> None:
        manifest = load_manifest(work)
        copies = _add_batch1_copies(work, manifest, ctx)
        used = runtimes if cdn else runtime.copy_runtimes(work, ctx)
        web = {"runtimes": "cdn" if cdn else "npm", "batch1": copies, "created": now()}
        manifest["bundle"] = {**manifest.get("bundle", {}), "web": web}
        (work / MANIFEST).write_text(json_text(manifest) + "\n", encoding="utf-8")
        _write_page(work, manifest, used)

    out = pack(run_dir, target, formats, files, samples, force, ctx, finish=finish, allow_unverified=allow_unverified)
    out["web"] = {"runtimes": "cdn" if cdn else "npm", "models": web_models(load_manifest(target))}
    return out
