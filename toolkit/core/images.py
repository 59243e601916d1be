"""Decoding images into model input, the same way on the workstation and on the device.

Training, export calibration, verify, bench and `tk predict` all call `load_image`, so the pixels
a device feeds its model are the pixels training saw, by construction. The model itself starts
with its backbone's scaling (see backbones.Preprocess), so its input is plain RGB in 0..255 at the
manifest's size: nothing else to reproduce on the device. Pillow and numpy only: no TensorFlow.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError

from .errors import TkError

IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".gif")
INTERPOLATION = "bilinear"
_RESAMPLE = {"bilinear": Image.Resampling.BILINEAR}
# Larger than the default output of phone cameras (12-50 MP) and bounded memory: 64 MP of RGB is
# 192 MB decoded. Checked on the header before decoding, so a 50000x50000 bomb of a few hundred
# bytes costs nothing; Pillow's own bomb check (89 MP warning, 179 MP error) is the backstop.
MAX_PIXELS = 64_000_000


class BadImage(Exception):
    """A file that is not a usable image; the message is the reason."""


def is_image_name(path: Path) -> bool:
    return path.suffix.lower() in IMAGE_SUFFIXES


def open_rgb(path: str | Path, draft_size: tuple[int, int] | None = None) -> Image.Image:
    """Open any supported image as 8-bit RGB, upright (EXIF orientation applied).

    Grayscale, palette, RGBA (composited on white), CMYK and 16-bit images are converted.
    `draft_size` lets JPEG decode at a reduced DCT scale no smaller than the target size, which
    makes decoding large photos several times faster without changing the resized result much.
    """
    path = Path(path)
    try:
        if path.stat().st_size == 0:
            raise BadImage("empty file")
        img = Image.open(path)
        if img.width * img.height > MAX_PIXELS:
            raise BadImage(
                f"{img.width}x{img.height} pixels is over the {MAX_PIXELS // 1_000_000} "
                f"megapixel limit (a decompression bomb, or a photo to downscale first)"
            )
        if draft_size is not None and img.format == "JPEG":
            img.draft("RGB", draft_size)
        img = ImageOps.exif_transpose(img)
        img.load()
    except BadImage:
        raise
    except (
        UnidentifiedImageError,
        OSError,
        SyntaxError,
        ValueError,
        Image.DecompressionBombError,
        Image.DecompressionBombWarning,
    ) as exc:
        raise BadImage(f"not a readable image ({exc.__class__.__name__}: {exc})") from None
    return _to_rgb(img)


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        # 16-bit (or 32-bit int) grayscale: scale to 8 bits instead of clipping at 255. I;16 says
        # its range is 16 bits, so a dark 16-bit image stays dark; mode I (older Pillow's 16-bit
        # PNG, or 32-bit TIFF) does not say, so its values tell.
        arr = np.asarray(img, dtype=np.float64)
        top = 65535.0 if img.mode.startswith("I;16") or arr.max() > 255 else 255.0
        img = Image.fromarray(np.clip(arr / top * 255.0 + 0.5, 0, 255).astype(np.uint8), "L")
    elif img.mode == "F":
        arr = np.asarray(img, dtype=np.float64)
        span = max(arr.max() - arr.min(), 1e-12)
        img = Image.fromarray(((arr - arr.min()) / span * 255).astype(np.uint8), "L")
    if img.mode == "P":
        img = img.convert("RGBA")
    if img.mode in ("RGBA", "LA", "PA"):
        rgba = img.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        img = Image.alpha_composite(background, rgba)
    return img.convert("RGB") if img.mode != "RGB" else img


def load_image(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """Model input for one file: float32 RGB 0..255, shape (height, width, 3)."""
    return np.asarray(load_pixels(path, size), dtype=np.float32)


def load_image_into(path: str | Path, size: tuple[int, int], out: np.ndarray) -> None:
    """load_image written into `out` (a row of a batch buffer, float32 (height, width, 3)): the
    uint8 pixels are cast as they are copied, with no float image of their own to stack."""
    out[...] = load_pixels(path, size)


def load_pixels(path: str | Path, size: tuple[int, int]) -> np.ndarray:
    """load_image's pixels as uint8 (what the decoded-image cache stores: 4x smaller)."""
    height, width = size
    img = open_rgb(path, draft_size=(width, height))
    if img.size != (width, height):
        img = img.resize((width, height), _RESAMPLE[INTERPOLATION])
    return np.asarray(img, dtype=np.uint8)


def load_batch(paths: list[str] | list[Path], size: tuple[int, int]) -> np.ndarray:
    """Model input for several files; a bad file is a TkError naming it (user-supplied images)."""
    out = np.empty((len(paths), size[0], size[1], 3), dtype=np.float32)
    for i, path in enumerate(paths):
        try:
            out[i] = load_image(path, size)
        except BadImage as exc:
            raise TkError(f"{path}: {exc}; pass JPEG, PNG, BMP or GIF images") from None
    return out


def check_image(path: Path) -> str | None:
    """None when the file decodes as an image, else the reason it will be skipped."""
    if not is_image_name(path):
        return f"not an image file (suffix {path.suffix or 'none'}; expected {', '.join(IMAGE_SUFFIXES)})"
    try:
        open_rgb(path, draft_size=(64, 64))
    except BadImage as exc:
        return str(exc)
    return None
