"""`tk verify BUNDLE` on the base install: the bundle's check set runs on this machine's runtime with
TensorFlow unimportable; it passes on a packed run, fails on a tampered artifact or check set,
records device_parity.json (runtime, versions, CPU flags) and `tk bench BUNDLE` shows it."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_one_line_error
from typer.testing import CliRunner

from toolkit.cli.app import app
from toolkit.core.io import sha256_file
from toolkit.core.runs import load_manifest, save_manifest
from toolkit.edge.checkset import CHECKSET_DIR, load_checkset
from toolkit.edge.device_verify import DEVICE_PARITY
from toolkit.edge.machine import cpu_flags, machine_info, machine_label
from toolkit.edge.pack import pack

runner = CliRunner()
NO_TF = "import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
FLOAT = "model_float32.tflite"


@pytest.fixture(scope="module")
def packed(device_run, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("device") / "bundle"
    pack(device_run, target, samples=6)
    return target


@pytest.fixture
def bundle(packed, tmp_path) -> Path:
    return Path(shutil.copytree(packed, tmp_path / "pi" / "bundle"))


def _tk(*args: str, cwd: Path) -> subprocess.CompletedProcess:
    """tk in a fresh process where importing TensorFlow or Keras fails, as on the device."""
    code = NO_TF + "from toolkit.cli.app import app\napp(sys.argv[1:])\n"
    return subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, timeout=600, cwd=cwd)


@pytest.mark.edge
def test_the_check_set_is_decoded_pixels_with_the_reference_probabilities(packed, device_run):
    manifest = load_manifest(packed)
    meta, pixels = load_checkset(packed / CHECKSET_DIR, manifest)
    size = manifest["preprocessing"]["size"]
    assert pixels.shape == (meta["count"], *size, 3) and meta["count"] == min(32, meta["count"]) > 0
    raw = (packed / CHECKSET_DIR / "pixels.u8").read_bytes()
    assert len(raw) == meta["count"] * size[0] * size[1] * 3 and pixels.dtype == np.float32
    assert meta["reference_sha256"] == manifest["bundle"]["reference_sha256"] == sha256_file(device_run / "model.keras")
    probs = np.asarray(meta["probabilities"])
    assert probs.shape == (meta["count"], len(manifest["classes"])) and np.allclose(probs.sum(axis=1), 1, atol=1e-4)
    assert meta["classes"] == manifest["classes"] and len(set(meta["labels"])) == len(manifest["classes"])


@pytest.mark.edge
def test_verify_bundle_passes_here_without_tensorflow_and_bench_shows_it(bundle, tmp_path):
    proc = _tk("verify", str(bundle), "--json", cwd=tmp_path)
    assert proc.returncode == 0, proc.stderr[-3000:]
    report = json.loads(proc.stdout)
    label = machine_label(machine_info())
    assert report["target"] == label and report["passed"] and report["cpu_flags"] == cpu_flags()
    assert set(report["artifacts"]) == set(load_manifest(bundle)["artifacts"])
    for file, result in report["artifacts"].items():
        assert result["passed"], (file, result)
        assert result["runtime"].split()[0] in ("ai-edge-litert", "tflite-runtime", "onnxruntime")
        assert result["sha256"] == sha256_file(bundle / file) and result["images_sha256"]
    recorded = json.loads((bundle / DEVICE_PARITY).read_text())
    assert recorded["format"] == 1 and recorded["targets"][label]["passed"]
    proc = _tk("verify", str(bundle), cwd=tmp_path)
    assert proc.returncode == 0 and f"✓ {FLOAT} (float32): max diff: " in proc.stdout
    assert "CPU flags:" in proc.stdout and ("[ai-edge-litert" in proc.stdout or "[tflite-runtime" in proc.stdout)

    proc = _tk(
        "bench", str(bundle / FLOAT), "--threads", "1", "--runs", "2", "--warmup", "0", "--batch", "2", cwd=tmp_path
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "device parity on this machine" in proc.stdout and "all passed" in proc.stdout
    assert "✓ passed" in proc.stdout


@pytest.mark.edge
def test_a_browser_result_beside_is_kept(bundle, tmp_path):
    (bundle / DEVICE_PARITY).write_text(json.dumps({"format": 1, "targets": {"browser": {"artifacts": {}}}}))
    result = runner.invoke(app, ["verify", str(bundle)])
    assert result.exit_code == 0, result.output
    targets = json.loads((bundle / DEVICE_PARITY).read_text())["targets"]
    assert set(targets) == {"browser", machine_label(machine_info())}


def _rehash(bundle: Path, file: str) -> None:
    manifest = load_manifest(bundle)
    manifest["artifacts"][file]["sha256"] = sha256_file(bundle / file)
    save_manifest(bundle, manifest)


@pytest.mark.edge
@pytest.mark.parametrize("rehash", [False, True], ids=["bytes-changed", "replaced-and-rehashed"])
def test_a_tampered_artifact_fails_on_the_device(bundle, tmp_path, rehash):
    if rehash:  # other bytes under the float name, the bundle's manifest made to match them
        (bundle / FLOAT).write_bytes((bundle / "model_int8.tflite").read_bytes())
        _rehash(bundle, FLOAT)
    else:
        data = bytearray((bundle / FLOAT).read_bytes())
        data[len(data) // 2] ^= 0xFF
        (bundle / FLOAT).write_bytes(bytes(data))
    proc = _tk("verify", str(bundle), cwd=tmp_path)
    assert proc.returncode == 1 and "Traceback" not in proc.stderr, proc.stderr[-3000:]
    assert f"✗ {FLOAT}" in proc.stdout and "fail parity on this device" in proc.stderr
    assert ("sha256 differs" in proc.stdout) != rehash
    target = json.loads((bundle / DEVICE_PARITY).read_text())["targets"][machine_label(machine_info())]
    assert not target["passed"] and not target["artifacts"][FLOAT]["passed"]
    assert all(r["passed"] for f, r in target["artifacts"].items() if f != FLOAT)
    result = runner.invoke(app, ["bench", str(bundle / FLOAT), "--threads", "1", "--runs", "2", "--warmup", "0"])
    # bench on the device: other bytes than the manifest's are refused; re-hashed ones show the verdict
    shown = "? stale" in result.output and "the file changed since tk verify" in result.output
    assert shown if rehash else ("sha256 differs" in result.output), result.output


@pytest.mark.edge
@pytest.mark.parametrize(
    "damage, fragment",
    [
        (lambda b: (b / CHECKSET_DIR / "pixels.u8").write_bytes(b"\0" * 10), "bytes, but checkset.json says"),
        (lambda b: _flip(b / CHECKSET_DIR / "pixels.u8"), "pixels.u8: sha256 differs"),
        (lambda b: shutil.rmtree(b / CHECKSET_DIR), "no check set"),
        (lambda b: _json_edit(b / CHECKSET_DIR / "checkset.json", reference_sha256="0" * 64), "another model"),
        (lambda b: _json_edit(b / CHECKSET_DIR / "checkset.json", labels="0,1"), "labels: must be a list"),
        (
            lambda b: _json_edit(b / CHECKSET_DIR / "checkset.json", classes=["a", "b", "c"]),
            "the manifest's model takes",
        ),
        (
            lambda b: _json_edit(b / "manifest.json", verify={"thresholds": {"int8": {"min_agreement": 0}}}),
            "min_agreement: must be in",
        ),
    ],
)
def test_a_damaged_check_set_fails_closed(bundle, damage, fragment):
    damage(bundle)
    assert_one_line_error(runner.invoke(app, ["verify", str(bundle)]), fragment)


def _flip(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[0] ^= 0xFF
    path.write_bytes(bytes(data))


def _json_edit(path: Path, **changes) -> None:
    data = json.loads(path.read_text())
    data.update(changes)
    path.write_text(json.dumps(data))


@pytest.mark.edge
def test_options_for_a_run_are_refused_for_a_bundle(bundle):
    assert_one_line_error(runner.invoke(app, ["verify", str(bundle), "--artifact", FLOAT]), "not for a bundle")
