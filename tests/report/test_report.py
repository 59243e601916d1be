"""`tk report`: REPORT.md from what the run folder holds, and bench.json files of several machines."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from toolkit.cli.app import app
from toolkit.edge.bench import BENCH_JSON, BenchSettings, bench_run, machine_label
from toolkit.report.report import PLOT, REPORT, latency_points, load_bench, merge_benches, write_report

runner = CliRunner()
PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def reported_run(exported_run, tmp_path_factory) -> Path:
    """A copy of the exported run (verified by its fixture) after a tiny tk bench."""
    run = Path(shutil.copytree(exported_run, tmp_path_factory.mktemp("report") / exported_run.name))
    bench_run(
        run,
        BenchSettings(threads=(1,), runs=3, warmup=1, batch=2),
        only=["model_int8.tflite", "model.onnx"],
    )
    return run


@pytest.fixture
def other_machine(reported_run, tmp_path) -> Path:
    """The same bench.json as if measured on a Pi (another machine tag)."""
    bench = json.loads((reported_run / BENCH_JSON).read_text())
    bench["machine"] = {
        **bench["machine"],
        "host": "raspberrypi",
        "arch": "aarch64",
        "cores": 4,
        "logical_cores": 4,
        "cpu": "Raspberry Pi 4 Model B Rev 1.4",
    }
    label = machine_label(bench["machine"])
    bench["machines"] = {label: bench["machine"]}
    bench["rows"] = [{**r, "machine": label} for r in bench["rows"]]
    path = tmp_path / "pi" / BENCH_JSON
    path.parent.mkdir()
    path.write_text(json.dumps(bench))
    return path


def section(text: str, title: str) -> str:
    start = text.index(f"## {title}")
    end = text.find("\n## ", start + 1)
    return text[start : end if end > 0 else None]


def test_report_has_every_section_with_its_images(reported_run):
    text = write_report(reported_run).read_text()
    for title in ("Training", "Test metrics", "Artifacts", "Parity (tk verify)", "Bench (tk bench)"):
        assert f"## {title}" in text
    curves = sorted(reported_run.glob("phases/*/curves.png"))
    assert curves and all(f"]({c.relative_to(reported_run)})" in text for c in curves)
    parity = json.loads((reported_run / "parity.json").read_text())
    assert all(f"| {file} |" in section(text, "Parity") for file in parity["artifacts"])
    bench = section(text, "Bench")
    assert "| model_int8.tflite | 1 |" in bench and "| model.onnx | 1 |" in bench
    assert f"]({PLOT})" in bench and (reported_run / PLOT).read_bytes().startswith(PNG)
    assert "## Explain" not in text  # no explain/ folder in this run


def test_explain_images_are_linked_when_the_folder_exists(reported_run, tmp_path):
    run = Path(shutil.copytree(reported_run, tmp_path / "run"))
    (run / "explain").mkdir()
    shutil.copy(next(run.glob("phases/*/curves.png")), run / "explain" / "gradcam_sheet_test.png")
    text = write_report(run).read_text()
    assert "](explain/gradcam_sheet_test.png)" in section(text, "Explain")


def test_merge_two_machines_into_one_table(reported_run, other_machine):
    result = runner.invoke(app, ["report", str(reported_run), "--merge", str(other_machine)])
    assert result.exit_code == 0, result.output
    bench = section((reported_run / REPORT).read_text(), "Bench")
    here = load_bench(reported_run / BENCH_JSON)["machine"]["host"]
    assert "| machine | artifact |" in bench
    assert (
        f"| {here} (" in bench
        and "| raspberrypi (Raspberry Pi 4 Model B Rev 1.4, 4 cores) | model_int8.tflite |" in bench
    )
    assert "Raspberry Pi 4 Model B" in bench


def test_merged_rows_and_plot_points_keep_machines_apart(reported_run, other_machine):
    benches = [load_bench(reported_run / BENCH_JSON), load_bench(other_machine)]
    rows = merge_benches(benches)
    assert len(rows) == 2 * len(benches[0]["rows"]) and len({r["machine"] for r in rows}) == 2
    points = latency_points(rows)
    assert len(points) == len(rows)  # one thread count each: every row is its machine's best
    same = merge_benches([benches[0], benches[0]])
    assert len({r["machine"] for r in same}) == 2  # one label, two files: numbered apart


def test_sections_say_which_command_fills_them(exported_run, tmp_path):
    run = Path(
        shutil.copytree(exported_run, tmp_path / "bare", ignore=shutil.ignore_patterns("parity.json", BENCH_JSON))
    )
    text = write_report(run).read_text()
    assert "`tk verify`" in section(text, "Parity") and "`tk bench`" in section(text, "Bench")
    assert not (run / PLOT).exists()


@pytest.mark.parametrize(
    "content, message", [(None, "not found"), ("{", "not valid JSON"), ('{"rows": []}', "machine: missing")]
)
def test_bad_merge_file_is_one_line(reported_run, tmp_path, content, message):
    path = tmp_path / "other.json"
    if content is not None:
        path.write_text(content)
    before = (reported_run / REPORT).read_text() if (reported_run / REPORT).exists() else None
    result = runner.invoke(app, ["report", str(reported_run), "--merge", str(path)])
    assert result.exit_code == 1 and message in result.output and "Traceback" not in result.output
    assert ((reported_run / REPORT).read_text() if before is not None else None) == before


def test_report_shows_comparable_rows_only_and_says_so(reported_run, other_machine, tmp_path):
    run = Path(shutil.copytree(reported_run, tmp_path / "run"))
    bench = json.loads((run / BENCH_JSON).read_text())
    here = bench["rows"][0]["machine"]
    # an earlier call's row with other settings, kept in bench.json but not shown
    bench["other_rows"] = [{**bench["rows"][0], "file": "model_float16.tflite", "runs": 30, "runs_setting": 30}]
    (run / BENCH_JSON).write_text(json.dumps(bench))
    pi = json.loads(other_machine.read_text())
    pi["rows"] = [
        *pi["rows"],
        {**pi["rows"][0], "file": "model_dynamic.tflite", "runs": 50, "runs_setting": 50},
    ]  # timed otherwise
    other_machine.write_text(json.dumps(pi))
    text = section(write_report(run, merge=[other_machine]).read_text(), "Bench")
    assert "Every row below: 3 runs (timed, batch 1) after 1 warm-up, throughput at batch 2." in text
    assert (
        "model_float16.tflite" not in text.split("- note")[0] and "model_dynamic.tflite" not in text.split("- note")[0]
    )
    assert "1 row(s) from earlier bench calls with other settings not shown" in text
    assert "1 row(s) in these bench files with other settings not shown (runs 50, warmup 1, batch 2" in text
    assert (
        f"| {here} | model.onnx |" in text
        and "| raspberrypi (Raspberry Pi 4 Model B Rev 1.4, 4 cores) | model.onnx |" in text
    )
    assert "3 runs after 1 warm-up, throughput at batch 2, accuracy on" in text  # per machine, with its sample


@pytest.mark.parametrize("accuracies", [[1.0, 1.0, 1.0], [0.0, 0.02], [0.5, 0.98, 1.0], [0.31]])
def test_accuracy_axis_stays_within_0_1(accuracies):
    from toolkit.report.plots import accuracy_limits

    bottom, top = accuracy_limits(accuracies)
    assert -0.02 <= bottom <= min(accuracies) and max(accuracies) <= top <= 1.02 and top - bottom >= 0.09


def test_plot_numbers_clustered_points_apart_and_ticks_stop_at_1(tmp_path):
    from toolkit.report.plots import plot_latency_accuracy

    names = ["model_float32.tflite", "model_float16.tflite", "model_dynamic.tflite", "model.onnx", "model_int8.onnx"]
    points = [
        {"label": n, "machine": m, "p50_ms": 2.0 + 0.05 * i, "accuracy": 1.0, "reference": False}
        for m in ("vm (Intel Xeon, 2 cores)", "vm (AMD EPYC 7B13, 4 cores)")
        for i, n in enumerate(names)
    ]
    drawn = plot_latency_accuracy(points, tmp_path / "p.png", "clustered")
    assert (tmp_path / "p.png").read_bytes().startswith(PNG)
    assert drawn["ylim"][1] <= 1.02 and max(drawn["yticks"]) <= 1.0 and min(drawn["yticks"]) >= 0.0
    assert len(drawn["numbers"]) == 10 and {m for _, m in drawn["numbers"].values()} == {p["machine"] for p in points}
    # ten numbers on points a few pixels apart (two machines on the same spots): no two overlap
    boxes = drawn["label_boxes"]
    assert not [
        (a, b)
        for i, a in enumerate(boxes)
        for b in boxes[i + 1 :]
        if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]
    ]


def test_a_bench_json_of_an_older_tk_still_reports(reported_run, tmp_path):
    run = Path(shutil.copytree(reported_run, tmp_path / "old"))
    bench = json.loads((run / BENCH_JSON).read_text())
    for key in ("machines", "other_rows", "description", "benched"):
        bench.pop(key)
    bench["rows"] = [
        {k: v for k, v in r.items() if k not in ("machine", "measured_at", "sha256")} for r in bench["rows"]
    ]
    (run / BENCH_JSON).write_text(json.dumps(bench))
    text = section(write_report(run).read_text(), "Bench")
    assert "| model.onnx | 1 |" in text and f"**{machine_label(bench['machine'])}**" in text
    assert f"measured {bench['created']}" in text


@pytest.mark.parametrize("name", ["bench.json", "parity.json", "metrics.json"])
def test_run_files_linked_from_elsewhere_are_not_read(reported_run, tmp_path, name):
    """Issue 20: report reads the run's own files only (core/paths.confine), never a link out of it."""
    run = Path(shutil.copytree(reported_run, tmp_path / "run"))
    outside = tmp_path / "elsewhere.json"
    shutil.move(run / name, outside)
    (run / name).symlink_to(outside)
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 1 and "Traceback" not in result.output
    # parity.json is read first by the gate's schema (a regular file only), the others by confinement
    assert f"{name}: " in result.output and "symbolic link" in result.output


def test_the_plot_draws_artifacts_that_did_not_pass_apart_and_never_as_plain_points(tmp_path):
    from toolkit.report.plots import plot_latency_accuracy

    points = [
        {"label": "model.onnx", "machine": "m", "p50_ms": 2.0, "accuracy": 0.9, "reference": False, "parity": "passed"},
        {"label": "model_int8.onnx", "machine": "m", "p50_ms": 1.0, "accuracy": 0.99, "parity": "failed"},
        {"label": "model_float16.tflite", "machine": "m", "p50_ms": 1.5, "accuracy": 0.95, "parity": "stale"},
        {"label": "model.keras", "machine": "m", "p50_ms": 9.0, "accuracy": 0.9, "reference": True, "parity": None},
    ]
    drawn = plot_latency_accuracy(points, tmp_path / "plot.png", "run $x$ {")
    failed = {drawn["numbers"][n][0] for n in drawn["unverified"]}
    assert failed == {"model_int8.onnx", "model_float16.tflite"}
    assert (tmp_path / "plot.png").read_bytes().startswith(PNG)
