"""Decode once: the same pixels as core.images, decoded by worker processes, reused from disk."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from toolkit.core.context import Context
from toolkit.core.errors import TkError
from toolkit.core.images import load_image
from toolkit.train import decoded


def _paths(synth_root, n):
    return sorted(str(p) for p in synth_root.rglob("*.jpg"))[:n]


def test_worker_processes_decode_the_devices_pixels_once(synth_root, tmp_path, monkeypatch):
    paths = _paths(synth_root, 100)  # above IN_PROCESS_BELOW: the thread pool runs
    said: list[str] = []
    images = decoded.decoded_images(paths, 32, tmp_path, ctx=Context(say=said.append), label="train")
    assert images.dtype == np.uint8 and images.shape == (100, 32, 32, 3)
    for i in (0, 57, 99):
        assert np.array_equal(images[i], load_image(paths[i], (32, 32)).astype(np.uint8))
    assert "decoded once" in said[-1] and str(tmp_path / "decoded") in said[-1]
    # Served from the file the workers just wrote (its pages are in the OS cache), not a second copy.
    cached = list((tmp_path / "decoded").glob("*.npy"))
    assert isinstance(images, np.memmap) and not images.flags.writeable and [Path(images.filename)] == cached

    def no_decoding(*args, **kwargs):
        raise AssertionError("decoded again: the cache was not reused")

    monkeypatch.setattr(decoded, "_decode_into", no_decoding)
    again = decoded.decoded_images(paths, 32, tmp_path, ctx=Context(say=said.append))
    assert np.array_equal(again, images) and "reused" in said[-1]
    monkeypatch.setattr(decoded, "physical_memory", lambda: 1000)  # too big for RAM: memory-mapped
    mapped = decoded.decoded_images(paths, 32, tmp_path, ctx=Context(say=said.append))
    assert isinstance(mapped, np.memmap) and np.array_equal(mapped, images)


def test_a_changed_file_is_decoded_again_and_a_broken_one_is_named(synth_root, tmp_path):
    import shutil

    folder = tmp_path / "imgs"
    folder.mkdir()
    paths = [shutil.copy(p, folder) for p in _paths(synth_root, 5)]
    decoded.decoded_images(paths, 32, tmp_path / "cache")
    with open(paths[2], "wb") as fh:
        fh.write(b"not a jpeg")
    with pytest.raises(TkError, match=r"imgs/.*decoded when the split was made"):
        decoded.decoded_images(paths, 32, tmp_path / "cache")
    assert len(list((tmp_path / "cache" / "decoded").glob("*.npy"))) == 1  # nothing half-written kept


def test_batches_shuffle_every_epoch_and_cover_every_image(synth_root, tmp_path):
    images = decoded.decoded_images(_paths(synth_root, 20), 32, tmp_path)
    labels = np.arange(20)
    ds = decoded.batches(images, labels, 8, shuffle=True, seed=3)
    assert len(ds) == 3
    first = np.concatenate([ds[i][1] for i in range(len(ds))])
    ds.on_epoch_end()
    second = np.concatenate([ds[i][1] for i in range(len(ds))])
    assert sorted(first) == sorted(second) == list(range(20)) and list(first) != list(second)
    x, y = ds[0]
    assert x.dtype == np.uint8 and np.array_equal(x, images[y])  # the model's float32 Input casts them


def test_a_batch_buffer_is_reused_only_once_nobody_holds_it():
    images = np.arange(10 * 4 * 4 * 3, dtype=np.uint8).reshape(10, 4, 4, 3)
    buffers = decoded._BatchBuffers()
    first = buffers.take(images, np.array([0, 1, 2]))
    first_id = id(first)
    held = buffers.take(images, np.array([3, 4, 5]))  # `first` is still held: a second buffer
    assert id(held) != first_id and np.array_equal(first, images[[0, 1, 2]])
    del first
    again = buffers.take(images, np.array([6, 7, 8]))  # the first buffer, now free, is refilled
    assert id(again) == first_id and np.array_equal(again, images[[6, 7, 8]])
    assert np.array_equal(held, images[[3, 4, 5]])  # a batch still held is never overwritten
    short = buffers.take(images, np.array([9]))  # the last, short batch gets its own shape
    assert short.shape == (1, 4, 4, 3) and np.array_equal(short, images[[9]])


def test_uint8_batches_train_as_float32_ones_would(synth_root, tmp_path):
    """The step casts uint8 batches to the Input's float32: the same loss and weights as float32 input."""
    import keras

    images = decoded.decoded_images(_paths(synth_root, 16), 32, tmp_path)
    labels = np.arange(16) % 2

    def trained(x):
        keras.utils.set_random_seed(1)
        inputs = keras.Input((32, 32, 3))
        scaled = keras.layers.Rescaling(1 / 255)(inputs)
        model = keras.Model(inputs, keras.layers.Dense(2, activation="softmax")(keras.layers.Flatten()(scaled)))
        model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
        history = model.fit(x, epochs=2, verbose=0, shuffle=False)
        return history.history["loss"], model.get_weights()

    class Float32Batches(keras.utils.PyDataset):  # what batches() fed before: float32 copies
        def __len__(self):
            return 2

        def __getitem__(self, i):
            return images[i * 8 : (i + 1) * 8].astype(np.float32), labels[i * 8 : (i + 1) * 8]

    loss_u8, weights_u8 = trained(decoded.batches(images, labels, 8))
    loss_f32, weights_f32 = trained(Float32Batches())
    assert loss_u8 == pytest.approx(loss_f32, rel=1e-6)
    assert all(np.allclose(a, b, rtol=1e-6, atol=1e-7) for a, b in zip(weights_u8, weights_f32, strict=True))


def test_augmentation_trains_inside_a_wrapper_and_is_absent_from_the_model():
    import keras

    from toolkit.core.recipe import AugmentSection
    from toolkit.train.inputs import inner_model, training_model

    inputs = keras.Input((16, 16, 3))
    model = keras.Model(inputs, keras.layers.Dense(2)(keras.layers.GlobalAveragePooling2D()(inputs)), name="classifier")
    trainer = training_model(model, AugmentSection(flip="horizontal", rotation=0.1, zoom=0.1, contrast=0.1), seed=1)
    assert trainer is not model and trainer.get_layer("classifier") is model  # shared weights
    assert not any("random" in layer.name for layer in model.layers)
    assert inner_model(trainer, "classifier") is model
    x = np.random.default_rng(0).uniform(0, 255, (4, 16, 16, 3)).astype(np.float32)
    assert np.allclose(trainer(x, training=False), model(x))  # identity outside training
    assert not np.allclose(trainer(x, training=True), model(x))
    off = AugmentSection(flip="none", rotation=0.0, zoom=0.0, contrast=0.0)
    assert training_model(model, off, seed=1) is model


@pytest.mark.parametrize("count", [100, 5])  # the thread pool, and one thread below IN_PROCESS_BELOW
def test_decoding_reports_every_image_once_and_a_cache_hit_reports_nothing(synth_root, tmp_path, count):
    from fake_progress import RecordingProgress

    progress = RecordingProgress()
    paths = _paths(synth_root, count)
    decoded.decoded_images(paths, 32, tmp_path, ctx=Context(progress=progress), label="train")
    (task,) = progress.tasks
    assert (task.description, task.total, task.done, task.closed) == ("decoding train images", count, count, True)
    assert len(task.advances) == -(-count // decoded.CHUNK)  # one advance per chunk, as it lands
    decoded.decoded_images(paths, 32, tmp_path, ctx=Context(progress=progress), label="train")
    assert len(progress.tasks) == 1


@pytest.mark.skipif(not Path("/dev/full").exists(), reason="needs Linux's /dev/full (every write: ENOSPC)")
def test_a_full_disk_is_an_os_error_not_a_bad_image(synth_root):
    import errno

    # Rows are plain writes (a memory map would die of SIGBUS here): the error reaches the caller,
    # whose CLI turns ENOSPC into one line naming the folder; it is never listed as a bad file.
    with pytest.raises(OSError) as info:
        decoded._decode_chunk(("/dev/full", 128, 0, _paths(synth_root, 2), 32))
    assert info.value.errno == errno.ENOSPC
