"""Feature extraction: the seed notebooks' predict loop against tk, over the same images.

    .venv/bin/python benchmarks/feature_extraction.py [--images 450] [--size 180] [--repeats 2]

(a) loop:     what the seed notebooks do. For each batch of 32 files: keras.utils.load_img +
              img_to_array, the application's preprocess_input, conv_base.predict(batch).
(b) tk:       toolkit.features.run_extractor, engine tflite (the default: SavedModel export, TFLite
              conversion, LiteRT/XNNPACK with Pillow decoding on threads), and engine keras
              (the images decoded once into a fresh uint8 cache, then one predict over a PyDataset
              of it). Decode and conversion included.
(c) cache:    two train() calls of a features-mode recipe; the second finds the features cached.

Same images for every method (synthetic 320 px JPEGs, decoded to the model size), random weights
(the speed of a network does not depend on its weight values; ImageNet weights need internet).
Each method runs --repeats times, interleaved; the best time counts (the machine is shared:
noise only adds).
Prints a Markdown table; paste it into benchmarks/BENCHMARKS.md with the `uptime` load.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT))  # after PYTHONPATH: another checkout can be timed with this script

import toolkit.train.features as features_module  # noqa: E402
from toolkit.core.recipe import ModelSection, recipe_from_dict  # noqa: E402
from toolkit.data.synth import make_synthetic_dataset  # noqa: E402
from toolkit.train.backbones import build_base, get_backbone  # noqa: E402
from toolkit.train.features import build_extractor, extractor_key, run_extractor  # noqa: E402

KERAS_APPS = {"mobilenet_v2": ("MobileNetV2", "mobilenet_v2"), "vgg16": ("VGG16", "vgg16")}


def seed_loop(paths: list[str], size: int, backbone: str) -> np.ndarray:
    """The notebooks' extraction: decode, preprocess and predict one batch at a time."""
    import keras

    ctor, module = KERAS_APPS[backbone]
    conv_base = getattr(keras.applications, ctor)(weights=None, include_top=False, input_shape=(size, size, 3))
    preprocess_input = getattr(keras.applications, module).preprocess_input
    features = []
    for i in range(0, len(paths), 32):
        batch = np.array(
            [keras.utils.img_to_array(keras.utils.load_img(p, target_size=(size, size))) for p in paths[i : i + 32]]
        )
        features.append(conv_base.predict(preprocess_input(batch), verbose=0))
    return np.concatenate(features)


def tk_extract(paths: list[str], size: int, backbone: str, engine: str, cache_dir=None) -> np.ndarray:
    """tk's extraction; with cache_dir the converted TFLite extractor is kept there (and reused)."""
    model = ModelSection(backbone=backbone, weights="none", image_size=size)
    extractor = build_extractor(build_base(model), size, get_backbone(backbone).scaling)
    key = extractor_key(model, engine, seed=0) if cache_dir else None
    if engine == "keras":  # a cold decoded-image cache every time, as a first extraction finds it
        with tempfile.TemporaryDirectory(prefix="tk-bench-decoded-") as tmp:
            features_module.CACHE_DIR = Path(tmp)
            return run_extractor(extractor, paths, size, engine, key=key, cache_dir=cache_dir)
    return run_extractor(extractor, paths, size, engine, key=key, cache_dir=cache_dir)


def timed(fn) -> tuple[float, np.ndarray]:
    start = time.perf_counter()
    out = fn()
    return time.perf_counter() - start, out


def cached_head(workdir: Path, root: Path, size: int, backbone: str, epochs: int) -> tuple[dict, dict]:
    """Two train() calls of the same features-mode recipe: wall time and feature-phase time."""
    import json

    import keras

    from toolkit.train.phases import train

    features_module.CACHE_DIR = workdir / "cache"
    # features mode refuses random weights (meaningless features); a weights file of a randomly
    # initialised base runs exactly the same computation as the ImageNet one.
    ctor, _ = KERAS_APPS[backbone]
    weights = workdir / f"{backbone}.weights.h5"
    getattr(keras.applications, ctor)(weights=None, include_top=False, input_shape=(size, size, 3)).save_weights(
        weights
    )
    recipe = recipe_from_dict(
        {
            "name": f"bench_{backbone}",
            "seed": 1,
            "data": {"root": str(root)},
            "model": {"backbone": backbone, "weights": str(weights), "image_size": size},
            "train": {"mode": "features", "epochs": epochs, "batch_size": 32},
        }
    )
    wall, phase = {}, {}
    for run in ("first", "second"):
        start = time.perf_counter()
        result = train(recipe, runs_dir=workdir / "runs")
        wall[run] = time.perf_counter() - start
        phase[run] = json.loads((result.run_dir / "phases" / "features" / "done.json").read_text())["seconds"]
    return wall, phase


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=450, help="synthetic images (3 classes)")
    parser.add_argument("--source-size", type=int, default=320, help="side of the synthetic JPEGs")
    parser.add_argument("--size", type=int, default=180, help="model input size")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--backbones", default="mobilenet_v2,vgg16")
    parser.add_argument("--cache-backbone", default="vgg16", help="backbone of the cached-head run ('' skips)")
    parser.add_argument("--epochs", type=int, default=10, help="head epochs in the cached-head run")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="tk-bench-") as tmp:
        workdir = Path(tmp)
        root = make_synthetic_dataset(
            workdir / "images", classes=3, per_class=args.images // 3, size=args.source_size, seed=0
        )
        paths = sorted(str(p) for p in root.glob("*/*.jpg"))
        for p in paths:  # warm the page cache so the first method does not pay for the disk
            Path(p).read_bytes()
        load = subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
        print(f"{len(paths)} JPEGs at {args.source_size} px -> {args.size} px; {os.cpu_count()} cores; load: {load}\n")
        rows = []
        for backbone in args.backbones.split(","):
            cache = workdir / f"extractors-{backbone}"
            tk_extract(paths[:1], args.size, backbone, "tflite", cache)  # converts once, untimed
            # Default arguments bind this backbone's values: each call runs the method it names.
            methods = {
                "seed loop (load_img + predict per batch)": lambda b=backbone: seed_loop(paths, args.size, b),
                "tk, engine tflite, conversion included": lambda b=backbone: tk_extract(paths, args.size, b, "tflite"),
                "tk, engine tflite, converted extractor cached": lambda b=backbone, c=cache: tk_extract(
                    paths, args.size, b, "tflite", c
                ),
                "tk, engine keras (decode once + predict)": lambda b=backbone: tk_extract(paths, args.size, b, "keras"),
            }
            # Rounds interleave the methods, so a burst of load from other jobs hits all of them.
            times: dict[str, list[float]] = {name: [] for name in methods}
            for _ in range(args.repeats):
                for name, run in methods.items():
                    seconds, out = timed(run)
                    assert out.shape[0] == len(paths)
                    times[name].append(seconds)
            loop_s = min(times["seed loop (load_img + predict per batch)"])
            for name, measured in times.items():
                rows.append((backbone, name, measured, loop_s / min(measured)))
        print("| backbone | method | best s | images/s | speed-up vs loop | every run (s) |")
        print("|---|---|---:|---:|---:|---|")
        for backbone, method, measured, ratio in rows:
            print(
                f"| {backbone} @ {args.size} px | {method} | {min(measured):.2f} | {len(paths) / min(measured):.0f} "
                f"| {ratio:.2f}x | {', '.join(f'{t:.2f}' for t in measured)} |"
            )
        if args.cache_backbone:
            wall, phase = cached_head(workdir, root, args.size, args.cache_backbone, args.epochs)
            print(
                f"\ncached head training ({args.cache_backbone} @ {args.size} px, {args.epochs} head epochs, "
                f"features of train+validation):\n"
            )
            print("| run | features phase (s) | whole train() (s) |")
            print("|---|---:|---:|")
            for run in ("first", "second"):
                print(f"| {run} | {phase[run]:.1f} | {wall[run]:.1f} |")
            print(f"| speed-up | {phase['first'] / phase['second']:.1f}x | {wall['first'] / wall['second']:.1f}x |")
        print(f"\nload after: {subprocess.run(['uptime'], capture_output=True, text=True).stdout.strip()}")


if __name__ == "__main__":
    main()
