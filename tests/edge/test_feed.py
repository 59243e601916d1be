"""edge/feed.py: in-place input quantization gives the old expression's values, and the batch table."""

from __future__ import annotations

import numpy as np
import pytest

from toolkit.edge.feed import (
    DEFAULT_BATCH,
    PIXELS,
    PREDICT_BATCH,
    pixels_uint8,
    predict_batch,
    quantize,
    quantize_into,
)

pytestmark = pytest.mark.edge


def old_quantize(x: np.ndarray, detail: dict) -> np.ndarray:
    """The expression quantize replaced (four full-size temporaries), kept here as the reference."""
    scale, zero_point = detail["quantization"]
    info = np.iinfo(detail["dtype"])
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(detail["dtype"])


def hard_pixels() -> np.ndarray:
    """Pixels and beyond: every integer, every half (ties round to even), values just around the
    halves, far out of range on both sides, shaped as a batch of images."""
    rng = np.random.default_rng(0)
    halves = np.arange(-300, 600, dtype=np.float32) / 2
    near = np.concatenate([np.nextafter(halves, np.float32(-1e9)), np.nextafter(halves, np.float32(1e9))])
    values = np.concatenate([halves, near, [-1e6, 1e6, -0.0, 0.0], rng.uniform(-40, 300, 6000)]).astype(np.float32)
    values = np.resize(values, 2 * 8 * 8 * 3 * 11)
    return values.reshape(22, 8, 8, 3)


DETAILS = [
    PIXELS,
    {"dtype": np.uint8, "quantization": (255.0 / 254.0, 0)},
    {"dtype": np.uint8, "quantization": (0.5, 3)},
    {"dtype": np.int8, "quantization": (1.0, -128)},
    {"dtype": np.int8, "quantization": (255.0 / 254.0, -128)},
    {"dtype": np.int8, "quantization": (0.0078125, 0)},
]


@pytest.mark.parametrize("detail", DETAILS, ids=lambda d: f"{np.dtype(d['dtype']).name}-{d['quantization']}")
def test_in_place_quantization_gives_the_old_values(detail):
    x = hard_pixels()
    expected = old_quantize(x, detail)
    out = np.full(x.shape, 7, detail["dtype"])
    scratch = np.empty(x.shape, np.float32)
    assert quantize_into(x, detail, out, scratch) is out  # written into the caller's buffer
    assert out.dtype == expected.dtype
    np.testing.assert_array_equal(out, expected)
    np.testing.assert_array_equal(quantize(x, detail), expected)  # the allocating form too
    np.testing.assert_array_equal(x, hard_pixels())  # the input is left as it was


def test_rounding_is_half_to_even_and_out_of_range_clips():
    x = np.array([0.5, 1.5, 2.5, -0.5, 254.5, 255.5, -7.0, 300.0], np.float32)
    assert quantize(x, PIXELS).tolist() == [0, 2, 2, 0, 254, 255, 0, 255]
    signed = {"dtype": np.int8, "quantization": (1.0, -128)}
    assert quantize(x, signed).tolist() == [-128, -126, -126, -128, 126, 127, -128, 127]


def test_quantize_into_a_view_of_a_bigger_buffer_leaves_the_rest():
    """TFLite's feed buffer: the last partial batch is written into its first rows only."""
    x = hard_pixels()[:3]
    feed = np.full((5, *x.shape[1:]), 9, np.uint8)
    scratch = np.empty(feed.shape, np.float32)
    quantize_into(x, PIXELS, feed[:3], scratch[:3])
    np.testing.assert_array_equal(feed[:3], old_quantize(x, PIXELS))
    assert np.all(feed[3:] == 9)


def test_float_input_is_passed_through_or_copied():
    x = hard_pixels()
    float_detail = {"dtype": np.float32, "quantization": (0.0, 0)}
    assert quantize(x, float_detail) is x
    out = np.empty_like(x)
    np.testing.assert_array_equal(quantize_into(x, float_detail, out), x)


def test_pixels_uint8_restores_decoded_pixels():
    pixels = np.arange(256, dtype=np.uint8).reshape(1, 16, 16, 1).repeat(3, axis=3)
    floats = pixels.astype(np.float32)
    np.testing.assert_array_equal(pixels_uint8(floats), pixels)
    old = np.clip(np.round(hard_pixels()), 0, 255).astype(np.uint8)
    np.testing.assert_array_equal(pixels_uint8(hard_pixels()), old)


def test_batch_table_is_positive_and_falls_back():
    assert all(isinstance(size, int) and size >= 1 for size in PREDICT_BATCH.values())
    for (kind, quantization), size in PREDICT_BATCH.items():
        assert predict_batch(kind, quantization) == size
    assert predict_batch("tflite", None) == PREDICT_BATCH[("tflite", "none")]  # a bare file: float
    assert predict_batch("keras", "none") == PREDICT_BATCH[("keras", "any")]
    assert predict_batch("tflite", "float16") == DEFAULT_BATCH
    assert predict_batch("some-new-runtime", "int8") == DEFAULT_BATCH
