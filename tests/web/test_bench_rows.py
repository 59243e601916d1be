"""Browser rows in the bench table: the ratio column appears only with them, and what the browser
does not measure (batch throughput) shows as '-'."""

from __future__ import annotations

import pytest

from toolkit.edge.bench import HEADERS, RATIO_HEADER, format_row, table_headers
from toolkit.web.bench import browser_label

pytestmark = pytest.mark.edge

NATIVE = {"file": "model.onnx", "threads": 1, "size_bytes": 2e6, "cold_start_s": 0.3, "peak_rss_mb": 90.0,
          "p50_ms": 2.0, "p90_ms": 2.5, "p99_ms": 3.0, "throughput_ips": 800.0, "accuracy": 0.9}  # fmt: skip
BROWSER = {**NATIVE, "machine": browser_label("156.0.8078.114", True, 2), "threads": 2,
           "throughput_ips": None, "p50_ms": 9.0, "native_p50_ms": 2.0, "ratio": 4.5}  # fmt: skip


def test_ratio_column_only_with_browser_rows():
    assert table_headers([NATIVE]) == list(HEADERS)
    assert table_headers([NATIVE, BROWSER], machine_column=True) == ["machine", *HEADERS, RATIO_HEADER]
    assert format_row(NATIVE, ratio_column=True)[-1] == "-"
    cells = format_row(BROWSER, machine_column=True, ratio_column=True)
    assert cells[0] == "browser (Chromium 156, wasm SIMD, 2 threads)"
    assert cells[HEADERS.index("img/s") + 1] == "-" and cells[-1] == "4.50"


def test_browser_label():
    assert browser_label("156.0.1", False, 1) == "browser (Chromium 156, wasm, 1 thread)"
