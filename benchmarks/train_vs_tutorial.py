"""Training: tk train against the Keras tutorial pipeline, same network, data, seeds and epochs.

    .venv/bin/python benchmarks/train_vs_tutorial.py prepare SRC WORK       # once: the split
    .venv/bin/python benchmarks/train_vs_tutorial.py tutorial WORK [--net minivgg] [--epochs 4]
    .venv/bin/python benchmarks/train_vs_tutorial.py tk WORK [--net minivgg] [--epochs 4] [--backend jax]
    .venv/bin/python benchmarks/train_vs_tutorial.py plain WORK [--net minivgg] [--backend jax]
    .venv/bin/python benchmarks/train_vs_tutorial.py pair WORK [--pairs 3] [--net minivgg] \\
        [--a tk[:BACKEND]] [--b tutorial|plain:BACKEND|tk] [--a-path CHECKOUT] [--b-path CHECKOUT]
    .venv/bin/python benchmarks/train_vs_tutorial.py compare A_RUNS.jsonl B_RUNS.jsonl   # runs timed elsewhere

prepare: hard links SRC/<class>/*.jpg into WORK/data/{train,validation}/<class>/ (80/20 per class,
sorted names), so both pipelines read the very same files.

(a) tutorial: what the Keras image-classification tutorial does. keras.utils.image_dataset_from_directory
    (bilinear resize to the input size) + .cache().prefetch(AUTOTUNE), RandomFlip + RandomRotation
    layers at the front of the model, model.fit.
(b) tk: `tk train` (toolkit.train.phases.train, in this process) of the equivalent recipe: layout
    presplit, the same augmentation, optimizer, learning rate, batch size, seed and epochs, a fresh
    decode cache (TK_CACHE_DIR) each run, TensorBoard logs on (tk's default).

Networks (--net): minivgg (MiniVGGNet at 64 px from scratch, tk's mini_vgg + its FC-512 head);
mnv2 (MobileNetV2 alpha 1.0 at 224 px, random weights frozen, GlobalAveragePooling + Dense head:
tk's mode augment); mnv2ft (the same, the top from block_16 trainable, BatchNorm frozen: tk's
fine-tuning phase on its own). Random weights: the cost of a step does not depend on their values.

Each epoch is metered inside the process (resource.getrusage, every thread): user and system CPU
seconds, minor/major page faults, wall. "first" runs from the start of the data stage (the
tutorial's image_dataset_from_directory; tk's first decode) to the end of epoch 1: listing,
decoding, tracing and the epoch itself. tk before 2026-12-05 decoded in worker processes of a
forkserver: their CPU and faults are read from the forkserver's own and its children's counters
(/proc) and added (tk now decodes in threads, counted by getrusage).
(c) plain: the tutorial's network on any backend without tk and without tf.data (Pillow-decoded
    float32 arrays in RAM, model.fit): what a backend costs, apart from tk.
`pair` runs two of these as separate processes in turn (A, B, A, B, ...) and prints each figure's
median (min-max) and the per-pair ratio A/B (median, min-max), with the load average.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
import numpy as np  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
sys.path.append(str(ROOT))  # after PYTHONPATH: another checkout can be timed with this script

SEED, BATCH, LR = 1, 32, 1e-3
MNV2 = {"backbone": "mobilenet_v2", "head": {"pooling": "avg", "dense": [], "dropout": 0.0}}
NETS = {  # size, tk recipe's model and train sections (the tutorial builds the same network)
    "minivgg": (64, {"backbone": "mini_vgg", "head": {"pooling": "flatten", "dropout": 0.5}}, {"mode": "scratch"}),
    "mnv2": (224, MNV2, {"mode": "augment"}),
    "mnv2ft": (224, MNV2, {"mode": "augment"}),
}
UNFREEZE_FROM = "block_16_expand"


def _ticks() -> dict:
    usage = resource.getrusage(resource.RUSAGE_SELF)
    now = {"wall": time.perf_counter(), "user": usage.ru_utime, "sys": usage.ru_stime}
    now.update(minflt=usage.ru_minflt, majflt=usage.ru_majflt)
    extra = _forkserver_usage()
    for key in ("user", "sys", "minflt", "majflt"):
        now[key] += extra.get(key, 0)
    return now


def _forkserver_usage() -> dict:
    """The forkserver's CPU and faults, with its reaped children's (tk's decode workers)."""
    try:
        from multiprocessing import forkserver

        pid = forkserver._forkserver._forkserver_pid
        if not pid:
            return {}
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except (ImportError, AttributeError, OSError):
        return {}
    tick = os.sysconf("SC_CLK_TCK")
    num = [int(f) for f in fields[7:15]]  # minflt cminflt majflt cmajflt utime stime cutime cstime
    return {
        "minflt": num[0] + num[1],
        "majflt": num[2] + num[3],
        "user": (num[4] + num[6]) / tick,
        "sys": (num[5] + num[7]) / tick,
    }


def _delta(a: dict, b: dict) -> dict:
    d = {k: b[k] - a[k] for k in a}
    d["cpu"] = d["user"] + d["sys"]
    return {k: round(v, 3) for k, v in d.items()}


class Meter:
    """Marks: start of the data stage, each epoch's start and end."""

    def __init__(self):
        self.start = None
        self.epochs: list[dict] = []

    def mark_start(self):
        if self.start is None:
            self.start = _ticks()

    def callback(self):
        import keras

        meter = self

        class EpochMeter(keras.callbacks.Callback):
            def on_epoch_begin(self, epoch, logs=None):
                self.begin = _ticks()

            def on_epoch_end(self, epoch, logs=None):
                end = _ticks()
                meter.epochs.append(
                    {"epoch": _delta(self.begin, end), "since_start": _delta(meter.start or self.begin, end)}
                )

        return EpochMeter()

    def summary(self) -> dict:
        first = self.epochs[0]["since_start"]
        steady = [e["epoch"] for e in self.epochs[1:]]
        mean = {k: round(statistics.fmean(e[k] for e in steady), 3) for k in steady[0]} if steady else {}
        return {"first": first, "steady_mean": mean, "epochs": [e["epoch"] for e in self.epochs]}


def prepare(src: Path, work: Path) -> None:
    for klass in sorted(p for p in src.iterdir() if p.is_dir()):
        files = sorted(klass.glob("*.jpg"))
        cut = int(len(files) * 0.8)
        for split, part in (("train", files[:cut]), ("validation", files[cut:])):
            out = work / "data" / split / klass.name
            out.mkdir(parents=True, exist_ok=True)
            for f in part:
                if not (out / f.name).exists():
                    os.link(f, out / f.name)
    print(f"split written to {work / 'data'}")


def tutorial_model(net: str, size: int, classes: int):
    import keras
    from keras import layers

    inputs = keras.Input((size, size, 3))
    x = layers.RandomFlip("horizontal", seed=SEED)(inputs)
    x = layers.RandomRotation(0.1, fill_mode="reflect", seed=SEED + 1)(x)
    if net == "minivgg":
        x = layers.Rescaling(1 / 255)(x)
        for filters in (32, 64):
            for _ in (1, 2):
                x = layers.Conv2D(filters, 3, padding="same")(x)
                x = layers.Activation("relu")(x)
                x = layers.BatchNormalization(momentum=0.9)(x)
            x = layers.MaxPooling2D(2)(x)
            x = layers.Dropout(0.25)(x)
        x = layers.Flatten()(x)
        x = layers.Dense(512, activation="relu")(x)
        x = layers.BatchNormalization(momentum=0.9)(x)
        x = layers.Dropout(0.5)(x)
    else:
        x = layers.Rescaling(1 / 127.5, offset=-1)(x)
        base = keras.applications.MobileNetV2(include_top=False, weights=None, input_shape=(size, size, 3))
        base.trainable = net == "mnv2ft"
        if net == "mnv2ft":
            names = [layer.name for layer in base.layers]
            start = names.index(UNFREEZE_FROM)
            for i, layer in enumerate(base.layers):
                layer.trainable = i >= start and not isinstance(layer, layers.BatchNormalization)
        x = base(x, training=False)
        x = layers.GlobalAveragePooling2D()(x)
    outputs = layers.Dense(classes, activation="softmax")(x)
    return keras.Model(inputs, outputs)


def run_tutorial(work: Path, net: str, epochs: int) -> dict:
    import keras
    import tensorflow as tf

    keras.utils.set_random_seed(SEED)
    size = NETS[net][0]
    classes = sorted(p.name for p in (work / "data" / "train").iterdir())
    model = tutorial_model(net, size, len(classes))
    rate = LR if net != "mnv2ft" else 1e-4
    model.compile(optimizer=keras.optimizers.Adam(rate), loss="sparse_categorical_crossentropy", metrics=["accuracy"])
    meter = Meter()
    meter.mark_start()
    common = {"image_size": (size, size), "batch_size": BATCH, "seed": SEED}
    train = keras.utils.image_dataset_from_directory(work / "data" / "train", shuffle=True, **common)
    val = keras.utils.image_dataset_from_directory(work / "data" / "validation", shuffle=False, **common)
    train = train.cache().prefetch(tf.data.AUTOTUNE)
    val = val.cache().prefetch(tf.data.AUTOTUNE)
    model.fit(train, validation_data=val, epochs=epochs, verbose=0, callbacks=[meter.callback()])
    return meter.summary()


def run_plain(work: Path, net: str, epochs: int, backend: str) -> dict:
    """The same network and augmentation on any backend, without tk and without tf.data: the
    images decoded with Pillow into RAM (float32), model.fit on the arrays. Compares backends.
    PLAIN_JIT=on|off|auto (default auto: Keras' choice) sets compile(jit_compile=...)."""
    import keras
    from PIL import Image

    keras.utils.set_random_seed(SEED)
    size = NETS[net][0]
    classes = sorted(p.name for p in (work / "data" / "train").iterdir())
    model = tutorial_model(net, size, len(classes))
    jit = {"auto": "auto", "on": True, "off": False}[os.environ.get("PLAIN_JIT", "auto")]
    if jit is True:  # RandomRotation says it does not compile (true of TensorFlow's XLA only)
        for layer in model._flatten_layers():
            layer.supports_jit = True
    model.compile(
        optimizer=keras.optimizers.Adam(LR),
        loss="sparse_categorical_crossentropy",
        metrics=["accuracy"],
        jit_compile=jit,
    )
    meter = Meter()
    meter.mark_start()

    def load(split):
        files = [(f, i) for i, c in enumerate(classes) for f in sorted((work / "data" / split / c).glob("*.jpg"))]
        x = np.stack([np.asarray(Image.open(f).convert("RGB").resize((size, size), Image.BILINEAR)) for f, _ in files])
        return x.astype(np.float32), np.array([i for _, i in files], np.int32)

    (x, y), val = load("train"), load("validation")
    model.fit(x, y, validation_data=val, epochs=epochs, batch_size=BATCH, verbose=0, callbacks=[meter.callback()])
    return {**meter.summary(), "jit_compile": bool(model.jit_compile)}


def tk_recipe(work: Path, net: str, epochs: int, backend: str, weights: str):
    from toolkit.core.recipe import recipe_from_dict

    size, model, train = NETS[net]
    if net == "mnv2ft":  # the fine-tuning phase alone: no first-phase epochs (tk needs >= 1: one, not metered)
        train = {**train, "fine_tune": {"epochs": epochs, "unfreeze_from": UNFREEZE_FROM, "learning_rate": 1e-4}}
    return recipe_from_dict(
        {
            "name": f"bench_{net}",
            "seed": SEED,
            "data": {"root": str(work / "data"), "layout": "presplit"},
            "model": {**model, "weights": weights, "image_size": size},
            "train": {
                **train,
                "backend": backend,
                "epochs": 1 if net == "mnv2ft" else epochs,
                "batch_size": BATCH,
                "optimizer": "adam",
                "learning_rate": LR,
                "augment": {"flip": "horizontal", "rotation": 0.1, "zoom": 0.0},
            },
        }
    )


def run_tk(work: Path, net: str, epochs: int, backend: str, without: tuple[str, ...] = ()) -> dict:
    """without: callback classes to leave out (what each one costs: an ablation, not tk's behaviour)."""
    cache = tempfile.mkdtemp(prefix="tkcache-", dir=work)
    os.environ["TK_CACHE_DIR"] = cache  # a cold decode every run, as the tutorial's .cache()
    weights = "none"
    if net != "minivgg":
        weights = str(_random_mnv2_weights(work))
    recipe = tk_recipe(work, net, epochs, backend, weights)
    from toolkit.train.backend import select_backend

    select_backend(recipe)
    from toolkit.train import fit, phases

    meter = Meter()
    make_callbacks, decoded_split = fit._callbacks, fit.decoded_split
    phase_seen = []

    def callbacks(phase, *args, **kwargs):
        found = [c for c in make_callbacks(phase, *args, **kwargs) if type(c).__name__ not in without]
        phase_seen.append(phase)
        metered = net != "mnv2ft" or phase == "finetune"
        return found + [meter.callback()] if metered else found

    def decoded(*args, **kwargs):
        if net != "mnv2ft" or phase_seen:
            meter.mark_start()
        return decoded_split(*args, **kwargs)

    fit._callbacks, fit.decoded_split = callbacks, decoded
    phases.train(recipe, runs_dir=work / "runs")
    import shutil

    shutil.rmtree(cache, ignore_errors=True)
    return meter.summary()


def _random_mnv2_weights(work: Path) -> Path:
    """A weights file for tk's frozen modes (they refuse weights: none); random values."""
    path = work / "mnv2_random.weights.h5"
    if not path.is_file():
        import keras

        from toolkit.core.recipe import ModelSection
        from toolkit.train.backbones import build_base

        keras.utils.set_random_seed(SEED)
        section = ModelSection(backbone="mobilenet_v2", weights="none", image_size=224)
        build_base(section).save_weights(path)
    return path


def pair(work: Path, net: str, epochs: int, pairs: int, sides: list[str], paths: list[str]) -> None:
    """Runs A and B in turn, each in its own process: A B A B ...; a side is tk, tutorial or plain,
    with :backend (tk:jax); a path is the PYTHONPATH of the tk checkout that side imports."""
    runs: dict[int, list] = {0: [], 1: []}
    for i in range(pairs):
        for which, (side, path) in enumerate(zip(sides, paths, strict=True)):
            what, _, backend = side.partition(":")
            cmd = [sys.executable, __file__, what, str(work), "--net", net, "--epochs", str(epochs)]
            cmd += ["--backend", backend or "tensorflow"]
            env = {**os.environ, **({"PYTHONPATH": path} if path else {})}
            out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=3600)
            if out.returncode:
                sys.exit(f"{side} failed:\n{out.stderr[-3000:]}")
            result = json.loads(out.stdout.strip().splitlines()[-1])
            runs[which].append(result)
            print(f"pair {i + 1} {side}: first {result['first']} steady {result['steady_mean']}", flush=True)
    print(json.dumps({"a": sides[0], "b": sides[1], "runs": runs}))
    print(f"A = {sides[0]} {paths[0]}, B = {sides[1]} {paths[1]}; {net}, {epochs} epochs, {pairs} pairs")
    report(runs[0], runs[1])


def report(a_runs: list[dict], b_runs: list[dict]) -> None:
    """Each figure's median (min-max) for A and B, and the per-pair ratio A/B, with the load."""
    print(f"load average {os.getloadavg()}")
    for stage in ("first", "steady_mean"):
        for key in ("cpu", "user", "sys", "wall", "minflt", "majflt"):
            a = [r[stage][key] for r in a_runs]
            b = [r[stage][key] for r in b_runs]
            ratios = [x / y for x, y in zip(a, b, strict=True) if y]
            shown = f"{statistics.median(ratios):.3f} ({min(ratios):.3f}-{max(ratios):.3f})" if ratios else "-"
            print(
                f"{stage:12} {key:7} A {statistics.median(a):10.2f} ({min(a):.2f}-{max(a):.2f})  "
                f"B {statistics.median(b):10.2f} ({min(b):.2f}-{max(b):.2f})  A/B {shown}"
            )


def compare(a_file: Path, b_file: Path) -> None:
    """report() over two files of this script's JSON lines (runs of A and of B, in pair order)."""

    def runs(path: Path) -> list[dict]:
        return [json.loads(line) for line in path.read_text().splitlines() if line.startswith('{"first"')]

    a, b = runs(a_file), runs(b_file)
    n = min(len(a), len(b))
    print(f"{n} pairs: A = {a_file}, B = {b_file}")
    report(a[:n], b[:n])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("what", choices=("prepare", "tutorial", "tk", "plain", "pair", "compare"))
    parser.add_argument("work", type=Path)
    parser.add_argument("src", type=Path, nargs="?")
    parser.add_argument("--net", choices=sorted(NETS), default="minivgg")
    parser.add_argument("--epochs", type=int, default=4)
    parser.add_argument("--pairs", type=int, default=3)
    parser.add_argument("--backend", default="tensorflow")
    parser.add_argument("--without", default="", help="tk: comma-separated callback classes to leave out")
    parser.add_argument("--a", default="tk", help="pair: side A (tk, tutorial, plain; :backend)")
    parser.add_argument("--b", default="tutorial", help="pair: side B")
    parser.add_argument("--a-path", default="", help="pair: PYTHONPATH of the tk checkout A imports")
    parser.add_argument("--b-path", default="", help="pair: PYTHONPATH of the tk checkout B imports")
    args = parser.parse_args()
    if args.what == "prepare":
        # prepare SRC WORK reads naturally; argparse took SRC as work
        prepare(args.work, args.src)
    elif args.what == "compare":  # compare A_FILE B_FILE
        compare(args.work, args.src)
    elif args.what == "pair":
        pair(args.work, args.net, args.epochs, args.pairs, [args.a, args.b], [args.a_path, args.b_path])
    else:
        os.environ["KERAS_BACKEND"] = "tensorflow" if args.what == "tutorial" else args.backend
        run = {"tutorial": run_tutorial, "tk": run_tk, "plain": run_plain}[args.what]
        extra = {"tk": (args.backend, tuple(filter(None, args.without.split(","))))}.get(args.what, ())
        if args.what == "plain":
            extra = (args.backend,)
        print(json.dumps(run(args.work, args.net, args.epochs, *extra)))


if __name__ == "__main__":
    main()
