"""tk train's job flags from the command line: what is refused before any process starts, and the
one line the supervising tk prints when JAX's runtime (or a signal) ends its training process."""

from __future__ import annotations

import signal
import socket

import pytest
from helpers import assert_one_line_error, small_recipe
from typer.testing import CliRunner

from toolkit.cli.app import app
from toolkit.cli.supervise import ended_line
from toolkit.train.job import JobSpec

runner = CliRunner()
JOB = ["--processes", "2", "--process-id", "0"]


@pytest.fixture
def recipe_file(synth_root, tmp_path):
    import yaml

    path = tmp_path / "job.yaml"
    path.write_text(yaml.safe_dump(small_recipe("job", synth_root, train={"backend": "jax"}).to_dict()))
    return path


@pytest.mark.parametrize(
    "args, fragments",
    [
        (["--coordinator", "no-such-host.invalid:1234"], ["does not resolve", "HOST:PORT"]),
        (["--coordinator", "192.0.2.1:1234"], ["process 0 runs the coordinator", "not an address of this machine"]),
        (["--coordinator", "127.0.0.1"], ["expected HOST:PORT"]),
        (["--coordinator", "127.0.0.1:1234", "--set", "train.backend=tensorflow"], ["JAX backend", "keras#20585"]),
        ([], ["--coordinator is missing", "--cluster"]),
    ],
)
def test_a_job_started_wrong_is_one_line_before_training_starts(recipe_file, monkeypatch, args, fragments):
    monkeypatch.delenv("KERAS_BACKEND", raising=False)
    result = runner.invoke(app, ["train", str(recipe_file), *JOB, *args])
    assert_one_line_error(result, *fragments)


def test_a_port_already_taken_on_process_0(recipe_file):
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        result = runner.invoke(app, ["train", str(recipe_file), *JOB, "--coordinator", f"127.0.0.1:{port}"])
    assert_one_line_error(result, f"port {port} is already in use")


def test_a_folder_is_no_job_recipe(synth_root):
    result = runner.invoke(app, ["train", str(synth_root), *JOB, "--coordinator", "127.0.0.1:1234"])
    assert_one_line_error(result, "a job trains from a recipe file")


# The last lines JAX's runtime writes before it aborts the process (jaxlib 0.10.2), abridged.
NEVER_FORMED = """I0000 00:00:1796409847.778638   23024 port.cc:153] oneDNN custom operations are on.
F1204 18:53:41.746503    1796 client.h:80] Terminating process because the JAX distributed service detected fatal \
errors. This most likely indicates that another task died; see the other task logs for more details. absl::Status: \
DEADLINE_EXCEEDED: Deadline Exceeded

RPC: /xla.coordination.CoordinationService/RegisterTask
*** Check failure stack trace: ***
    @     0x7f1636240634  absl::lts_20260107::log_internal::LogMessage::SendToLog()
"""
PEER_SILENT = """[Gloo] Rank 0 is connected to 1 peer ranks. Expected number of connected peer ranks is : 1
F1204 18:48:45.451632   26914 client.h:80] Terminating process because the JAX distributed service detected fatal \
errors. absl::Status: UNAVAILABLE: The following tasks are unhealthy (stopped sending heartbeats):
1
The tasks have crashed. Check the task logs for an earlier error.
*** Check failure stack trace: ***
"""
OTHER = """F1204 20:14:16.224450   24805 client.h:80] Terminating process because the JAX distributed service \
detected fatal errors. absl::Status: ABORTED: 1 unexpectedly tried to connect with a different incarnation. It has \
likely restarted.

RPC: /xla.coordination.CoordinationService/PollForError
*** Check failure stack trace: ***
"""
SPEC = JobSpec(2, 1, "10.0.0.1:1234", join_timeout=30, heartbeat_timeout=45)


@pytest.mark.parametrize(
    "log, signum, fragments",
    [
        (NEVER_FORMED, signal.SIGABRT, ["process 1 of 2: the job did not form within 30 s", "10.0.0.1:1234"]),
        (PEER_SILENT, signal.SIGABRT, ["stopped responding for 45 s", "--resume"]),
        (OTHER, signal.SIGABRT, ["ABORTED: 1 unexpectedly tried to connect with a different incarnation", "its log"]),
        ("", signal.SIGKILL, ["was ended by SIGKILL", "out-of-memory", "--resume"]),
    ],
)
def test_what_ended_a_training_process_is_one_line(tmp_path, log, signum, fragments):
    path = tmp_path / "job.log"
    path.write_text(log)
    line = ended_line(signum, path, SPEC)
    assert "\n" not in line and "Check failure" not in line and "0x7f" not in line
    for fragment in fragments:
        assert fragment in line, line
