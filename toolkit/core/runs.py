"""The run folder: its files, who reads them, and how a command finds the run it works on.

exported/<run>/manifest.json records the classes in order, the preprocessing, and per artifact:
file, format, quantization, input/output shape and dtype, int8 scale/zero-point, sha256, size,
tool versions, and the metrics verify and bench measured. A predictor built from an artifact and
its manifest needs nothing else. split.json records the images of every split; recipe.yaml the
recipe the run was trained with. This module owns those three files: every command reads them
through it. Standard library only (the device path imports it).
"""

from __future__ import annotations

import json
import os
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from .errors import TkError
from .io import now, sha256_file, size_bytes, write_json_atomic

if TYPE_CHECKING:
    from .recipe import Recipe

MANIFEST = "manifest.json"
RUNS_DIR = Path(os.environ.get("TK_RUNS_DIR", "exported"))
REFERENCE = "model.keras"  # the trained model every artifact is checked against
SPLIT = "split.json"
SPLITS = ("train", "validation", "test")
RUN_RECIPE = "recipe.yaml"


def load_manifest(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise TkError(f"{run_dir}: no {MANIFEST}; train a model first (tk train RECIPE)")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:  # tk writes UTF-8; a hand edit saved as latin-1 is not
        raise TkError(f"{path}: not UTF-8 text (byte {exc.start}); re-save it as UTF-8, or re-run "
                      "tk export to rewrite it") from None
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


def run_recipe(run_dir: Path) -> "Recipe":
    """The recipe the run was trained with (recipe.yaml in the run folder)."""
    from .recipe import load_recipe

    path = Path(run_dir) / RUN_RECIPE
    if not path.is_file():
        raise TkError(f"{run_dir}: no {RUN_RECIPE}; this is not a complete run (re-run tk train RECIPE)")
    return load_recipe(path)


@dataclass
class SplitDataset:
    root: str
    classes: list[str]
    splits: dict[str, list[tuple[str, int]]]  # split -> [(path, class index)]
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    layout: str = "folder"
    # True when there is no test split (no test/ folder, or test fraction 0): the test list is
    # then a copy of validation, and test metrics are validation metrics (inspect says so).
    test_is_validation: bool = False

    def paths(self, split: str) -> list[str]:
        return [p for p, _ in self.splits[split]]

    def labels(self, split: str) -> list[int]:
        return [y for _, y in self.splits[split]]

    def counts(self) -> dict[str, dict[str, int]]:
        return {s: {self.classes[k]: v for k, v in sorted(Counter(self.labels(s)).items())} for s in self.splits}

    def to_json(self) -> dict:
        return {"root": self.root, "layout": self.layout, "classes": self.classes,
                "splits": {s: [[p, y] for p, y in items] for s, items in self.splits.items()},
                "skipped": [[p, r] for p, r in self.skipped], "test_is_validation": self.test_is_validation}

    @classmethod
    def from_json(cls, obj: dict) -> "SplitDataset":
        return cls(root=obj["root"], classes=list(obj["classes"]), layout=obj.get("layout", "folder"),
                   splits={s: [(p, int(y)) for p, y in items] for s, items in obj["splits"].items()},
                   skipped=[(p, r) for p, r in obj.get("skipped", [])],
                   test_is_validation=bool(obj.get("test_is_validation", False)))


def save_split(dataset: SplitDataset, path: Path) -> None:
    write_json_atomic(path, dataset.to_json())


def load_split(path: Path) -> SplitDataset:
    if not path.is_file():
        raise TkError(f"{path}: no split recorded; train this run first (tk train RECIPE)")
    try:
        return SplitDataset.from_json(json.loads(path.read_bytes().decode("utf-8")))
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        # truncated (a copy cut short, a full disk before atomic writes) or hand-edited
        why = f"not valid JSON ({exc})" if isinstance(exc, json.JSONDecodeError) else \
            f"not a tk split file ({exc.__class__.__name__}: {exc})"
        raise TkError(f"{path}: {why}; re-run tk train to rewrite it, or copy it again from the run "
                      "folder") from None




def check_files_exist(paths: Sequence[str], run_dir: Path) -> None:
    """split.json paths are as tk train saw them (relative to where it ran): say so if one is gone."""
    missing = next((p for p in paths if not Path(p).is_file()), None)
    if missing is not None:
        raise TkError(f"{run_dir}/{SPLIT} lists {missing}, which does not exist here; run tk from the "
                      "folder tk train ran in (the split's paths are relative to it), or restore the data")
