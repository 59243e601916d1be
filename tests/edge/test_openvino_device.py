"""The OpenVINO IR on the device path: opened by the edge predictor with TensorFlow absent, the
[openvino] extra named in one line when OpenVINO is missing, and the .bin checked against the manifest.

The IR here is built with OpenVINO's own opset (no TensorFlow, so it runs on the base install + the
[openvino] extra as well): a fixed linear classifier over the image's mean colour.
"""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_one_line_error
from typer.testing import CliRunner

from toolkit.cli.app import app

pytestmark = pytest.mark.edge
pytest.importorskip("openvino")
NO_TF = "import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
CLASSES = ["red", "green", "blue"]
runner = CliRunner()


@pytest.fixture()
def ir_run(tmp_path) -> Path:
    """A run folder with model_float32.xml/.bin (mean RGB -> softmax), recorded like tk export does."""
    import openvino.opset13 as ops

    from toolkit.core.io import write_json_atomic
    from toolkit.core.runs import record_artifact
    from toolkit.edge.openvino import import_openvino

    ov = import_openvino()
    image = ops.parameter([-1, 16, 16, 3], np.float32, name="image")
    mean = ops.reduce_mean(image, [1, 2], keep_dims=False)
    logits = ops.matmul(mean, ops.constant(np.eye(3, dtype=np.float32) / 16.0), False, False)
    ov.save_model(ov.Model([ops.result(ops.softmax(logits, 1))], [image]), str(tmp_path / "model_float32.xml"))
    write_json_atomic(
        tmp_path / "manifest.json",
        {"name": "ir", "classes": CLASSES, "preprocessing": {"size": [16, 16]}, "artifacts": {}},
    )
    record_artifact(tmp_path, {"file": "model_float32.xml", "format": "openvino", "quantization": "none"})
    from PIL import Image

    Image.new("RGB", (16, 16), (250, 10, 10)).save(tmp_path / "red.png")
    return tmp_path


def test_an_ir_predicts_without_tensorflow_and_says_what_ran(ir_run):
    code = NO_TF + (
        "import json; from toolkit.edge.predict import predict; from toolkit.edge.predictors import load_predictor\n"
        f"p = load_predictor({str(ir_run / 'model_float32.xml')!r}, num_threads=1)\n"
        f"top = predict({str(ir_run / 'model_float32.xml')!r}, [{str(ir_run / 'red.png')!r}], threads=1)[0].top[0]\n"
        "tf = sys.modules.get('tensorflow') is not None\n"
        "print(json.dumps({'top': top[0], 'info': p.runtime_info(), 'tf': tf}))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["top"] == "red" and not result["tf"]
    assert result["info"]["inference_precision"] == "f32" and result["info"]["threads"] == 1


def test_without_openvino_opening_an_ir_names_the_extra(ir_run):
    code = (
        "import sys; sys.modules['openvino'] = None\n"
        "from typer.testing import CliRunner; from toolkit.cli.app import app\n"
        f"args = ['predict', {str(ir_run / 'model_float32.xml')!r}, {str(ir_run / 'red.png')!r}]\n"
        "r = CliRunner().invoke(app, args)\n"
        "print(r.exit_code); print(r.output)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    lines = [line for line in out.stdout.splitlines() if line.strip()]
    assert lines[0] == "1" and len(lines) == 2, out.stdout + out.stderr
    assert lines[1].startswith("error: OpenVINO is not installed") and "pip install 'tk-edge[openvino]'" in lines[1]


def test_a_changed_bin_or_one_without_a_recorded_hash_is_refused(ir_run):
    weights = ir_run / "model_float32.bin"
    weights.write_bytes(weights.read_bytes()[:-4] + b"\0\0\0\0")
    result = runner.invoke(app, ["predict", str(ir_run / "model_float32.xml"), str(ir_run / "red.png")])
    assert_one_line_error(result, "model_float32.bin: sha256 differs")
    manifest = json.loads((ir_run / "manifest.json").read_text())
    del manifest["artifacts"]["model_float32.xml"]["companions"]
    (ir_run / "manifest.json").write_text(json.dumps(manifest))
    result = runner.invoke(app, ["predict", str(ir_run / "model_float32.xml"), str(ir_run / "red.png")])
    assert_one_line_error(result, "no sha256 recorded for model_float32.bin")
