"""Drive the bundle's page in headless Chromium: serve it, open ?harness, answer its posts, end both.

The page GETs the job, then POSTs one message per step ("result", "chunk", "error", ...) and a
last "done" (or "fatal"). `drive` hands each message to the caller's `on_post`, which returns the
answer for the page; the first "done" ends the drive. Every wait is bounded: the page must say
something within `idle_timeout_s` and finish within `timeout_s`, or the drive ends with one line
that names the stage and Chromium's last log lines. The browser is killed in every case.
"""

from __future__ import annotations

import queue
import time
from pathlib import Path
from typing import Any, Callable

from ..core.errors import TkError
from .chromium import find_chromium, headless, log_tail
from .server import BundleServer, Harness

OnPost = Callable[[dict[str, Any]], dict[str, Any]]


def drive(
    bundle: Path, job: dict[str, Any], on_post: OnPost, timeout_s: float = 600, idle_timeout_s: float = 120
) -> dict[str, Any]:
    """Run `job` in the page; return the page's "done" message (its environment)."""
    executable = find_chromium()  # before serving: no Chromium is one line, nothing started
    harness = Harness({**job, "reply_timeout_s": timeout_s})
    deadline = time.monotonic() + timeout_s
    with BundleServer(bundle, harness) as server, headless(server.url + "index.html?harness=1", executable) as proc:
        last = "waiting for the page to load"
        while True:
            wait = min(idle_timeout_s, deadline - time.monotonic())
            try:
                body, answer = harness.next_post(max(wait, 0.1))
            except queue.Empty:
                why = "Chromium exited" if proc.poll() is not None else f"no answer in {wait:.0f} s"
                raise TkError(
                    f"{bundle}: the page in headless Chromium stopped ({why}) while {last}; "
                    f"Chromium's log: {log_tail(proc) or 'empty'}"
                ) from None
            kind = body.get("kind")
            if kind == "fatal":
                answer.put({"stop": True})
                raise TkError(f"{bundle}: the page failed in Chromium: {str(body.get('error'))[:400]}")
            if kind == "done":
                answer.put({"stop": True})
                return body
            body["browser_pid"] = proc.pid  # for what the caller measures of the browser (its memory)
            try:
                answer.put(on_post(body))
            except BaseException:
                answer.put({"stop": True})
                raise
            last = f"running {body.get('file')} on {body.get('runtime')}"
