"""Run files and --json output are strict JSON: NaN/Infinity (which Python's json writes by
default and no other reader accepts) become null."""

from __future__ import annotations

import json
import math

from toolkit.core.io import json_text, write_json_atomic


def _strict_loads(text: str):
    def refuse(name):
        raise ValueError(f"non-standard JSON constant {name}")

    return json.loads(text, parse_constant=refuse)


def test_non_finite_numbers_become_null():
    obj = {"max_diff": math.nan, "scores": [0.5, math.inf, -math.inf], "nested": ({"p": math.nan},)}
    parsed = _strict_loads(json_text(obj))
    assert parsed == {"max_diff": None, "scores": [0.5, None, None], "nested": [{"p": None}]}


def test_run_files_are_strict_json(tmp_path):
    path = tmp_path / "manifest.json"
    write_json_atomic(path, {"loss": math.nan, "accuracy": 0.75})
    assert _strict_loads(path.read_text()) == {"loss": None, "accuracy": 0.75}
