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


def test_leftovers_of_killed_writers_are_removed_and_a_half_swapped_folder_restored(tmp_path):
    from toolkit.core.io import remove_leftovers

    run = tmp_path / "run"
    (run / ".tk-export-ab12cd" / "saved_model").mkdir(parents=True)  # a killed export's work folder
    (run / ".tk-export-ab12cd" / "saved_model" / "saved_model.pb").write_bytes(b"x")
    (run / ".tk-tmp-k3j2.tmp.onnx").write_bytes(b"half")  # a killed atomic write
    (run / ".tk-tmp-x9.tmp").mkdir()  # a killed folder write
    (run / ".tk-old-saved_model").mkdir()  # killed between the two renames: the only copy
    (run / ".tk-old-saved_model" / "saved_model.pb").write_bytes(b"previous")
    (run / "phases" / "scratch").mkdir(parents=True)
    (run / "phases" / "scratch" / ".tk-tmp-q1.tmp.keras").write_bytes(b"half")
    # A user's files, however much they look like temporaries: tk removes only its own names.
    keep = {
        "model.onnx": b"good",
        "manifest.json": b"{}",
        ".hidden-user-file": b"mine",
        ".env.tmpl": b"mine",
        ".notes.old": b"mine",
        ".model.onnx.k3j2.tmp.onnx": b"mine",
        ".export-ab12cd": b"mine",
        ".tk-notes": b"mine",
    }
    for name, data in keep.items():
        (run / name).write_bytes(data)

    removed = {p.name for p in remove_leftovers(run)}
    assert removed == {".tk-export-ab12cd", ".tk-tmp-k3j2.tmp.onnx", ".tk-tmp-x9.tmp"}
    assert (run / "saved_model" / "saved_model.pb").read_bytes() == b"previous"
    assert (run / "phases" / "scratch" / ".tk-tmp-q1.tmp.keras").exists()  # not recursive
    assert {p.name for p in remove_leftovers(run, recursive=True)} == {".tk-tmp-q1.tmp.keras"}
    assert {p.name: p.read_bytes() for p in run.iterdir() if p.is_file()} == keep


def test_one_size_formatter_decimal_and_binary():
    from toolkit.core.io import format_size

    assert format_size(512) == "512 bytes"
    assert format_size(312_400) == "312 kB" and format_size(1_234_567) == "1.23 MB"
    assert format_size(2.5e9) == "2.5 GB"
    assert format_size(10 * 2**20, binary=True) == "10 MiB" and format_size(20 * 2**30, binary=True) == "20 GiB"


def test_atomic_writes_use_the_names_clean_up_removes(tmp_path):
    from toolkit.core.io import TMP_PREFIX, atomic_path

    with atomic_path(tmp_path / "model.onnx", suffix=".onnx") as tmp:
        assert tmp.name.startswith(TMP_PREFIX) and tmp.name.endswith(".tmp.onnx")
        tmp.write_bytes(b"x")
    assert [p.name for p in tmp_path.iterdir()] == ["model.onnx"]
