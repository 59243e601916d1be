"""Decoding: every kind of image becomes upright 8-bit RGB; bad files are named with a reason."""

from __future__ import annotations

import numpy as np
import pytest
from PIL import Image

from toolkit.core.errors import TkError
from toolkit.core.images import BadImage, check_image, load_batch, load_image, open_rgb

RED, BLUE = (255, 0, 0), (0, 0, 255)


def close_to(pixel, colour, tol=24) -> bool:
    return bool(np.all(np.abs(np.asarray(pixel, dtype=np.float32) - np.asarray(colour)) <= tol))


def test_rgb_jpeg_is_resized_float32(tmp_path):
    path = tmp_path / "rgb.jpg"
    Image.new("RGB", (50, 30), RED).save(path, quality=95)
    x = load_image(path, (24, 40))
    assert x.shape == (24, 40, 3) and x.dtype == np.float32
    assert close_to(x[12, 20], RED)


def test_grayscale_becomes_three_equal_channels(tmp_path):
    path = tmp_path / "grey.png"
    Image.new("L", (16, 16), 100).save(path)
    x = load_image(path, (16, 16))
    assert x.shape == (16, 16, 3)
    assert np.all(x == 100.0)


def test_rgba_is_composited_on_white(tmp_path):
    path = tmp_path / "alpha.png"
    arr = np.zeros((8, 16, 4), dtype=np.uint8)
    arr[:, :8] = (255, 0, 0, 255)  # opaque red
    arr[:, 8:] = (0, 0, 255, 0)  # fully transparent (blue underneath must not show)
    Image.fromarray(arr, "RGBA").save(path)
    x = load_image(path, (8, 16))
    assert np.all(x[:, :8] == RED)
    assert np.all(x[:, 8:] == 255.0)


def test_cmyk_jpeg_is_converted(tmp_path):
    path = tmp_path / "cmyk.jpg"
    Image.new("CMYK", (16, 16), (0, 255, 255, 0)).save(path, quality=95)  # pure red in CMYK
    assert Image.open(path).mode == "CMYK"
    x = load_image(path, (16, 16))
    assert x.shape == (16, 16, 3)
    assert close_to(x[8, 8], RED, tol=40)


def test_16bit_png_is_scaled_not_clipped(tmp_path):
    path = tmp_path / "deep.png"
    ramp = np.linspace(0, 65535, 256, dtype=np.float64).reshape(1, 256).repeat(4, axis=0)
    Image.fromarray(ramp.astype(np.uint16)).save(path)
    assert Image.open(path).mode.startswith("I")
    x = load_image(path, (4, 256))
    row = x[0, :, 0]
    assert row[0] == 0 and row[-1] == 255
    # Clipping would turn everything above 255/65535 white; scaling keeps mid-grey at mid-grey.
    assert abs(row[128] - 128) <= 2
    assert np.all(np.diff(row) >= 0) and len(np.unique(row)) > 200


def test_dark_16bit_png_stays_dark(tmp_path):
    path = tmp_path / "dark.png"
    Image.fromarray(np.full((8, 8), 200, dtype=np.uint16)).save(path)  # 200 of 65535: nearly black
    x = load_image(path, (8, 8))
    assert np.all(x <= 2)


def test_palette_gif_gets_its_colours(tmp_path):
    path = tmp_path / "palette.gif"
    img = Image.new("P", (16, 8))
    img.putpalette([255, 0, 0, 0, 0, 255] + [0] * (254 * 3))
    img.paste(1, (8, 0, 16, 8))
    img.save(path)
    assert Image.open(path).mode == "P"
    x = load_image(path, (8, 16))
    assert np.all(x[:, :8] == RED) and np.all(x[:, 8:] == BLUE)


def test_exif_orientation_is_applied(tmp_path):
    # Stored 40 wide x 20 high, red left half, blue right half; orientation 6 = rotate 90 degrees
    # clockwise to display: upright it is 20 wide x 40 high, red on top.
    stored = np.zeros((20, 40, 3), dtype=np.uint8)
    stored[:, :20] = RED
    stored[:, 20:] = BLUE
    exif = Image.Exif()
    exif[0x0112] = 6
    path = tmp_path / "rotated.jpg"
    Image.fromarray(stored).save(path, exif=exif, quality=95)
    assert open_rgb(path).size == (20, 40)
    x = load_image(path, (40, 20))
    assert x.shape == (40, 20, 3)
    assert close_to(x[5, 10], RED) and close_to(x[34, 10], BLUE)


def test_bmp_is_read(tmp_path):
    path = tmp_path / "img.bmp"
    Image.new("RGB", (10, 10), BLUE).save(path)
    assert np.all(load_image(path, (10, 10)) == BLUE)
    assert check_image(path) is None


def bad_files(folder):
    good = folder / "good.jpg"
    Image.new("RGB", (64, 64), RED).save(good, quality=90)
    empty = folder / "empty.jpg"
    empty.write_bytes(b"")
    truncated = folder / "truncated.jpg"
    data = good.read_bytes()
    truncated.write_bytes(data[: len(data) // 2])
    text = folder / "notes.jpg"
    text.write_text("these are my notes, not a photo\n")
    other = folder / "readme.txt"
    other.write_text("hello")
    return good, {"empty": empty, "truncated": truncated, "text": text, "suffix": other}


def test_check_image_gives_reasons(tmp_path):
    good, bad = bad_files(tmp_path)
    assert check_image(good) is None
    assert check_image(bad["empty"]) == "empty file"
    assert "not a readable image" in check_image(bad["truncated"])
    assert "not a readable image" in check_image(bad["text"])
    assert "not an image file" in check_image(bad["suffix"]) and ".txt" in check_image(bad["suffix"])


@pytest.mark.parametrize("kind", ["empty", "truncated", "text"])
def test_load_image_raises_bad_image(tmp_path, kind):
    _, bad = bad_files(tmp_path)
    with pytest.raises(BadImage):
        load_image(bad[kind], (32, 32))


def test_load_batch_stacks_and_names_a_bad_file(tmp_path):
    good, bad = bad_files(tmp_path)
    batch = load_batch([good, good], (16, 16))
    assert batch.shape == (2, 16, 16, 3) and batch.dtype == np.float32
    with pytest.raises(TkError) as info:
        load_batch([good, bad["truncated"]], (16, 16))
    assert str(bad["truncated"]) in str(info.value)


def _png_claiming(width: int, height: int) -> bytes:
    """A few hundred bytes whose header claims width x height (a decompression bomb's header)."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return struct.pack(">I", len(data)) + kind + data + struct.pack(">I", zlib.crc32(kind + data))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(b"\0" * 1024)) + chunk(b"IEND", b"")
    )


def test_a_png_header_claiming_50000x50000_is_a_bad_image(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_claiming(50000, 50000))
    with pytest.raises(BadImage, match="(?i)decompression bomb"):  # Pillow refuses this one in open()
        open_rgb(path)


def test_a_valid_image_over_the_pixel_limit_is_refused_before_decoding(tmp_path, monkeypatch):
    import toolkit.core.images as images

    monkeypatch.setattr(images, "MAX_PIXELS", 64 * 64 - 1)  # a real 64x64 PNG, the limit lowered
    path = tmp_path / "big.png"
    Image.new("RGB", (64, 64), (10, 20, 30)).save(path)
    with pytest.raises(BadImage, match="64x64 pixels"):
        open_rgb(path)
    monkeypatch.setattr(images, "MAX_PIXELS", 64 * 64)
    assert open_rgb(path).size == (64, 64)


def test_a_header_between_our_limit_and_pillows_is_refused_by_ours(tmp_path):
    path = tmp_path / "bomb.png"
    path.write_bytes(_png_claiming(10000, 8000))  # 80 MP: under Pillow's error threshold
    with pytest.raises(BadImage, match="10000x8000 pixels is over the 64 megapixel limit"):
        open_rgb(path)
