"""A verdict is worth only the bytes it names: every reader re-derives it from the record and the files.

`tk verify` writes, per artifact, what it judged (the artifact's sha256, the reference model's,
digests of the images and of the split, the limits, tk's version) beside the figures and `passed`.
Readers (report, the bench ship pick and table, the plot, pack) never show that `passed` as it was
written: derive() checks the record against the files on disk now and tk's limits now, and answers
passed, failed, stale (the bytes, the reference, the images or the limits changed since) or not
verified, with the reason. A record copied from another run names another reference: stale.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

from ..core import schemas
from ..core.errors import TkError
from ..core.io import sha256_file
from ..core.runs import MANIFEST, REFERENCE, SPLIT, load_manifest
from ..core.sections import Threshold, VerifySection
from .parity import check, kind_of, limits_dict, limits_for, split_digest

PASSED, FAILED, STALE, NOT_VERIFIED = "passed", "failed", "stale", "not verified"
PARITY_FILE = "parity.json"
BINDING = ("sha256", "reference_sha256", "images_sha256", "limits", "tk_version")


@dataclass(frozen=True)
class Verdict:
    status: str
    reason: str = ""

    @property
    def passed(self) -> bool:
        return self.status == PASSED

    @property
    def mark(self) -> str:
        return {PASSED: "✓", FAILED: "✗"}.get(self.status, "?")

    def text(self) -> str:
        return self.status + (f": {self.reason}" if self.reason else "")


@dataclass(frozen=True)
class Facts:
    """What a record is checked against: the reference and the limits now (None: not known here)."""

    reference_sha256: Optional[str]
    section: Optional[VerifySection] = None
    split_sha256: Optional[str] = None
    images_sha256: Optional[str] = None  # a device check: the check set's pixels


def derive(record: Optional[dict[str, Any]], file: str, sha_now: Optional[str], facts: Facts) -> Verdict:
    """The verdict a parity record earns today, for the file `file` whose bytes hash to sha_now."""
    if record is None:
        return Verdict(NOT_VERIFIED, "tk verify has not judged this file")
    if any(record.get(k) is None for k in ("reference_sha256", "tk_version")):
        return Verdict(NOT_VERIFIED, "its record is not bound to the bytes it judged (an older tk?): re-run tk verify")
    if sha_now is None:
        return Verdict(STALE, "the file is gone")
    if record.get("sha256") != sha_now:
        return Verdict(STALE, "the file changed since tk verify judged it: re-run tk verify")
    if record["reference_sha256"] != facts.reference_sha256:
        return Verdict(STALE, "judged against another model.keras (another run, or a retrain): re-run tk verify")
    if facts.split_sha256 is not None and record.get("split_sha256") != facts.split_sha256:
        return Verdict(STALE, "judged on other images than this run's split: re-run tk verify")
    if facts.images_sha256 is not None and record.get("images_sha256") != facts.images_sha256:
        return Verdict(STALE, "judged on other images than this check set: re-run tk verify")
    try:
        kind = kind_of(file).kind
        limits = limits_for(kind, facts.section) if facts.section is not None else None
    except TkError as exc:
        return Verdict(FAILED, str(exc))
    if limits is not None and record.get("limits") is not None and record["limits"] != limits_dict(limits):
        return Verdict(STALE, "the limits changed since (verify.thresholds): re-run tk verify")
    if record["passed"] is not True:
        return Verdict(FAILED, "; ".join(record.get("failures") or []) or record.get("error") or "failed")
    missing = [k for k in BINDING if record.get(k) is None]
    if missing:
        return Verdict(FAILED, f"its record says passed but names no {missing[0]}")
    if record.get("kind") != kind:
        return Verdict(FAILED, f"judged as {record.get('kind')!r}, but tk's table makes {file} {kind!r}")
    recorded = Threshold(**record["limits"])
    if recorded.min_agreement is None and recorded.min_confident_agreement is None:
        return Verdict(FAILED, "its record checked no agreement limit")
    failures = check(record, recorded)
    if failures:
        return Verdict(FAILED, "its record says passed, but " + "; ".join(failures))
    return Verdict(PASSED)


def file_sha(folder: Path, file: str) -> Optional[str]:
    path = Path(folder) / file
    return sha256_file(path) if os.path.lexists(path) and not path.is_symlink() else None


def run_facts(run_dir: Path) -> Facts:
    """The reference (model.keras as it is now), the run recipe's verify limits and its split's digest."""
    from ..core.runs import run_recipe

    run_dir = Path(run_dir)
    section = run_recipe(run_dir).verify
    # model.keras as it is now; a copy of the run without it (a device) has only the recorded hash
    reference = file_sha(run_dir, REFERENCE) or _recorded_reference(run_dir)
    split_sha = None
    if os.path.lexists(run_dir / SPLIT):
        items = schemas.load_split(run_dir / SPLIT)["splits"].get(section.split, [])
        split_sha = split_digest(items)
    return Facts(reference, section, split_sha)


@dataclass(frozen=True)
class RunGate:
    """A run's verdicts now: per exported artifact, whether tk verify ever ran (parity.json), and the
    sha256 of every artifact and of the reference as they are on disk now."""

    verdicts: dict[str, Verdict]
    gated: bool
    shas: dict[str, Optional[str]]
    reference_sha256: Optional[str]


def _recorded_reference(run_dir: Path) -> Optional[str]:
    return load_manifest(run_dir).get("artifacts", {}).get(REFERENCE, {}).get("sha256")


def run_verdicts(run_dir: Path) -> RunGate:
    run_dir = Path(run_dir)
    manifest = load_manifest(run_dir)
    files = [f for f in manifest.get("artifacts", {}) if f != REFERENCE]
    path = run_dir / PARITY_FILE
    records = schemas.load_parity(path)["artifacts"] if os.path.lexists(path) else {}
    facts = run_facts(run_dir) if files else Facts(file_sha(run_dir, REFERENCE) or _recorded_reference(run_dir))
    shas = {f: file_sha(run_dir, f) for f in files}
    verdicts = {f: derive(records.get(f), f, shas[f], facts) for f in files}
    return RunGate(verdicts, os.path.lexists(path), shas, facts.reference_sha256)


def bundle_facts(manifest: dict[str, Any], where: Path) -> Facts:
    from ..core.sections import verify_section

    try:
        section = verify_section(manifest.get("verify"))
    except TkError as exc:
        raise TkError(f"{where / MANIFEST}: {exc}; re-pack the bundle with tk pack") from None
    return Facts(manifest.get("bundle", {}).get("reference_sha256"), section)


def bundle_verdicts(bundle: Path) -> dict[str, Verdict]:
    """The workstation verdict each packed artifact carries (its chain), checked against its bytes now."""
    bundle = Path(bundle)
    manifest = load_manifest(bundle)
    facts = bundle_facts(manifest, bundle)
    out = {}
    for file, entry in manifest.get("artifacts", {}).items():
        chain = entry.get("chain") or {}
        verdict = derive(chain.get("parity"), file, file_sha(bundle, file), facts)
        if entry.get("verified") is False and verdict.passed:  # the manifest's own word can only lower it
            verdict = Verdict(NOT_VERIFIED, "packed with --allow-unverified")
        elif entry.get("verified") is False:
            verdict = Verdict(verdict.status, f"packed with --allow-unverified; {verdict.reason}")
        out[file] = verdict
    return out
