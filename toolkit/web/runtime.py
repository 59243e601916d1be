"""The browser runtimes a web bundle carries: which npm files, from where, at which versions.

Pinned by tk's own lockfile (toolkit/web/package-lock.json). By default `npm ci` installs it
once into a user cache folder keyed by the lockfile's hash ($TK_WEB_CACHE, else
$XDG_CACHE_HOME/tk/web, else ~/.cache/tk/web: <hash>/node_modules), and `tk pack --web` copies the
few files each runtime needs from there into BUNDLE/runtime/. With `cdn=True` the bundle instead
loads them from jsDelivr's npm mirror at the same pinned versions, each JS module with a
subresource-integrity hash (runtime_cdn.json, computed from the same npm files). Standard library only.
"""

from __future__ import annotations

import base64
import hashlib
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Optional

from ..core.context import SILENT, Context
from ..core.errors import TkError

HERE = Path(__file__).resolve().parent
LOCKFILE = HERE / "package-lock.json"
PACKAGE_JSON = HERE / "package.json"
CDN_HASHES = HERE / "runtime_cdn.json"
CDN_BASE = "https://cdn.jsdelivr.net/npm"
RUNTIME_DIR = "runtime"  # in the bundle
NPM_TIMEOUT_S = 600


@dataclass(frozen=True)
class RuntimePackage:
    """One npm package the page loads: the files it needs, and the one the page imports."""

    key: str  # folder under BUNDLE/runtime/ and the page's name for it
    npm: str
    files: tuple[str, ...]  # paths inside the package, copied keeping their sub-folders
    module: str  # the JS module the page imports (one of files)
    wasm: str = ""  # the folder (inside the package) the runtime fetches its .wasm files from


# The wasm builds each runtime picks from at run time: MediaPipe SIMD or no-SIMD; onnxruntime-web
# ships SIMD + threads only; LiteRT.js relaxed-SIMD, its compat build, or threaded.
PACKAGES: tuple[RuntimePackage, ...] = (
    RuntimePackage(
        "mediapipe",
        "@mediapipe/tasks-vision",
        (
            "vision_bundle.mjs",
            "wasm/vision_wasm_internal.js",
            "wasm/vision_wasm_internal.wasm",
            "wasm/vision_wasm_nosimd_internal.js",
            "wasm/vision_wasm_nosimd_internal.wasm",
        ),
        "vision_bundle.mjs",
        "wasm",
    ),
    RuntimePackage(
        "onnxruntime",
        "onnxruntime-web",
        ("dist/ort.wasm.min.mjs", "dist/ort-wasm-simd-threaded.mjs", "dist/ort-wasm-simd-threaded.wasm"),
        "dist/ort.wasm.min.mjs",
        "dist",
    ),
    RuntimePackage(
        "litert",
        "@litertjs/core",
        (
            "dist/index.js",
            "wasm/litert_wasm_internal.js",
            "wasm/litert_wasm_internal.wasm",
            "wasm/litert_wasm_compat_internal.js",
            "wasm/litert_wasm_compat_internal.wasm",
            "wasm/litert_wasm_threaded_internal.js",
            "wasm/litert_wasm_threaded_internal.wasm",
        ),
        "dist/index.js",
        "wasm",
    ),
    # LiteRT.js imports it by its bare name: the page's import map points there.
    RuntimePackage("litert-wasm-utils", "@litertjs/wasm-utils", ("dist/index.js",), "dist/index.js"),
)


def lock_versions() -> dict[str, str]:
    """npm package -> the exact version the lockfile pins."""
    packages = json.loads(LOCKFILE.read_text())["packages"]
    return {p.npm: packages[f"node_modules/{p.npm}"]["version"] for p in PACKAGES}


def lock_hash() -> str:
    return hashlib.sha256(LOCKFILE.read_bytes()).hexdigest()[:16]


def cache_root() -> Path:
    given = os.environ.get("TK_WEB_CACHE")
    if given:
        return Path(given)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "tk" / "web"


def installed_modules() -> Optional[Path]:
    """node_modules of a finished `npm ci` of this lockfile, or None."""
    modules = cache_root() / lock_hash() / "node_modules"
    return modules if (modules.parent / ".complete").is_file() else None


def ensure_installed(ctx: Context = SILENT) -> Path:
    """node_modules for this lockfile: from the cache, else `npm ci` into it now (once)."""
    found = installed_modules()
    if found is not None:
        return found
    npm = shutil.which("npm")
    if npm is None:
        raise TkError(
            "tk pack --web: the browser runtimes come from npm, which is not installed; install Node.js "
            "and npm (Debian: apt-get install npm), or pass --cdn to load them from pinned CDN URLs"
        )
    final = cache_root() / lock_hash()
    final.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{final.name}.", dir=final.parent))
    try:
        shutil.copyfile(PACKAGE_JSON, work / "package.json")
        shutil.copyfile(LOCKFILE, work / "package-lock.json")
        ctx.say(f"installing the browser runtimes with npm ci into {final} (once per lockfile)")
        # --ignore-scripts: these packages need no install scripts, and none should run.
        cmd = [npm, "ci", "--ignore-scripts", "--no-audit", "--no-fund", "--loglevel=error"]
        try:
            proc = subprocess.run(cmd, cwd=work, capture_output=True, text=True, timeout=NPM_TIMEOUT_S)
        except subprocess.TimeoutExpired:
            raise TkError(f"npm ci did not finish in {NPM_TIMEOUT_S} s; check the npm registry is reachable") from None
        if proc.returncode != 0:
            tail = " ".join((proc.stderr or proc.stdout).strip().splitlines()[-3:])
            raise TkError(f"npm ci of {LOCKFILE} failed (exit {proc.returncode}): {tail}; or pass --cdn")
        (work / ".complete").write_text(lock_hash() + "\n")
        try:
            os.replace(work, final)  # atomic: a killed install never looks complete
        except OSError:
            if installed_modules() is None:  # not another tk that finished first: a real failure
                raise
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    return final / "node_modules"


def _entry(package: RuntimePackage, base: str, version: str, integrity: Optional[str] = None) -> dict:
    """What the page needs to load one runtime: its module URL, its wasm folder, its version."""
    entry = {"npm": package.npm, "version": version, "module": f"{base}/{package.module}"}
    if package.wasm:
        entry["wasm"] = f"{base}/{package.wasm}/"
    if integrity:
        entry["integrity"] = integrity
    return entry


def copy_runtimes(target: Path, ctx: Context = SILENT) -> dict[str, dict]:
    """Copy every runtime's files into target/runtime/; return how the page loads each (see _entry)."""
    modules = ensure_installed(ctx)
    versions = lock_versions()
    runtimes = {}
    for package in PACKAGES:
        for file in package.files:
            source = modules / package.npm / file
            if not source.is_file():
                raise TkError(f"{source}: missing from the npm install; delete {modules.parent} and pack again")
            dest = target / RUNTIME_DIR / package.key / file
            dest.parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, dest)
        runtimes[package.key] = _entry(package, f"./{RUNTIME_DIR}/{package.key}", versions[package.npm])
    return runtimes


def sri(path: Path) -> str:
    """A subresource-integrity value (sha384, as browsers and CDNs publish them)."""
    return "sha384-" + base64.b64encode(hashlib.sha384(Path(path).read_bytes()).digest()).decode()


def cdn_runtimes() -> dict[str, dict]:
    """How the page loads each runtime from the CDN at the pinned versions, modules with integrity."""
    versions = lock_versions()
    hashes = json.loads(CDN_HASHES.read_text())
    if hashes.get("lock") != lock_hash():
        raise TkError(
            f"{CDN_HASHES}: integrity hashes are for another lockfile; regenerate them "
            "(python -m toolkit.web.runtime --cdn-hashes) after changing package-lock.json"
        )
    return {
        p.key: _entry(
            p, f"{CDN_BASE}/{p.npm}@{versions[p.npm]}", versions[p.npm], hashes["files"][f"{p.npm}/{p.module}"]
        )
        for p in PACKAGES
    }


def write_cdn_hashes() -> dict:
    """Regenerate runtime_cdn.json from the npm install of the lockfile (run after changing it)."""
    modules = ensure_installed()
    files = {f"{p.npm}/{f}": sri(modules / p.npm / f) for p in PACKAGES for f in p.files}
    data = {"lock": lock_hash(), "versions": lock_versions(), "files": files}
    CDN_HASHES.write_text(json.dumps(data, indent=2) + "\n")
    return data


if __name__ == "__main__":  # CI and a fresh machine: install once; --cdn-hashes after a lockfile change
    import sys

    write_cdn_hashes() if "--cdn-hashes" in sys.argv[1:] else ensure_installed()
