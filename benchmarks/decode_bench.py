"""Decode once (issue 8) on this machine: the decoding epoch against plain multi-process Pillow,
and steady epochs from the decoded cache against training from in-memory arrays.

    PYTHONPATH=. .venv/bin/python benchmarks/decode_bench.py DIR [--size 224] [--train-size 64] [--repeats 2]

DIR holds the images (`python -m toolkit data synth DIR --classes 4 --per-class 500 --size 256`).
(a) pillow:  multiprocessing.Pool(cpu_count) mapping core.images.load_image over the files,
             results discarded: the ceiling for any decoder that uses Pillow on every core.
(b) decode:  train.decoded.decoded_images into a fresh cache folder (what tk train's first epoch
             does before the model runs), same files, same size; then also with one pass reading
             every row in shuffled batches of 32, as the first epoch does (uint8, no model).
(c) epochs:  MiniVGGNet at --train-size, one warm-up epoch then 2 timed epochs, fed by the cache
             through train.decoded.batches, against model.fit on the same uint8->float32 arrays.
Each leg runs --repeats times, interleaved; the best counts (the machine is shared: noise only adds).
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import numpy as np  # noqa: E402

from toolkit.core.images import is_image_name, load_image  # noqa: E402


def _decode(args):
    path, size = args
    load_image(path, (size, size))
    return None


def pillow_rate(paths, size) -> float:
    start = time.perf_counter()
    with multiprocessing.get_context("forkserver").Pool(os.cpu_count()) as pool:
        pool.map(_decode, [(p, size) for p in paths], chunksize=32)
    return len(paths) / (time.perf_counter() - start)


def decode_rate(paths, size) -> tuple[float, float]:
    """The cold decode alone, and the decode plus one pass reading every row in shuffled batches
    of 32 as the first epoch does (a memory-mapped result pays its page faults there)."""
    from toolkit.train.decoded import decoded_images

    with tempfile.TemporaryDirectory(prefix="tk-decode-bench-") as tmp:
        start = time.perf_counter()
        images = decoded_images(paths, size, Path(tmp))
        decoded = time.perf_counter() - start
        order = np.random.default_rng(0).permutation(len(paths))
        for i in range(0, len(order), 32):
            images[np.sort(order[i : i + 32])]
        read = time.perf_counter() - start
        del images
        return len(paths) / decoded, len(paths) / read


def epoch_rates(paths, labels, size, classes) -> tuple[float, float]:
    import keras

    from toolkit.core.recipe import ModelSection
    from toolkit.train.backbones import build_base, build_head, compose
    from toolkit.train.decoded import batches, decoded_images

    with tempfile.TemporaryDirectory(prefix="tk-decode-bench-") as tmp:
        images = decoded_images(paths, size, Path(tmp))
        rates = []
        for feed in ("cache", "arrays"):
            keras.utils.set_random_seed(0)
            section = ModelSection(backbone="mini_vgg", weights="none", image_size=size)
            base = build_base(section)
            head = build_head(tuple(base.output.shape[1:]), classes, section, "mini_vgg")
            model = compose(base, head, size, "none", base_training=None)
            model.compile(optimizer="adam", loss="sparse_categorical_crossentropy")
            if feed == "cache":
                feed_args = (batches(images, labels, 32, shuffle=True),)
                feed_kwargs: dict = {}
            else:
                feed_args = (images.astype(np.float32), labels)
                feed_kwargs = {"batch_size": 32, "shuffle": True}

            def fit(epochs, model=model, inputs=feed_args, kwargs=feed_kwargs):  # this round's model and data
                model.fit(*inputs, epochs=epochs, verbose=0, **kwargs)

            fit(1)  # warm-up: tracing/compilation
            start = time.perf_counter()
            fit(2)
            rates.append(2 * len(paths) / (time.perf_counter() - start))
        return rates[0], rates[1]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("folder", type=Path)
    parser.add_argument("--size", type=int, default=224)
    parser.add_argument("--train-size", type=int, default=64)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--decode-only", action="store_true", help="skip the training epochs (c)")
    args = parser.parse_args()
    paths = sorted(str(p) for p in args.folder.rglob("*") if p.is_file() and is_image_name(p))
    class_names = sorted({Path(p).parent.name for p in paths})
    labels = np.asarray([class_names.index(Path(p).parent.name) for p in paths], np.int32)
    best = {"pillow": 0.0, "decode": 0.0, "read": 0.0, "cache": 0.0, "arrays": 0.0}
    pairs = []  # (decode, decode + read) / the Pillow leg just before it: bursts of load hit both alike
    for _ in range(args.repeats):
        pillow = pillow_rate(paths, args.size)
        decode, read = decode_rate(paths, args.size)
        pairs.append((decode / pillow, read / pillow))
        best["pillow"] = max(best["pillow"], pillow)
        best["decode"], best["read"] = max(best["decode"], decode), max(best["read"], read)
        if args.decode_only:
            continue
        cache, arrays = epoch_rates(paths, labels, args.train_size, len(class_names))
        best["cache"], best["arrays"] = max(best["cache"], cache), max(best["arrays"], arrays)
    print(f"{len(paths)} images, {os.cpu_count()} cores, load {os.getloadavg()[0]:.2f}")
    print("| what | img/s |\n|---|---|")
    print(f"| plain Pillow, {os.cpu_count()} processes, {args.size} px | {best['pillow']:.0f} |")
    print(
        f"| tk decode once (cold cache), {args.size} px | {best['decode']:.0f} "
        f"({best['decode'] / best['pillow']:.0%} of Pillow) |"
    )
    print(
        f"| tk decode once + first read of every row, {args.size} px | {best['read']:.0f} "
        f"({best['read'] / best['pillow']:.0%} of Pillow) |"
    )
    print(
        f"median of the {len(pairs)} adjacent pairs: decode {np.median([a for a, _ in pairs]):.0%}, "
        f"decode + first read {np.median([b for _, b in pairs]):.0%} of Pillow "
        f"(pairs: {', '.join(f'{a:.0%}' for a, _ in pairs)})"
    )
    if args.decode_only:
        return
    print(f"| MiniVGGNet {args.train_size} px epoch, arrays in memory | {best['arrays']:.0f} |")
    print(
        f"| MiniVGGNet {args.train_size} px epoch, decoded cache (PyDataset) | {best['cache']:.0f} "
        f"({best['cache'] / best['arrays']:.0%} of arrays) |"
    )


if __name__ == "__main__":
    main()
