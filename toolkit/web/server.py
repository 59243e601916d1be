"""A local web server for a bundle: static files on 127.0.0.1, plus the harness's two routes.

Cross-origin isolation (COOP same-origin + COEP require-corp) is what lets onnxruntime-web and
LiteRT.js start worker threads: without it `crossOriginIsolated` is false and they silently run
on one thread. `.wasm` must be application/wasm (streaming compilation refuses anything else) and
`.mjs` text/javascript (module scripts refuse other types). Only 127.0.0.1 is bound, on a port the
OS picks. The harness page GETs /tk/job and POSTs what it measured to /tk/post; the Python side
reads the posts from a queue and answers each one (a bench interleaves native runs there).
Standard library only.
"""

from __future__ import annotations

import json
import mimetypes
import queue
import sys
import threading
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any, Optional

TYPES = {
    ".wasm": "application/wasm",
    ".mjs": "text/javascript",
    ".js": "text/javascript",
    ".json": "application/json",
    ".html": "text/html; charset=utf-8",
    ".tflite": "application/octet-stream",
    ".onnx": "application/octet-stream",
    ".u8": "application/octet-stream",
}
ISOLATION = {
    "Cross-Origin-Opener-Policy": "same-origin",
    "Cross-Origin-Embedder-Policy": "require-corp",
    "Cross-Origin-Resource-Policy": "same-origin",
}
MAX_POST = 256 * 2**20  # a verify's probabilities: 1000 images x 1000 classes as JSON is ~20 MB


class Harness:
    """The job the page runs, and the posts it sends back (each answered by `reply`)."""

    def __init__(self, job: Optional[dict[str, Any]] = None):
        self.job = job or {}
        self.posts: queue.Queue = queue.Queue()
        self.served: list[str] = []  # paths answered 200, in order (what a page and its worker fetched)

    def receive(self, body: dict[str, Any]) -> dict[str, Any]:
        """Called on the server's thread: hand the post over, wait for the answer."""
        answer: queue.Queue = queue.Queue(maxsize=1)
        self.posts.put((body, answer))
        try:
            return answer.get(timeout=self.job.get("reply_timeout_s", 600))
        except queue.Empty:
            return {"stop": True}

    def next_post(self, timeout_s: float) -> tuple[dict[str, Any], queue.Queue]:
        """(the page's next post, where to put the answer); queue.Empty when none came in time."""
        return self.posts.get(timeout=timeout_s)


def _handler(root: Path, harness: Harness):
    class Handler(SimpleHTTPRequestHandler):
        extensions_map = {**mimetypes.types_map, **TYPES, "": "application/octet-stream"}

        def __init__(self, *args, **kwargs):
            super().__init__(*args, directory=str(root), **kwargs)

        def end_headers(self):
            for key, value in ISOLATION.items():
                self.send_header(key, value)
            self.send_header("Cache-Control", "no-store")
            super().end_headers()

        def translate_path(self, path):
            # http.server drops ".." segments; a symlink could still lead out of the bundle.
            found = Path(super().translate_path(path))
            inside = found.resolve() == root or root in found.resolve().parents
            return str(found) if inside else str(root / ".tk-outside-the-bundle")

        def list_directory(self, path):  # a bundle is not browsable
            self.send_error(404)
            return None

        def do_GET(self):
            if self.path.split("?")[0] == "/tk/job":
                return self._send_json(harness.job)
            return super().do_GET()

        def do_POST(self):
            if self.path != "/tk/post":
                return self.send_error(404)
            length = int(self.headers.get("Content-Length") or 0)
            if not 0 < length <= MAX_POST:
                return self.send_error(413)
            try:
                body = json.loads(self.rfile.read(length))
            except (json.JSONDecodeError, UnicodeDecodeError):
                return self.send_error(400)
            self._send_json(harness.receive(body if isinstance(body, dict) else {"error": "not an object"}))

        def _send_json(self, obj: Any) -> None:
            data = json.dumps(obj).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_request(self, code="-", size="-"):
            if str(code) == "200":
                harness.served.append(self.path.split("?")[0])

        def log_message(self, format, *args):  # the CLI speaks; the server stays quiet
            pass

    return Handler


class _QuietServer(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True  # a test serves the same port again (the page's origin) after a stop

    def handle_error(self, request, client_address):
        # The browser is killed as soon as the page has said "done": a request it had in flight
        # ends with a broken pipe, which is the end of the check, not an error to print.
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class BundleServer:
    """`with BundleServer(root, harness) as server:` serves root at server.url until the block ends."""

    def __init__(self, root: Path, harness: Optional[Harness] = None, port: int = 0):
        self.harness = harness or Harness()
        self.httpd = _QuietServer(("127.0.0.1", port), _handler(Path(root).resolve(), self.harness))
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/"
        self._thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> "BundleServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
