"""The finished run's files: written into exported/<name>.partial/, then swapped into place.

Process 0 of a job is the only caller (train/phases.py).
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Optional

from .. import __version__
from ..core.images import INTERPOLATION
from ..core.io import atomic_path, now, write_json_atomic, write_text_atomic
from ..core.recipe import Recipe
from ..core.runs import REFERENCE, SplitDataset, archive_run, preprocessing_record, reference_entry, save_manifest
from ..data.splits import gap_in_test, missing_classes
from .backbones import get_backbone


def finish_run(
    recipe: Recipe,
    dataset: SplitDataset,
    model,
    metrics: dict,
    phases: list[str],
    work: Path,
    training: Optional[dict] = None,
) -> None:
    """model.keras, metrics.json, labels.txt, recipe.yaml and the manifest, in the partial run.

    training: how the run was trained (processes, devices, the global batch; a job's weights digests)."""
    import yaml

    with atomic_path(work / REFERENCE, suffix=".keras") as tmp:
        model.save(tmp)
    record = {"test": metrics, "phases": phases}
    missing = missing_classes(dataset.classes, dataset.splits["test"])
    if missing:  # so a later reader knows these test figures are not comparable
        record["test_missing_classes"] = missing
        record["warnings"] = [gap_in_test(dataset)]
    write_json_atomic(work / "metrics.json", record)
    write_text_atomic(work / "labels.txt", "\n".join(dataset.classes) + "\n")
    write_text_atomic(work / "recipe.yaml", yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    spec = get_backbone(recipe.model.backbone)
    size = recipe.model.image_size
    manifest = {
        "name": recipe.name,
        "tk_version": __version__,
        "created": now(),
        "trained": now(),  # what "the latest run" sorts by (export, verify and bench rewrite the file)
        "recipe": recipe.source_path,
        "backbone": spec.name,
        "classes": dataset.classes,
        "preprocessing": preprocessing_record((size, size), spec.scaling, INTERPOLATION),
        "metrics": {"test_accuracy": metrics["accuracy"]},
        "training": training or {},
        "artifacts": {REFERENCE: reference_entry(work / REFERENCE, (size, size), len(dataset.classes), backend_name())},
    }
    save_manifest(work, manifest)


def backend_name() -> str:
    import keras

    return keras.backend.backend()


def swap_into_place(work: Path, run_dir: Path) -> Optional[Path]:
    """Make the finished run the recipe's stable name; the previous run is moved aside, never deleted."""
    archived = archive_run(run_dir)
    os.replace(work, run_dir)
    return archived
