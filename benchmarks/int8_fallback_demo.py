"""int8 with float fallback on a hard (low-margin) model: which layers stay float, at what cost.

The model is the stand-in MobileNetV2 of export_parity.py (random base with measured BatchNorm
statistics, frozen, head trained on cached features; 4 classes x 60 synthetic images): plain
int8 fails tk verify's >= 98% top-1 agreement with Keras on the test split. The gate is that
agreement; the search keeps the most sensitive layers float until it passes.

    python benchmarks/int8_fallback_demo.py RUN [--calibration-counts 50,100,200,500 --extra-images DIR]

RUN is a trained run folder (benchmarks/export_parity.py makes the stand-in model).
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np


def litert(model: bytes, threads: int = 2):
    from ai_edge_litert.interpreter import Interpreter

    return Interpreter(model_content=model, num_threads=threads)


def predict(model: bytes, images: np.ndarray) -> np.ndarray:
    """Probabilities for float32 0..255 images (quantized to the model's input type as a device would)."""
    interp = litert(model)
    inp, out = interp.get_input_details()[0], interp.get_output_details()[0]
    results = []
    for image in images:  # batch 1: the shape the model is deployed with
        interp.resize_tensor_input(inp["index"], [1, *image.shape])
        interp.allocate_tensors()
        x = image[None]
        if inp["dtype"] != np.float32:
            scale, zero = inp["quantization"]
            info = np.iinfo(inp["dtype"])
            x = np.clip(np.round(x / scale + zero), info.min, info.max).astype(inp["dtype"])
        interp.set_tensor(inp["index"], x)
        interp.invoke()
        y = interp.get_tensor(out["index"])[0]
        if out["dtype"] != np.float32:
            scale, zero = out["quantization"]
            y = (y.astype(np.float32) - zero) * scale
        results.append(y)
    return np.stack(results)


def p50(model: bytes, image: np.ndarray, threads: int, warmup: int = 20, runs: int = 300) -> float:
    interp = litert(model, threads)
    inp = interp.get_input_details()[0]
    interp.resize_tensor_input(inp["index"], [1, *image.shape])
    interp.allocate_tensors()
    interp.set_tensor(inp["index"], np.clip(np.round(image[None]), 0, 255).astype(inp["dtype"]))
    for _ in range(warmup):
        interp.invoke()
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        interp.invoke()
        times.append(time.perf_counter() - start)
    return float(np.median(times) * 1e3)


def representative_of(images: np.ndarray):
    def gen():
        for image in images:
            yield [image[None]]

    return gen


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("run", type=Path)
    parser.add_argument("--min-agreement", type=float, default=0.98)
    parser.add_argument("--metric", default="relative", choices=["relative", "rmse/scale"])
    parser.add_argument("--calibration-counts", default="", help="also: plain int8 agreement per calibration count")
    parser.add_argument("--extra-images", type=Path, help="more images of the same generator, for counts > train")
    args = parser.parse_args()

    from toolkit.core.context import Context
    from toolkit.core.images import load_batch
    from toolkit.core.recipe import load_recipe
    from toolkit.core.runs import load_split, stratified_sample
    from toolkit.export import int8_fallback
    from toolkit.export.converters import export_saved_model, tflite_from_saved_model
    from toolkit.export.job import ExportJob
    from toolkit.export.reference import load_keras_model

    run = args.run
    recipe = load_recipe(run / "recipe.yaml")
    job = ExportJob(run, recipe, 17, Context(say=print))
    calibration = job.calibration
    job.close()
    size = tuple(json.loads((run / "manifest.json").read_text())["preprocessing"]["size"])
    split = load_split(run / "split.json")
    test = load_batch([p for p, _ in split.splits["test"]], size)
    labels = np.array([label for _, label in split.splits["test"]])
    model = load_keras_model(run / "model.keras")
    reference = model.predict(test, verbose=0)
    top2 = np.sort(reference, 1)[:, -2:]
    print(
        f"Keras reference: accuracy {(reference.argmax(1) == labels).mean():.3f} on {len(test)} test images, "
        f"median top-1 probability {np.median(top2[:, 1]):.2f}, median top-1/top-2 margin "
        f"{np.median(top2[:, 1] - top2[:, 0]):.2f}; calibration {len(calibration)} train images"
    )

    def score(flatbuffer: bytes) -> dict:
        probs = predict(flatbuffer, test)
        return {
            "agreement": float((probs.argmax(1) == reference.argmax(1)).mean()),
            "accuracy": float((probs.argmax(1) == labels).mean()),
            "max_abs_diff": float(np.abs(probs - reference).max()),
        }

    with tempfile.TemporaryDirectory() as tmp:
        saved = Path(tmp) / "saved_model"
        export_saved_model(model, saved)
        rep = representative_of(calibration)
        rows = {
            "float32 TFLite": tflite_from_saved_model(saved, "none"),
            "int8 TFLite (tk export)": tflite_from_saved_model(saved, "int8", rep, "uint8"),
        }
        seen: list[bytes] = []  # every model the search tried, in order, for the table below

        def gate(flatbuffer: bytes):
            seen.append(flatbuffer)
            s = score(flatbuffer)
            return s["agreement"] >= args.min_agreement, s

        start = time.perf_counter()
        result = int8_fallback.search(saved, rep, "uint8", gate, metric=args.metric)
        print(f"search: {time.perf_counter() - start:.0f} s, {len(result['tried'])} tries, passed {result['passed']}")
        short = [name.split(";")[0] for name in result["ranked"]]  # fused ops: the first name says which
        print(f"{len(short)} candidate tensors; most sensitive ({args.metric}):", json.dumps(short[:10], indent=1))
        print(f"float layers kept ({len(result['float_layers'])}):", json.dumps(short[: len(result["float_layers"])]))
        for t, flatbuffer in zip(result["tried"], seen, strict=True):
            print("  tried " + ", ".join(f"{k} {v:.4g}" if isinstance(v, float) else f"{k} {v}" for k, v in t.items()))
            rows[
                f"int8, {t['float_layers']} layers float"
                + (" (search result)" if flatbuffer == result["model"] else "")
            ] = flatbuffer
        print("\n| model | size (MB) | agreement | accuracy | max abs diff | p50 1 thread (ms) | p50 2 threads (ms) |")
        print("|---|---:|---:|---:|---:|---:|---:|")
        for name, flatbuffer in rows.items():
            s = score(flatbuffer)
            lat = [p50(flatbuffer, test[0], t) for t in (1, 2)]
            print(
                f"| {name} | {len(flatbuffer) / 1e6:.2f} | {s['agreement']:.1%} | {s['accuracy']:.3f} | "
                f"{s['max_abs_diff']:.3f} | {lat[0]:.2f} | {lat[1]:.2f} |",
                flush=True,
            )

        if args.calibration_counts:
            pool = [p for p, _ in stratified_sample(split.splits["train"], 10**6, recipe.seed)]
            if args.extra_images:
                extra = [
                    (str(p), i)
                    for i, d in enumerate(sorted(args.extra_images.iterdir()))
                    for p in sorted(d.glob("*.jpg"))
                ]
                pool += [p for p, _ in stratified_sample(extra, 10**6, recipe.seed)]
            print(
                f"\n| calibration images | int8 agreement vs Keras | accuracy | max abs diff |  (pool: "
                f"{len(split.splits['train'])} train + extra)"
            )
            print("|---:|---:|---:|---:|")
            for count in (int(c) for c in args.calibration_counts.split(",")):
                images = load_batch(pool[:count], size)
                s = score(tflite_from_saved_model(saved, "int8", representative_of(images), "uint8"))
                print(
                    f"| {len(images)} | {s['agreement']:.1%} | {s['accuracy']:.3f} | {s['max_abs_diff']:.3f} |",
                    flush=True,
                )


if __name__ == "__main__":
    sys.exit(main())
