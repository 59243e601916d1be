"""Export and parity figures for the closing note: MobileNetV2 (alpha 1.0, 224 px) and VGG16 (180 px).

ImageNet weights cannot be downloaded on the build machine, so the models are trained on a
procedural dataset (3 classes x 80 images, 256 px): each backbone from scratch (weights: none,
mode: scratch) for --epochs epochs, and MobileNetV2 (whose short scratch run is degenerate) once
more with a "stand-in" pretrained base (random init with BatchNorm statistics measured on other
synthetic images, see standin_weights) frozen under a head trained on cached features. The figures
measure the conversions (sizes, parity, accuracy of each artifact against its reference), not how
good the classifiers are. Every step is the `tk` CLI:

    python benchmarks/export_parity.py --root /tmp/bench-runs            # all steps, then the table
    python benchmarks/export_parity.py --root /tmp/bench-runs --report   # the table from existing runs

which runs, per model:  tk data synth ROOT/data --classes 3 --per-class 80 --size 256 (once),
tk train ROOT/<name>.yaml --runs-dir ROOT/runs, tk export <run>, tk verify <run> (the recipes are
written to ROOT/<name>.yaml; a run with a parity.json is kept, delete it to redo it).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import yaml

BACKBONES = {
    "mobilenet_v2_224": {"backbone": "mobilenet_v2", "alpha": 1.0, "image_size": 224},
    "vgg16_180": {"backbone": "vgg16", "image_size": 180},
}
# Run name -> (backbone entry, how it is trained). "scratch": weights none, every layer trained for
# --epochs. "standin": a stand-in for a pretrained base (see standin_weights), frozen, with a head
# trained on its cached features: a non-degenerate reference where a short scratch run is not
# (MobileNetV2; VGG16 from scratch already predicts more than one class after 2 epochs).
MODELS = {
    "mobilenet_v2_224": ("mobilenet_v2_224", "scratch"),
    "vgg16_180": ("vgg16_180", "scratch"),
    "mobilenet_v2_224_standin": ("mobilenet_v2_224", "standin"),
}


def recipe(name: str, root: Path, epochs: int) -> dict:
    backbone, how = MODELS[name]
    train = {"mode": "scratch", "epochs": epochs, "batch_size": 16, "learning_rate": 1e-4}
    weights = "none"
    if how == "standin":
        train = {"mode": "features", "epochs": 15, "batch_size": 16, "learning_rate": 1e-3}
        weights = str(root / f"{backbone}_standin.weights.h5")
    return {
        "name": name,
        "seed": 1,
        "data": {"root": str(root / "data"), "split": {"train": 0.7, "validation": 0.15, "test": 0.15}},
        "model": {
            **BACKBONES[backbone],
            "weights": weights,
            "head": {"pooling": "avg", "dense": [128], "dropout": 0.3},
        },
        "train": {**train, "augment": {"flip": "none", "rotation": 0.0, "zoom": 0.0}},
        "export": {"calibration_samples": 100},
    }


def standin_weights(root: Path, backbone: str) -> Path:
    """Random-init weights whose BatchNorm statistics are measured on images (momentum 0, one
    training-mode pass over 60 images of a separate synthetic set), saved as a weights file.

    keras.applications' MobileNetV2 uses BatchNorm momentum 0.999: after a few dozen training
    steps its moving statistics are still at their initial values, so a short scratch run
    predicts one near-constant output for every image (verify warns). A base with measured
    statistics gives varied, realistic activation ranges, which is what int8 calibration and
    parity need. VGG16 has no BatchNorm: its stand-in is plain random init.
    """
    path = root / f"{backbone}_standin.weights.h5"
    if path.is_file():
        return path
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    import keras

    from toolkit.backbones import get_backbone
    from toolkit.images import load_batch

    spec = BACKBONES[backbone]
    size = spec["image_size"]
    keras.utils.set_random_seed(5)
    kwargs = {"alpha": spec["alpha"]} if "alpha" in spec else {}
    ctor = getattr(keras.applications, get_backbone(spec["backbone"]).keras_app)
    base = ctor(weights=None, include_top=False, input_shape=(size, size, 3), **kwargs)
    batch_norms = [layer for layer in base.layers if isinstance(layer, keras.layers.BatchNormalization)]
    if batch_norms:
        if not (root / "bn-data").is_dir():
            tk(
                "data",
                "synth",
                str(root / "bn-data"),
                "--classes",
                "3",
                "--per-class",
                "20",
                "--size",
                "256",
                "--seed",
                "7",
            )
        for layer in batch_norms:
            layer.momentum = 0.0
        images = load_batch(sorted(str(p) for p in (root / "bn-data").rglob("*.jpg")), (size, size))
        base(images / 127.5 - 1.0, training=True)  # MobileNetV2's "tf" scaling, as tk's Preprocess does
    base.save_weights(str(path))
    return path


def tk(*args: str) -> float:
    """Run one tk command (niced: the machine is shared), echoing it; return its wall time."""
    command = ["nice", "-n", "10", str(Path(sys.executable).with_name("tk")), *args]
    print("$ tk " + " ".join(args), flush=True)
    start = time.perf_counter()
    code = subprocess.call(command, env={**os.environ, "TF_CPP_MIN_LOG_LEVEL": "3"})
    if code not in (0, 1):
        raise SystemExit(f"tk {args[0]} crashed with exit code {code}")
    return time.perf_counter() - start


def run_all(root: Path, epochs: int) -> dict[str, dict[str, float]]:
    timings: dict[str, dict[str, float]] = {}
    if not (root / "data").is_dir():
        tk("data", "synth", str(root / "data"), "--classes", "3", "--per-class", "80", "--size", "256")
    for name, (backbone, how) in MODELS.items():
        if how == "standin":
            standin_weights(root, backbone)
        path = root / f"{name}.yaml"
        path.write_text(yaml.safe_dump(recipe(name, root, epochs), sort_keys=False))
        run = root / "runs" / name
        if (run / "parity.json").is_file():  # finished earlier: keep it (delete the run to redo it)
            continue
        timings[name] = {
            "train": tk("train", str(path), "--runs-dir", str(root / "runs")),
            "export": tk("export", str(run)),
            "verify": tk("verify", str(run)),
        }
        done = json.loads((root / "timings.json").read_text()) if (root / "timings.json").is_file() else {}
        (root / "timings.json").write_text(json.dumps({**done, name: timings[name]}, indent=2))
    return timings


def table(root: Path) -> str:
    timings = json.loads((root / "timings.json").read_text()) if (root / "timings.json").is_file() else {}
    out = []
    for name in MODELS:
        run = root / "runs" / name
        if not (run / "parity.json").is_file():
            continue
        manifest = json.loads((run / "manifest.json").read_text())
        parity = json.loads((run / "parity.json").read_text())
        t = timings.get(name, {})
        out.append(
            f"**{name}** ({manifest['backbone']}, {manifest['preprocessing']['size'][0]} px, "
            f"{len(manifest['classes'])} classes): reference model.keras "
            f"{manifest['artifacts']['model.keras']['size_bytes'] / 1e6:.1f} MB, test accuracy "
            f"{parity['reference']['accuracy']:.3f} on {parity['count']} {parity['split']} images"
            + (f"; train {t['train']:.0f} s, export {t['export']:.0f} s, verify {t['verify']:.0f} s" if t else "")
        )
        for warning in parity["reference"]["warnings"]:
            out.append(f"(verify warned: {warning})")
        out.append("")
        out.append(
            "| artifact | kind | size (MB) | agreement | max abs diff | mean abs diff | accuracy | delta | pass |"
        )
        out.append("|---|---|---:|---:|---:|---:|---:|---:|:-:|")
        for file, r in parity["artifacts"].items():
            size = manifest["artifacts"][file]["size_bytes"] / 1e6
            if "error" in r:
                out.append(f"| {file} | {r['kind']} | {size:.1f} | - | - | - | - | - | ✗ ({r['error']}) |")
                continue
            out.append(
                f"| {file} | {r['kind']} | {size:.1f} | {r['agreement']:.1%} | {r['max_abs_diff']:.2e} | "
                f"{r['mean_abs_diff']:.2e} | {r['accuracy']:.3f} | {r['accuracy_delta']:+.3f} | "
                f"{'✓' if r['passed'] else '✗'} |"
            )
        out.append("")
    return "\n".join(out)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--root", type=Path, default=Path("/tmp/bench-runs"))
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--report", action="store_true", help="Only print the table of existing runs.")
    args = parser.parse_args()
    args.root.mkdir(parents=True, exist_ok=True)
    if not args.report:
        run_all(args.root, args.epochs)
    print(table(args.root))


if __name__ == "__main__":
    main()
