"""Multi-process jobs for real: `tk train` processes on 127.0.0.1 with gloo CPU collectives.

One 2-process job of the session's JAX recipe (jax_scratch_run is its one-process reference), one
killed mid-training and resumed, and jobs that must not start. Each process runs in its own
folder; process 1 is given no --runs-dir and no TK_CACHE_DIR, so anything it wrote under
exported/ would be seen.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest
import yaml
from helpers import REPO, SCRATCH_ON_ANOTHER_BACKEND, small_recipe

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(importlib.util.find_spec("jax") is None, reason="jax not installed (make setup installs it)"),
]
# Test accuracy of the job against one process on the same recipe. The two runs draw their batches
# and augmentations differently (each process shuffles its own share), so they are two samples of one
# training procedure, not one computation: their accuracies differ by sampling alone. The test split
# has 27 images; near 0.9 accuracy the binomial standard error of a difference of two such runs is
# sqrt(2 * 0.9 * 0.1 / 27) = 0.08, and 0.12 (3 images of 27) is 1.5 of it. Both runs are seeded, so
# the outcome is fixed, not flaky; a job that trained wrong (processes on the same share, weights
# out of step, a batch fed twice) lands far off, and the job must also clear 0.6 (chance is 1/3).
TOLERANCE = 0.12


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_recipe(recipe, folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{recipe.name}.yaml"
    path.write_text(yaml.safe_dump(recipe.to_dict(), sort_keys=False))
    return path


def start(recipe: Path, process: int, port: int, cwd: Path, *args: str, processes: int = 2, env=None):
    """One `tk train` process of a job on 127.0.0.1:port, running in cwd."""
    cwd.mkdir(parents=True, exist_ok=True)
    environ = {k: v for k, v in os.environ.items() if k != "TK_CACHE_DIR"}  # the default, unless env says
    environ.update({"PYTHONPATH": str(REPO), "KERAS_BACKEND": "jax", **(env or {})})
    command = ["train", str(recipe), "--processes", str(processes), "--process-id", str(process)]
    command += ["--coordinator", f"127.0.0.1:{port}", *args]
    return subprocess.Popen(
        [sys.executable, "-m", "toolkit", *command],
        cwd=cwd,
        env=environ,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def finish(procs, timeout: float = 600) -> list[SimpleNamespace]:
    out = []
    for proc in procs:
        stdout, stderr = proc.communicate(timeout=timeout)
        out.append(SimpleNamespace(code=proc.returncode, stdout=stdout, stderr=stderr))
    return out


def one_line(result, *fragments: str) -> str:
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert result.code == 1 and len(lines) == 1 and lines[0].startswith("error: "), result.stderr[-3000:]
    for fragment in fragments:
        assert fragment in lines[0], lines[0]
    return lines[0]


@pytest.fixture(scope="module")
def job_run(synth_root, tmp_path_factory):
    """jax_scratch_run's recipe trained by 2 processes: process 0 in p0/ (runs in p0/runs, cache in
    p0/cache), process 1 in p1/ with defaults only and its temporary folder in p1tmp/."""
    tmp = tmp_path_factory.mktemp("job")
    recipe = write_recipe(small_recipe("jax_job", synth_root, train=SCRATCH_ON_ANOTHER_BACKEND), tmp)
    port = free_port()
    (tmp / "p1tmp").mkdir()
    runs0, cache0 = ("--runs-dir", str(tmp / "p0" / "runs")), {"TK_CACHE_DIR": str(tmp / "p0" / "cache")}
    p0 = start(recipe, 0, port, tmp / "p0", *runs0, "--json", env=cache0)
    p1 = start(recipe, 1, port, tmp / "p1", "--json", env={"TMPDIR": str(tmp / "p1tmp")})
    results = finish([p0, p1])
    for r in results:
        assert r.code == 0, r.stdout[-3000:] + r.stderr[-3000:]
    return SimpleNamespace(
        tmp=tmp,
        run=tmp / "p0" / "runs" / "jax_job",
        out=[json.loads(r.stdout) for r in results],
        results=results,
    )


def test_two_processes_reach_the_accuracy_of_one(job_run, jax_scratch_run):
    single = json.loads((jax_scratch_run / "metrics.json").read_text())["test"]["accuracy"]
    job = json.loads((job_run.run / "metrics.json").read_text())["test"]["accuracy"]
    assert job == job_run.out[0]["test"]["accuracy"]
    assert abs(job - single) <= TOLERANCE, (job, single)
    assert job > 0.6  # 3 balanced classes: chance is 1/3


def test_every_process_holds_the_same_weights(job_run):
    import keras

    from toolkit.train.backbones import ensure_custom_objects
    from toolkit.train.job import weights_digest

    digests = json.loads((job_run.run / "manifest.json").read_text())["training"]["weights_sha256"]
    assert len(digests) == 2 and digests[0] == digests[1]
    assert job_run.out[1]["job"]["weights_sha256"] == digests  # what process 1 reported of itself and 0
    ensure_custom_objects()
    saved = keras.saving.load_model(job_run.run / "model.keras", compile=False)
    assert weights_digest(saved.get_weights()) == digests[0]  # the digests are of the model written


def test_the_manifest_records_processes_devices_and_the_global_batch(job_run, jax_scratch_run):
    training = json.loads((job_run.run / "manifest.json").read_text())["training"]
    assert {k: training[k] for k in ("processes", "devices", "global_batch", "per_process_batch")} == {
        "processes": 2,
        "devices": 2,
        "global_batch": 16,
        "per_process_batch": 8,
    }
    single = json.loads((jax_scratch_run / "manifest.json").read_text())["training"]
    assert single["processes"] == 1 and single["global_batch"] == single["per_process_batch"] == 16


def test_process_0_alone_writes_the_run(job_run):
    assert not (job_run.tmp / "p1" / "exported").exists()
    assert sorted(p.name for p in (job_run.tmp / "p1").iterdir()) == []  # nothing at all in its folder
    assert (job_run.run / "split.json").is_file() and (job_run.run / "model.keras").is_file()
    assert job_run.out[1]["run"].endswith("jax_job") and "test" not in job_run.out[1]  # it evaluates nothing


def test_each_process_decodes_only_its_share(job_run):
    split = json.loads((job_run.run / "split.json").read_text())["splits"]
    cache0 = job_run.tmp / "p0" / "cache" / "decoded"
    cache1 = next((job_run.tmp / "p1tmp").glob("tk-cache-*")) / "decoded"
    rows0 = sorted(len(np.load(p, mmap_mode="r")) for p in cache0.glob("*.npy"))
    rows1 = sorted(len(np.load(p, mmap_mode="r")) for p in cache1.glob("*.npy"))
    n_train, n_val, n_test = (len(split[s]) for s in ("train", "validation", "test"))
    # Process 0: its halves of train and validation, and the test split it alone evaluates.
    assert rows0 == sorted([-(-n_train // 2), -(-n_val // 2), n_test])
    assert rows1 == sorted([n_train // 2, n_val // 2])


def test_a_killed_process_ends_the_other_and_the_job_resumes(synth_root, tmp_path):
    """Process 1 is killed (SIGKILL, its training child with it) after epoch 2 of 5: process 0 ends
    with one line in seconds, keeping its checkpoints; both restarted with --resume finish the job."""
    recipe = write_recipe(small_recipe("jax_killed", synth_root, train={"epochs": 5}), tmp_path)
    runs, port = tmp_path / "p0" / "runs", free_port()
    history = runs / "jax_killed.partial" / "phases" / "scratch" / "history.json"
    p0 = start(recipe, 0, port, tmp_path / "p0", "--runs-dir", str(runs), env={"TK_CACHE_DIR": str(tmp_path / "c")})
    p1 = start(recipe, 1, port, tmp_path / "p1", env={"TK_CACHE_DIR": str(tmp_path / "c")})
    deadline = time.monotonic() + 600
    while not (history.is_file() and len(json.loads(history.read_text() or "{}").get("loss", [])) >= 2):
        assert p0.poll() is None and time.monotonic() < deadline, "the job did not reach epoch 2"
        time.sleep(0.5)
    p1.send_signal(signal.SIGKILL)
    killed = time.monotonic()
    (r0,) = finish([p0], timeout=120)
    assert time.monotonic() - killed < 60  # the gloo connection closes at once; the heartbeat bounds the rest
    one_line(r0, "process 0 of 2: another process of the job went away", "--resume on every process")
    assert "train.batch_size 16 is the global batch: 8 images per process per step" in r0.stdout
    assert (history.parent / "backup" / "state.npz").is_file()
    finish([p1])

    port = free_port()
    p0 = start(recipe, 0, port, tmp_path / "p0", "--runs-dir", str(runs), "--resume")
    p1 = start(recipe, 1, port, tmp_path / "p1", "--resume")
    r0, r1 = finish([p0, p1])
    assert r0.code == 0 and r1.code == 0, r0.stderr[-3000:] + r1.stderr[-3000:]
    assert "[scratch] the job resumes at epoch" in r0.stdout
    run = runs / "jax_killed"
    assert len(json.loads((run / "phases" / "scratch" / "history.json").read_text())["loss"]) == 5
    digests = json.loads((run / "manifest.json").read_text())["training"]["weights_sha256"]
    assert digests[0] == digests[1]


def test_a_process_that_never_joins_ends_the_other_in_one_line(synth_root, tmp_path):
    recipe = write_recipe(small_recipe("jax_alone", synth_root), tmp_path)
    started = time.monotonic()
    (r0,) = finish([start(recipe, 0, free_port(), tmp_path, "--join-timeout", "5")], timeout=300)
    one_line(r0, "process 0 of 2: the job did not form within 5 s (--join-timeout)")
    assert time.monotonic() - started < 120  # start-up, then 5 s
    assert "Traceback" not in r0.stderr and not (tmp_path / "exported").exists()


def _different_data(tmp_path: Path) -> list[Path]:
    from toolkit.data.synth import make_synthetic_dataset

    for process, per_class in ((0, 20), (1, 21)):  # the same recipe (data.root: data), other images
        make_synthetic_dataset(tmp_path / f"p{process}" / "data", classes=3, per_class=per_class, size=32, seed=1)
    recipe = small_recipe("jax_mixed", Path("data"))
    return [write_recipe(recipe, tmp_path / f"p{p}") for p in (0, 1)]


@pytest.mark.parametrize(
    "what, fragment",
    [("recipe", "the job's processes differ in recipe (sha256): process 1's"), ("data", "differ in split (sha256)")],
)
def test_processes_that_differ_are_refused_at_start(what, fragment, synth_root, tmp_path):
    if what == "recipe":
        recipes = [
            write_recipe(small_recipe("jax_mixed", synth_root, train={"epochs": e}), tmp_path / f"p{e}") for e in (2, 3)
        ]
    else:
        recipes = _different_data(tmp_path)
    port = free_port()
    procs = [start(recipes[p], p, port, recipes[p].parent) for p in (0, 1)]
    for result in finish(procs, timeout=300):
        one_line(result, fragment)
    assert not any(tmp_path.glob("*/exported/jax_mixed*"))
