"""`tk bench` mechanics: fields, counted runs, ordered percentiles, a cold start in a new process,
bench.json and manifest metrics, the edge install, and the choice of what to ship. No timings are
asserted: benchmarks measure, they don't gate."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from toolkit.cli.app import app
from toolkit.core.errors import TkError
from toolkit.core.runs import load_manifest, load_split
from toolkit.edge.bench import (
    BENCH_JSON,
    BenchSettings,
    bench_run,
    choose_artifact,
    parse_threads,
    percentiles,
    split_targets,
)

runner = CliRunner()
TINY = BenchSettings(threads=(1,), runs=3, warmup=1, batch=4)
ROW_FIELDS = {
    "file",
    "format",
    "quantization",
    "reference",
    "threads",
    "size_bytes",
    "runs",
    "warmup",
    "batch",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "mean_ms",
    "min_ms",
    "cold_start_s",
    "peak_rss_mb",
    "load_s",
    "throughput_ips",
    "accuracy",
    "test_count",
    "pid",
    "tensorflow_loaded",
    "sha256",
    "machine",
    "measured_at",
}


@pytest.fixture(scope="module")
def bench_dir(exported_run, tmp_path_factory) -> Path:
    """A copy of the exported run: bench writes bench.json and manifest metrics into it."""
    return Path(shutil.copytree(exported_run, tmp_path_factory.mktemp("bench") / exported_run.name))


@pytest.fixture(scope="module")
def report(bench_dir):
    return bench_run(bench_dir, TINY, only=["model.keras", "model_int8.tflite", "model.onnx"])


def test_rows_have_every_field_and_counted_runs(report, bench_dir):
    test_count = len(load_split(bench_dir / "split.json").paths("test"))
    assert [r["file"] for r in report["rows"]] == ["model.keras", "model_int8.tflite", "model.onnx"]
    for row in report["rows"]:
        assert ROW_FIELDS <= set(row), ROW_FIELDS - set(row)
        assert row["runs"] == 3 and row["warmup"] == 1 and row["threads"] == 1
        assert row["p50_ms"] <= row["p90_ms"] <= row["p99_ms"]
        assert row["min_ms"] <= row["p50_ms"]
        assert row["cold_start_s"] > 0 and row["peak_rss_mb"] > 0 and row["throughput_ips"] > 0
        assert 0.0 <= row["accuracy"] <= 1.0 and row["test_count"] == test_count
        assert row["size_bytes"] == load_manifest(bench_dir)["artifacts"][row["file"]]["size_bytes"]


def test_cold_start_is_a_new_process_and_only_keras_loads_tensorflow(report):
    pids = {row["pid"] for row in report["rows"]}
    assert os.getpid() not in pids and len(pids) == len(report["rows"])
    for row in report["rows"]:
        assert row["reference"] == (row["file"] == "model.keras")
        assert row["tensorflow_loaded"] == (row["file"] == "model.keras")


def test_bench_json_and_manifest_metrics(report, bench_dir):
    written = json.loads((bench_dir / BENCH_JSON).read_text())
    assert written["rows"] == report["rows"]
    machine = written["machine"]
    assert {"cpu", "cores", "os", "arch", "python", "versions"} <= set(machine)
    assert "onnxruntime" in machine["versions"] and machine["cores"] >= 1
    test_count = report["rows"][0]["test_count"]
    assert written["settings"] == {"threads": [1], "runs": 3, "warmup": 1, "batch": 4, "test_count": test_count}
    assert (
        written["description"] == f"3 runs after 1 warm-up, throughput at batch 4, accuracy on {test_count} test images"
    )
    for row in report["rows"]:
        metrics = load_manifest(bench_dir)["artifacts"][row["file"]]["metrics"]["bench"]
        assert metrics["by_threads"]["1"]["p50_ms"] == row["p50_ms"]
    assert not [p.name for p in bench_dir.iterdir() if ".tmp" in p.name]


def test_threads_rows_and_a_later_bench_with_the_same_settings_keeps_other_rows(report, bench_dir):
    result = runner.invoke(
        app,
        [
            "bench",
            str(bench_dir / "model_float16.tflite"),
            "--threads",
            "1,2",
            "--runs",
            "3",
            "--warmup",
            "1",
            "--batch",
            "4",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    out = json.loads(result.output)
    mine = [r for r in out["rows"] if r["file"] == "model_float16.tflite"]
    assert [r["threads"] for r in mine] == [1, 2]
    assert mine[0]["accuracy"] == mine[1]["accuracy"]  # measured once, shared across thread counts
    assert {"model.keras", "model_int8.tflite", "model.onnx"} <= {r["file"] for r in out["rows"]}
    assert out["settings"]["threads"] == [1, 2] and out["benched"] == ["model_float16.tflite"]
    assert any("3 row(s) with the same settings from earlier calls" in n for n in out["notes"])


@pytest.mark.edge
def test_edge_install_benches_tflite_and_onnx_only(device_run, tmp_path):
    run = Path(shutil.copytree(device_run, tmp_path / "edge"))
    code = (
        "import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
        "from toolkit.cli.app import app\napp(sys.argv[1:])\n"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            code,
            "bench",
            str(run),
            "--threads",
            "1",
            "--runs",
            "2",
            "--warmup",
            "0",
            "--batch",
            "2",
            "--format",
            "all",  # asked for every format: the edge install still skips the two it cannot run
            "--json",
        ],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert {r["format"] for r in out["rows"]} == {"tflite", "onnx"}
    assert {"model.onnx": "none", "model_int8.onnx": "int8"}.items() <= {
        r["file"]: r["quantization"] for r in out["rows"]
    }.items()
    assert not any(r["tensorflow_loaded"] for r in out["rows"])
    skipped = " ".join(out["notes"])
    assert "model.keras: skipped (TensorFlow is not installed" in skipped and "saved_model: skipped" in skipped


@pytest.mark.edge
def test_without_test_images_latency_is_still_measured(device_run, tmp_path):
    device = tmp_path / "device"
    device.mkdir()
    for name in ("model_int8.tflite", "manifest.json"):
        shutil.copy(device_run / name, device)
    out = bench_run(device, TINY)
    assert [r["file"] for r in out["rows"]] == ["model_int8.tflite"]
    assert out["rows"][0]["accuracy"] is None and out["rows"][0]["runs"] == 3
    assert any("no split.json" in n for n in out["notes"])
    assert any("not present here" in n for n in out["notes"])


@pytest.mark.edge
def test_percentiles_are_ordered():
    stats = percentiles([5.0, 1.0, 3.0, 2.0, 100.0, 4.0])
    assert stats["min_ms"] == 1.0 and stats["p50_ms"] <= stats["p90_ms"] <= stats["p99_ms"] <= 100.0


def row(file, size, p50, accuracy, threads=1, reference=False):
    return {
        "file": file,
        "size_bytes": size,
        "p50_ms": p50,
        "accuracy": accuracy,
        "threads": threads,
        "reference": reference,
    }


SYNTHETIC = [
    row("model.keras", 9_000_000, 90.0, 0.95, reference=True),
    row("model_float32.tflite", 4_000_000, 12.0, 0.95),
    row("model_float32.tflite", 4_000_000, 7.0, 0.95, threads=2),
    row("model_int8.tflite", 1_000_000, 4.0, 0.90),
    row("model_float16.tflite", 2_000_000, 11.0, 0.95),
]


@pytest.mark.edge
def test_ship_the_smallest_that_meets_both_limits():
    best, why = choose_artifact(SYNTHETIC, max_latency_ms=12.0, min_accuracy=0.94)
    assert best["file"] == "model_float16.tflite"
    assert any(w.startswith("model_int8.tflite: accuracy 0.900 < 0.94") for w in why)


@pytest.mark.edge
def test_ship_uses_the_best_thread_count_and_never_the_reference():
    best, _ = choose_artifact(SYNTHETIC, max_latency_ms=8.0, min_accuracy=0.94)
    assert best["file"] == "model_float32.tflite" and best["threads"] == 2
    best, _ = choose_artifact(SYNTHETIC, max_latency_ms=None, min_accuracy=0.9)
    assert best["file"] == "model_int8.tflite"


@pytest.mark.edge
def test_ship_says_why_none_meets_the_limits():
    best, why = choose_artifact(SYNTHETIC, max_latency_ms=3.0, min_accuracy=0.99)
    assert best is None
    assert len(why) == 3 and all("> 3 ms" in w and "< 0.99" in w for w in why)
    best, why = choose_artifact([row("m.tflite", 1, 1.0, None)], None, 0.5)
    assert best is None and why == ["m.tflite: accuracy not measured"]


def test_cli_ship_line_and_no_ship_exit(bench_dir, report):
    args = ["bench", str(bench_dir / "model_int8.tflite"), "--threads", "1", "--runs", "3", "--warmup", "1"]
    result = runner.invoke(app, [*args, "--max-latency-ms", "100000", "--min-accuracy", "0"])
    assert result.exit_code == 0, result.output
    assert "ship: " in result.output and "p50" in result.output
    result = runner.invoke(app, [*args, "--max-latency-ms", "0.000001"])
    assert result.exit_code == 1 and "error: no artifact meets the limits" in result.output


@pytest.mark.parametrize(
    "args, message",
    [
        (["--threads", "1,x"], "--threads: expected comma-separated integers"),
        (["--threads", "0"], "--threads: must be >= 1"),
        (["--runs", "0"], "--runs: must be >= 1"),
    ],
)
def test_bad_settings_are_one_line(bench_dir, args, message):
    result = runner.invoke(app, ["bench", str(bench_dir), *args])
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output


def test_targets_group_artifacts_by_run(bench_dir, tmp_path):
    plan = split_targets([str(bench_dir / "model.onnx"), str(bench_dir / "model_int8.tflite")], tmp_path)
    assert plan == {bench_dir: ["model.onnx", "model_int8.tflite"]}
    with pytest.raises(TkError, match="model file not found"):
        split_targets([str(bench_dir / "gone.tflite")], tmp_path)
    assert parse_threads("1, 2,4") == (1, 2, 4)


def test_settings_come_from_the_recipe_and_options_override_them(bench_dir, tmp_path):
    import yaml

    from toolkit.edge.bench import settings_for

    run = Path(shutil.copytree(bench_dir, tmp_path / "run", ignore=shutil.ignore_patterns("saved_model", "*.keras")))
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    recipe["bench"] = {"threads": [3], "runs": 7, "warmup": 2, "batch": 5}
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))
    assert settings_for(run) == BenchSettings(threads=(3,), runs=7, warmup=2, batch=5)
    assert settings_for(run, runs=3, threads=None) == BenchSettings(threads=(3,), runs=3, warmup=2, batch=5)
    (run / "recipe.yaml").unlink()
    assert settings_for(run, batch=2) == BenchSettings(batch=2)


def bench_row(file, machine="laptop", threads=1, runs=3, sha="a", measured_at="t1"):
    return {
        "file": file,
        "machine": machine,
        "threads": threads,
        "runs": runs,
        "warmup": 1,
        "batch": 4,
        "test_count": 10,
        "sha256": sha,
        "measured_at": measured_at,
        "format": "tflite",
        "quantization": "none",
    }


@pytest.mark.edge
def test_merge_replaces_re_measured_rows_and_drops_stale_ones():
    from toolkit.edge.bench_rows import merge_rows, set_aside_note, split_comparable

    old = [
        bench_row("a.tflite"),
        bench_row("a.tflite", threads=2),
        bench_row("b.onnx", sha="old"),
        bench_row("c.onnx"),
        bench_row("a.tflite", machine="pi"),
        {**bench_row("d.onnx"), "sha256": None},
    ]
    new = [bench_row("a.tflite", runs=20, measured_at="t2")]
    pool, stale = merge_rows(old, new, {"a.tflite": "a", "b.onnx": "new", "c.onnx": "a", "d.onnx": "a"})
    assert stale == 2  # b.onnx re-exported since; d.onnx from a tk that recorded no sha256
    assert sorted((r["file"], r["machine"], r["threads"], r["runs"]) for r in pool) == [
        ("a.tflite", "laptop", 1, 20),
        ("a.tflite", "laptop", 2, 3),
        ("a.tflite", "pi", 1, 3),
        ("c.onnx", "laptop", 1, 3),
    ]
    shown, other = split_comparable(pool, {"runs": 20, "warmup": 1, "batch": 4, "test_count": 10})
    assert [r["runs"] for r in shown] == [20] and len(other) == 3
    assert set_aside_note(other).startswith("3 row(s) from earlier calls with other settings not shown (runs 3,")


@pytest.mark.edge
def test_a_bench_with_other_runs_replaces_its_rows_and_sets_the_others_aside(device_run, tmp_path):
    from toolkit.edge.bench import bench_targets

    run = Path(shutil.copytree(device_run, tmp_path / "run", ignore=shutil.ignore_patterns("saved_model", "*.keras")))
    (run / BENCH_JSON).unlink(missing_ok=True)
    first = bench_run(
        run, BenchSettings(threads=(1,), runs=2, warmup=0, batch=2), only=["model_int8.tflite", "model.onnx"]
    )
    assert [(r["file"], r["runs"]) for r in first["rows"]] == [("model_int8.tflite", 2), ("model.onnx", 2)]
    result = bench_targets(
        [str(run / "model_int8.tflite")],
        tmp_path,
        {"threads": (1,), "runs": 3, "warmup": 0, "batch": 2},
        max_latency_ms=1e9,
    )
    second = result["reports"][0]
    assert [(r["file"], r["runs"]) for r in second["rows"]] == [("model_int8.tflite", 3)]  # the 2-run row replaced
    assert [(r["file"], r["runs"]) for r in second["other_rows"]] == [("model.onnx", 2)]  # kept, not shown
    assert second["settings"]["runs"] == 3 and second["description"].startswith("3 runs after 0 warm-up")
    assert any(
        n.startswith("1 row(s) from earlier calls with other settings not shown (runs 2") for n in second["notes"]
    )
    assert json.loads((run / BENCH_JSON).read_text())["rows"] == second["rows"]
    # the ship pick compares what this call measured, never the set-aside model.onnx
    assert result["ship"]["file"] == "model_int8.tflite" and result["ship"]["among"] == 1
    # the terminal says the same: the settings in the title, the set-aside rows in a note
    out = runner.invoke(
        app, ["bench", str(run / "model.onnx"), "--threads", "1", "--runs", "3", "--warmup", "0", "--batch", "2"]
    )
    assert out.exit_code == 0, out.output
    text = " ".join(out.output.split())  # the table's title wraps where this machine's CPU flags make it long
    assert "3 runs after 0 warm-up, throughput at batch 2" in text
    assert "model_int8.tflite" in text and "with the same settings from earlier calls" in text
    assert "with other settings not shown" not in text  # model.onnx's 2-run row was re-measured


@pytest.mark.edge
def test_machine_facts_are_sane_and_labels_tell_machines_apart(monkeypatch):
    from toolkit.edge import machine

    facts = machine.machine_info()
    assert facts["host"] and facts["cpu"] and facts["cpu"] != "unknown CPU"
    assert 1 <= facts["cores"] <= facts["logical_cores"] and 0.1 < facts["memory_gb"] < 100_000
    assert facts["load_avg"] is None or len(facts["load_avg"]) == 3
    assert 1 < machine.peak_rss_mb() < 100_000
    # a fresh process reports its own peak, not its parent's (ru_maxrss survives execve on Linux)
    import numpy as np

    ballast = np.ones(40_000_000)  # 320 MB resident in this process
    child = subprocess.run(
        [sys.executable, "-c", "from toolkit.edge.machine import peak_rss_mb; print(peak_rss_mb())"],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    assert ballast.sum() > 0 and 1 < float(child.stdout) < 200
    del ballast
    label = machine.machine_label(facts)
    assert label.startswith(facts["host"] + " (") and f"{facts['cores']} cores" in label
    # two VMs both called "vm": the CPU and the core count still tell them apart
    a = machine.machine_label({"host": "vm", "cpu": "Intel(R) Xeon(R) CPU @ 2.20GHz", "cores": 2, "logical_cores": 4})
    b = machine.machine_label({"host": "vm", "cpu": "AMD EPYC 7B13 64-Core Processor", "cores": 2, "logical_cores": 2})
    assert a == "vm (Intel Xeon, 2 cores/4 threads)" and b == "vm (AMD EPYC 7B13 64-Core, 2 cores)"
    # a system tk has no reader for still names something
    monkeypatch.setattr(machine.sys, "platform", "plan9")
    assert machine.cpu_model()


@pytest.mark.edge
@pytest.mark.parametrize("file", ["model_int8.tflite", "model_int8.onnx", "model_float32.tflite", "model.onnx"])
def test_predictions_do_not_depend_on_the_thread_count(device_run, file):
    """Why bench measures accuracy once per artifact: 1 and 2 threads give the very same outputs
    (int8 too: its kernels split the work, not the sums)."""
    import numpy as np

    from toolkit.core.runs import load_split
    from toolkit.edge.predictors import load_predictor

    paths = load_split(device_run / "split.json").paths("test")
    one = load_predictor(device_run / file, num_threads=1).predict_files(paths)
    two = load_predictor(device_run / file, num_threads=2).predict_files(paths)
    assert np.array_equal(one.argmax(axis=1), two.argmax(axis=1))
    assert np.abs(one - two).max() <= (0 if "int8" in file else 1e-6)


def test_adaptive_runs_stop_when_the_median_is_known():
    from toolkit.edge.timing import RunPlan, median_interval, settled, timed_runs

    low, median, high = median_interval(list(range(1, 101)))
    assert low < median < high and median == 50.5
    assert settled([10.0] * 20, 0.02) and not settled([1.0, 10.0] * 10, 0.02)
    calls = []
    assert len(timed_runs(lambda: calls.append(1), RunPlan(fixed=7))) == 7
    steady = timed_runs(lambda: sum(range(20000)), RunPlan(min_runs=20, max_runs=300, precision=0.5))
    assert 20 <= len(steady) < 300
    capped = timed_runs(lambda: None, RunPlan(min_runs=5, max_runs=12, precision=1e-9, max_seconds=60))
    assert len(capped) == 12


def test_accuracy_comes_from_verify_only_for_the_same_file_images_and_machine():
    from toolkit.edge.bench import verified_accuracy

    record = {"sha256": "a", "machine": "vm", "split": "test", "count": 3, "accuracy": 0.5}
    entry = {"sha256": "a", "metrics": {"verify": record}}
    assert verified_accuracy(entry, [0, 1, 2], "vm") == 0.5
    assert verified_accuracy({**entry, "sha256": "b"}, [0, 1, 2], "vm") is None  # re-exported since
    assert verified_accuracy(entry, [0, 1, 2], "pi") is None  # int8 rounding differs across CPUs
    assert verified_accuracy(entry, [0, 1], "vm") is None  # another test sample (a bundle's)
    assert (
        verified_accuracy({"sha256": "a", "metrics": {"verify": {**record, "split": "validation"}}}, [0, 1, 2], "vm")
        is None
    )


@pytest.mark.edge
def test_machine_facts_without_proc_are_none_not_a_traceback(monkeypatch):
    """An emulated Pi root (or a container) without /proc: psutil raises; the facts say None."""
    import psutil

    from toolkit.edge import machine

    def no_proc(*_args, **_kwargs):
        raise FileNotFoundError(2, "No such file or directory", "/proc/cpuinfo")

    for name in ("cpu_count", "virtual_memory", "getloadavg"):
        monkeypatch.setattr(psutil, name, no_proc)
    facts = machine.machine_info()
    assert facts["memory_gb"] is None and facts["load_avg"] is None and facts["cores"] >= 1
    assert machine.machine_label(facts)


@pytest.mark.edge
def test_peak_memory_without_proc_falls_back_to_getrusage(monkeypatch):
    import psutil

    from toolkit.edge import machine

    real_read = Path.read_text

    def no_proc(self, *args, **kwargs):
        if str(self).startswith("/proc"):
            raise FileNotFoundError(2, "No such file or directory", str(self))
        return real_read(self, *args, **kwargs)

    def gone(*_args, **_kwargs):
        raise psutil.NoSuchProcess(0)

    monkeypatch.setattr(Path, "read_text", no_proc)
    monkeypatch.setattr(psutil.Process, "memory_info", gone)
    assert 1 < machine.peak_rss_mb() < 100_000
