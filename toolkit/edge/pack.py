"""`tk pack RUN DIR`: the folder a device gets, complete in itself.

DIR holds the chosen artifacts (default: every device-runnable one, core.formats.DEVICE_FORMATS), a
manifest.json that lists only them (sha256 checked now, against the run's, and kept), labels.txt,
and a class-stratified sample of the run's test split copied to DIR/samples/<class>/ with a
split.json whose paths are relative to DIR. So `tk bench DIR` on the base install measures
accuracy with no path juggling, from any folder. Files only: no model is loaded here.

Written atomically: the bundle is built in a temporary sibling and renamed into place, so a
failed pack leaves DIR as it was. An existing DIR is replaced only with `force`, and only when it
is empty or an earlier bundle (never a run folder or a folder of other files).
"""

from __future__ import annotations

import dataclasses
import glob
import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Callable, Optional, Sequence

import numpy as np

from ..core import schemas
from ..core.context import SILENT, Context
from ..core.errors import TkError
from ..core.formats import DEVICE_FORMATS, companion_files, sort_key
from ..core.io import json_text, now, sha256_file
from ..core.lock import run_lock
from ..core.runs import (
    BUNDLE,
    MANIFEST,
    SPLIT,
    SplitDataset,
    artifact_path,
    load_manifest,
    load_split,
    save_split,
    stratified_sample,
)
from ..core.text import file_part
from .checkset import copy_checkset
from .predictors import check_companions, load_predictor
from .verdicts import PARITY_FILE, Verdict, run_facts, run_verdicts

LABELS = "labels.txt"
SAMPLES = "samples"
DEFAULT_SAMPLES = 200
MAX_SAMPLES = 1000  # a bundle is copied to a device: a few hundred images measure accuracy well enough


def check_formats(formats: Optional[Sequence[str]]) -> None:
    """--format values a device can take (the CLI checks them before it looks up the run)."""
    allowed = list(DEVICE_FORMATS)
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
    allowed = list(DEVICE_FORMATS)
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
            if isinstance(e, dict) and e.get("format") in wanted and artifact_path(run_dir, e.get("file")).is_file()
        ]
    if not chosen:
        raise TkError(
            f"{run_dir}: no {'/'.join(sorted(formats or allowed))} artifact to pack; "
            f"run tk export --format {' or --format '.join(allowed)} first"
        )
    for entry in chosen:  # before anything is copied: a name like ../x or /x is refused here
        artifact_path(run_dir, entry.get("file"))
    return sorted(chosen, key=lambda e: sort_key(e.get("format"), e.get("quantization"), e["file"]))


def class_folders(classes: Sequence[str]) -> list[str]:
    """Each class's folder name in samples/: its label as a safe file name (core/text.py: no '/',
    '..' or control characters, capped, unicode kept), numbered where two labels come out alike."""
    folders: list[str] = []
    for index, name in enumerate(classes):
        folder = file_part(name)
        folders.append(f"{folder}_{index}" if folder in folders or folder == "_" else folder)
    return folders


def _check_samples(sample: list[tuple[str, int]]) -> None:
    """Every test image to pack is there and has an image header (paths are confined to the data
    root by load_split; a bundle carries images, nothing else), checked before anything is written."""
    missing = [p for p, _ in sample if not Path(p).is_file()]
    if missing:
        raise TkError(
            f"{missing[0]}: a test image of the run is not here ({len(missing)} of {len(sample)} "
            "missing); restore the dataset, or pack with --samples 0"
        )
    for path, _ in sample:
        if not _image_header(path):
            raise TkError(
                f"{path}: a test image of the run is not an image (no JPEG, PNG, BMP or GIF header); "
                "restore it, or pack with --samples 0"
            )


def _image_header(path: str) -> bool:
    """A header Pillow recognises as an image. Nothing is decoded (training decoded these files
    already); PIL alone, not core.images, which would import numpy into pack for this."""
    from PIL import Image, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            return img.format is not None
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return False


def _copy_samples(split: SplitDataset, sample: list[tuple[str, int]], work: Path) -> SplitDataset:
    items, used = [], set()
    folders = class_folders(split.classes)
    for i, (path, label) in enumerate(sample):
        folder = folders[label]
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


def gate(run_dir: Path, entries: list[dict[str, Any]], allow_unverified: bool) -> dict[str, Verdict]:
    """Each chosen artifact's verdict now; refuses unless all passed (or allow_unverified says ship anyway)."""
    verdicts = run_verdicts(run_dir).verdicts
    refused = [(e["file"], verdicts[e["file"]]) for e in entries if not verdicts[e["file"]].passed]
    if refused and not allow_unverified:
        named = "; ".join(f"{file} ({v.text()})" for file, v in refused)
        passed = [e["file"] for e in entries if verdicts[e["file"]].passed]
        choose = f"pack only what passed ({' '.join('--artifact ' + f for f in passed)}), " if passed else ""
        raise TkError(
            f"{run_dir}: {len(refused)} artifact(s) did not pass tk verify on these bytes: {named}; "
            f"fix them and run tk verify {run_dir}, {choose}or pass --allow-unverified to pack them "
            "recorded as verified: false"
        )
    return verdicts


def _chained(entry: dict[str, Any], verdict: Verdict, record: Optional[dict], reference: Optional[str]) -> dict:
    """The bundle's entry: the run's, with its provenance chain and whether it passed the gate."""
    out = {
        **entry,
        "verified": verdict.passed,
        "chain": {
            "reference_sha256": reference,
            "artifact_sha256": entry["sha256"],
            "parity": record,
        },
    }
    if not verdict.passed:
        out["verdict"] = verdict.text()
    return out


def pack(
    run_dir: Path,
    target: Path,
    formats: Optional[Sequence[str]] = None,
    files: Optional[Sequence[str]] = None,
    samples: int = DEFAULT_SAMPLES,
    force: bool = False,
    ctx: Context = SILENT,
    finish: Optional[Callable[[Path], None]] = None,
    allow_unverified: bool = False,
) -> dict[str, Any]:
    """Write the device bundle for a run; return what it holds (files, samples, size).

    Only artifacts whose verify passed on these bytes are packed, unless allow_unverified (they are
    then recorded `verified: false`). Every packed file is loaded with the device's own predictor
    from the bundle's manifest before the bundle takes its place. ctx.data_root overrides
    split.json's data root (where the test images are now); `finish` adds to the bundle (the web
    page and its runtimes: web/pack.py) in its work folder, before the swap."""
    run_dir, target = Path(run_dir), Path(target)
    if not 0 <= samples <= MAX_SAMPLES:
        raise TkError(f"--samples: must be between 0 and {MAX_SAMPLES} (got {samples})")
    manifest = load_manifest(run_dir)
    entries = choose_artifacts(run_dir, manifest, formats, files)
    verdicts = gate(run_dir, entries, allow_unverified)
    facts = run_facts(run_dir)
    records = schemas.load_parity(run_dir / PARITY_FILE)["artifacts"] if os.path.lexists(run_dir / PARITY_FILE) else {}
    _check_target(target, run_dir, force)
    split = load_split(run_dir / SPLIT, ctx.data_root) if samples and (run_dir / SPLIT).is_file() else None
    sample = stratified_sample(split.splits.get("test", []), samples) if split is not None else []
    _check_samples(sample)
    notes = (
        []
        if split or not samples
        else [f"{run_dir}: no {SPLIT}, so the bundle has no test images (tk bench will measure latency only)"]
    )
    notes += [
        f"{f}: packed unverified ({v.text()})"
        for f, v in verdicts.items()
        if not v.passed and f in {e["file"] for e in entries}
    ]
    with run_lock(target, "tk pack", ctx):  # one pack per DIR: then what a killed one left is safe to clear
        _remove_leftovers(target, ctx.say)
        _check_target(target, run_dir, force)  # again: a bundle put back just now needs --force too
        return _build(
            run_dir, target, manifest, entries, (split, sample), notes, ctx, (verdicts, records, facts), finish
        )


def _build(
    run_dir: Path,
    target: Path,
    manifest: dict[str, Any],
    entries: list[dict[str, Any]],
    test: tuple[Optional[SplitDataset], list[tuple[str, int]]],
    notes: list[str],
    ctx: Context,
    judged: tuple[dict[str, Verdict], dict[str, Any], Any],
    finish: Optional[Callable[[Path], None]] = None,
) -> dict[str, Any]:
    """Build the bundle in a temporary sibling of target and swap it into place (lock held)."""
    split, sample = test
    verdicts, records, facts = judged
    work = Path(tempfile.mkdtemp(prefix=f".{target.name}.pack-", dir=target.parent))
    umask = os.umask(0)
    os.umask(umask)
    work.chmod(0o777 & ~umask)  # mkdtemp makes it 0700: the bundle gets a normal folder's mode
    try:
        packed = _copy_artifacts(run_dir, work, entries, verdicts, records, facts.reference_sha256, ctx)
        if sample:
            save_split(_copy_samples(split, sample, work), work / SPLIT)
        elif split is not None:
            notes.append(f"{run_dir / SPLIT}: no test images, so the bundle has none")
        classes = manifest.get("classes") or []
        (work / LABELS).write_text("".join(f"{c}\n" for c in classes), encoding="utf-8")
        bundle = {
            "from_run": manifest.get("name", run_dir.name),
            "created": now(),
            "samples": len(sample),
            "reference_sha256": facts.reference_sha256,
            "checkset": 0,
        }
        out = {**manifest, "artifacts": packed, "bundle": bundle, "verify": dataclasses.asdict(facts.section)}
        (work / MANIFEST).write_text(json_text(out) + "\n", encoding="utf-8")
        _load_as_the_device_would(work, packed)
        checks = bundle["checkset"] = _pack_checkset(run_dir, work, manifest, facts.reference_sha256, packed, notes)
        (work / MANIFEST).write_text(json_text(out) + "\n", encoding="utf-8")
        if finish is not None:
            finish(work)
        _swap_into_place(work, target)
    finally:
        if work.exists():
            shutil.rmtree(work, ignore_errors=True)
    size = sum(p.stat().st_size for p in target.rglob("*") if p.is_file())
    return {
        "dir": str(target),
        "artifacts": list(packed),
        "unverified": [f for f, e in packed.items() if not e["verified"]],
        "samples": len(sample),
        "checkset": checks,
        "classes": len(classes),
        "size_bytes": size,
        "notes": notes,
    }


def _remove_leftovers(target: Path, say: Callable[[str], None]) -> None:
    """What a pack killed outright (SIGKILL, power loss) left beside DIR: its work folder, and an
    earlier bundle moved aside (put back if DIR is gone, else removed). Called holding DIR's lock."""
    for path in sorted(target.parent.glob(f".{glob.escape(target.name)}.pack-*")):
        shutil.rmtree(path, ignore_errors=True)
        say(f"removed {path}: left by an interrupted tk pack")
    for path in sorted(target.parent.glob(f".{glob.escape(target.name)}.old-*")):
        if not os.path.lexists(target):
            os.replace(path, target)
            say(f"restored {target} from {path}: an interrupted tk pack had moved it aside")
        else:
            shutil.rmtree(path, ignore_errors=True)


def _copy_artifacts(
    run_dir: Path,
    work: Path,
    entries: list[dict[str, Any]],
    verdicts: dict[str, Verdict],
    records: dict[str, Any],
    reference: Optional[str],
    ctx: Context,
) -> dict[str, Any]:
    """Each artifact into the bundle, its copy hashed against the run's manifest; the bundle's entries."""
    packed = {}
    for entry in entries:
        file = entry["file"]
        ctx.say(f"pack {file}")
        expected = entry.get("sha256")
        if not expected:
            raise TkError(f"{run_dir / MANIFEST}: {file} has no sha256; re-run tk export to record it")
        shutil.copyfile(artifact_path(run_dir, file), work / file)
        # Hash the copy: it is what the device gets, and a file changed since export shows here.
        if sha256_file(work / file) != expected:
            raise TkError(
                f"{run_dir / file}: sha256 differs from {run_dir / MANIFEST}; the file changed "
                "after export (re-run tk export)"
            )
        for name in companion_files(file):  # an IR's .bin: copied and checked like its .xml
            if not (run_dir / name).is_file():
                raise TkError(f"{run_dir / name}: missing; {file} needs it (re-run tk export)")
            shutil.copyfile(run_dir / name, work / name)
            check_companions(work / file, entry, run_dir / MANIFEST)
        packed[file] = _chained(entry, verdicts[file], records.get(file), reference)
    return packed


def _pack_checkset(
    run_dir: Path, work: Path, manifest: dict, reference: Optional[str], packed: dict, notes: list
) -> int:
    """Copy the run's check set into the bundle (its image count). Every bundle of verified
    artifacts carries one; without it (--allow-unverified only) tk verify BUNDLE fails closed."""
    try:
        return copy_checkset(run_dir, work, manifest, reference)["count"]
    except TkError as exc:
        if all(e["verified"] for e in packed.values()):
            raise
        notes.append(f"no check set ({exc}): tk verify on the device will fail")
        return 0


def _load_as_the_device_would(work: Path, packed: dict[str, Any]) -> None:
    """Each artifact through the device's loader, from the bundle's own manifest: its input size and
    class count must match it, or the device would refuse the bundle and so does pack."""
    for file in packed:
        try:
            predictor = load_predictor(work / file, num_threads=1)
            predictor.predict(np.zeros((1, *predictor.size, 3), np.float32))
        except TkError as exc:
            raise TkError(f"{file}: the device would refuse this bundle: {exc}") from None


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
