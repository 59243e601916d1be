"""Which converter makes tk's OpenVINO IR: openvino.convert_model from the SavedModel, from the ONNX file,
or Keras' own model.export(format="openvino")? Parity against the Keras model and batch-1 latency.

    python benchmarks/openvino_converters.py convert RUN     # writes RUN/../ovconv/<route>/model.xml, prints parity
    python benchmarks/openvino_converters.py time RUN ROUTE --threads 1 --runs 300   # one JSON line (p50)

RUN must have been exported with --format savedmodel,onnx (the SavedModel and model.onnx are the sources).
Parity is on the run's test split through tk's own decoding (core.images.load_batch), against model.keras.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path

import numpy as np

ROUTES = ("savedmodel", "onnx", "keras")


def convert(run: Path) -> None:
    from toolkit.core.images import load_batch
    from toolkit.core.runs import load_manifest, load_split
    from toolkit.edge.openvino import compile_config, import_openvino
    from toolkit.export.reference import load_keras_model

    ov = import_openvino()
    model = load_keras_model(run / "model.keras")
    out = run.parent / "ovconv"
    for route in ROUTES:
        xml = out / route / "model.xml"
        xml.parent.mkdir(parents=True, exist_ok=True)
        start = time.perf_counter()
        if route == "savedmodel":
            ov.save_model(ov.convert_model(str(run / "saved_model")), str(xml), compress_to_fp16=False)
        elif route == "onnx":
            ov.save_model(ov.convert_model(str(run / "model.onnx")), str(xml), compress_to_fp16=False)
        else:
            model.export(str(xml), format="openvino", verbose=False)
        seconds = time.perf_counter() - start
        size = tuple(load_manifest(run)["preprocessing"]["size"])
        images = load_batch(load_split(run / "split.json").paths("test"), size)
        reference = np.asarray(model.predict(images, verbose=0, batch_size=32))
        compiled = ov.Core().compile_model(str(xml), "CPU", compile_config(2))  # f32, as tk runs IR
        probs = np.concatenate([np.asarray(compiled(images[i : i + 1])[0]) for i in range(len(images))])
        ops = len(ov.Core().read_model(str(xml)).get_ops())
        print(
            json.dumps(
                {
                    "route": route,
                    "convert_s": round(seconds, 1),
                    "ops": ops,
                    "bytes": xml.stat().st_size + xml.with_suffix(".bin").stat().st_size,
                    "max_abs_diff": float(np.abs(probs - reference).max()),
                    "agreement": float((probs.argmax(1) == reference.argmax(1)).mean()),
                    "images": len(images),
                }
            )
        )


def time_route(run: Path, route: str, threads: int, runs: int) -> None:
    from toolkit.edge.openvino import compile_config, import_openvino

    ov = import_openvino()
    xml = run.parent / "ovconv" / route / "model.xml"
    compiled = ov.Core().compile_model(str(xml), "CPU", compile_config(threads))
    request = compiled.create_infer_request()
    image = np.full((1, 224, 224, 3), 127.0, np.float32)
    for _ in range(10):
        request.infer({0: image})
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        request.infer({0: image})
        times.append((time.perf_counter() - start) * 1e3)
    print(json.dumps({"route": route, "threads": threads, "p50_ms": round(float(np.median(times)), 3)}))


def main() -> None:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("what", choices=("convert", "time"))
    parser.add_argument("run", type=Path)
    parser.add_argument("route", nargs="?", choices=ROUTES)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--runs", type=int, default=300)
    args = parser.parse_args()
    if args.what == "convert":
        convert(args.run)
    else:
        time_route(args.run, args.route, args.threads, args.runs)


if __name__ == "__main__":
    main()
