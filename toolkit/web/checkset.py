"""The bundle's device check set as the browser harness needs it, read by edge/checkset.py.

tk pack writes BUNDLE/checkset/ (decoded uint8 pixels at the model's size, the reference's
probabilities, labels); edge.checkset.load_checkset reads and checks it (schema, sha256, size and
classes against the manifest). The page fetches the same pixels file, so what is compared is the
browser's runtime, not two JPEG decoders.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from ..core.errors import TkError
from ..edge.checkset import CHECKSET_DIR, CHECKSET_JSON, load_checkset


@dataclass(frozen=True)
class CheckSet:
    meta: dict[str, Any]  # checkset.json
    pixels: np.ndarray  # (count, height, width, 3), 0..255
    labels: np.ndarray  # (count,)
    reference: np.ndarray  # (count, classes)

    @property
    def pixels_url(self) -> str:
        """Where the page fetches the pixels, relative to the bundle."""
        return f"{CHECKSET_DIR}/{self.meta['pixels']}"


def bundle_checkset(bundle: Path, manifest: dict[str, Any]) -> CheckSet:
    if not (Path(bundle) / CHECKSET_DIR / CHECKSET_JSON).is_file():
        raise TkError(
            f"{bundle}: no device check set ({CHECKSET_DIR}/{CHECKSET_JSON}); run tk verify RUN on the "
            "workstation, then tk pack RUN DIR --web again (it writes the check set)"
        )
    meta, pixels = load_checkset(Path(bundle) / CHECKSET_DIR, manifest)
    reference = np.asarray(meta["probabilities"], dtype=np.float64)
    return CheckSet(meta, pixels, np.asarray(meta["labels"]), reference)
