"""The parity gate cannot be fooled (issue 24): verify fails closed, verdicts are bound to the bytes
they judged and every reader re-derives them, export checks the trained model's hash, and pack
ships only what passed (or says, in the bundle, that it did not). Each hostile edit ends in one
line and exit 1, or in output that says stale / failed / not verified: never a ✓ it did not earn."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import pytest
import yaml
from helpers import assert_one_line_error
from typer.testing import CliRunner

from toolkit.cli.app import app
from toolkit.core.io import sha256_file
from toolkit.core.runs import load_manifest, record_artifact, save_manifest
from toolkit.edge.verdicts import run_verdicts
from toolkit.report.report import REPORT, write_report

runner = CliRunner()
FLOAT = "model_float32.tflite"


@pytest.fixture
def run(exported_run, tmp_path) -> Path:
    """A copy of the session's exported and verified run (every artifact passed)."""
    return Path(shutil.copytree(exported_run, tmp_path / exported_run.name))


def _edit_manifest(run: Path, edit) -> None:
    manifest = load_manifest(run)
    edit(manifest)
    save_manifest(run, manifest)


def _edit_parity(run: Path, edit) -> None:
    parity = json.loads((run / "parity.json").read_text())
    edit(parity)
    (run / "parity.json").write_text(json.dumps(parity))


def _edit_recipe(run: Path, thresholds: dict) -> None:
    recipe = yaml.safe_load((run / "recipe.yaml").read_text())
    recipe["verify"]["thresholds"] = thresholds
    (run / "recipe.yaml").write_text(yaml.safe_dump(recipe))


def _verify(run: Path, *files: str):
    return runner.invoke(app, ["verify", str(run), *[a for f in files for a in ("--artifact", f)]])


def test_every_artifact_of_the_session_run_passed_and_is_bound_to_its_bytes(exported_run):
    gate = run_verdicts(exported_run)
    assert gate.gated and gate.verdicts and all(v.passed for v in gate.verdicts.values()), gate.verdicts
    record = json.loads((exported_run / "parity.json").read_text())["artifacts"][FLOAT]
    assert record["sha256"] == gate.shas[FLOAT] and record["reference_sha256"] == gate.reference_sha256
    assert len(record["images_sha256"]) == 64 and len(record["split_sha256"]) == 64 and record["tk_version"]
    assert record["limits"] == {
        "max_abs_diff": 1e-4,
        "min_agreement": 1.0,
        "max_accuracy_drop": None,
        "min_confident_agreement": None,
    }


# --- 1. fail closed: every way of making a check vacuous exits 1 -----------------------------------


@pytest.mark.parametrize(
    "key, value, fragment",
    [
        ("tolerance", "anything-goes", "the manifest says tolerance 'anything-goes'"),
        ("tolerance", "int8", "the manifest says tolerance 'int8'"),
        ("quantization", "int8", "the manifest says quantization 'int8'"),
        ("quantization", "fp4", "the manifest says quantization 'fp4'"),
        ("format", "onnx", "the manifest says format 'onnx'"),
        ("source", {"file": "model.keras", "sha256": "b" * 64}, "exported from another model.keras"),
        ("source", {"file": "model.keras"}, "exported from another model.keras"),
    ],
)
def test_a_manifest_entry_never_chooses_its_own_limits(run, key, value, fragment):
    _edit_manifest(run, lambda m: m["artifacts"][FLOAT].update({key: value}))
    result = _verify(run, FLOAT)
    assert result.exit_code == 1 and f"✗ {FLOAT}" in result.output and fragment in result.output, result.output
    assert not json.loads((run / "parity.json").read_text())["artifacts"][FLOAT]["passed"]


@pytest.mark.parametrize("relabel", [False, True])
def test_a_float_file_replaced_by_other_bytes_and_rehashed_fails(run, relabel):
    """The issue's case: other bytes under the float name, the manifest re-hashed (and relabelled)."""
    (run / FLOAT).write_bytes((run / "model_dynamic.tflite").read_bytes())
    entry = {k: v for k, v in load_manifest(run)["artifacts"][FLOAT].items() if k not in ("sha256", "size_bytes")}
    if relabel:
        entry.update(quantization="dynamic", tolerance="dynamic")
    record_artifact(run, entry)
    result = _verify(run, FLOAT)
    assert result.exit_code == 1 and f"✗ {FLOAT} (float32)" in result.output, result.output
    assert not run_verdicts(run).verdicts[FLOAT].passed


def test_a_file_name_tk_does_not_export_is_judged_by_no_limit_so_fails(run):
    shutil.copyfile(run / "model.onnx", run / "mine.onnx")
    entry = {k: v for k, v in load_manifest(run)["artifacts"]["model.onnx"].items() if k != "sha256"}
    record_artifact(run, {**entry, "file": "mine.onnx"})
    result = _verify(run, "mine.onnx")
    assert result.exit_code == 1 and "mine.onnx: not a file name tk exports" in result.output


@pytest.mark.parametrize(
    "thresholds, fragment",
    [
        ({"float32": {"min_agreement": 0.0}}, "verify.thresholds.float32.min_agreement: must be in [0.5, 1]"),
        ({"float32": {"max_abs_diff": 1.0}}, "verify.thresholds.float32.max_abs_diff: must be in [0, 0.5]"),
        ({"float32": {"min_agreement": None, "max_abs_diff": None}}, "leaves no agreement check"),
        ({"float32": {"max_abs_diff": float("inf")}}, "must be a finite number"),
        ({"fp32": {"min_agreement": 0.9}}, "unknown kind 'fp32'"),
    ],
)
def test_recipe_limits_that_check_nothing_are_refused(run, thresholds, fragment):
    _edit_recipe(run, thresholds)
    assert_one_line_error(_verify(run, FLOAT), fragment)


def test_a_reference_that_is_not_the_trained_model_stops_verify_and_export(run):
    _edit_manifest(run, lambda m: m["artifacts"]["model.keras"].update(sha256="c" * 64))
    assert_one_line_error(_verify(run, FLOAT), "model.keras: sha256 differs from the one tk train recorded")
    result = runner.invoke(app, ["export", str(run), "--format", "onnx"])
    assert_one_line_error(result, "the model changed after training", "retrain it (tk train RECIPE)", "tk import")


# --- 2. verdicts bound to bytes: readers re-derive them ---------------------------------------------


def _change_and_rehash(run: Path, file: str) -> None:
    (run / file).write_bytes((run / file).read_bytes() + b"\0")
    _edit_manifest(run, lambda m: m["artifacts"][file].update(sha256=sha256_file(run / file)))


def _older_record(parity):
    for key in ("reference_sha256", "images_sha256", "split_sha256", "tk_version", "limits"):
        parity["artifacts"][FLOAT].pop(key)


TAMPERS = {
    "artifact changed and re-hashed": (
        lambda run: _change_and_rehash(run, FLOAT),
        "stale",
        "the file changed since tk verify judged it",
    ),
    "parity.json of another run": (
        lambda run: _edit_parity(run, lambda p: p["artifacts"][FLOAT].update(reference_sha256="d" * 64)),
        "stale",
        "judged against another model.keras",
    ),
    "passed beside 10% agreement": (
        lambda run: _edit_parity(run, lambda p: p["artifacts"][FLOAT].update(agreement=0.1, passed=True)),
        "failed",
        "its record says passed, but agreement 10.0% < 100.0%",
    ),
    "passed with its limits emptied": (
        lambda run: _edit_parity(run, lambda p: p["artifacts"][FLOAT].update(limits={})),
        "stale",
        "the limits changed since",
    ),
    "limits loosened since": (
        lambda run: _edit_recipe(run, {"float32": {"max_abs_diff": 0.1}}),
        "stale",
        "the limits changed since",
    ),
    "other images": (
        lambda run: _edit_parity(run, lambda p: p["artifacts"][FLOAT].update(split_sha256="e" * 64)),
        "stale",
        "judged on other images",
    ),
    "a record of an older tk": (lambda run: _edit_parity(run, _older_record), "not verified", "an older tk"),
    "no record at all": (
        lambda run: _edit_parity(run, lambda p: p["artifacts"].pop(FLOAT)),
        "not verified",
        "tk verify has not judged",
    ),
    "the file failed": (
        lambda run: _edit_parity(run, lambda p: p["artifacts"][FLOAT].update(passed=False, failures=["max diff"])),
        "failed",
        "max diff",
    ),
}


@pytest.mark.parametrize("tamper", TAMPERS)
def test_every_reader_re_derives_the_verdict(run, tmp_path, tamper):
    apply, status, reason = TAMPERS[tamper]
    apply(run)
    verdict = run_verdicts(run).verdicts[FLOAT]
    assert verdict.status == status and reason in verdict.reason, verdict
    text = write_report(run).read_text()
    assert "**Gate: ✗ failed**" in text.splitlines()[2]  # the gate's verdict at the top
    parity = text.split("## Parity")[1].split("\n## ")[0]
    parity_row = next(line for line in parity.splitlines() if line.startswith(f"| {FLOAT} |"))
    assert "✓" not in parity_row and status in parity_row
    result = runner.invoke(app, ["pack", str(run), str(tmp_path / "bundle")])
    assert_one_line_error(result, f"{FLOAT} ({status}", "--allow-unverified")
    assert not (tmp_path / "bundle").exists()


@pytest.mark.parametrize(
    "content, fragment",
    [
        (lambda p: p["artifacts"][FLOAT].update(passed="false"), "passed: must be true or false"),
        (lambda p: p["artifacts"][FLOAT].update(passed=1), "passed: must be true or false"),
        (lambda p: p["artifacts"].update({"../x.tflite": p["artifacts"][FLOAT]}), "must be a plain file name"),
    ],
)
def test_a_hand_edited_parity_json_is_one_line_in_report_and_pack(run, tmp_path, content, fragment):
    _edit_parity(run, content)
    assert_one_line_error(runner.invoke(app, ["report", str(run)]), "parity.json", fragment, "re-run tk verify")
    assert_one_line_error(runner.invoke(app, ["pack", str(run), str(tmp_path / "b")]), "parity.json", fragment)


def test_a_parity_json_linked_from_elsewhere_is_refused_and_never_written_through(run, exported_run, tmp_path):
    outside = tmp_path / "elsewhere.json"
    shutil.copyfile(exported_run / "parity.json", outside)
    before = outside.read_bytes()
    (run / "parity.json").unlink()
    (run / "parity.json").symlink_to(outside)
    assert_one_line_error(runner.invoke(app, ["report", str(run)]), "parity.json: a symbolic link")
    assert _verify(run, FLOAT).exit_code == 0  # verify replaces the link with its own file
    assert not (run / "parity.json").is_symlink() and outside.read_bytes() == before


# --- 3. the report: gate at the top, other models apart, text stays text ---------------------------


def _bench_file(run: Path, host: str, reference: str | None, rows_sha: str | None = None) -> dict:
    manifest = load_manifest(run)
    rows = [
        {
            "file": f,
            "format": e["format"],
            "quantization": e["quantization"],
            "threads": 1,
            "runs": 3,
            "warmup": 1,
            "batch": 2,
            "size_bytes": e["size_bytes"],
            "sha256": rows_sha or e["sha256"],
            "p50_ms": 1.0 + i,
            "p90_ms": 2.0,
            "p99_ms": 3.0,
            "throughput_ips": 10.0,
            "cold_start_s": 0.5,
            "peak_rss_mb": 50.0,
            "accuracy": 0.9,
            "test_count": 9,
            "machine": f"{host} (cpu, 4 cores)",
            "measured_at": "2026-01-01T00:00:00+00:00",
        }
        for i, (f, e) in enumerate(manifest["artifacts"].items())
        if f in ("model.onnx", FLOAT)
    ]
    machine = {"host": host, "cpu": "cpu", "cores": 4, "logical_cores": 4}
    return {"machine": machine, "rows": rows, "reference_sha256": reference, "notes": []}


def test_merge_keeps_another_models_rows_apart_unless_mixed(run, tmp_path):
    reference = run_verdicts(run).reference_sha256
    (run / "bench.json").write_text(json.dumps(_bench_file(run, "laptop", reference)))
    pi = tmp_path / "pi.json"
    pi.write_text(json.dumps(_bench_file(run, "pi", reference)))
    other = tmp_path / "other-model.json"
    other.write_text(json.dumps(_bench_file(run, "otherpi", "f" * 64, rows_sha="f" * 64)))
    older = tmp_path / "older-tk.json"  # no reference recorded, and rows of other bytes: another model
    older.write_text(json.dumps(_bench_file(run, "oldpi", None, rows_sha="a" * 64)))
    result = runner.invoke(app, ["report", str(run), "--merge", str(pi), "--merge", str(other), "--merge", str(older)])
    assert result.exit_code == 0, result.output
    bench = (run / REPORT).read_text().split("## Bench")[1]
    main, apart = bench.split("### Another model", 1)
    assert "| pi (cpu, 4 cores) | model.onnx |" in main and "otherpi" not in main and "oldpi" not in main
    assert "otherpi (cpu, 4 cores)" in apart and "oldpi" in apart and "--mix-models" in apart
    assert "| ✓ passed |" in main
    result = runner.invoke(app, ["report", str(run), "--merge", str(other), "--mix-models"])
    bench = (run / REPORT).read_text().split("## Bench")[1]
    assert result.exit_code == 0 and "| otherpi (cpu, 4 cores) | model.onnx |" in bench and "? stale" in bench
    assert "may mix rows of other models" in (run / REPORT).read_text()


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (lambda b: b.update(rows=["model.onnx 1.2 ms"]), "rows[0]: must be an object"),
        (lambda b: b.update(other_rows="none"), "other_rows: must be a list"),
        (lambda b: b.update(machines=["pi"]), "machines: must map"),
        (lambda b: b["rows"][0].update(p50_ms=float("nan")), "holds NaN"),
        (lambda b: b["rows"][0].update(threads=10**12), "threads: must be between 1 and"),
    ],
)
def test_hostile_merge_files_are_one_line_and_change_nothing(run, tmp_path, edit, fragment):
    bench = _bench_file(run, "pi", None)
    edit(bench)
    path = tmp_path / "pi.json"
    path.write_text(json.dumps(bench))
    assert_one_line_error(runner.invoke(app, ["report", str(run), "--merge", str(path)]), "pi.json", fragment)
    assert not (run / REPORT).exists()
    path.unlink()
    path.mkdir()
    assert_one_line_error(runner.invoke(app, ["report", str(run), "--merge", str(path)]), "a folder")


@pytest.mark.parametrize(
    "file, content, fragment",
    [
        ("metrics.json", {"test": {"accuracy": "high"}}, "test.accuracy: must be a number"),
        ("metrics.json", {"test": {"accuracy": 0.5, "per_class": []}}, "per_class: must map"),
        ("phases/scratch/history.json", {"val_accuracy": "0.9"}, "must be a list"),
        ("phases/scratch/history.json", [1, 2], "must map metric names"),
        ("manifest.json", None, "classes: must be a list"),
    ],
)
def test_report_on_hand_edited_run_files_is_one_line(run, file, content, fragment):
    if file == "manifest.json":
        _edit_manifest(run, lambda m: m.update(classes="circle,square,triangle"))
    else:
        (run / file).write_text(json.dumps(content))
    assert_one_line_error(runner.invoke(app, ["report", str(run)]), file.split("/")[-1], fragment)


def test_names_from_run_files_stay_text_in_the_report_and_its_plot(run):
    hostile = ["a|b <script>alert(1)</script>", "![x](http://evil.example/x.png)", "c $\\frac{1}{$ `code`"]
    _edit_manifest(run, lambda m: m.update(classes=hostile))
    metrics = json.loads((run / "metrics.json").read_text())
    per_class = list(metrics["test"]["per_class"].values())
    metrics["test"]["per_class"] = dict(zip(hostile, per_class, strict=True))
    (run / "metrics.json").write_text(json.dumps(metrics))
    bench = _bench_file(run, "evil $\\frac{$ | host <b>", run_verdicts(run).reference_sha256)
    bench["notes"] = ["![track](http://evil.example/t.png) | note"]
    (run / "bench.json").write_text(json.dumps(bench))
    result = runner.invoke(app, ["report", str(run)])
    assert result.exit_code == 0, result.output
    text = (run / REPORT).read_text()
    assert "script" in text and not re.search(r"(?<!\\)<", text.replace("](<", "](")), text  # no raw HTML
    assert not re.search(r"(?<!\\)\]\(http", text)  # no link or image to elsewhere
    for table in re.findall(r"(?:^\|.*\n)+", text, flags=re.M):  # no cell split in two by a name
        widths = {len(re.split(r"(?<!\\)\|", row)) for row in table.splitlines()}
        assert len(widths) == 1, table
    assert (run / "bench_latency_accuracy.png").stat().st_size > 0


# --- 4. pack: only what passed, the chain, the device's own loader ---------------------------------


def test_pack_ships_only_passed_artifacts_and_allow_unverified_records_the_rest(run, tmp_path):
    _edit_parity(run, lambda p: p["artifacts"]["model_int8.onnx"].update(passed=False, failures=["agreement 86%"]))
    result = runner.invoke(app, ["pack", str(run), str(tmp_path / "refused")])
    assert_one_line_error(result, "model_int8.onnx (failed: agreement 86%)", "--artifact model_float32.tflite")
    assert not (tmp_path / "refused").exists()

    bundle = tmp_path / "bundle"
    result = runner.invoke(app, ["pack", str(run), str(bundle), "--allow-unverified", "--samples", "6"])
    assert result.exit_code == 0, result.output
    assert "note: model_int8.onnx: packed unverified (failed: agreement 86%)" in result.output
    manifest = load_manifest(bundle)
    reference = run_verdicts(run).reference_sha256
    assert manifest["bundle"]["reference_sha256"] == reference and manifest["bundle"]["checkset"] > 0
    for file, entry in manifest["artifacts"].items():
        chain = entry["chain"]
        assert chain["reference_sha256"] == reference and chain["artifact_sha256"] == entry["sha256"]
        assert chain["parity"]["sha256"] == entry["sha256"] and chain["parity"]["reference_sha256"] == reference
        assert entry["verified"] is (file != "model_int8.onnx")
    assert manifest["artifacts"]["model_int8.onnx"]["verdict"] == "failed: agreement 86%"
    assert (bundle / "checkset" / "pixels.u8").is_file() and (bundle / "checkset" / "checkset.json").is_file()
    image = next((bundle / "samples").rglob("*.jpg"))
    said = runner.invoke(app, ["predict", str(bundle / "model_int8.onnx"), str(image)])
    assert said.exit_code == 0 and "warning: model_int8.onnx was packed without passing tk verify" in said.output
    quiet = runner.invoke(app, ["predict", str(bundle / "model.onnx"), str(image)])
    assert quiet.exit_code == 0 and "warning" not in quiet.output


@pytest.mark.parametrize(
    "edit, fragment",
    [
        (lambda m: m.update(classes=m["classes"][:2]), "the device would refuse this bundle"),
        (lambda m: m["preprocessing"].update(size=[40, 40]), "the device would refuse this bundle"),
        (lambda m: m.update(classes="circle,square,triangle"), "classes: must be a list"),
        (lambda m: m["preprocessing"].update(size=[100_000, 100_000]), "must be between 1 and 4096"),
    ],
)
def test_pack_refuses_a_bundle_the_device_would_refuse(run, tmp_path, edit, fragment):
    _edit_manifest(run, edit)
    result = runner.invoke(app, ["pack", str(run), str(tmp_path / "bundle"), "--format", "onnx", "--json"])
    assert_one_line_error(result, fragment)
    assert not (tmp_path / "bundle").exists() and not list(tmp_path.glob(".bundle*"))


def test_the_ship_pick_takes_only_passed_artifacts_and_names_the_others(run):
    from toolkit.edge.bench import bench_targets

    _edit_parity(run, lambda p: p["artifacts"]["model_int8.onnx"].update(passed=False, failures=["agreement 86%"]))
    files = [str(run / "model_int8.onnx"), str(run / "model.onnx")]
    settings = {"threads": (1,), "runs": 2, "warmup": 0, "batch": 2}
    result = bench_targets(files, run.parent, settings, max_latency_ms=1e9)
    assert result["ship"]["file"] == "model.onnx" and result["ship"]["among"] == 1
    assert result["ship"]["skipped"] == ["model_int8.onnx: failed (agreement 86%)"]
    rows = {r["file"]: r["parity"] for r in result["reports"][0]["rows"]}
    assert rows == {"model_int8.onnx": "failed", "model.onnx": "passed"}
    out = runner.invoke(
        app, ["bench", files[0], "--threads", "1", "--runs", "2", "--warmup", "0", "--max-latency-ms", "1e9", "--json"]
    )
    assert_one_line_error(out, "no artifact meets the limits", "did not pass tk verify", "model_int8.onnx: failed")
