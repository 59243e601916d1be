"""Feature maps: the first channels of chosen conv layers for one image, as PNG grids."""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from ..core.context import SILENT, Context
from ..core.errors import TkError
from .explainer import Explainer, load_explainer, normalise, single_image, slug


def explain_feature_maps(
    run_dir: Path,
    image: Path,
    layers: Optional[Sequence[str]] = None,
    count: int = 16,
    ctx: Context = SILENT,
    explainer: Optional[Explainer] = None,
) -> list[Path]:
    """One PNG grid per layer of the first `count` channels' activations for `image`."""
    from .figures import plot_image_grid

    if count < 1:
        raise TkError(f"--count: must be >= 1 (got {count})")
    ex = explainer or load_explainer(run_dir)
    valid = ex.spatial_layers()
    names = [ex.check_layer(name, valid, "convolutional (spatial)") for name in (layers or ex.default_layers())]
    batch = ex.load([single_image(image)])
    maps = ex.feature_maps(batch, names)
    written = []
    for name in names:
        act = maps[name][0]
        n = min(count, act.shape[-1])
        cells = [normalise(act[..., k]) for k in range(n)]
        titles = [f"ch {k}" for k in range(n)]
        path = ex.out_dir / f"featuremaps_{slug(Path(image).stem)}_{slug(name)}.png"
        plot_image_grid(
            cells,
            titles,
            path,
            f"{name}: {act.shape[0]}x{act.shape[1]}x{act.shape[2]}, "
            f"first {n} channels (each scaled to its own min..max) — {Path(image).name}",
        )
        ctx.say(f"wrote {path}")
        written.append(path)
    return written
