"""A process of a multi-process training job runs as a child of `tk train`, so that its end is one line.

JAX's distributed runtime ends a process by itself (a C++ LOG(FATAL): SIGABRT and a stack trace)
when the job does not form within the join timeout, or when a peer stops sending heartbeats; no
Python handler runs then. So `tk train` with job flags (or variables) starts the training as a
child process and waits. The child's native output (the runtime's and gloo's log lines) goes to a
log file, while Python's own stdout and stderr stay on the terminal: what tk says, its progress
bars and its error lines look as they always do. A child that exits has said what it had to say;
one that the runtime or a signal ended gets one line from the parent, read from the log's fatal
entry. The child leaves with os._exit: after a failure, JAX's exit-time shutdown would wait at a
barrier for peers that are gone.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import traceback
from pathlib import Path
from typing import Optional

from ..core.errors import TkError
from ..train.job import JobSpec

CHILD_ENV = "TK_JOB_CHILD"  # JSON: the job spec and the native log's path, for the child
PR_SET_PDEATHSIG = 1  # linux/prctl.h


def child_spec() -> Optional[JobSpec]:
    """In a job's child process: the job it joins; None elsewhere."""
    given = os.environ.get(CHILD_ENV)
    return JobSpec.from_json(json.loads(given)["spec"]) if given else None


def run_child(argv: list[str], spec: JobSpec) -> int:
    """Run `tk <argv>` as this job process's child; its exit code, or one line if it was killed."""
    fd, log = tempfile.mkstemp(prefix="tk-job-", suffix=".log")
    os.close(fd)
    package_root = str(Path(__file__).resolve().parents[2])  # the child imports this very toolkit
    env = {
        **os.environ,
        CHILD_ENV: json.dumps({"spec": spec.to_json(), "log": log}),
        "PYTHONPATH": os.pathsep.join(filter(None, (package_root, os.environ.get("PYTHONPATH")))),
    }
    # The child names app itself: supervise importing cli.app would be a cycle (app runs supervise).
    code = "from toolkit.cli.app import app; from toolkit.cli.supervise import child_main; child_main(app)"
    child = subprocess.Popen([sys.executable, "-c", code, *argv], env=env, preexec_fn=_die_with_parent)
    previous = {
        # Ctrl-C reaches the child from the terminal itself; a TERM or HUP sent to tk alone is passed on.
        signal.SIGINT: signal.signal(signal.SIGINT, signal.SIG_IGN),
        signal.SIGTERM: signal.signal(signal.SIGTERM, lambda signum, frame: child.send_signal(signum)),
        signal.SIGHUP: signal.signal(signal.SIGHUP, lambda signum, frame: child.send_signal(signum)),
    }
    try:
        returncode = child.wait()
    finally:
        for signum, handler in previous.items():
            signal.signal(signum, handler)
    if returncode >= 0:
        Path(log).unlink(missing_ok=True)
        return returncode
    raise TkError(ended_line(-returncode, Path(log), spec))


def _die_with_parent() -> None:
    """In the child, before it runs: the kernel kills it when tk (its parent) dies (Linux)."""
    if sys.platform.startswith("linux"):
        import ctypes

        ctypes.CDLL(None).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)


def ended_line(signum: int, log: Path, spec: JobSpec) -> str:
    """What ended a child that did not exit by itself, in one line."""
    who = f"process {spec.process_id} of {spec.processes}" if spec.processes else "this process"
    fatal = _fatal_entry(log)
    if signum == signal.SIGABRT and fatal:
        if "RegisterTask" in fatal:
            return (
                f"{who}: the job did not form within {spec.join_timeout} s (--join-timeout): not every process "
                f"reached the coordinator {spec.coordinator or '(from the cluster)'}; start all of them with the same "
                "--processes and --coordinator, process 0 on that host, its port reachable from the others"
            )
        if "heartbeat" in fatal.lower() or "unhealthy" in fatal:
            return (
                f"{who}: another process of the job stopped responding for {spec.heartbeat_timeout} s "
                "(--heartbeat-timeout: it hung, or its host went away), so this one stopped too; "
                "start every process again with --resume"
            )
        status = fatal.split("absl::Status:", 1)[-1].split(" RPC:")[0].strip()
        return f"{who}: JAX's distributed runtime ended it: {status[:240]} (its log: {log})"
    name = signal.Signals(signum).name if signum in signal.valid_signals() else f"signal {signum}"
    why = " (the out-of-memory killer sends it)" if signum == signal.SIGKILL else ""
    return f"{who} was ended by {name}{why}; start every process again with --resume (its log: {log})"


def _fatal_entry(log: Path) -> str:
    """The last FATAL entry of an absl log ('F1204 18:53:41.746503 1796 client.h:80] ...'), one line."""
    try:
        with open(log, "rb") as fh:
            fh.seek(max(0, fh.seek(0, 2) - 65536))
            text = fh.read().decode("utf-8", "replace")
    except OSError:
        return ""
    found = list(re.finditer(r"^F\d{4} [\d:.]+\s+\d+ \S+\] (.*?)(?=^\*\*\* |\Z)", text, re.M | re.S))
    return " ".join(found[-1].group(1).split()) if found else ""


def child_main(app) -> None:
    """A job's child process: tk's CLI (`app`) with native output in the log, then os._exit with its code."""
    _native_output_to(json.loads(os.environ[CHILD_ENV])["log"])
    code = 0
    try:
        app(prog_name="tk")
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else (0 if exc.code is None else 1)
    except BaseException:  # a bug: its traceback, on the terminal
        traceback.print_exc()
        code = 1
    sys.stdout.flush()
    sys.stderr.flush()
    os._exit(code)


def _native_output_to(log: str) -> None:
    """File descriptors 1 and 2 (what C++ writes to) go to the log; Python's sys.stdout and
    sys.stderr keep the terminal (or pipe) they had, through duplicates of the originals."""
    target = os.open(log, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
    for fd, name in ((1, "stdout"), (2, "stderr")):
        stream = getattr(sys, name)
        stream.flush()
        kept = os.dup(fd)
        os.dup2(target, fd)
        setattr(sys, name, os.fdopen(kept, "w", buffering=1, encoding=stream.encoding, errors=stream.errors))
    os.close(target)
