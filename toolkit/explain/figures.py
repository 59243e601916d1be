"""Figures of `tk explain`: image grids (feature maps, filters, Grad-CAM sheets) and heatmap overlays."""

from __future__ import annotations

from pathlib import Path

from ..core.io import atomic_path
from ..core.text import plot_text
from ..train.curves import pyplot

# Grids for `tk explain`. Sizes are exact (figure inches x dpi, no tight bounding box), so a grid
# of n cells is always cols * GRID_CELL_PX wide: callers and tests can rely on it.
GRID_CELL_PX = 160
GRID_TITLE_PX = 18  # per-cell title strip (one line, fontsize 7)
_HEADER_LINE_PX, _HEADER_PAD_PX = 16, 12  # figure title: wrapped lines at fontsize 10
_DPI = 100


def grid_shape(count: int, cols: int | None = None) -> tuple[int, int]:
    """(rows, cols) of a near-square grid holding `count` cells."""
    import math

    cols = cols or max(1, math.ceil(math.sqrt(count)))
    return max(1, math.ceil(count / cols)), cols


def _header_lines(title: str, width_px: int) -> list[str]:
    import textwrap

    return textwrap.wrap(plot_text(title, 400), width=max(16, width_px // 8)) or [""]  # ~8 px per char at fontsize 10


def grid_size_px(count: int, title: str, cols: int | None = None) -> tuple[int, int]:
    """(width, height) in pixels of plot_image_grid's PNG for `count` cells under `title`."""
    rows, cols = grid_shape(count, cols)
    width = cols * GRID_CELL_PX
    header = _HEADER_PAD_PX + _HEADER_LINE_PX * len(_header_lines(title, width))
    return width, header + rows * (GRID_CELL_PX + GRID_TITLE_PX)


def plot_image_grid(
    cells, titles: list[str], path: Path, title: str, cmap: str = "viridis", cols: int | None = None
) -> tuple[int, int]:
    """One PNG of images in a grid, each with a small title; returns its (width, height) in px.

    A 2-D cell is drawn with `cmap` (feature maps are expected normalised to 0..1); an
    (H, W, 3) uint8 cell is drawn as is. Nearest-neighbour display keeps small maps honest.
    """
    plt = pyplot()
    width, height = grid_size_px(len(cells), title, cols)
    rows, cols = grid_shape(len(cells), cols)
    lines = _header_lines(title, width)
    header = _HEADER_PAD_PX + _HEADER_LINE_PX * len(lines)
    fig = plt.figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI)
    fig.text(0.5, 1 - (header / 2) / height, "\n".join(lines), ha="center", va="center", fontsize=10, linespacing=1.1)
    for i, (cell, label) in enumerate(zip(cells, titles, strict=True)):
        row, col = divmod(i, cols)
        top = header + row * (GRID_CELL_PX + GRID_TITLE_PX) + GRID_TITLE_PX
        pad = 3  # pixels between cells
        ax = fig.add_axes(
            [
                (col * GRID_CELL_PX + pad) / width,
                1 - (top + GRID_CELL_PX - pad) / height,
                (GRID_CELL_PX - 2 * pad) / width,
                (GRID_CELL_PX - 2 * pad) / height,
            ]
        )
        if cell.ndim == 2:
            ax.imshow(cell, cmap=cmap, vmin=0.0, vmax=1.0, interpolation="nearest")
        else:
            ax.imshow(cell, interpolation="nearest")
        ax.set_axis_off()
        label = plot_text(label, GRID_CELL_PX // 4)
        fig.text(
            (col + 0.5) * GRID_CELL_PX / width,
            1 - (top - GRID_TITLE_PX / 2) / height,
            label,
            ha="center",
            va="center",
            fontsize=7,
        )
    with atomic_path(Path(path), suffix=".png") as tmp:
        fig.savefig(tmp, dpi=_DPI, format="png")
    plt.close(fig)
    return width, height


def overlay_heatmap(image, heat, alpha: float = 0.5, cmap: str = "jet", grey: bool = True):
    """Blend a 0..1 heatmap (any size; resized bilinearly) over an RGB uint8 image.

    Over a grey copy of the image by default: blended with a coloured object, jet's red turns
    purple on a blue shape and yellow on a green one, and the heat can no longer be read.
    """
    import matplotlib
    import numpy as np
    from PIL import Image

    height, width = image.shape[:2]
    heat = np.asarray(Image.fromarray(np.asarray(heat, np.float32)).resize((width, height), Image.Resampling.BILINEAR))
    colour = matplotlib.colormaps[cmap](np.clip(heat, 0.0, 1.0))[..., :3] * 255.0
    base = image.astype(np.float32)
    if grey:
        base = np.repeat(base @ np.array([0.299, 0.587, 0.114], np.float32), 3).reshape(base.shape)
    blended = (1.0 - alpha) * base + alpha * colour
    return np.clip(blended + 0.5, 0, 255).astype(np.uint8)


# One Grad-CAM PNG: the photo | its heat overlay | a colour bar, under a header naming the classes.
# Exact pixel sizes as for the grids: the images keep their pixels (no resampling by matplotlib).
PAIR_HEADER_PX, PAIR_BAR_PX, PAIR_PAD_PX = 46, 78, 6


def gradcam_pair_size_px(image_width: int, image_height: int) -> tuple[int, int]:
    return 2 * image_width + 3 * PAIR_PAD_PX + PAIR_BAR_PX, image_height + PAIR_HEADER_PX + PAIR_PAD_PX


def plot_gradcam_pair(
    photo, overlay, path: Path, left_title: str, right_title: str, header: str, cmap: str = "jet"
) -> tuple[int, int]:
    """The photo and its Grad-CAM overlay side by side with titles and a colour bar of the heat scale.

    The bar says what the colours mean: the heat is normalised per image (0 = no evidence, 1 = the
    strongest evidence in this image), not a probability. Returns the PNG's (width, height) in px.
    """
    import matplotlib

    plt = pyplot()
    h, w = photo.shape[:2]
    width, height = gradcam_pair_size_px(w, h)
    fig = plt.figure(figsize=(width / _DPI, height / _DPI), dpi=_DPI)
    bottom = PAIR_PAD_PX / height
    for k, (image, title) in enumerate(((photo, left_title), (overlay, right_title))):
        left = (PAIR_PAD_PX + k * (w + PAIR_PAD_PX)) / width
        ax = fig.add_axes([left, bottom, w / width, h / height])
        ax.imshow(image, interpolation="nearest")
        ax.set_axis_off()
        fig.text(
            left + w / width / 2, (PAIR_PAD_PX + h + 4) / height, plot_text(title), ha="center", va="bottom", fontsize=9
        )
    fig.text(
        PAIR_PAD_PX / width, 1 - 6 / height, plot_text(header, 200), ha="left", va="top", fontsize=9, fontweight="bold"
    )
    bar = fig.add_axes([(2 * w + 3 * PAIR_PAD_PX + 8) / width, bottom + 0.1 * h / height, 14 / width, 0.8 * h / height])
    mappable = matplotlib.cm.ScalarMappable(norm=matplotlib.colors.Normalize(0.0, 1.0), cmap=cmap)
    colorbar = fig.colorbar(mappable, cax=bar, ticks=[0.0, 0.5, 1.0])
    colorbar.ax.tick_params(labelsize=7)
    colorbar.set_label("Grad-CAM heat\n(per image, 0..1)", fontsize=7)
    with atomic_path(Path(path), suffix=".png") as tmp:
        fig.savefig(tmp, dpi=_DPI, format="png")
    plt.close(fig)
    return width, height
