"""Grad-CAM: where in the image the evidence for a class is, as overlays (and a contact sheet)."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Optional

import numpy as np

from ..core.context import SILENT, Context
from ..core.errors import TkError
from .explainer import Explainer, display_image, folder_images, load_explainer, single_image, slug


@dataclass
class GradCamResult:
    image: Path
    class_name: str
    probability: float  # of the class the heat explains
    heat: np.ndarray  # (H, W) at the model's input size, 0..1
    png: Path  # the image and its heat overlay side by side


def explain_gradcam(
    run_dir: Path,
    target: Path,
    class_name: Optional[str] = None,
    layer: Optional[str] = None,
    limit: int = 64,
    alpha: float = 0.5,
    ctx: Context = SILENT,
    explainer: Optional[Explainer] = None,
) -> tuple[list[GradCamResult], Optional[Path]]:
    """Grad-CAM overlays for one image or a folder (plus a contact sheet for a folder)."""
    from .figures import overlay_heatmap, plot_gradcam_pair, plot_image_grid

    if limit < 1:
        raise TkError(f"--count: must be >= 1 (got {limit})")
    ex = explainer or load_explainer(run_dir)
    layer = ex.check_layer(layer, ex.spatial_layers(), "convolutional (spatial)") if layer else ex.gradcam_layer()
    grid = ex.map_size(layer)
    if min(grid) <= 4 and ex.gradcam_layer() != layer:  # the heat is this grid upsampled
        ctx.say(
            f"note: {layer} is a {grid[0]}x{grid[1]} map at {ex.size[0]} px, so the heat is coarse; "
            f"an earlier layer gives finer heat (--layers {ex.gradcam_layer()})"
        )
    class_index = ex.class_index(class_name)
    target = Path(target)
    paths = folder_images(target, limit, ctx) if target.is_dir() else [single_image(target)]
    results, overlays = [], []
    for start in range(0, len(paths), 32):  # bounded memory on big folders
        chunk = paths[start : start + 32]
        heat, picked, probs = ex.gradcam(ex.load(chunk), layer, class_index)
        for path, h, k, p in zip(chunk, heat, picked, probs, strict=True):
            photo = display_image(path)
            overlay = overlay_heatmap(photo, h, alpha=alpha)
            png = ex.out_dir / f"gradcam_{slug(path.stem)}_{slug(ex.classes[int(k)])}.png"
            plot_gradcam_pair(photo, overlay, png, *_titles(ex.classes, path, p, int(k), layer))
            overlays.append(overlay)
            results.append(GradCamResult(path, ex.classes[int(k)], float(p[int(k)]), h, png))
    for r in results:
        ctx.say(f"wrote {r.png}  ({r.class_name} {r.probability:.2f})")
    sheet = None
    if target.is_dir():
        sheet = ex.out_dir / f"gradcam_sheet_{slug(target.name)}.png"
        titles = [f"{r.image.stem}: {r.class_name} {r.probability:.2f}" for r in results]
        plot_image_grid(
            overlays,
            titles,
            sheet,
            f"Grad-CAM at {layer} ({grid[0]}x{grid[1]} map) — {target.name}/ "
            f"({'class ' + class_name if class_name else 'predicted class'})",
        )
        ctx.say(f"wrote {sheet}")
    return results, sheet


def true_class(path: Path, classes: list[str]) -> Optional[str]:
    """The image's class when its folder is named after one (class-folder datasets), else None."""
    return path.parent.name if path.parent.name in classes else None


def _titles(classes: list[str], path: Path, probs: np.ndarray, explained: int, layer: str) -> tuple[str, str, str]:
    """(left title, right title, header) of one Grad-CAM PNG: true class, prediction, what the heat is for."""
    predicted = int(np.argmax(probs))
    truth = true_class(path, classes)
    mark = "" if truth is None else (" ✓" if truth == classes[predicted] else " ✗")
    left = f"true: {truth if truth is not None else 'unknown (folder is not a class)'}"
    right = f"predicted: {classes[predicted]} {probs[predicted]:.2f}{mark}"
    heat_for = "the predicted class" if explained == predicted else f"class {classes[explained]} {probs[explained]:.2f}"
    return left, right, f"{path.name}: Grad-CAM at {layer}, heat for {heat_for}"
