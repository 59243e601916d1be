"""MediaPipe Tasks ImageClassifier on tk's exported .tflite files, unchanged: same top-1 as tk predict?

Not a tk dependency: mediapipe (~650 MB installed) lives in its own venv and only reads the files.
Two steps, two interpreters:

  1. prepare (tk's venv): checks that RUN/model_{float32,float16,dynamic,int8}.tflite carry tk's
     TFLite metadata (labels = the manifest's classes), runs `tk predict FILE TEST_IMAGES... --json`
     on each, and stores the test images as tk decodes them (Pillow decode, EXIF transpose, RGB,
     bilinear resize to the model size) in OUT/images.npz, so MediaPipe gets the same pixels and
     does no resizing of its own.
  2. classify (mediapipe venv): ImageClassifier(max_results=1) on every image, for every file as
     tk exported it (the run folder's files, not copies); writes OUT/results.json and prints the
     agreement table. Exit 1 if any top-1 or class name differs.

Commands (see benchmarks/BENCHMARKS.md for the recorded run):

  python3 -m venv /tmp/mpvenv && /tmp/mpvenv/bin/pip install mediapipe        # 1.2.3
  tk train recipes/quickstart.yaml && tk export recipes/quickstart.yaml --format tflite --quantize all
  python benchmarks/mediapipe_check.py prepare exported/quickstart /tmp/mp     # tk's venv
  /tmp/mpvenv/bin/python benchmarks/mediapipe_check.py classify /tmp/mp

TK_PREDICT overrides the predict command (default "tk predict"). Relative image paths in
split.json are taken from the current directory (where tk train ran).
"""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import numpy as np

QUANTS = ("float32", "float16", "dynamic", "int8")


def prepare(run: Path, out: Path) -> None:
    from toolkit.core.images import load_batch
    from toolkit.edge.tflite_metadata import read_metadata

    out.mkdir(parents=True, exist_ok=True)
    manifest = json.loads((run / "manifest.json").read_text())
    split = json.loads((run / "split.json").read_text())
    test = [(Path(p), int(y)) for p, y in split["splits"]["test"]]
    # tk's own decode (the one Pillow path): whole 0..255 values, so uint8 loses nothing.
    images = load_batch([str(p) for p, _ in test], tuple(manifest["preprocessing"]["size"])).astype(np.uint8)
    np.savez(
        out / "images.npz",
        images=images,
        files=np.array([str(p) for p, _ in test]),
        run=np.array(str(run.resolve())),
        labels=np.array([y for _, y in test]),
        classes=np.array(manifest["classes"]),
    )

    predict = shlex.split(os.environ.get("TK_PREDICT", "tk predict"))
    tk = {}
    for q in QUANTS:
        name = f"model_{q}.tflite"
        metadata = read_metadata((run / name).read_bytes())
        if metadata is None or metadata["output"]["labels"] != manifest["classes"]:
            sys.exit(f"{run / name}: no tk metadata with the run's labels; export it with this tk first")
        res = subprocess.run(
            [*predict, str(run / name), *[str(p) for p, _ in test], "--json"],
            check=True,
            capture_output=True,
            text=True,
        )
        rows = json.loads(res.stdout[res.stdout.index("[") :])
        tk[q] = {r["file"]: {"label": r["label"], "probability": r["probability"]} for r in rows}
    (out / "tk_predict.json").write_text(json.dumps(tk, indent=1))
    print(f"prepared {len(test)} test images and {len(QUANTS)} models in {out}")


def classify(out: Path) -> int:
    import mediapipe as mp
    from mediapipe.tasks.python import BaseOptions
    from mediapipe.tasks.python.vision import ImageClassifier, ImageClassifierOptions

    data = np.load(out / "images.npz")
    files, classes = [str(f) for f in data["files"]], [str(c) for c in data["classes"]]
    tk = json.loads((out / "tk_predict.json").read_text())

    def make(path: Path):
        return ImageClassifier.create_from_options(
            ImageClassifierOptions(base_options=BaseOptions(model_asset_path=str(path)), max_results=1)
        )

    run = Path(str(data["run"]))
    results = {"mediapipe": mp.__version__, "images": len(files), "run": str(run)}
    failed = 0
    for q in QUANTS:
        row = {"same_top1": 0, "names_are_classes": True, "max_abs_score_diff": 0.0, "differ": []}
        with make(run / f"model_{q}.tflite") as clf:
            for i, f in enumerate(files):
                image = mp.Image(image_format=mp.ImageFormat.SRGB, data=np.ascontiguousarray(data["images"][i]))
                top = clf.classify(image).classifications[0].categories[0]
                ref = tk[q][f]
                row["names_are_classes"] &= top.category_name == classes[top.index]
                row["max_abs_score_diff"] = max(row["max_abs_score_diff"], abs(top.score - ref["probability"]))
                if top.category_name == ref["label"]:
                    row["same_top1"] += 1
                else:
                    row["differ"].append([f, ref["label"], top.category_name])
        failed += row["same_top1"] != len(files) or not row["names_are_classes"]
        results[q] = row
    (out / "results.json").write_text(json.dumps(results, indent=1))
    print(f"mediapipe {results['mediapipe']}; {len(files)} test images of {run}")
    print("| file | same top-1 as tk predict | category_name is the class name | max |score - tk prob| |")
    print("|---|---|---|---|")
    for q in QUANTS:
        r = results[q]
        print(f"| {q} | {r['same_top1']}/{len(files)} | {r['names_are_classes']} | {r['max_abs_score_diff']:.2g} |")
    return 1 if failed else 0


if __name__ == "__main__":
    if len(sys.argv) == 4 and sys.argv[1] == "prepare":
        prepare(Path(sys.argv[2]), Path(sys.argv[3]))
    elif len(sys.argv) == 3 and sys.argv[1] == "classify":
        sys.exit(classify(Path(sys.argv[2])))
    else:
        sys.exit(__doc__)
