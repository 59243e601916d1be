"""A job's input: each process feeds its own rows of every global batch, and holds only those.

The recipe's train.batch_size is the global batch (what one optimizer step sees, whatever the
number of processes), so a recipe trained on one GPU means the same on a cluster. Each process owns
a fixed share of every split (Job.shard: image i belongs to process i mod N), decodes only that
share (decoding is shared out, never repeated on every host), shuffles it each epoch with its own
seed, and yields batch_size / N of its rows per step; keras.distribution's DataParallel
assembles the global batch from the processes' parts (jax.make_array_from_process_local_data).

Every process must take the same number of steps with parts of the same size, or the collectives
would wait forever: the steps follow the largest share, and a part that runs short is padded with
its own rows at sample weight 0, which the loss and the metrics ignore. The recipe's class weights
become sample weights for the same reason (Keras takes one or the other).
"""

from __future__ import annotations

from typing import Optional

import numpy as np

from ..core.errors import TkError
from .job import Job


def shard_size(total: int, job: Job) -> int:
    """The largest share of `total` items: the one every process's steps follow."""
    return -(-total // job.processes)


def check_shards(split: str, total: int, job: Job) -> None:
    if total < job.processes:
        raise TkError(
            f"the {split} split has {total} image(s), fewer than the job's {job.processes} processes; "
            "add images, or train with fewer processes"
        )


def sharded_batches(
    data: np.ndarray,
    labels: np.ndarray,
    total: int,
    global_batch: int,
    job: Job,
    shuffle: bool = False,
    seed: int = 0,
    class_weight: Optional[dict[int, float]] = None,
    label_ids: Optional[np.ndarray] = None,
):
    """A keras PyDataset over this process's share (`data`, `labels`: its rows of a split of `total`
    items): (x float32, y, sample_weight) per step, this process's part of the global batch.

    label_ids: the integer classes of the rows, for class weights when `labels` are one-hot targets."""
    import keras

    local = global_batch // job.processes
    steps = max(1, -(-shard_size(total, job) // local))
    largest = shard_size(total, job)
    per_class = None
    if class_weight is not None:
        ids = np.asarray(labels if label_ids is None else label_ids, np.int64)
        per_class = np.array([class_weight.get(int(k), 1.0) for k in ids], np.float32)

    class ShardBatches(keras.utils.PyDataset):
        def __init__(self):
            super().__init__()
            # Its own stream per process: the shares differ, so must their orders.
            self.rng = np.random.default_rng([seed, job.process])
            self.order = self.rng.permutation(len(data)) if shuffle else np.arange(len(data))

        def __len__(self):
            return steps

        def __getitem__(self, index):
            # Sorted within the part: sequential reads when the share is memory-mapped.
            rows = np.sort(self.order[index * local : (index + 1) * local])
            # What the largest share has in this step, rounded up so every local device gets rows.
            size = min(local, largest - index * local)
            size = -(-size // job.local_devices) * job.local_devices
            weight = np.ones(size, np.float32) if per_class is None else np.zeros(size, np.float32)
            if per_class is not None:
                weight[: len(rows)] = per_class[rows]
            weight[len(rows) :] = 0.0
            rows = np.resize(rows if len(rows) else self.order[:1], size)
            return data[rows].astype(np.float32), labels[rows], weight

        def on_epoch_end(self):
            if shuffle:
                self.order = self.rng.permutation(len(data))

    return ShardBatches()
