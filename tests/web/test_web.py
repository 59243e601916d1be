"""The browser as a verified target, for real: tk pack --web, tk verify --web on MediaPipe, LiteRT.js and
onnxruntime-web, a tampered artifact that fails, a 10-run bench, and the page a person sees."""

from __future__ import annotations

import json
import os
import re
import shutil
from pathlib import Path

import pytest
from helpers import WEB_ARTIFACTS, assert_one_line_error
from typer.testing import CliRunner

from toolkit.cli.app import app

pytestmark = pytest.mark.web
runner = CliRunner()


def linked_copy(bundle: Path, target: Path) -> Path:
    """A copy of the bundle whose files are hard links (the runtimes are ~50 MB): replace, never edit, a file."""
    shutil.copytree(bundle, target, copy_function=os.link)
    return target


def test_pack_web_writes_a_static_site(web_bundle):
    web = json.loads((web_bundle / "web.json").read_text())
    pairs = {(m["file"], m["runtime"]) for m in web["models"]}
    assert pairs == {
        ("model_float32.tflite", "mediapipe"),
        ("model_float32.b1.tflite", "litert"),
        ("model_int8.tflite", "mediapipe"),
        ("model_int8.b1.tflite", "litert"),
        ("model.onnx", "onnxruntime"),
        ("model_int8.onnx", "onnxruntime"),
    }
    versions = {k: r["version"] for k, r in web["runtimes"].items()}
    assert versions == {"mediapipe": "1.1.0", "onnxruntime": "1.31.1", "litert": "2.5.3"}
    for entry in web["runtimes"].values():  # every file the page loads is in the bundle
        assert (web_bundle / entry["module"]).is_file() and (web_bundle / entry["wasm"]).is_dir()
    manifest = json.loads((web_bundle / "manifest.json").read_text())
    assert set(manifest["artifacts"]) == set(WEB_ARTIFACTS)  # the batch-1 copies are not artifacts of their own
    copies = manifest["bundle"]["web"]["batch1"]
    assert copies["model_int8.b1.tflite"]["of"] == "model_int8.tflite"
    assert (web_bundle / "checkset" / "checkset.json").is_file()  # tk pack's device check set
    page = (web_bundle / "index.html").read_text()
    assert '"@litertjs/wasm-utils": "./runtime/litert-wasm-utils/dist/index.js"' in page


def test_verify_web_passes_and_records_the_browser_target(web_bundle):
    result = runner.invoke(app, ["verify", str(web_bundle), "--web"])
    assert result.exit_code == 0, result.output
    assert result.output.count("✓") == 6 and "✗" not in result.output
    target = json.loads((web_bundle / "device_parity.json").read_text())["targets"]["browser"]
    assert re.fullmatch(r"\d+(\.\d+)+", target["versions"]["chromium"])
    assert target["versions"]["mediapipe"] == "1.1.0" and target["versions"]["onnxruntime"] == "1.31.1"
    assert target["cross_origin_isolated"] is True
    for runtime in ("mediapipe", "litert", "onnxruntime"):
        assert target["runtimes"][runtime]["simd"] is True and target["runtimes"][runtime]["threads"] >= 1
    assert target["passed"] and len(target["artifacts"]) == 6
    mediapipe = target["artifacts"]["model_float32.tflite"]
    assert mediapipe["runtime"] == "mediapipe" and mediapipe["max_abs_diff"] < 1e-4 and mediapipe["agreement"] == 1.0
    onnx = target["artifacts"]["model.onnx"]
    assert onnx["sha256"] == onnx["manifest_sha256"] and onnx["kind"] == "float32"
    assert target["checkset"]["count"] > 0


def test_a_tampered_artifact_fails_in_the_browser(web_bundle, tmp_path):
    import numpy as np
    import onnx
    from onnx import numpy_helper

    bundle = linked_copy(web_bundle, tmp_path / "tampered")
    model = onnx.load(bundle / "model.onnx")
    biggest = max(model.graph.initializer, key=lambda t: int(np.prod(t.dims)))
    weights = numpy_helper.to_array(biggest)
    biggest.CopyFrom(numpy_helper.from_array(-weights, biggest.name))  # the same graph, other answers
    (bundle / "model.onnx").unlink()  # a hard link: replace, never write through
    onnx.save(model, bundle / "model.onnx")
    result = runner.invoke(app, ["verify", str(bundle), "--web", "--artifact", "model.onnx"])
    assert result.exit_code == 1, result.output
    assert "✗ model.onnx on onnxruntime" in result.output and "sha256 differs" in result.output
    verdict = json.loads((bundle / "device_parity.json").read_text())["targets"]["browser"]["artifacts"]["model.onnx"]
    assert not verdict["passed"] and verdict["sha256"] != verdict["manifest_sha256"]


def test_bench_web_ten_runs_with_the_native_ratio(web_bundle):
    result = runner.invoke(app, ["bench", str(web_bundle), "--web", "--runs", "10", "--warmup", "2", "--json"])
    assert result.exit_code == 0, result.output
    rows = json.loads(result.output)["rows"]
    assert {r["file"] for r in rows} >= {"model_float32.tflite", "model_float32.b1.tflite", "model.onnx"}
    for row in rows:
        assert re.fullmatch(r"browser \(Chromium \d+, wasm SIMD, \d threads?\)", row["machine"]), row["machine"]
        assert row["runs_measured"] == 10 and row["p50_ms"] > 0 and row["native_p50_ms"] > 0
        assert row["ratio"] == pytest.approx(row["p50_ms"] / row["native_p50_ms"])
        assert row["accuracy"] is not None
    assert json.loads((web_bundle / "bench.json").read_text())["rows"]


def test_the_page_shows_the_top_class(web_bundle, tmp_path):
    import numpy as np
    from PIL import Image

    from toolkit.edge.predict import predict
    from toolkit.web.chromium import capture
    from toolkit.web.server import BundleServer

    sample = sorted((web_bundle / "samples").rglob("*.jpg"))[0]
    expected = predict(web_bundle / "model_float32.tflite", [sample])[0].top[0][0]
    png = tmp_path / "page.png"
    with BundleServer(web_bundle) as server:
        url = f"{server.url}index.html?image={sample.relative_to(web_bundle).as_posix()}"
        dom = capture(url, png, ready="document.body.dataset.top")
    assert f'data-top="{expected}"' in dom
    assert re.search(rf'<li><span class="name">{re.escape(expected)}</span>', dom)  # first in the list
    image = Image.open(png)
    assert image.format == "PNG" and image.size == (900, 560)
    # The top score's bar (#36c) is drawn: the page rendered a classification, not a blank page.
    rgb = np.asarray(image.convert("RGB"))
    assert int((rgb == (0x33, 0x66, 0xCC)).all(axis=2).sum()) > 500


def test_verify_web_on_a_plain_bundle_is_one_line(device_run, tmp_path):
    result = runner.invoke(app, ["pack", str(device_run), str(tmp_path / "plain"), "--samples", "0"])
    assert result.exit_code == 0, result.output
    assert_one_line_error(runner.invoke(app, ["verify", str(tmp_path / "plain"), "--web"]), "web.json", "--web")


def test_the_page_works_offline_once_loaded(web_bundle, tmp_path):
    """sw.js caches what web.json lists while the page is open; with the server gone, the same
    origin still loads the page and its model (Chromium's profile is kept between the two runs)."""
    import time

    from toolkit.web.chromium import capture, headless
    from toolkit.web.server import BundleServer

    offline = json.loads((web_bundle / "web.json").read_text())["offline"]
    wanted = {"/" + f.removeprefix("./") for f in offline}
    assert {"/index.html", "/tk.js", "/model_float32.tflite", "/web.json"} <= wanted
    profile = tmp_path / "profile"
    with BundleServer(web_bundle) as server:
        with headless(server.url + "index.html", profile=profile):
            deadline = time.monotonic() + 120
            while not wanted <= set(server.harness.served) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert wanted <= set(server.harness.served), sorted(wanted - set(server.harness.served))
            time.sleep(2)  # the worker writes what it fetched into its cache
        port = server.httpd.server_address[1]
    # Nothing listens there now: the page, its runtime and its model come from the worker's cache.
    loaded = "document.getElementById('status').textContent.includes('loaded in')"
    dom = capture(f"http://127.0.0.1:{port}/index.html", tmp_path / "offline.png", ready=loaded, profile=profile)
    assert re.search(r'id="status">model_float32\.tflite on mediapipe [\d.]+ \(wasm SIMD', dom), dom[-500:]
