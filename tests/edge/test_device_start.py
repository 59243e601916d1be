"""What the device path imports when a user runs it: `tk predict` on a .tflite and a .onnx,
`tk verify BUNDLE` and `tk bench` on a bundle's model, each through the console script in a fresh
process (not a terminal: no progress bars), with the modules loaded at exit written down.

Typer, click, rich and pydantic (Typer coerces parameters through it) cost more than a whole
one-image prediction; the recipe machinery (YAML) and TensorFlow have no place on a device. A new
import anywhere on the path shows up here first (benchmarks/BENCHMARKS.md, "Device CLI start").
"""

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
from toolkit.core.runs import load_split
from toolkit.edge.pack import pack

pytestmark = pytest.mark.edge

ROOT = Path(__file__).resolve().parents[2]
FORBIDDEN = ("pydantic", "typer", "click", "rich", "tensorflow", "keras", "yaml", "toolkit.core.recipe")
# The console script as pip writes it, plus the modules loaded at exit into the file TK_MODULES names.
SCRIPT = (
    "import atexit, json, os, sys\n"
    "atexit.register(lambda: open(os.environ['TK_MODULES'], 'w').write(json.dumps(sorted(sys.modules))))\n"
    "sys.argv[0] = 'tk'\n"
    "from toolkit.cli.launch import main\n"
    "sys.exit(main())\n"
)


def run_tk(args: list[str], modules: Path) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "TK_MODULES": str(modules)}
    return subprocess.run(
        [sys.executable, "-c", SCRIPT, *args], capture_output=True, text=True, env=env, timeout=120, check=False
    )


def forbidden_in(modules: Path, allowed: tuple[str, ...] = ()) -> list[str]:
    loaded = json.loads(modules.read_text())
    banned = [f for f in FORBIDDEN if f not in allowed]
    return [m for m in loaded if any(m == f or m.startswith(f + ".") for f in banned)]


@pytest.fixture(scope="module")
def packed(device_run, tmp_path_factory) -> Path:
    target = tmp_path_factory.mktemp("device") / "bundle"
    pack(device_run, target, samples=6)
    return target


@pytest.mark.parametrize("artifact", ["model_float32.tflite", "model.onnx"])
def test_predict_imports_no_cli_framework_no_recipe_no_tensorflow(device_run, tmp_path, artifact):
    image = load_split(device_run / "split.json").paths("test")[0]
    args = ["predict", str(device_run / artifact), str(image), "--top-k", "2"]
    proc = run_tk(args, tmp_path / "modules.json")
    assert proc.returncode == 0, proc.stderr
    assert forbidden_in(tmp_path / "modules.json") == []
    typer_path = CliRunner().invoke(app, args)  # the same command through the Typer app
    assert typer_path.exit_code == 0 and proc.stdout == typer_path.stdout


def test_a_predict_error_is_one_line_without_the_cli_framework(device_run, tmp_path):
    proc = run_tk(["predict", str(device_run / "model_float32.tflite"), str(tmp_path / "no.jpg")], tmp_path / "m.json")
    assert proc.returncode == 1 and proc.stdout == ""
    assert proc.stderr.splitlines() == [
        f"error: {tmp_path / 'no.jpg'}: no such file or folder; pass image files or folders of images"
    ]
    assert forbidden_in(tmp_path / "m.json") == []


def test_version_imports_nothing_of_the_cli_framework(tmp_path):
    proc = run_tk(["--version"], tmp_path / "modules.json")
    assert proc.returncode == 0 and proc.stdout.startswith("tk ")
    assert forbidden_in(tmp_path / "modules.json") == []


def test_verify_bundle_and_bench_import_no_cli_framework_no_recipe(packed, tmp_path):
    bundle = Path(shutil.copytree(packed, tmp_path / "bundle"))
    proc = run_tk(["verify", str(bundle)], tmp_path / "verify.json")
    assert proc.returncode == 0, proc.stderr
    assert "✓ model_float32.tflite (float32)" in proc.stdout
    assert forbidden_in(tmp_path / "verify.json") == []

    args = ["bench", str(bundle / "model_float32.tflite"), "--threads", "1", "--runs", "2", "--warmup", "0"]
    proc = run_tk([*args, "--batch", "2"], tmp_path / "bench.json")
    assert proc.returncode == 0, proc.stderr
    assert "model_float32.tflite" in proc.stdout and "device parity on this machine" in proc.stdout
    assert forbidden_in(tmp_path / "bench.json", allowed=("rich",)) == []  # rich draws the table
