"""`tk explain`: feature maps (--image), activation maximization (--filters), Grad-CAM (--gradcam).

A tk model is `image 0..255 -> Preprocess -> backbone (nested Model) -> head (nested Model)`;
explainer.py takes it apart once and each probe module draws from it. Outputs go to RUN/explain/,
written atomically, named by what they show (featuremaps_<image>_<layer>.png,
gradcam_<image>_<class>.png, filters_<layer>.png).
"""

from __future__ import annotations

from pathlib import Path
from typing import Optional, Sequence

from ..core.context import SILENT, Context
from ..core.errors import TkError
from .explainer import load_explainer
from .feature_maps import explain_feature_maps
from .gradcam import explain_gradcam
from .maximize import AscentSettings, explain_filters


def explain_run(
    run_dir: Path,
    image: Optional[Path] = None,
    layers: Optional[Sequence[str]] = None,
    filters: Optional[str] = None,
    count: Optional[int] = None,
    gradcam: bool = False,
    class_name: Optional[str] = None,
    steps: Optional[int] = None,
    ctx: Context = SILENT,
) -> list[Path]:
    """What `tk explain` does: feature maps (--image), maximization (--filters), Grad-CAM (--gradcam)."""
    if gradcam and image is None:
        raise TkError("--gradcam: needs --image PATH (an image file or a folder of images)")
    if image is None and filters is None:
        raise TkError(
            "tk explain: nothing to explain; pass --image PATH [--layers L1,L2] (feature maps), "
            "--filters LAYER [--count N] (activation maximization) or --gradcam --image PATH|DIR"
        )
    if class_name is not None and not gradcam:
        raise TkError(f"--class {class_name}: only applies to --gradcam")
    if count is not None and count < 1:
        raise TkError(f"--count: must be >= 1 (got {count})")
    if steps is not None and steps < 1:
        raise TkError(f"--steps: must be >= 1 (got {steps})")
    if gradcam and layers and len(layers) > 1:
        raise TkError(f"--layers: Grad-CAM uses one layer (got {', '.join(layers)})")
    if image is not None and not gradcam and Path(image).is_dir():
        raise TkError(f"--image: {image} is a folder; feature maps take one image file (folders work with --gradcam)")
    ex = load_explainer(run_dir)
    written: list[Path] = []
    if gradcam:
        results, sheet = explain_gradcam(
            run_dir, Path(image), class_name, layers[0] if layers else None, limit=count or 64, ctx=ctx, explainer=ex
        )
        written += [r.png for r in results] + ([sheet] if sheet else [])
    elif image is not None:
        written += explain_feature_maps(run_dir, Path(image), layers, count or 16, ctx=ctx, explainer=ex)
    if filters is not None:
        settings = AscentSettings(steps=steps) if steps else AscentSettings()
        written.append(explain_filters(run_dir, filters, count or 8, settings, ctx=ctx, explainer=ex)[0])
    return written
