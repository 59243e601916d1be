"""Where the browser runtimes come from: tk's lockfile (npm ci into a cache keyed by it), or pinned
CDN URLs with integrity hashes; no npm and no --cdn is one line. No browser needed here."""

from __future__ import annotations

import json

import pytest
from helpers import assert_one_line_error
from typer.testing import CliRunner

from toolkit.cli.app import app
from toolkit.web import runtime

runner = CliRunner()


def test_the_lockfile_pins_the_runtimes():
    assert runtime.lock_versions() == {
        "@mediapipe/tasks-vision": "1.1.0",
        "onnxruntime-web": "1.31.1",
        "@litertjs/core": "2.5.3",
        "@litertjs/wasm-utils": "2.5.3",
    }
    lock = json.loads(runtime.LOCKFILE.read_text())
    assert all("integrity" in p for name, p in lock["packages"].items() if name)  # npm ci checks every tarball


def test_the_cache_is_keyed_by_the_lockfile(monkeypatch, tmp_path):
    monkeypatch.setenv("TK_WEB_CACHE", str(tmp_path))
    assert runtime.installed_modules() is None
    (tmp_path / runtime.lock_hash() / "node_modules").mkdir(parents=True)
    assert runtime.installed_modules() is None  # not marked complete: a killed npm ci is not a cache
    (tmp_path / runtime.lock_hash() / ".complete").write_text("")
    assert runtime.installed_modules() == tmp_path / runtime.lock_hash() / "node_modules"


@pytest.mark.edge
def test_no_npm_and_no_cdn_is_one_line(device_run, monkeypatch, tmp_path):
    monkeypatch.setenv("TK_WEB_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(runtime.shutil, "which", lambda name: None)
    result = runner.invoke(app, ["pack", str(device_run), str(tmp_path / "web"), "--web"])
    assert_one_line_error(result, "npm", "--cdn")
    assert not (tmp_path / "web").exists()


@pytest.mark.edge
def test_cdn_bundle_pins_urls_with_integrity(device_run, monkeypatch, tmp_path):
    monkeypatch.setenv("TK_WEB_CACHE", str(tmp_path / "cache"))  # empty: --cdn needs no npm
    monkeypatch.setattr(runtime.shutil, "which", lambda name: None)
    args = ["pack", str(device_run), str(tmp_path / "web"), "--web", "--cdn", "--samples", "0"]
    result = runner.invoke(app, args + ["--artifact", "model_float32.tflite"])
    assert result.exit_code == 0, result.output
    assert not (tmp_path / "web" / "runtime").exists()
    web = json.loads((tmp_path / "web" / "web.json").read_text())
    mediapipe = web["runtimes"]["mediapipe"]
    assert mediapipe["module"] == "https://cdn.jsdelivr.net/npm/@mediapipe/tasks-vision@1.1.0/vision_bundle.mjs"
    page = (tmp_path / "web" / "index.html").read_text()
    import_map = json.loads(page.split('<script type="importmap">')[1].split("</script>")[0])
    assert import_map["integrity"][mediapipe["module"]] == mediapipe["integrity"]
    assert mediapipe["integrity"].startswith("sha384-")
    assert_one_line_error(runner.invoke(app, ["verify", str(tmp_path / "web"), "--web"]), "CDN")


@pytest.mark.web
def test_cdn_hashes_match_the_npm_files(chromium):
    modules = runtime.ensure_installed(lambda _: None)
    hashes = json.loads(runtime.CDN_HASHES.read_text())
    assert hashes["lock"] == runtime.lock_hash()
    for package in runtime.PACKAGES:
        for file in package.files:
            assert hashes["files"][f"{package.npm}/{file}"] == runtime.sri(modules / package.npm / file)


def test_no_chromium_is_one_line_naming_the_package(monkeypatch, tmp_path):
    from toolkit.core.errors import TkError
    from toolkit.web.chromium import find_chromium

    monkeypatch.delenv("TK_CHROMIUM", raising=False)
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(TkError, match="apt-get install chromium"):
        find_chromium()
