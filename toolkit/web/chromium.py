"""The system's headless Chromium: find it, start it on a URL, always end it.

Flags: --headless=new (the full browser, headless); --no-sandbox only as root (Chromium refuses to
start as root with its sandbox); --enable-unsafe-swiftshader with --disable-gpu because MediaPipe's
ImageClassifier needs WebGL2 even on its CPU delegate, and SwiftShader is the software WebGL;
no network traffic of its own (background networking, component updates, sync, first-run); a
fresh --user-data-dir per start, removed afterwards. The browser runs in its own process group
so that ending it ends its renderer and GPU processes too. Standard library only.
"""

from __future__ import annotations

import base64
import contextlib
import json
import os
import re
import select
import shutil
import signal
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Iterator, Optional

from ..core.errors import TkError

NAMES = ("chromium", "chromium-browser", "google-chrome", "google-chrome-stable", "chrome")
INSTALL_HINT = "install Chromium (Debian/Ubuntu: apt-get install chromium), or set TK_CHROMIUM to its path"
FLAGS = (
    "--headless=new",
    "--disable-gpu",
    "--enable-unsafe-swiftshader",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-extensions",
    "--mute-audio",
)


def find_chromium() -> str:
    """The Chromium executable ($TK_CHROMIUM, else the first of NAMES on PATH), or one clear line."""
    given = os.environ.get("TK_CHROMIUM")
    if given:
        if not Path(given).is_file():
            raise TkError(f"TK_CHROMIUM={given}: no such file; {INSTALL_HINT}")
        return given
    for name in NAMES:
        found = shutil.which(name)
        if found:
            return found
    raise TkError(f"no Chromium found (looked for {', '.join(NAMES)} on PATH); {INSTALL_HINT}")


def chromium_version(executable: str) -> str:
    """'156.0.8078.114' from `chromium --version` (Debian's wrapper prints its own line first)."""
    try:
        out = subprocess.run([executable, "--version"], capture_output=True, text=True, timeout=30).stdout
    except (OSError, subprocess.SubprocessError) as exc:
        raise TkError(f"{executable} --version failed ({exc}); {INSTALL_HINT}") from None
    found = re.search(r"(?:Chromium|Chrome)\D*(\d+(?:\.\d+){1,3})", out)
    if not found:
        raise TkError(f"{executable} --version printed no version ({out.strip()[:80]!r}); {INSTALL_HINT}")
    return found.group(1)


def _flags(profile: Path, extra: tuple[str, ...]) -> list[str]:
    flags = [*FLAGS, f"--user-data-dir={profile}", *extra]
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        flags.append("--no-sandbox")  # Chromium will not start as root with its sandbox on
    return flags


@contextlib.contextmanager
def headless(
    url: str, executable: Optional[str] = None, extra: tuple[str, ...] = (), profile: Optional[Path] = None
) -> Iterator[subprocess.Popen]:
    """Chromium on `url` for the duration of the block; killed (with its children) when it ends.
    A given profile folder is kept; else a fresh one is made and removed."""
    executable = executable or find_chromium()
    keep = profile is not None
    profile = Path(profile) if keep else Path(tempfile.mkdtemp(prefix="tk-chromium-"))
    log = (profile.parent / f"{profile.name}.log").open("w+b")
    proc = subprocess.Popen(
        [executable, *_flags(profile, extra), url],
        stdout=log,
        stderr=subprocess.STDOUT,
        stdin=subprocess.DEVNULL,
        start_new_session=True,  # its own process group: killed whole below
    )
    proc.log_file = log  # type: ignore[attr-defined]
    try:
        yield proc
    finally:
        _kill_group(proc)
        log.close()
        Path(log.name).unlink(missing_ok=True)
        if not keep:
            shutil.rmtree(profile, ignore_errors=True)


def log_tail(proc: subprocess.Popen, lines: int = 8) -> str:
    """The last lines Chromium wrote (for an error message when the page never answered)."""
    log = getattr(proc, "log_file", None)
    if log is None:
        return ""
    log.flush()
    log.seek(0)
    text = log.read().decode(errors="replace")
    return " | ".join(line.strip() for line in text.strip().splitlines()[-lines:])


def _kill_group(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            pass
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(proc.pid, signal.SIGKILL)  # renderers may outlive the browser process
    with contextlib.suppress(subprocess.TimeoutExpired):
        proc.wait(timeout=5)


class _DevTools:
    """Chromium's DevTools protocol over --remote-debugging-pipe (fd 3 in, fd 4 out, NUL-separated JSON)."""

    def __init__(self, to_browser: int, from_browser: int):
        self.out, self.inp, self.next_id, self.buffer = to_browser, from_browser, 0, b""

    def call(self, method: str, params: Optional[dict] = None, session: Optional[str] = None, timeout_s: float = 30):
        self.next_id += 1
        message = {"id": self.next_id, "method": method, "params": params or {}}
        if session:
            message["sessionId"] = session
        os.write(self.out, json.dumps(message).encode() + b"\0")
        deadline = time.monotonic() + timeout_s
        while True:
            while b"\0" in self.buffer:
                raw, self.buffer = self.buffer.split(b"\0", 1)
                reply = json.loads(raw)
                if reply.get("id") == self.next_id:
                    if "error" in reply:
                        raise TkError(f"Chromium DevTools {method}: {reply['error'].get('message')}")
                    return reply.get("result", {})
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([self.inp], [], [], left)[0]:
                raise TkError(f"Chromium DevTools {method}: no answer in {timeout_s:.0f} s")
            chunk = os.read(self.inp, 1 << 20)
            if not chunk:
                raise TkError(f"Chromium DevTools {method}: the browser closed the pipe")
            self.buffer += chunk


def capture(
    url: str, png: Path, ready: str, size: tuple[int, int] = (900, 560), timeout_s: float = 120, profile=None
) -> str:
    """Open url, wait until the JS expression `ready` is truthy, save a PNG screenshot; return the
    page's HTML. For a person's view of the page (tests, docs); bounded, and the browser is killed."""
    executable = find_chromium()
    keep = profile is not None
    folder = Path(profile) if keep else Path(tempfile.mkdtemp(prefix="tk-chromium-"))
    to_read, to_browser = os.pipe()
    from_browser, to_write = os.pipe()

    def wire():  # in the child: fd 3 reads what we send, fd 4 writes what we read
        import fcntl

        # Copies above 9 first, so that neither dup2 overwrites the other pipe's end.
        read_end, write_end = (fcntl.fcntl(fd, fcntl.F_DUPFD, 10) for fd in (to_read, to_write))
        os.dup2(read_end, 3)
        os.dup2(write_end, 4)

    flags = _flags(folder, (f"--window-size={size[0]},{size[1]}", "--hide-scrollbars", "--remote-debugging-pipe"))
    proc = subprocess.Popen(
        [executable, *flags, "about:blank"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        stdin=subprocess.DEVNULL,
        preexec_fn=wire,
        close_fds=False,  # fds 3 and 4 must survive into Chromium; tk's own fds are not inheritable
        start_new_session=True,
    )
    os.close(to_read)
    os.close(to_write)
    try:
        tools = _DevTools(to_browser, from_browser)
        target = next(t for t in tools.call("Target.getTargets")["targetInfos"] if t["type"] == "page")
        session = tools.call("Target.attachToTarget", {"targetId": target["targetId"], "flatten": True})["sessionId"]
        viewport = {"width": size[0], "height": size[1], "deviceScaleFactor": 1, "mobile": False}
        tools.call("Emulation.setDeviceMetricsOverride", viewport, session)  # the PNG is exactly `size`
        tools.call("Page.navigate", {"url": url}, session)
        deadline = time.monotonic() + timeout_s
        check = {"expression": f"Boolean({ready})", "returnByValue": True}
        while not tools.call("Runtime.evaluate", check, session)["result"].get("value"):
            if time.monotonic() > deadline:
                raise TkError(f"{url}: the page was not ready ({ready}) after {timeout_s:.0f} s")
            time.sleep(0.2)
        shot = tools.call("Page.captureScreenshot", {"format": "png"}, session)
        Path(png).write_bytes(base64.b64decode(shot["data"]))
        html = {"expression": "document.documentElement.outerHTML", "returnByValue": True}
        return tools.call("Runtime.evaluate", html, session)["result"]["value"]
    finally:
        _kill_group(proc)
        os.close(to_browser)
        os.close(from_browser)
        if not keep:
            shutil.rmtree(folder, ignore_errors=True)
