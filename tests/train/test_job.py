"""A job's spec (flags, Keras' and JAX's variables), its address checks, and each process's share
of every global batch; no JAX runtime is started here (tests/train/test_job_runs.py starts jobs)."""

from __future__ import annotations

import socket

import numpy as np
import pytest

from toolkit.core.errors import TkError
from toolkit.train.job import SOLO, Job, JobSpec, check_batch, check_coordinator, job_spec, weights_digest
from toolkit.train.shards import sharded_batches


def test_no_flags_and_no_variables_is_a_plain_run():
    assert job_spec(environ={}) is None
    assert job_spec(processes=1, process_id=0, coordinator="127.0.0.1:1234", environ={}) is None  # a job of one


def test_flags_win_over_keras_variables_and_jax_gives_the_coordinator():
    env = {
        "KERAS_DISTRIBUTION_NUM_PROCESSES": "4",
        "KERAS_DISTRIBUTION_PROCESS_ID": "3",
        "JAX_COORDINATOR_ADDRESS": "10.0.0.1:1234",
    }
    assert job_spec(environ=env) == JobSpec(4, 3, "10.0.0.1:1234")
    assert job_spec(process_id=1, environ=env) == JobSpec(4, 1, "10.0.0.1:1234")
    both = {**env, "KERAS_DISTRIBUTION_JOB_ADDRESSES": "10.0.0.9:99,10.0.0.2:99,10.0.0.3:99,10.0.0.4:99"}
    assert job_spec(environ=both).coordinator == "10.0.0.9:99"  # Keras' list: its first is process 0


def test_the_cluster_fills_in_what_is_missing():
    spec = job_spec(cluster=True, environ={})
    assert spec == JobSpec(None, None, None, cluster=True)


@pytest.mark.parametrize(
    "kwargs, env, fragment",
    [
        ({"processes": 2, "coordinator": "h:1"}, {}, "--process-id is missing"),
        ({"processes": 2, "process_id": 0}, {}, "--coordinator is missing"),
        ({"processes": 2, "process_id": 2, "coordinator": "h:1"}, {}, "ids run from 0 to 1"),
        ({"processes": 0, "process_id": 0, "coordinator": "h:1"}, {}, "--processes: must be >= 1"),
        ({"processes": 2, "process_id": 0, "coordinator": "h"}, {}, "expected HOST:PORT"),
        ({"processes": 2, "process_id": 0, "coordinator": "h:70000"}, {}, "expected HOST:PORT"),
        ({}, {"KERAS_DISTRIBUTION_NUM_PROCESSES": "two"}, "is not a whole number"),
        (
            {"processes": 3, "process_id": 0},
            {"KERAS_DISTRIBUTION_JOB_ADDRESSES": "a:1,b:1"},
            "lists 2 addresses for 3 processes",
        ),
        ({"processes": 2, "process_id": 0, "coordinator": "h:1", "join_timeout": 0}, {}, "--join-timeout"),
    ],
)
def test_a_job_told_wrong_is_one_line_before_jax_starts(kwargs, env, fragment):
    with pytest.raises(TkError, match=fragment):
        job_spec(environ=env, **kwargs)


def test_a_coordinator_that_does_not_resolve_or_is_not_here_or_is_taken():
    with pytest.raises(TkError, match="does not resolve"):
        check_coordinator("no-such-host.invalid:1234", 1)
    with pytest.raises(TkError, match="is not an address of this machine"):
        check_coordinator("192.0.2.1:1234", 0)  # TEST-NET-1: never a local address
    check_coordinator("192.0.2.1:1234", 1)  # another process only needs to reach it, later
    with socket.socket() as taken:
        taken.bind(("", 0))
        taken.listen()
        port = taken.getsockname()[1]
        with pytest.raises(TkError, match=f"port {port} is already in use"):
            check_coordinator(f"127.0.0.1:{port}", 0)


def test_the_global_batch_must_split_over_every_device():
    check_batch(16, Job(processes=2, devices=4, local_devices=2))
    with pytest.raises(TkError, match="global batch: it must split evenly over its 4 devices .* e.g. 20"):
        check_batch(18, Job(processes=2, devices=4, local_devices=2))
    check_batch(7, SOLO)  # a single process pads its own last batch


def test_a_solo_job_exchanges_nothing():
    arrays = [np.ones(3)]
    assert SOLO.gather(b"x") == [b"x"] and SOLO.from_writer({"a": 1}) == {"a": 1}
    assert SOLO.broadcast(arrays) is arrays and SOLO.shard([1, 2, 3]) == [1, 2, 3]
    SOLO.agree("recipe", "abc", "fix")
    SOLO.all_ok(None)
    with pytest.raises(TkError, match="^disk full$"):
        SOLO.all_ok("disk full")


def test_weights_digest_tells_any_difference():
    a = [np.zeros((2, 2), np.float32), np.ones(3, np.float32)]
    assert weights_digest(a) == weights_digest([x.copy() for x in a])
    assert weights_digest(a) != weights_digest([a[0], a[1] * (1 + 1e-7)])
    assert weights_digest(a) != weights_digest([a[0].astype(np.float64), a[1]])
    assert weights_digest(a) != weights_digest([np.zeros(4, np.float32), a[1]])  # same bytes, other shape


def _parts(total: int, processes: int, global_batch: int, local_devices: int = 1, **kwargs):
    """Every process's dataset over its share of items 0..total-1 (x = the item's number)."""
    out = []
    for p in range(processes):
        job = Job(process=p, processes=processes, devices=processes * local_devices, local_devices=local_devices)
        mine = np.array(job.shard(range(total)))
        data = mine.reshape(-1, 1, 1, 1).astype(np.uint8)
        out.append(sharded_batches(data, mine % 3, total, global_batch, job, **kwargs))
    return out


@pytest.mark.parametrize("total, processes, batch, local", [(10, 3, 6, 1), (29, 2, 8, 1), (17, 2, 8, 2), (5, 4, 4, 1)])
def test_each_process_feeds_its_share_of_every_global_batch(total, processes, batch, local):
    parts = _parts(total, processes, batch, local, shuffle=True, seed=3)
    steps = {len(p) for p in parts}
    assert steps == {-(-total // batch)}  # every process takes the same steps: as many as one process would
    for _epoch in range(2):  # and again after a reshuffle
        seen = []
        for step in range(len(parts[0])):
            sizes = set()
            for p, part in enumerate(parts):
                x, y, w = part[step]
                assert len(x) <= batch // processes and len(x) % local == 0
                sizes.add(len(x))
                real = x[w > 0].reshape(-1).astype(int)
                assert all(i % processes == p for i in real)  # only its own share
                assert np.array_equal(y[w > 0], real % 3)
                seen += list(real)
            assert len(sizes) == 1  # parts of one size: the global batch assembles
        assert sorted(seen) == list(range(total))  # each image once an epoch, padding weighs 0
        for part in parts:
            part.on_epoch_end()


def test_class_weights_become_sample_weights_and_padding_weighs_nothing():
    (part,) = _parts(5, 1, 4, class_weight={0: 2.0, 1: 0.5, 2: 1.0})
    x, y, w = part[1]  # the last step holds the one image left
    assert len(x) == 1 and w.tolist() == [{0: 2.0, 1: 0.5, 2: 1.0}[int(y[0])]]
    x, y, w = part[0]
    assert w.tolist() == [{0: 2.0, 1: 0.5, 2: 1.0}[int(k)] for k in y]
