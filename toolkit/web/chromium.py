"""The system's headless Chromium: find it, start it on a URL, always end it.

Flags: --headless=new (the full browser, headless); --no-sandbox only as root (Chromium refuses to
start as root with its sandbox); --enable-unsafe-swiftshader with --disable-gpu because MediaPipe's
ImageClassifier needs WebGL2 even on its CPU delegate, and SwiftShader is the software WebGL;
no network traffic of its own (background networking, component updates, sync, first-run); a
fresh --user-data-dir per start, removed afterwards. The browser runs in its own process group
so that ending it ends its renderer and GPU processes too. Standard library only.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import tempfile
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


def _settled(url: str, extra: tuple[str, ...], budget_ms: int, profile: Optional[Path] = None) -> str:
    """Run Chromium once on url until the page settles (virtual time lets its async work finish).

    A given profile folder is kept (a second run then sees what the first cached); else a fresh one."""
    executable = find_chromium()
    keep = profile is not None
    profile = Path(profile) if keep else Path(tempfile.mkdtemp(prefix="tk-chromium-"))
    try:
        flags = _flags(profile, (*extra, f"--virtual-time-budget={budget_ms}"))
        proc = subprocess.run([executable, *flags, url], capture_output=True, text=True, timeout=budget_ms / 1000 + 90)
    except subprocess.TimeoutExpired:
        raise TkError(f"Chromium did not settle on {url} in time") from None
    finally:
        if not keep:
            shutil.rmtree(profile, ignore_errors=True)
    return proc.stdout


def screenshot(url: str, out: Path, size: tuple[int, int] = (900, 560), budget_ms: int = 20000) -> Path:
    """A PNG of the page once it has settled."""
    _settled(url, (f"--window-size={size[0]},{size[1]}", f"--screenshot={out}", "--hide-scrollbars"), budget_ms)
    if not Path(out).is_file():
        raise TkError(f"Chromium wrote no screenshot of {url}")
    return Path(out)


def page_dom(url: str, budget_ms: int = 20000, profile: Optional[Path] = None) -> str:
    """The page's DOM once it has settled (what a screenshot shows, as HTML)."""
    return _settled(url, ("--dump-dom",), budget_ms, profile)


def cpu_flags() -> list[str]:
    """The SIMD flags of this CPU that decide a runtime's kernels (Linux /proc/cpuinfo; [] elsewhere).

    Interim copy until edge/machine.py has one (the gate branch adds cpu_flags there)."""
    wanted = (
        "sse4_2",
        "avx",
        "avx2",
        "fma",
        "avx512f",
        "avx512_vnni",
        "avx_vnni",
        "amx_int8",
        "asimd",
        "asimddp",
        "i8mm",
    )
    try:
        info = Path("/proc/cpuinfo").read_text(errors="replace")
    except OSError:
        return []
    have = {
        f
        for line in info.splitlines()
        if line.split(":")[0].strip() in ("flags", "Features")
        for f in line.split(":", 1)[1].split()
    }
    return [f for f in wanted if f in have]
