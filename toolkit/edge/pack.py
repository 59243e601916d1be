"""`tk pack RUN DIR`: the folder a device gets, complete in itself.

DIR holds the chosen artifacts (default: every device-runnable one, .tflite and .onnx), a
manifest.json that lists only them (sha256 checked now, against the run's, and kept), labels.txt,
and a class-stratified sample of the run's test split copied to DIR/samples/<class>/ with a
split.json whose paths are relative to DIR. So `tk bench DIR` on the base install measures
accuracy with no path juggling, from any folder. Files only: no model is loaded here.

Written atomically: the bundle is built in a temporary sibling and renamed into place, so a
failed pack leaves DIR as it was. An existing DIR is replaced only with `force`, and only when it
is empty or an earlier bundle (never a run folder or a folder of other files).
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Optional, Sequence

from ..core.context import SILENT, Context
from ..core.errors import TkError
from ..core.formats import FORMATS, sort_key
from ..core.io import json_text, now, sha256_file
from ..core.runs import BUNDLE, MANIFEST, SPLIT, SplitDataset, load_manifest, load_split, save_split

LABELS = "labels.txt"
SAMPLES = "samples"
DEFAULT_SAMPLES = 200
MAX_SAMPLES = 1000  # a bundle is copied to a device: a few hundred images measure accuracy well enough


def device_formats() -> list[str]:
    return [name for name, fmt in FORMATS.items() if fmt.exported and not fmt.needs_tensorflow]


def check_formats(formats: Optional[Sequence[str]]) -> None:
    """--format values a device can take (the CLI checks them before it looks up the run)."""
    allowed = device_formats()
    for name in formats or []:
        if name not in allowed:
            raise TkError(f"--format: {name!r} cannot be packed for a device; choose from {', '.join(allowed)}")


def choose_artifacts(
    run_dir: Path, manifest: dict[str, Any], formats: Optional[Sequence[str]], files: Optional[Sequence[str]]
) -> list[dict[str, Any]]:
    """The manifest entries to pack: named files, else the named formats, else every device format."""
    entries = manifest.get("artifacts")
    if not isinstance(entries, dict):
        raise TkError(f"{run_dir / MANIFEST}: 'artifacts' is not a mapping of file -> entry; re-run tk export")
    allowed = device_formats()
    check_formats(formats)
    if files:
        chosen = []
        for file in files:
            entry = entries.get(file)
            if not isinstance(entry, dict):
                raise TkError(
                    f"--artifact {file}: not listed in {run_dir / MANIFEST}; listed: {', '.join(entries) or 'none'}"
                )
            if entry.get("format") not in allowed:
                raise TkError(
                    f"--artifact {file}: format {entry.get('format')} needs TensorFlow, which a device "
                    f"does not have; pack {', '.join(allowed)} files"
                )
            chosen.append(entry)
    else:
        wanted = set(formats or allowed)
        chosen = [
            e
            for e in entries.values()
            if isinstance(e, dict) and e.get("format") in wanted and (run_dir / str(e.get("file", ""))).is_file()
        ]
    if not chosen:
        raise TkError(
            f"{run_dir}: no {'/'.join(sorted(formats or allowed))} artifact to pack; "
            "run tk export --format tflite (or onnx) first"
        )
    return sorted(chosen, key=lambda e: sort_key(e.get("format"), e.get("quantization"), e["file"]))


def stratified_sample(split: SplitDataset, count: int) -> list[tuple[str, int]]:
    """Up to `count` test images, as even across classes as the split allows, spread over each
    class's list (deterministic: the same run packs the same sample)."""
    items = list(zip(split.paths("test"), split.labels("test"))) if "test" in split.splits else []
    by_class: dict[int, list[tuple[str, int]]] = {}
    for item in items:
        by_class.setdefault(item[1], []).append(item)
    quota = {k: 0 for k in by_class}
    left = min(count, len(items))
    while left > 0:  # round-robin: classes with few images give their share to the others
        for k in sorted(by_class):
            if left and quota[k] < len(by_class[k]):
                quota[k] += 1
                left -= 1
    chosen = []
    for k in sorted(by_class):
        pool, n = by_class[k], quota[k]
        chosen += [pool[(i * len(pool)) // n] for i in range(n)]
    return chosen


def _class_folder(name: str, index: int) -> str:
    """The class's folder name in samples/: its label, unless the label cannot be a folder name."""
    if not name or name in (".", "..") or "/" in name or "\\" in name or "\0" in name:
        return f"class_{index}"
    return name


def _copy_samples(split: SplitDataset, sample: list[tuple[str, int]], work: Path) -> SplitDataset:
    missing = [p for p, _ in sample if not Path(p).is_file()]
    if missing:
        raise TkError(
            f"{missing[0]}: a test image of the run is not here ({len(missing)} of {len(sample)} "
            "missing); restore the dataset, or pack with --samples 0"
        )
    items, used = [], set()
    for i, (path, label) in enumerate(sample):
        folder = _class_folder(split.classes[label], label)
        name = Path(path).name
        if (folder, name) in used:  # the same file name in two source folders
            name = f"{i:04d}_{name}"
        used.add((folder, name))
        target = work / SAMPLES / folder / name
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        items.append((f"{SAMPLES}/{folder}/{name}", label))
    # Paths relative to the bundle: bench resolves them against the bundle folder.
    return SplitDataset(root=".", classes=list(split.classes), splits={"test": items}, layout=BUNDLE)


def _check_target(target: Path, run_dir: Path, force: bool) -> None:
    if target.exists() and not target.is_dir():
        raise TkError(f"{target}: exists and is not a folder; choose a new folder for the bundle")
    resolved, run = target.resolve(), run_dir.resolve()
    if resolved == run or resolved in run.parents:
        raise TkError(f"{target}: this is (or holds) the run folder {run_dir}; choose a new folder for the bundle")
    if target.is_dir() and any(target.iterdir()):
        if not force:
            raise TkError(
                f"{target}: folder exists and is not empty; choose a new folder, or pass --force "
                "to replace an earlier bundle"
            )
        try:
            earlier = load_manifest(target).get("bundle")
        except TkError:
            earlier = None
        if not isinstance(earlier, dict):
            raise TkError(
                f"{target}: not a tk bundle (no manifest.json from tk pack), so --force will not "
                "replace it; choose a new or empty folder"
            )


def pack(
    run_dir: Path,
    target: Path,
    formats: Optional[Sequence[str]] = None,
    files: Optional[Sequence[str]] = None,
    samples: int = DEFAULT_SAMPLES,
    force: bool = False,
    ctx: Context = SILENT,
) -> dict[str, Any]:
    """Write the device bundle for a run; return what it holds (files, samples, size).

    ctx.data_root overrides split.json's data root (where the test images are now)."""
    run_dir, target = Path(run_dir), Path(target)
    if not 0 <= samples <= MAX_SAMPLES:
        raise TkError(f"--samples: must be between 0 and {MAX_SAMPLES} (got {samples})")
    manifest = load_manifest(run_dir)
    entries = choose_artifacts(run_dir, manifest, formats, files)
    _check_target(target, run_dir, force)
    split = load_split(run_dir / SPLIT, ctx.data_root) if samples and (run_dir / SPLIT).is_file() else None
    notes = (
        []
        if split or not samples
        else [f"{run_dir}: no {SPLIT}, so the bundle has no test images (tk bench will measure latency only)"]
    )
    target.parent.mkdir(parents=True, exist_ok=True)
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.pack-", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    work.chmod(0o777 & ~umask)  # mkdtemp makes it 0700: the bundle gets a normal folder's mode
    try:
        packed = {}
        for entry in entries:
            file = entry["file"]
            ctx.say(f"pack {file}")
            expected = entry.get("sha256")
            if not expected:
                raise TkError(f"{run_dir / MANIFEST}: {file} has no sha256; re-run tk export to record it")
            shutil.copyfile(run_dir / file, work / file)
            # Hash the copy: it is what the device gets, and a file changed since export shows here.
            if sha256_file(work / file) != expected:
                raise TkError(
                    f"{run_dir / file}: sha256 differs from {run_dir / MANIFEST}; the file changed "
                    "after export (re-run tk export)"
                )
            packed[file] = entry
        sample = []
        if split is not None:
            sample = stratified_sample(split, samples)
            if sample:
                save_split(_copy_samples(split, sample, work), work / SPLIT)
            else:
                notes.append(f"{run_dir / SPLIT}: no test images, so the bundle has none")
        classes = manifest.get("classes") or []
        (work / LABELS).write_text("".join(f"{c}\n" for c in classes), encoding="utf-8")
        bundle = {"from_run": manifest.get("name", run_dir.name), "created": now(), "samples": len(sample)}
        out = {**manifest, "artifacts": packed, "bundle": bundle}
        (work / MANIFEST).write_text(json_text(out) + "\n", encoding="utf-8")
        _swap_into_place(work, target)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    return {
        "dir": str(target),
        "artifacts": list(packed),
        "samples": len(sample),
        "classes": len(classes),
        "size_bytes": size,
        "notes": notes,
    }


def _swap_into_place(work: Path, target: Path) -> None:
    """Rename the finished bundle onto DIR; an earlier bundle is moved aside first, removed last."""
    if not target.exists() or not any(target.iterdir()):
        if target.exists():
            target.rmdir()
        os.replace(work, target)
        return
    old = Path(tempfile.mkdtemp(prefix=f".{target.name}.old-", dir=target.parent))
    old.rmdir()
    os.replace(target, old)
    try:
        os.replace(work, target)
    except OSError:
        os.replace(old, target)  # put the earlier bundle back: a failed pack destroys nothing
        raise
    shutil.rmtree(old, ignore_errors=True)
