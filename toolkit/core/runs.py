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
import os
import random
from collections import Counter
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

from . import schemas
from .context import SILENT, Context
from .errors import TkError
from .formats import companion_files
from .io import now, sha256_file, size_bytes, tool_versions, write_json_atomic
from .jsonspec import read_json_file
from .paths import confine
from .run_names import MAX_NAME, NOT_RUN_SUFFIXES, run_name_problem  # noqa: F401 (re-exported)

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
_ARCHIVE_STAMP = "%Y%m%d-%H%M%S"


def load_manifest(run_dir: Path) -> "schemas.Manifest":
    """The run's (or bundle's) manifest.json, checked by its schema (types, ranges, caps)."""
    path = Path(run_dir) / MANIFEST
    if not os.path.lexists(path):
        raise TkError(f"{run_dir}: no {MANIFEST}; train a model first (tk train RECIPE)")
    path = confine(run_dir, MANIFEST, path, "copy the real file into the folder instead of linking it")
    return schemas.load_manifest(path)


def _manifest_or_none(run_dir: Path) -> Optional[dict[str, Any]]:
    """The manifest's JSON object (bounded read, no schema) or None: only for sorting and listing
    runs, whose readers check each key's type; any command that uses the run loads it by schema."""
    try:
        raw = read_json_file(Path(run_dir) / MANIFEST, 64 * 2**20, "")
    except (TkError, OSError):
        return None
    return raw if isinstance(raw, dict) else None


def save_manifest(run_dir: Path, manifest: dict[str, Any]) -> None:
    manifest["updated"] = now()
    write_json_atomic(Path(run_dir) / MANIFEST, manifest)


def preprocessing_record(size: Sequence[int], scaling: str, interpolation: str) -> dict[str, Any]:
    """The manifest's preprocessing of a tk model: RGB 0..255 in, `scaling` a layer inside the graph."""
    return {
        "size": [int(size[0]), int(size[1])],
        "interpolation": interpolation,
        "color": "RGB",
        "input_range": [0, 255],
        # The scaling is a layer inside every artifact; devices feed RGB 0..255.
        "scaling": scaling,
        "scaling_in_graph": True,
        "exif_transpose": True,
    }


def reference_entry(path: Path, size: Sequence[int], classes: int, backend: str) -> dict[str, Any]:
    """The manifest entry of a run's model.keras (the reference every artifact is checked against)."""
    return {
        "file": REFERENCE,
        "format": "keras",
        "quantization": "none",
        "input": {"shape": [None, int(size[0]), int(size[1]), 3], "dtype": "float32"},
        "output": {"shape": [None, classes], "dtype": "float32"},
        "sha256": sha256_file(path),
        "size_bytes": size_bytes(path),
        "versions": tool_versions("tensorflow", "keras"),
        "created": now(),
        "backend": backend,
    }


def artifact_path(run_dir: Path, file: Any, manifest_path: Optional[Path] = None) -> Path:
    """The file a manifest entry names, as a path inside the run folder (or bundle) it belongs to.

    tk writes artifacts as plain names beside the manifest (model.onnx, saved_model): anything else
    (a folder part, `..`, an absolute path, a link leading out) is refused, naming the manifest."""
    source = manifest_path or Path(run_dir) / MANIFEST
    fix = "re-run tk export to rewrite the manifest (or copy the run folder again)"
    if not isinstance(file, str) or file in ("", ".", "..") or "/" in file or "\\" in file:
        raise TkError(f"{source}: artifact {file!r} is not a file name in the run folder; {fix}")
    return confine(run_dir, file, source, fix)


def reference_sha256(run_dir: Path, manifest: dict[str, Any]) -> str:
    """model.keras' sha256, which must be the one tk train recorded: a swapped reference would make
    every verdict about another model. The fixes are a new training or a new run."""
    recorded = manifest.get("artifacts", {}).get(REFERENCE, {}).get("sha256")
    path = Path(run_dir) / REFERENCE
    if path.is_symlink() or not path.is_file():
        raise TkError(f"{path}: missing (or not a regular file); this run has no reference model: retrain it")
    actual = sha256_file(path)
    if not recorded:
        raise TkError(
            f"{run_dir / MANIFEST}: no sha256 recorded for {REFERENCE}, so nothing ties it to this run; "
            "retrain it (tk train RECIPE) or bring the model in as a new run (tk import)"
        )
    if actual != recorded:
        raise TkError(
            f"{path}: sha256 differs from the one tk train recorded in {MANIFEST}; the model changed "
            "after training: retrain it (tk train RECIPE) or bring it in as a new run (tk import)"
        )
    return actual


def record_artifact(run_dir: Path, entry: dict[str, Any]) -> dict[str, Any]:
    """Add or replace one artifact entry (keyed by file name), hashing the file (and its companions) now.

    size_bytes counts the companions too: an OpenVINO IR's size is its .xml plus its .bin."""
    run_dir = Path(run_dir)
    manifest = load_manifest(run_dir)
    path = run_dir / entry["file"]
    companions = {
        name: {"sha256": sha256_file(run_dir / name), "size_bytes": size_bytes(run_dir / name)}
        for name in companion_files(entry["file"])
    }
    total = size_bytes(path) + sum(c["size_bytes"] for c in companions.values())
    entry = {**entry, "sha256": sha256_file(path), "size_bytes": total, "created": now()}
    if companions:
        entry["companions"] = companions
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
    """Every finished run folder under runs_dir: stable names and archived runs alike. A folder
    whose manifest is a link or not a regular file (/dev/zero) is not a run: it is never read."""
    return sorted(
        p.parent
        for p in Path(runs_dir).glob(f"*/{MANIFEST}")
        if not p.parent.name.startswith(".")
        and not p.parent.name.endswith(NOT_RUN_SUFFIXES)
        and p.is_file()
        and not p.is_symlink()
        and not _is_bundle(p)
    )


def _is_bundle(manifest: Path) -> bool:
    """A tk pack bundle (its manifest says "bundle") beside the runs is what a device gets, not a run."""
    return "bundle" in (_manifest_or_none(manifest.parent) or {})


def is_bundle(folder: Path) -> bool:
    """A folder tk pack wrote (its manifest reads cleanly and names the bundle)."""
    return os.path.lexists(Path(folder) / MANIFEST) and "bundle" in load_manifest(folder)


def trained_at(run_dir: Path) -> float:
    """When the run was trained (POSIX seconds): the manifest's `trained`, for older runs its
    `created` (written once, at training), else model.keras' mtime. Never the manifest's mtime:
    export, verify and bench rewrite the manifest."""
    run_dir = Path(run_dir)
    manifest = _manifest_or_none(run_dir) or {}
    for key in ("trained", "created"):
        stamp = manifest.get(key)
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
    stable = (_manifest_or_none(run_dir) or {}).get("name") == run_dir.name
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
    stamp = datetime.fromtimestamp(trained_at(run_dir), timezone.utc).strftime(_ARCHIVE_STAMP)
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
    def from_json(
        cls, obj: dict, data_root: Optional[Path] = None, base: Optional[Path] = None, source: Optional[Path] = None
    ) -> "SplitDataset":
        """`base`: the folder split.json is in; a relative recorded root (a bundle's ".") is relative to it.

        Every image path is confined (core/paths.py): a bundle's to the bundle, links resolved; a
        run's to its data root, as text (the dataset's own links are followed). A label must be the
        index of one of the classes."""
        source = source or Path(base or ".") / SPLIT
        root, root_from, place = _placement(obj, data_root, base, source)
        classes = list(obj["classes"])

        def label(split: str, y: Any) -> int:
            if isinstance(y, bool) or not isinstance(y, int) or not 0 <= y < len(classes):
                raise TkError(
                    f"{source}: label {y!r} in the {split} split is not a class index (0..{len(classes) - 1}); "
                    "copy split.json again from the run folder (or re-run tk train / tk pack)"
                )
            return y

        return cls(
            root=root,
            classes=classes,
            layout=obj.get("layout", "folder"),
            splits={s: [(place(p), label(s, y)) for p, y in items] for s, items in obj["splits"].items()},
            skipped=[(str(p), r) for p, r in obj.get("skipped", [])],  # listed, never read
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


def _placement(obj: dict, data_root: Optional[Path], base: Optional[Path], source: Path):
    """(root, where it came from, recorded path -> confined path) for a split.json's content."""
    fix = "pass --data-root PATH (the dataset folder) or re-run tk train to rewrite it"
    if obj.get("format") == SPLIT_FORMAT and obj.get("layout") == BUNDLE and not data_root:
        if obj["root"] != ".":  # tk pack writes ".": the bundle is the root, wherever it is copied
            raise TkError(f"{source}: a bundle's split.json has root '.' (got {obj['root']!r}); run tk pack again")
        root = os.path.abspath(base or ".")
        return root, "recorded", lambda p: str(confine(root, p, source, "run tk pack again (or copy the bundle again)"))
    if obj.get("format") == SPLIT_FORMAT:
        recorded = obj["root"] if os.path.isabs(obj["root"]) else os.path.join(base or ".", obj["root"])
        root, root_from = (os.path.abspath(data_root), "--data-root") if data_root else (recorded, "recorded")
        return root, root_from, lambda p: str(confine(root, p, source, fix, links="followed"))
    if data_root:  # an old split.json moved: its paths start with its root (as tk train was given it)
        root, old = os.path.abspath(data_root), obj["root"]
        return root, "--data-root", lambda p: str(confine(root, _rebased(p, old, root), source, fix, "followed"))
    root = obj["root"]

    def as_recorded(path: str) -> str:  # an older split.json: relative to the folder tk train ran in
        confine(root, os.path.abspath(path), source, fix, "followed")
        return path

    return root, "cwd", as_recorded


def _relative(path: str, root: str) -> str:
    """A path as split.json stores it: relative to root with '/' (any OS reads it).

    discover() lists files below the data root only (its class folders may be links: their files
    are still below it by path), so a path outside is a bug, not a dataset: readers refuse it."""
    full = os.path.abspath(path)
    rel = os.path.relpath(full, root) if os.path.splitdrive(full)[0] == os.path.splitdrive(root)[0] else full
    if os.path.isabs(rel) or rel == ".." or rel.startswith(".." + os.sep):
        raise ValueError(f"{path} is not under the data root {root}: split.json lists images below their root")
    return rel.replace(os.sep, "/")


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
    if not os.path.lexists(path):
        raise TkError(f"{path}: no split recorded; train this run first (tk train RECIPE)")
    if data_root is not None and not Path(data_root).is_dir():
        raise TkError(
            f"--data-root: folder not found: {data_root} (pass the dataset folder, the one with the class folders)"
        )
    real = confine(path.parent, path.name, path, "copy the real file into the folder instead of linking it")
    # truncated (a copy cut short, a full disk before atomic writes) or hand-edited: one line from the schema
    return SplitDataset.from_json(schemas.load_split(real), data_root, base=path.parent, source=path)


def stratified_sample(
    items: Sequence[tuple[str, int]], count: int, seed: Optional[int] = None
) -> list[tuple[str, int]]:
    """Up to `count` of the (path, label) items, as even across classes as they allow: classes take
    turns, one item each, and a class that runs out gives its turns to the others.

    Which items of a class: with no seed, spread evenly over its list (tk pack: the same run packs
    the same sample); with a seed, drawn from it shuffled by that seed (int8 calibration).
    """
    by_class: dict[int, list[str]] = {}
    for path, label in items:
        by_class.setdefault(label, []).append(path)
    quota, left = {k: 0 for k in by_class}, min(count, len(items))
    while left > 0:
        for k in sorted(by_class):
            if left and quota[k] < len(by_class[k]):
                quota[k] += 1
                left -= 1
    rng = random.Random(seed)
    picked = {}
    for k in sorted(by_class):  # one rng, classes in label order: the same seed draws the same sample
        pool, n = by_class[k], quota[k]
        if seed is None:
            picked[k] = [pool[(i * len(pool)) // n] for i in range(n)]
        else:
            pool = sorted(pool)
            rng.shuffle(pool)
            picked[k] = pool[len(pool) - n :][::-1]
    turns = max(quota.values(), default=0)
    return [(picked[k][i], k) for i in range(turns) for k in sorted(by_class) if i < quota[k]]


def check_files_exist(paths: Sequence[str], run_dir: Path, split: Optional[SplitDataset] = None) -> None:
    """Say in one line which image of the split is gone, where tk looked and how to point it at the data."""
    split = split or load_split(Path(run_dir) / SPLIT)
    line = split.missing_line(paths, Path(run_dir) / SPLIT)
    if line is not None:
        raise TkError(line)
