"""Images decoded once: uint8 at the model's input size, cached on disk, fed to every epoch.

Each file goes through core.images.load_pixels (load_image's Pillow path the devices use: EXIF orientation,
CMYK, 16-bit, alpha, bilinear resize) exactly once, in threads over all cores; the
result is an (N, size, size, 3) uint8 .npy under <cache>/decoded/, keyed by the files' paths,
sizes and modification times plus the input size (stat only: hashing every file's bytes would
read the data set a second time). It is written atomically and reused by every epoch, phase and
re-run. The threads write their rows straight into the file (plain writes at each row's offset: no
page faults on a fresh memory map, no msync, and a full disk is an OSError, not a SIGBUS), and the
caller gets a read-only map of the file it just wrote: those pages are already in RAM as the OS
cache, so reading them back into a second copy would only cost time (a fifth of the decode on 2
cores) and double the memory. A cache reused from an earlier run is loaded into RAM when it fits
in RAM_FRACTION of physical memory (one sequential read), else memory-mapped; either way memory
stays bounded. Batches come through a keras PyDataset, so the same code feeds TensorFlow, JAX and
PyTorch; augmentation runs in the model's training step.
"""

from __future__ import annotations

import hashlib
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Optional

import numpy as np

from ..core.context import SILENT, Context
from ..core.errors import TkError
from ..core.images import BadImage, load_pixels
from ..core.io import atomic_path, format_size

# Below this many images one thread decodes them all.
IN_PROCESS_BELOW = 64
CHUNK = 64
# Decoded arrays larger than this share of physical memory stay memory-mapped on disk.
RAM_FRACTION = 0.25


def decoded_key(paths: list[str], size: int) -> str:
    digest = hashlib.sha256(f"decoded-uint8|{size}|v1".encode())
    for path in paths:
        st = os.stat(path)
        digest.update(f"{os.path.abspath(path)}|{st.st_size}|{st.st_mtime_ns}\n".encode())
    return digest.hexdigest()[:32]


def physical_memory() -> int:
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not POSIX: assume small, prefer the memmap
        return 4 * 2**30


def decoded_images(paths: list[str], size: int, cache_dir: Path, ctx: Context = SILENT, label: str = "") -> np.ndarray:
    """(N, size, size, 3) uint8 for `paths`, from the cache or decoded once and stored there."""
    path = Path(cache_dir) / "decoded" / f"{decoded_key(paths, size)}.npy"
    nbytes = len(paths) * size * size * 3
    if path.is_file():
        ctx.say(
            f"images {label}: decoded earlier, reused ({len(paths)} images, {format_size(nbytes, binary=True)}, {path})"
        )
        in_ram = nbytes <= RAM_FRACTION * physical_memory()
        return np.load(path) if in_ram else np.load(path, mmap_mode="r")
    start = time.perf_counter()
    with atomic_path(path, suffix=".npy") as tmp:
        header = np.lib.format.open_memmap(tmp, mode="w+", dtype=np.uint8, shape=(len(paths), size, size, 3))
        offset = header.offset  # rows start after the .npy header; the file is sparse until written
        del header
        with ctx.progress.task(" ".join(filter(None, ("decoding", label, "images"))), len(paths)) as task:
            _decode_into(str(tmp), offset, paths, size, task.advance)
    seconds = time.perf_counter() - start
    ctx.say(
        f"images {label}: {len(paths)} decoded once in {seconds:.1f} s "
        f"({len(paths) / max(seconds, 1e-9):.0f} images/s), cached at {path} ({format_size(nbytes, binary=True)})"
    )
    return np.load(path, mmap_mode="r")  # just written: its pages are in the OS cache already


def _decode_into(target: str, offset: int, paths: list[str], size: int, advance=lambda n: None) -> None:
    jobs = [(target, offset, start, paths[start : start + CHUNK], size) for start in range(0, len(paths), CHUNK)]
    workers = min(os.cpu_count() or 1, len(jobs))
    errors = []
    if len(paths) < IN_PROCESS_BELOW or workers < 2:
        for job in jobs:
            errors.append(_decode_chunk(job))
            advance(len(job[3]))
    else:
        # Threads, not processes: Pillow releases the GIL while it decodes and resizes, and a worker
        # process costs ~0.4 CPU s and ~35,000 page faults to start (numpy, Pillow): more than
        # decoding 1,000 photos at 64 px takes (issue 19: tk's first epoch against the tutorial's).
        with ThreadPoolExecutor(workers) as pool:
            # map, in order: each finished chunk advances the progress as it lands.
            for job, bad in zip(jobs, pool.map(_decode_chunk, jobs), strict=True):
                errors.append(bad)
                advance(len(job[3]))
    bad = [e for chunk in errors for e in chunk]
    if bad:
        # Files were checked when the split was made; one that fails now changed under us.
        path, reason = bad[0]
        raise TkError(
            f"{path}: {reason} (it decoded when the split was made); fix or remove it and train again"
            + (f" ({len(bad) - 1} more files failed)" if len(bad) > 1 else "")
        )


def _decode_chunk(job) -> list[tuple[str, str]]:
    target, offset, start, paths, size = job
    row = size * size * 3
    bad = []
    with open(target, "r+b") as out:
        for i, path in enumerate(paths):
            try:
                pixels = np.ascontiguousarray(load_pixels(path, (size, size)), dtype=np.uint8)
            except (BadImage, OSError) as exc:
                bad.append((path, str(exc)))
                continue
            # Outside the try: a write error (disk full) is not a bad image; it reaches the caller.
            out.seek(offset + (start + i) * row)
            out.write(memoryview(pixels).cast("B"))
    return bad


def batches(images: np.ndarray, labels: Optional[np.ndarray], batch_size: int, shuffle: bool = False, seed: int = 0):
    """A keras PyDataset over decoded images: uint8 0..255 batches (and labels).

    uint8, not float32: the model's float32 Input casts them inside the compiled step. A float32
    copy per batch (1.5 MB at 64 px, 19 MB at 224 px) is fresh memory every time: its pages fault
    in, and the data adapter copies four times the bytes (issue 19: a third of tk's page faults).

    Under a JAX DataParallel distribution every batch must split evenly over the devices: the
    last, short batch is padded by repeating its own rows (callers trim predictions to N).

    Each batch is gathered into a buffer of a small pool (_BatchBuffers) rather than fresh memory:
    a fresh 4.8 MB batch at 224 px faults in ~1,200 pages every step (issue 19).
    """
    import keras

    shards = _batch_shards()
    buffers = _BatchBuffers()

    class DecodedBatches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            self.rng = np.random.default_rng(seed)
            self.order = self.rng.permutation(len(images)) if shuffle else np.arange(len(images))

        def __len__(self):
            return -(-len(images) // batch_size)

        def __getitem__(self, index):
            # Sorted within the batch: sequential reads when the array is memory-mapped.
            rows = np.sort(self.order[index * batch_size : (index + 1) * batch_size])
            if len(rows) % shards:
                rows = np.resize(rows, -(-len(rows) // shards) * shards)
            x = buffers.take(images, rows)
            return x if labels is None else (x, labels[rows])

        def on_epoch_end(self):
            if shuffle:
                self.order = self.rng.permutation(len(images))

    return DecodedBatches()


class _BatchBuffers:
    """Batch arrays reused once nobody else holds them.

    A backend's data adapter copies a batch into its own tensor (TensorFlow's from_generator, a
    JAX device_put) or keeps the array itself (torch.from_numpy, a zero-copy device_put, a
    prefetch queue). Which one is the backend's business, so a buffer is reused only when the
    pool's own reference is the last one left (its reference count): a batch still queued or
    aliased is never overwritten. Thread-safe: a PyDataset may call __getitem__ from workers.
    """

    # References to a pooled array when nobody else holds it: the pool's list, the loop variable
    # and getrefcount's argument.
    _UNHELD = 3

    def __init__(self, limit: int = 8):
        self.limit = limit
        self.pool: list[np.ndarray] = []
        self.lock = threading.Lock()

    def take(self, images: np.ndarray, rows: np.ndarray) -> np.ndarray:
        shape = (len(rows), *images.shape[1:])
        with self.lock:
            buffer = None
            for candidate in self.pool:
                if candidate.shape == shape and sys.getrefcount(candidate) <= self._UNHELD:
                    buffer = candidate
                    break
            if buffer is None:
                buffer = np.empty(shape, images.dtype)
                if len(self.pool) < self.limit:
                    self.pool.append(buffer)
            # Held by this call from here on, so no other thread picks it.
            # mode="clip": with the default "raise", numpy gathers into a temporary and copies it.
            return np.take(images, rows, axis=0, out=buffer, mode="clip")


def _batch_shards() -> int:
    import keras

    distribution = keras.distribution.distribution()
    return int(distribution.device_mesh.shape[0]) if distribution is not None else 1
