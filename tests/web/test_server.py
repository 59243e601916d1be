"""The bundle server: 127.0.0.1 only, cross-origin isolation, the MIME types the runtimes demand, no
listing and nothing outside the bundle, and the harness's job/post round trip."""

from __future__ import annotations

import json
import threading
import urllib.error
import urllib.request

import pytest

from toolkit.web.server import BundleServer, Harness

pytestmark = pytest.mark.edge


@pytest.fixture()
def site(tmp_path):
    root = tmp_path / "bundle"
    (root / "runtime").mkdir(parents=True)
    (root / "runtime" / "x.wasm").write_bytes(b"\0asm\1\0\0\0")
    (root / "runtime" / "m.mjs").write_text("export const a = 1;\n")
    (root / "index.html").write_text("<!doctype html><title>t</title>")
    (tmp_path / "secret.txt").write_text("outside")
    return root


def _get(url):
    with urllib.request.urlopen(url, timeout=10) as reply:
        return reply.status, reply.headers, reply.read()


def test_types_and_isolation_headers(site):
    with BundleServer(site) as server:
        assert server.url.startswith("http://127.0.0.1:")
        for path, kind in (("runtime/x.wasm", "application/wasm"), ("runtime/m.mjs", "text/javascript")):
            status, headers, _ = _get(server.url + path)
            assert status == 200 and headers["Content-Type"] == kind
            assert headers["Cross-Origin-Opener-Policy"] == "same-origin"
            assert headers["Cross-Origin-Embedder-Policy"] == "require-corp"


def test_no_listing_and_nothing_outside(site):
    (site / "link.txt").symlink_to(site.parent / "secret.txt")  # a link out of the bundle is not followed
    with BundleServer(site) as server:
        for path in ("runtime/", "../secret.txt", "%2e%2e/secret.txt", "link.txt"):
            with pytest.raises(urllib.error.HTTPError) as err:
                _get(server.url + path)
            assert err.value.code == 404


def test_job_and_posts_round_trip(site):
    harness = Harness({"mode": "verify", "items": [{"file": "a.tflite"}]})
    with BundleServer(site, harness) as server:
        assert json.loads(_get(server.url + "tk/job")[2])["items"] == [{"file": "a.tflite"}]

        def answer():
            body, reply = harness.next_post(10)
            reply.put({"seen": body["kind"]})

        thread = threading.Thread(target=answer)
        thread.start()
        request = urllib.request.Request(server.url + "tk/post", data=json.dumps({"kind": "result"}).encode())
        with urllib.request.urlopen(request, timeout=10) as reply:
            assert json.loads(reply.read()) == {"seen": "result"}
        thread.join()
