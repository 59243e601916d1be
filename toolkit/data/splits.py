"""Class-per-folder datasets: discovery, bad-file screening and deterministic splits.

Two layouts: pre-split (`root/{train,validation,test}/<class>/*`) or one folder of class folders
split by fractions, stratified by class and deterministic by seed. The split is saved in the run
folder (split.json) so export, verify and bench evaluate on exactly the same images.
TensorFlow-free. SplitDataset and split.json belong to the run folder: core/runs.py.
"""

from __future__ import annotations

import random
import unicodedata
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from ..core.errors import TkError
from ..core.images import check_image
from ..core.recipe import DataSection
from ..core.runs import SPLITS, SplitDataset

_SPLIT_ALIASES = {"train": ("train",), "validation": ("validation", "val", "valid"), "test": ("test",)}


def discover(data: DataSection, seed: int, complete: bool = True) -> SplitDataset:
    """Find classes and images under data.root, screen bad files, and split.

    complete: a class with no usable image in train or validation is an error (inspect passes
    False to list it among its warnings instead)."""
    root = Path(data.root)
    if not root.is_dir():
        if data.source:
            hint = "run `tk data fetch RECIPE` to download it"
        elif data.synth:
            hint = f"`tk train` makes it from data.synth, or run `tk data synth {root}`"
        else:
            hint = "fix data.root, or put one sub-folder of images per class there"
        raise TkError(f"data.root: folder not found: {root} ({hint})")
    layout = data.layout
    split_dirs = _presplit_dirs(root)
    if layout == "auto":
        layout = "presplit" if looks_presplit(split_dirs) else "folder"
    if layout == "presplit":
        if "train" not in split_dirs or "validation" not in split_dirs:
            raise TkError(
                f"data.root: {root} needs train/ and validation/ subfolders for layout presplit "
                f"(found {', '.join(p.name for p in root.iterdir() if p.is_dir()) or 'none'})"
            )
        return _presplit(root, split_dirs, data.strict, complete)
    return _folder(root, data, seed, complete)


def _presplit_dirs(root: Path) -> dict[str, Path]:
    found = {}
    for split, aliases in _SPLIT_ALIASES.items():
        for alias in aliases:
            if (root / alias).is_dir():
                found[split] = root / alias
                break
    return found


def looks_presplit(split_dirs: dict[str, Path]) -> bool:
    """train/ (or val/, test/) folders that hold class folders. Class folders that happen to be
    named train and test hold images, not folders: that dataset is one folder of classes."""
    return any(any(p.is_dir() and not p.name.startswith(".") for p in d.iterdir()) for d in split_dirs.values())


def _class_dirs(folder: Path) -> list[str]:
    # __MACOSX/ (resource forks that macOS zips carry) is not a class; other names starting with
    # "." are hidden folders (.git, .ipynb_checkpoints), except names of dots only ("...").
    names = sorted(p.name for p in folder.iterdir() if p.is_dir() and p.name != "__MACOSX")
    for name in names:
        problem = class_name_problem(name)
        if problem:
            raise TkError(
                f"data.root: class folder {str(folder / name)!r} {problem}; rename the folder "
                "(its name is the class label in labels.txt, the manifest and the TFLite metadata)"
            )
    return [n for n in names if not n.startswith(".")]


def class_name_problem(name: str) -> str | None:
    """Why a folder name cannot be a class label, or None."""
    if set(name) == {"."}:
        return "is only dots (it would be read as a hidden folder, or as . or ..)"
    if any(unicodedata.category(c) in ("Cc", "Zl", "Zp") for c in name):
        return "contains a newline or another control character (labels.txt holds one label per line)"
    if name != name.strip():
        return "starts or ends with a space (lost from labels.txt and the model's metadata)"
    try:
        name.encode("utf-8")
    except UnicodeEncodeError:
        return "is not valid UTF-8 text (labels are written as UTF-8)"
    return None


def _files(folder: Path) -> list[Path]:
    return sorted(p for p in folder.rglob("*") if p.is_file() and not p.name.startswith("."))


def _presplit(root: Path, split_dirs: dict[str, Path], strict: bool, complete: bool) -> SplitDataset:
    class_sets = {s: _class_dirs(d) for s, d in split_dirs.items()}
    classes = class_sets["train"]
    for split, names in class_sets.items():
        # A test/ without some class folder is the same as an empty one: stated, not fatal (check_complete).
        if names != classes and not (split == "test" and set(names) < set(classes)):
            missing = sorted(set(classes) - set(names))
            extra = sorted(set(names) - set(classes))
            raise TkError(
                f"data.root: class folders of {split_dirs[split]} differ from train/ "
                f"(missing: {missing or 'none'}, extra: {extra or 'none'}); every split needs the same classes"
            )
    _check_classes(classes, root)
    splits, skipped = {}, []
    for split, folder in split_dirs.items():
        items = [(str(p), k) for k, c in enumerate(classes) if (folder / c).is_dir() for p in _files(folder / c)]
        good, bad = screen(items)
        splits[split], skipped = good, skipped + bad
    _finish(skipped, strict, root)
    for split in ("train", "validation") if complete else ():
        for name in missing_classes(classes, splits[split]):
            raise TkError(
                f"data.root: {split_dirs[split] / name} has no usable images"
                f"{_skipped_in(skipped, split_dirs[split] / name)}; "
                f"add images to it, or remove the class {name!r} from every split"
            )
    no_test = "test" not in splits
    if no_test:
        splits["test"] = list(splits["validation"])  # evaluated on validation; said in inspect
    return SplitDataset(str(root), classes, splits, skipped, layout="presplit", test_is_validation=no_test)


def _folder(root: Path, data: DataSection, seed: int, complete: bool) -> SplitDataset:
    classes = _class_dirs(root)
    _check_classes(classes, root)
    items = [(str(p), k) for k, c in enumerate(classes) for p in _files(root / c)]
    good, skipped = screen(items)
    _finish(skipped, data.strict, root)
    for name in missing_classes(classes, good) if complete else ():
        raise TkError(
            f"data.root: {root / name} has no usable images{_skipped_in(skipped, root / name)}; "
            "add images to it, or remove the folder"
        )
    splits = stratified_split(good, len(classes), data.split.train, data.split.validation, seed)
    for split, members in splits.items():
        if split != "test" and not members:
            raise TkError(f"data.split: the {split} split of {root} is empty; add images or change the fractions")
    for name in missing_classes(classes, splits["validation"]) if complete else ():
        count = sum(1 for _, y in good if classes[y] == name)
        raise TkError(
            f"data.split: {root / name} has {count} usable image(s), too few for the validation split "
            "to get one; add images (3 or more per class)"
        )
    no_test = not splits["test"]
    if no_test:
        splits["test"] = list(splits["validation"])
    return SplitDataset(str(root), classes, splits, skipped, layout="folder", test_is_validation=no_test)


def missing_classes(classes: list[str], items: list[tuple[str, int]]) -> list[str]:
    """The classes with no image among items (a split), in class order."""
    present = {y for _, y in items}
    return [c for k, c in enumerate(classes) if k not in present]


def gap_in_test(dataset: SplitDataset) -> str | None:
    """One line when the test split lacks a class (its metrics are not comparable), else None.

    Not an error: small classes can get no test image from the fractions, and some test sets lack
    a rare class on purpose; train states it and records it in metrics.json.
    """
    missing = missing_classes(dataset.classes, dataset.splits["test"])
    if not missing:
        return None
    return (
        f"the test split has no images of {', '.join(missing)}: test metrics cover "
        f"{len(dataset.classes) - len(missing)} of {len(dataset.classes)} classes and are not comparable "
        "with a complete test split; add test images of those classes"
    )


def _skipped_in(skipped: list[tuple[str, str]], folder: Path) -> str:
    n = sum(1 for path, _ in skipped if Path(path).is_relative_to(folder))
    return f" ({n} unusable file(s) skipped)" if n else ""


def _check_classes(classes: list[str], root: Path) -> None:
    if len(classes) < 2:
        raise TkError(
            f"data.root: {root} has {len(classes)} class folder(s); a classifier needs at least 2 "
            "(one sub-folder of images per class)"
        )


def screen(items: list[tuple[str, int]]) -> tuple[list[tuple[str, int]], list[tuple[str, str]]]:
    """Split items into decodable images and (path, reason) for the rest."""
    with ThreadPoolExecutor(max_workers=4) as pool:  # Pillow releases the GIL while decoding
        reasons = list(pool.map(lambda item: check_image(Path(item[0])), items))
    good = [item for item, r in zip(items, reasons, strict=True) if r is None]
    bad = [(item[0], r) for item, r in zip(items, reasons, strict=True) if r is not None]
    return good, bad


def _finish(skipped: list[tuple[str, str]], strict: bool, root: Path) -> None:
    if skipped and strict:
        path, reason = skipped[0]
        more = f" (and {len(skipped) - 1} more)" if len(skipped) > 1 else ""
        raise TkError(f"{path}: {reason}{more}; remove the file(s) or drop --strict to skip them")


def stratified_split(
    items: list[tuple[str, int]], num_classes: int, train: float, validation: float, seed: int
) -> dict[str, list[tuple[str, int]]]:
    """Per class: sort, shuffle with the seed, cut by fractions. Same inputs, same split."""
    out: dict[str, list[tuple[str, int]]] = {s: [] for s in SPLITS}
    rng = random.Random(seed)
    for k in range(num_classes):
        members = sorted(p for p, y in items if y == k)
        rng.shuffle(members)
        n = len(members)
        n_val = round(n * validation)
        n_test = n - round(n * train) - n_val
        if validation > 0 and n >= 3:
            n_val = max(n_val, 1)
        n_test = max(n_test, 0)
        n_train = n - n_val - n_test
        out["train"] += [(p, k) for p in members[:n_train]]
        out["validation"] += [(p, k) for p in members[n_train : n_train + n_val]]
        out["test"] += [(p, k) for p in members[n_train + n_val :]]
    return out
