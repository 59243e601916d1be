"""A multi-process training job on JAX's distributed runtime: who joins, and what processes agree on.

`tk train --processes N --process-id I --coordinator HOST:PORT` (or Keras' KERAS_DISTRIBUTION_*
variables, JAX's JAX_COORDINATOR_ADDRESS, or `--cluster`: what jax.distributed.initialize detects
on SLURM, Open MPI, Kubernetes or Cloud TPU) makes one process of a job. Every process runs the same
recipe; keras.distribution.DataParallel spans every device of every process; process 0 is the
coordinator and the only one that writes the run folder.

tk calls jax.distributed.initialize itself rather than keras.distribution.initialize (which does
the same with fewer arguments): only the former takes the initialization and heartbeat timeouts
that make a job whose process never joins, or dies, end in bounded time instead of hanging.
TensorFlow's MultiWorkerMirroredStrategy is not offered: it has not worked with Keras 3 since
TF 2.16 (keras-team/keras#20585).

What the processes must agree on (recipe, split, weights) is exchanged as bytes through
jax.experimental.multihost_utils (collectives over the devices, gloo on CPUs), so a host needs no
shared filesystem: files process 0 reads (best checkpoints, the resume backup) reach the others as
broadcast arrays. A `Job` of one process (SOLO) makes every exchange a no-op.
"""

from __future__ import annotations

import errno
import hashlib
import json
import os
import socket
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any, Mapping, Optional, Sequence

from ..core.errors import TkError

if TYPE_CHECKING:
    import numpy as np

# Generous for a cluster whose nodes start minutes apart; `--join-timeout` for more or less.
JOIN_TIMEOUT = 300
# A process silent this long is dead (its host went away, or it hangs): the others stop. JAX's
# default is 100 s; a job of small steps notices sooner at 60 s, and a step never takes that long.
HEARTBEAT_TIMEOUT = 60
ENV_FLAGS = ("KERAS_DISTRIBUTION_JOB_ADDRESSES", "KERAS_DISTRIBUTION_NUM_PROCESSES", "KERAS_DISTRIBUTION_PROCESS_ID")


@dataclass(frozen=True)
class JobSpec:
    """How this process joins a job; None fields are asked of the cluster (jax's auto-detection)."""

    processes: Optional[int] = None
    process_id: Optional[int] = None
    coordinator: Optional[str] = None  # HOST:PORT of process 0
    cluster: bool = False  # let jax.distributed.initialize detect what is not given
    join_timeout: int = JOIN_TIMEOUT
    heartbeat_timeout: int = HEARTBEAT_TIMEOUT

    def to_json(self) -> str:
        return json.dumps(asdict(self))

    @classmethod
    def from_json(cls, text: str) -> "JobSpec":
        return cls(**json.loads(text))


def job_spec(
    processes: Optional[int] = None,
    process_id: Optional[int] = None,
    coordinator: Optional[str] = None,
    cluster: bool = False,
    join_timeout: int = JOIN_TIMEOUT,
    heartbeat_timeout: int = HEARTBEAT_TIMEOUT,
    environ: Mapping[str, str] = os.environ,
) -> Optional[JobSpec]:
    """The job this process is told to join (flags first, then Keras' and JAX's variables), or None.

    A job of one process is a plain run (None)."""
    given = processes is not None or process_id is not None or coordinator or cluster
    if not given and not any(environ.get(name) for name in ENV_FLAGS):
        return None
    addresses = environ.get("KERAS_DISTRIBUTION_JOB_ADDRESSES", "")
    first = addresses.split(",")[0].strip() or None
    spec = JobSpec(
        processes if processes is not None else _env_int(environ, "KERAS_DISTRIBUTION_NUM_PROCESSES"),
        process_id if process_id is not None else _env_int(environ, "KERAS_DISTRIBUTION_PROCESS_ID"),
        coordinator or first or environ.get("JAX_COORDINATOR_ADDRESS") or None,
        cluster,
        join_timeout,
        heartbeat_timeout,
    )
    _check_spec(spec, addresses)
    return None if spec.processes == 1 else spec


def _env_int(environ: Mapping[str, str], name: str) -> Optional[int]:
    value = environ.get(name)
    if value is None or value == "":
        return None
    try:
        return int(value)
    except ValueError:
        raise TkError(f"{name}={value!r} is not a whole number; set it to one, or unset it") from None


def _check_spec(spec: JobSpec, addresses: str) -> None:
    if spec.processes is not None and spec.processes < 1:
        raise TkError(f"--processes: must be >= 1 (got {spec.processes})")
    if spec.process_id is not None and spec.process_id < 0:
        raise TkError(f"--process-id: must be >= 0 (got {spec.process_id})")
    if spec.processes is not None and spec.process_id is not None and spec.process_id >= spec.processes:
        raise TkError(
            f"--process-id {spec.process_id} is not a process of a {spec.processes}-process job "
            f"(ids run from 0 to {spec.processes - 1})"
        )
    listed = [a for a in addresses.split(",") if a.strip()]
    if len(listed) > 1 and spec.processes is not None and len(listed) != spec.processes:
        raise TkError(
            f"KERAS_DISTRIBUTION_JOB_ADDRESSES lists {len(listed)} addresses for {spec.processes} processes; "
            "list one per process, or only process 0's"
        )
    if not spec.cluster:  # nothing else could fill in what is missing
        for flag, value in (
            ("--processes", spec.processes),
            ("--process-id", spec.process_id),
            ("--coordinator", spec.coordinator),
        ):
            if value is None:
                raise TkError(
                    f"{flag} is missing: a job needs --processes, --process-id and --coordinator on every process "
                    "(or the KERAS_DISTRIBUTION_* variables), or --cluster on SLURM, Open MPI, Kubernetes or Cloud TPU"
                )
    if spec.coordinator is not None:
        _host_port(spec.coordinator)
    for name, value in (("--join-timeout", spec.join_timeout), ("--heartbeat-timeout", spec.heartbeat_timeout)):
        if value < 1:
            raise TkError(f"{name}: must be at least 1 second (got {value})")


def _host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    host = host.strip("[]")  # [::1]:1234
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise TkError(f"--coordinator {address}: expected HOST:PORT, e.g. 10.0.0.1:1234 (process 0's host)")
    return host, int(port)


def check_coordinator(address: str, process_id: Optional[int]) -> None:
    """Fail now, in one line, on what would otherwise cost the whole join timeout: a host that
    does not resolve; on process 0 (which runs the coordinator), a host that is not this machine or a
    port already taken."""
    host, port = _host_port(address)
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except socket.gaierror as exc:
        raise TkError(
            f"--coordinator {address}: the host {host} does not resolve ({exc.strerror}); "
            "give process 0's address as HOST:PORT on every process"
        ) from None
    if process_id != 0:
        return
    family, _, _, _, sockaddr = infos[0]
    for where, bind_to in (("an address of this machine", (sockaddr[0], 0)), ("free", ("", port))):
        with socket.socket(family if where != "free" else socket.AF_INET, socket.SOCK_STREAM) as probe:
            try:
                probe.bind(bind_to)
            except OSError as exc:
                if exc.errno == errno.EADDRNOTAVAIL:
                    raise TkError(
                        f"--coordinator {address}: process 0 runs the coordinator, but {host} "
                        f"({sockaddr[0]}) is not an address of this machine; start process 0 on that host, "
                        "or give this host's address"
                    ) from None
                if exc.errno == errno.EADDRINUSE:
                    raise TkError(
                        f"--coordinator {address}: port {port} is already in use on this machine; "
                        "pick another port (the same on every process)"
                    ) from None
                raise


def check_backend(backend: str) -> None:
    if backend != "jax":
        raise TkError(
            f"multi-process training runs on the JAX backend (keras.distribution over jax.distributed), "
            f"not {backend}: set train.backend: jax in the recipe (or KERAS_BACKEND=jax); TensorFlow's "
            "MultiWorkerMirroredStrategy does not work with Keras 3 (keras-team/keras#20585)"
        )


def join(spec: JobSpec, backend: str) -> "Job":
    """Initialize JAX's distributed runtime for this process (before any JAX computation)."""
    check_backend(backend)
    if spec.coordinator is not None:
        check_coordinator(spec.coordinator, spec.process_id)
    import jax

    # gloo carries the collectives between CPU devices of different processes (GPUs use NCCL).
    jax.config.update("jax_cpu_collectives_implementation", "gloo")
    try:
        jax.distributed.initialize(
            coordinator_address=spec.coordinator,
            num_processes=spec.processes,
            process_id=spec.process_id,
            cluster_detection_method=None if spec.cluster else "deactivate",
            initialization_timeout=spec.join_timeout,
            heartbeat_timeout_seconds=spec.heartbeat_timeout,
        )
    except (ValueError, TypeError) as exc:  # what jax could not find out (cluster detection included)
        raise TkError(f"cannot join the job: {_missing(str(exc))}") from None
    devices = jax.devices()
    return Job(
        process=jax.process_index(),
        processes=jax.process_count(),
        devices=len(devices),
        local_devices=jax.local_device_count(),
        platform=devices[0].platform,
        coordinator=spec.coordinator or jax._src.distributed.global_state.coordinator_address,
    )


def _missing(message: str) -> str:
    for needle, flag in (
        ("coordinator", "--coordinator"),
        ("Number of processes", "--processes"),
        ("process id", "--process-id"),
    ):
        if needle in message:
            return (
                f"{flag} is not given and no cluster (SLURM, Open MPI, Kubernetes, Cloud TPU) says it; "
                "pass --processes, --process-id and --coordinator on every process"
            )
    return message


@dataclass(frozen=True)
class Job:
    """This process's place in the job; process 0 is the coordinator and the run folder's writer."""

    process: int = 0
    processes: int = 1
    devices: int = 1
    local_devices: int = 1
    platform: str = "cpu"
    coordinator: Optional[str] = None

    @property
    def writer(self) -> bool:
        return self.process == 0

    @property
    def multi(self) -> bool:
        return self.processes > 1

    @property
    def name(self) -> str:
        return f"process {self.process} of {self.processes}"

    def shard(self, items: Sequence) -> list:
        """This process's share of `items`: every processes-th one, from its id (the same on every run)."""
        return list(items[self.process :: self.processes])

    def gather(self, data: bytes) -> list[bytes]:
        """Every process's `data`, in process order."""
        if not self.multi:
            return [data]
        import numpy as np
        from jax.experimental import multihost_utils

        sizes = np.asarray(multihost_utils.process_allgather(np.array([len(data)], np.int64))).reshape(-1)
        padded = np.zeros(int(sizes.max()) or 1, np.uint8)
        padded[: len(data)] = np.frombuffer(data, np.uint8)
        rows = np.asarray(multihost_utils.process_allgather(padded)).reshape(self.processes, -1)
        return [bytes(row[: int(n)]) for row, n in zip(rows, sizes, strict=True)]

    def agree(self, what: str, value: str, fix: str) -> None:
        """TkError on every process unless every process has the same `value` (a digest)."""
        values = [v.decode() for v in self.gather(value.encode())]
        odd = [p for p, v in enumerate(values) if v != values[0]]
        if odd:
            p = odd[0]
            raise TkError(
                f"the job's processes differ in {what}: process {p}'s {values[p][:16]} is not process 0's "
                f"{values[0][:16]}" + (f" (and {len(odd) - 1} more)" if len(odd) > 1 else "") + f"; {fix}"
            )

    def all_ok(self, error: Optional[str]) -> None:
        """Every process learns whether any failed (error: its one line, or None): the failed one
        raises its own line, the others name it, so no process waits for a peer that gave up."""
        errors = [e.decode() for e in self.gather((error or "").encode())]
        if error:
            raise TkError(error)
        failed = [(p, e) for p, e in enumerate(errors) if e]
        if failed:
            p, line = failed[0]
            raise TkError(f"process {p} of the job stopped: {line}")

    def from_writer(self, value: Any) -> Any:
        """Process 0's `value` (JSON), on every process."""
        return json.loads(self.gather(json.dumps(value).encode())[0]) if self.multi else value

    def broadcast(self, arrays: list["np.ndarray"]) -> list["np.ndarray"]:
        """Process 0's arrays on every process; the others pass arrays of the same shapes and dtypes."""
        if not self.multi:
            return arrays
        import numpy as np
        from jax.experimental import multihost_utils

        return [np.asarray(a) for a in multihost_utils.broadcast_one_to_all(list(arrays))]

    def barrier(self, name: str) -> None:
        if self.multi:
            from jax.experimental import multihost_utils

            multihost_utils.sync_global_devices(name)

    def leave(self) -> None:
        """Every process is done: shut the runtime down together (at exit a lone process would wait)."""
        if self.multi:
            import jax

            jax.distributed.shutdown()

    def lost_peer(self, exc: BaseException) -> Optional[str]:
        """Why, when `exc` is a collective that failed because another process went away; else None."""
        text = str(exc).strip()
        signs = ("Gloo", "Connection reset", "Connection closed", "UNAVAILABLE")
        if not self.multi or not any(s in text for s in signs):
            return None
        return text.splitlines()[0][:200]

    def record(self, global_batch: int) -> dict:
        """What the manifest says about how the run was trained."""
        return {
            "processes": self.processes,
            "devices": self.devices,
            "device_platform": self.platform,
            "global_batch": global_batch,
            "per_process_batch": global_batch // self.processes,
        }


SOLO = Job()


def digest(*parts: Any) -> str:
    """sha256 of JSON-able parts (recipes, splits), key order fixed."""
    return hashlib.sha256(json.dumps(parts, sort_keys=True, default=str).encode()).hexdigest()


def weights_digest(arrays: Sequence["np.ndarray"]) -> str:
    """sha256 over every array's dtype, shape and bytes, in order: equal only for identical weights."""
    import numpy as np

    h = hashlib.sha256()
    for a in arrays:
        a = np.ascontiguousarray(a)
        h.update(f"{a.dtype.str}{a.shape}".encode())
        h.update(a.tobytes())
    return h.hexdigest()


def check_batch(global_batch: int, job: Job) -> None:
    """The recipe's batch_size is the global batch: it must split evenly over every device."""
    if job.multi and global_batch % job.devices:
        fit = -(-global_batch // job.devices) * job.devices
        raise TkError(
            f"train.batch_size {global_batch} is the job's global batch: it must split evenly over its "
            f"{job.devices} devices ({job.processes} processes x {job.local_devices}); use a multiple of "
            f"{job.devices}, e.g. {fit}"
        )
