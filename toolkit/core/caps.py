"""Caps on the numbers a user passes, relative to the machine, each refused with a message before
the work starts: a thread count a runtime cannot create (50000 hung bench, 100000 aborted predict),
a batch that cannot fit in memory (the measuring child died of MemoryError), a synthetic image so
large that drawing it never ends. Standard library (psutil where installed, as on every tk install).
"""

from __future__ import annotations

import os

from .errors import TkError

# Oversubscribing a few times over is a fair experiment (a Pi with 4 cores benched at 8 threads);
# thousands of threads per core only exhaust the runtime's thread pool or the process limit.
THREADS_PER_CORE = 4
# A batch's float32 input is copied about three times on its way in (the decoded batch, the
# runtime's input tensor, a quantized copy for int8), before the model's own activations.
BATCH_COPIES = 3
# The synthetic data makes small learnable images: the largest keras.applications input is 600 px.
SYNTH_MAX_SIZE = 1024
SYNTH_MAX_PER_CLASS = 10_000


def cores() -> int:
    return os.cpu_count() or 1


def max_threads() -> int:
    return THREADS_PER_CORE * cores()


def check_threads(counts, option: str = "--threads") -> None:
    """Every count in 1 .. THREADS_PER_CORE x the cores here, or one line naming the first that is not."""
    for count in counts:
        if count < 1:
            raise TkError(f"{option}: must be >= 1 (got {count})")
        if count > max_threads():
            raise TkError(
                f"{option}: at most {max_threads()} threads on this machine ({THREADS_PER_CORE} per core, "
                f"{cores()} cores) (got {count}); pass a count up to that"
            )


def available_memory() -> int:
    """Bytes of memory free for a new allocation now (psutil's "available"; sysconf where absent)."""
    try:
        import psutil

        return int(psutil.virtual_memory().available)
    except ImportError:
        return os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")


def check_batch(batch: int, size: tuple[int, int], option: str = "--batch") -> None:
    """A batch of `size` images whose float32 input (with its copies) fits in half the memory available."""
    per_image = int(size[0]) * int(size[1]) * 3 * 4 * BATCH_COPIES
    budget = available_memory() // 2
    if batch * per_image > budget:
        fits = max(budget // per_image, 1)
        raise TkError(
            f"{option}: {batch} images of {size[0]}x{size[1]} need about {batch * per_image / 2**30:.1f} GiB "
            f"for their input alone, over half the {2 * budget / 2**30:.1f} GiB available here; "
            f"pass {option} {fits} or less"
        )
