"""The run folder and its manifest: what travels with every artifact.

exported/<run>/manifest.json records the classes in order, the preprocessing, and per artifact:
file, format, quantization, input/output shape and dtype, int8 scale/zero-point, sha256, size,
tool versions, and the metrics verify and bench measured. A predictor built from an artifact and
its manifest needs nothing else. Every write is atomic (temporary file, then rename), so a failed
command never leaves a half-written file that looks valid. TensorFlow-free.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import tempfile
from datetime import datetime, timezone
from pathlib import Path
from typing import Any, Iterator, Optional

from .errors import TkError

MANIFEST = "manifest.json"
RUNS_DIR = Path(os.environ.get("TK_RUNS_DIR", "exported"))


@contextlib.contextmanager
def atomic_path(path: Path, suffix: str = "") -> Iterator[Path]:
    """Yield a temporary sibling path; rename it onto `path` only if the block succeeds."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp" + suffix, dir=path.parent)
    os.close(fd)
    os.unlink(tmp)  # writers (Keras, converters) want to create the file themselves
    tmp_path = Path(tmp)
    try:
        yield tmp_path
        os.replace(tmp_path, path) if not tmp_path.is_dir() else _replace_dir(tmp_path, path)
    finally:
        if tmp_path.is_dir():
            import shutil

            shutil.rmtree(tmp_path, ignore_errors=True)
        elif tmp_path.exists():
            tmp_path.unlink()


def _replace_dir(tmp: Path, path: Path) -> None:
    import shutil

    old = path.with_name(f".{path.name}.old")
    if path.exists():
        shutil.rmtree(old, ignore_errors=True)
        os.replace(path, old)
    os.replace(tmp, path)
    shutil.rmtree(old, ignore_errors=True)


def write_json_atomic(path: Path, obj: Any) -> None:
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(json.dumps(obj, indent=2, sort_keys=False) + "\n")


def write_text_atomic(path: Path, text: str) -> None:
    with atomic_path(Path(path)) as tmp:
        tmp.write_text(text)


def sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    path = Path(path)
    files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
    for f in files:
        if path.is_dir():
            digest.update(str(f.relative_to(path)).encode())
        with open(f, "rb") as fh:
            for chunk in iter(lambda: fh.read(1 << 20), b""):
                digest.update(chunk)
    return digest.hexdigest()


def size_bytes(path: Path) -> int:
    path = Path(path)
    if path.is_dir():
        return sum(p.stat().st_size for p in path.rglob("*") if p.is_file())
    return path.stat().st_size


def now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def load_manifest(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise TkError(f"{run_dir}: no {MANIFEST}; train a model first (tk train RECIPE)")
    try:
        return json.loads(path.read_text())
    except json.JSONDecodeError as exc:
        raise TkError(f"{path}: not valid JSON ({exc}); re-run tk train or tk export to rewrite it") from None


def save_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    manifest["updated"] = now()
    write_json_atomic(Path(run_dir) / MANIFEST, manifest)


def record_artifact(run_dir: Path, entry: dict[str, Any]) -> dict[str, Any]:
    """Add or replace one artifact entry (keyed by file name), hashing the file now."""
    run_dir = Path(run_dir)
    manifest = load_manifest(run_dir)
    path = run_dir / entry["file"]
    entry = {**entry, "sha256": sha256_file(path), "size_bytes": size_bytes(path), "created": now()}
    old = manifest.setdefault("artifacts", {}).get(entry["file"], {})
    if "metrics" in old and old.get("sha256") == entry["sha256"]:
        entry.setdefault("metrics", old["metrics"])
    manifest["artifacts"][entry["file"]] = entry
    save_manifest(run_dir, manifest)
    return entry


def record_metrics(run_dir: Path, file: str, kind: str, metrics: dict[str, Any]) -> None:
    manifest = load_manifest(run_dir)
    artifact = manifest.get("artifacts", {}).get(file)
    if artifact is None:
        raise TkError(f"{run_dir}: artifact {file} is not in {MANIFEST}")
    artifact.setdefault("metrics", {})[kind] = metrics
    save_manifest(run_dir, manifest)


def tool_versions(*packages: str) -> dict[str, str]:
    from importlib.metadata import PackageNotFoundError, version

    out = {}
    for name in packages:
        try:
            out[name] = version(name)
        except PackageNotFoundError:
            pass
    return out


def resolve_run(target: Optional[str], runs_dir: Path = RUNS_DIR, say=print) -> Path:
    """A run folder from: nothing (the latest run), a folder, a recipe file, or a run name."""
    if target:
        path = Path(target)
        if path.is_dir():
            run = path
        elif path.suffix in (".yaml", ".yml"):
            from .recipe import load_recipe

            run = Path(runs_dir) / load_recipe(path).name
        else:
            run = Path(runs_dir) / target
        if not (run / MANIFEST).is_file():
            raise TkError(f"{target}: no trained run at {run} (train it first: tk train RECIPE)")
        return run
    runs = [p.parent for p in Path(runs_dir).glob(f"*/{MANIFEST}")]
    if not runs:
        raise TkError(f"no runs under {runs_dir}/; train one first (tk train recipes/quickstart.yaml)")
    latest = max(runs, key=lambda p: (p / MANIFEST).stat().st_mtime)
    say(f"using the latest run: {latest}")
    return latest
