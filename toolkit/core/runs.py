"""The run folder: its files, who reads them, and how a command finds the run it works on.

exported/<run>/manifest.json records the classes in order, the preprocessing, and per artifact:
file, format, quantization, input/output shape and dtype, int8 scale/zero-point, sha256, size,
tool versions, and the metrics verify and bench measured. A predictor built from an artifact and
its manifest needs nothing else. split.json records the images of every split; recipe.yaml the
recipe the run was trained with. This module owns those three files: every command reads them
through it. Standard library only (the device path imports it).

Runs travel: split.json records the data root as an absolute path and every image relative to it
(SPLIT_FORMAT), so a run works from any folder and after its folder moves; `data_root` overrides
the recorded root when the dataset moved. split.json files without the marker (older tk) hold paths
relative to the folder tk train ran in and still load that way. Retraining a recipe keeps the
previous run (archive_run): exported/<name>/ is always the run of that recipe trained last.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from .context import SILENT, Context
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
# split.json "format": 2 = paths relative to "root" (absolute); absent = relative to the cwd of tk train.
BUNDLE = "bundle"  # the layout of a split tk pack wrote
SPLIT_FORMAT = 2
# Folders beside the runs that are not runs: a run in progress, a swap leftover, temp folders.
NOT_RUN_SUFFIXES = (".partial", ".old")


def load_manifest(run_dir: Path) -> dict[str, Any]:
    path = Path(run_dir) / MANIFEST
    if not path.is_file():
        raise TkError(f"{run_dir}: no {MANIFEST}; train a model first (tk train RECIPE)")
    try:
        return json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as exc:  # tk writes UTF-8; a hand edit saved as latin-1 is not
        raise TkError(
            f"{path}: not UTF-8 text (byte {exc.start}); re-save it as UTF-8, or re-run tk export to rewrite it"
        ) from None
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


def resolve_run(target: Optional[str], runs_dir: Path = RUNS_DIR, ctx: Context = SILENT) -> Path:
    """A run folder from: nothing (the run trained last), a folder (`.` too), a recipe file, or a run name.

    Says which run it picked unless the target was that folder itself.
    """
    if target:
        path = Path(target)
        if (path / MANIFEST).is_file():
            # `.`, `..` and `run/..` have no usable name (bench and report label runs by it)
            return path.resolve() if path.name in ("", ".", "..") else path
        if path.suffix in (".yaml", ".yml"):
            from .recipe import load_recipe

            run = Path(runs_dir) / load_recipe(path).name
        else:
            run = Path(runs_dir) / target
        if not (run / MANIFEST).is_file():
            if path.is_dir() and _holds_images(path):
                raise TkError(
                    f"{target}: a folder of images (a dataset), not a trained run; train a model on it "
                    f"first: tk train {target}"
                )
            where = path if path.is_dir() else run
            raise TkError(f"{target}: no trained run at {where} (train it first: tk train RECIPE)")
        ctx.say(f"using the run {run} (trained {_when(trained_at(run))})")
        return run
    runs = list_runs(runs_dir)
    if not runs:
        raise TkError(f"no runs under {runs_dir}/; train one first (tk train recipes/quickstart.yaml)")
    latest = max(runs, key=_latest_key)
    ctx.say(f"using the latest run: {latest} (trained {_when(trained_at(latest))})")
    return latest


def _holds_images(folder: Path, limit: int = 200) -> bool:
    """True when folder has images in its class folders (or in train/<class>/): a dataset, not a run.
    Looks at a few hundred entries at most: a big dataset answers as fast as a small one."""
    from .images import IMAGE_SUFFIXES

    seen = 0
    for top in (folder, folder / "train"):
        with contextlib.suppress(OSError):
            for sub in top.iterdir():
                if not sub.is_dir():
                    continue
                for entry in sub.iterdir():
                    seen += 1
                    if entry.suffix.lower() in IMAGE_SUFFIXES:
                        return True
                    if seen > limit:
                        return False
    return False


def list_runs(runs_dir: Path = RUNS_DIR) -> list[Path]:
    """Every finished run folder under runs_dir: stable names and archived runs alike."""
    return sorted(
        p.parent
        for p in Path(runs_dir).glob(f"*/{MANIFEST}")
        if not p.parent.name.startswith(".") and not p.parent.name.endswith(NOT_RUN_SUFFIXES) and not _is_bundle(p)
    )


def _is_bundle(manifest: Path) -> bool:
    """A tk pack bundle (its manifest says "bundle") beside the runs is what a device gets, not a run."""
    try:
        return "bundle" in json.loads(manifest.read_text())
    except (OSError, ValueError, TypeError):
        return False


def trained_at(run_dir: Path) -> float:
    """When the run was trained (POSIX seconds): the manifest's `trained`, for older runs its
    `created` (written once, at training), else model.keras' mtime. Never the manifest's mtime:
    export, verify and bench rewrite the manifest."""
    run_dir = Path(run_dir)
    try:
        manifest = json.loads((run_dir / MANIFEST).read_text())
    except (OSError, ValueError):
        manifest = {}
    for key in ("trained", "created"):
        stamp = manifest.get(key) if isinstance(manifest, dict) else None
        if isinstance(stamp, str):
            try:
                moment = datetime.fromisoformat(stamp)
            except ValueError:
                continue
            return (moment if moment.tzinfo else moment.replace(tzinfo=timezone.utc)).timestamp()
    for name in (REFERENCE, MANIFEST):
        with contextlib.suppress(OSError):
            return (run_dir / name).stat().st_mtime
    return 0.0


def _latest_key(run_dir: Path) -> tuple:
    # On a tie (a copied run) the stable name beats an archived copy: exported/<name>/ is a run
    # whose folder is its recipe name.
    try:
        stable = json.loads((run_dir / MANIFEST).read_text()).get("name") == run_dir.name
    except (OSError, ValueError, AttributeError):
        stable = False
    return trained_at(run_dir), stable, run_dir.name


def _when(seconds: float) -> str:
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


def archive_run(run_dir: Path) -> Optional[Path]:
    """Move a finished run aside, to <name>-<trained time>[-N] beside it, with one rename.

    Retraining calls this before the new run takes the stable name, so no finished run is ever
    deleted. Returns the new place, or None when there was nothing at run_dir.
    """
    run_dir = Path(run_dir)
    if not run_dir.exists():
        return None
    stamp = datetime.fromtimestamp(trained_at(run_dir), timezone.utc).strftime("%Y%m%d-%H%M%S")
    for n in range(1, 10_000):
        target = run_dir.with_name(f"{run_dir.name}-{stamp}" + (f"-{n}" if n > 1 else ""))
        try:
            target.mkdir()  # claims the name: exclusive even against another process
        except FileExistsError:
            continue
        if os.name == "nt":  # Windows cannot rename onto a folder, even an empty one
            target.rmdir()
        os.replace(run_dir, target)  # POSIX: atomically replaces the empty folder just claimed
        return target
    raise TkError(f"{run_dir}: 10000 archived runs of this name already exist beside it; delete old ones")


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
    splits: dict[str, list[tuple[str, int]]]  # split -> [(path, class index)], paths usable as they are
    skipped: list[tuple[str, str]] = field(default_factory=list)  # (path, reason)
    layout: str = "folder"
    # True when there is no test split (no test/ folder, or test fraction 0): the test list is
    # then a copy of validation, and test metrics are validation metrics (inspect says so).
    test_is_validation: bool = False
    # Where root came from when loaded: "recorded" (split.json), "--data-root" (the override), or
    # "cwd" (an old split.json: paths relative to the folder tk train ran in). For messages.
    root_from: str = "recorded"

    def paths(self, split: str) -> list[str]:
        return [p for p, _ in self.splits[split]]

    def labels(self, split: str) -> list[int]:
        return [y for _, y in self.splits[split]]

    def counts(self) -> dict[str, dict[str, int]]:
        return {s: {self.classes[k]: v for k, v in sorted(Counter(self.labels(s)).items())} for s in self.splits}

    def to_json(self) -> dict:
        if self.layout == BUNDLE:  # tk pack: paths relative to the bundle, wherever it is copied
            root, rel = ".", str
        else:
            root = os.path.abspath(self.root)
            rel = functools.partial(_relative, root=root)
        return {
            "format": SPLIT_FORMAT,
            "root": root,
            "layout": self.layout,
            "classes": self.classes,
            "splits": {s: [[rel(p), y] for p, y in items] for s, items in self.splits.items()},
            "skipped": [[rel(p), r] for p, r in self.skipped],
            "test_is_validation": self.test_is_validation,
        }

    @classmethod
    def from_json(cls, obj: dict, data_root: Optional[Path] = None, base: Optional[Path] = None) -> "SplitDataset":
        """`base`: the folder split.json is in; a relative recorded root (a bundle's ".") is relative to it."""
        if obj.get("format") == SPLIT_FORMAT:
            recorded = obj["root"] if os.path.isabs(obj["root"]) else os.path.join(base or ".", obj["root"])
            root, root_from = (os.path.abspath(data_root), "--data-root") if data_root else (recorded, "recorded")
            place = functools.partial(_joined, root=root)
        elif data_root:  # an old split.json moved: its paths start with its root (as tk train was given it)
            root, root_from = os.path.abspath(data_root), "--data-root"
            place = functools.partial(_rebased, old_root=obj["root"], root=root)
        else:
            root, root_from, place = obj["root"], "cwd", str
        return cls(
            root=root,
            classes=list(obj["classes"]),
            layout=obj.get("layout", "folder"),
            splits={s: [(place(p), int(y)) for p, y in items] for s, items in obj["splits"].items()},
            skipped=[(place(p), r) for p, r in obj.get("skipped", [])],
            test_is_validation=bool(obj.get("test_is_validation", False)),
            root_from=root_from,
        )

    def missing_line(self, paths: Sequence[str], where: Path) -> Optional[str]:
        """One line naming the first of `paths` that is not a file, the root and the fix; None if all are."""
        missing = next((p for p in paths if not Path(p).is_file()), None)
        if missing is None:
            return None
        if self.root_from == "cwd":
            return (
                f"{where}: image {missing} not found; this split.json is from an older tk and lists paths "
                f"relative to the folder tk train ran in (data root {self.root}): run from that folder, or "
                "pass --data-root PATH (the dataset folder on this machine)"
            )
        given = " (given by --data-root)" if self.root_from == "--data-root" else ""
        return (
            f"{where}: image {missing} not found under the data root {self.root}{given}; if the dataset "
            "moved, pass --data-root PATH (its folder on this machine), or restore the data there"
        )


def _relative(path: str, root: str) -> str:
    """A path as split.json stores it: relative to root with '/' (any OS reads it), absolute if outside."""
    full = os.path.abspath(path)
    rel = os.path.relpath(full, root) if os.path.splitdrive(full)[0] == os.path.splitdrive(root)[0] else full
    return full if rel == ".." or rel.startswith(".." + os.sep) else rel.replace(os.sep, "/")


def _joined(rel: str, root: str) -> str:
    return rel if os.path.isabs(rel) else os.path.join(root, *rel.split("/"))


def _rebased(path: str, old_root: str, root: str) -> str:
    try:
        rel = Path(path).relative_to(old_root)
    except ValueError:
        return path
    return str(Path(root) / rel)


def save_split(dataset: SplitDataset, path: Path) -> None:
    write_json_atomic(path, dataset.to_json())


def load_split(path: Path, data_root: Optional[Path] = None) -> SplitDataset:
    """The split, with paths that work from any folder; `data_root` replaces the recorded root."""
    path = Path(path)
    if not path.is_file():
        raise TkError(f"{path}: no split recorded; train this run first (tk train RECIPE)")
    if data_root is not None and not Path(data_root).is_dir():
        raise TkError(
            f"--data-root: folder not found: {data_root} (pass the dataset folder, the one with the class folders)"
        )
    try:
        return SplitDataset.from_json(json.loads(path.read_bytes().decode("utf-8")), data_root, base=path.parent)
    except (UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError, ValueError, AttributeError) as exc:
        # truncated (a copy cut short, a full disk before atomic writes) or hand-edited
        why = (
            f"not valid JSON ({exc})"
            if isinstance(exc, json.JSONDecodeError)
            else f"not a tk split file ({exc.__class__.__name__}: {exc})"
        )
        raise TkError(f"{path}: {why}; re-run tk train to rewrite it, or copy it again from the run folder") from None


def check_files_exist(paths: Sequence[str], run_dir: Path, split: Optional[SplitDataset] = None) -> None:
    """Say in one line which image of the split is gone, where tk looked and how to point it at the data."""
    split = split or load_split(Path(run_dir) / SPLIT)
    line = split.missing_line(paths, Path(run_dir) / SPLIT)
    if line is not None:
        raise TkError(line)
