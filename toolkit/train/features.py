"""Fast feature extraction: run the frozen conv base once per image and cache the result on disk.

Feature extraction is the cost of transfer learning on a CPU. The default engine converts the
frozen extractor (scaling + conv base up to the feature layer) to a float32 TFLite model and runs
it through LiteRT's XNNPACK kernels at batch 16, with Pillow decoding the next batch on other
threads: for MobileNetV2 on 2 cores about 2x Keras' predict and 2.5-4x the notebooks' predict
loop. Large dense convolutions (VGG16) are compute-bound: there engine keras (oneDNN) is as fast
or ~5-10% faster (benchmarks/BENCHMARKS.md, "Feature extraction").
The cache key covers the backbone, its weights, the feature layer, the image size, the engine and
the contents of every image file, so a re-run with another head or more epochs reuses it. The
converted TFLite extractor is cached too (cache/extractors/), so new or changed images cost their
decode and inference only, not another conversion.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Callable, Optional

import numpy as np

from ..core.context import SILENT, Context, silent
from ..core.images import load_batch
from ..core.io import atomic_path, sha256_file
from ..core.recipe import ModelSection

CACHE_DIR = Path(os.environ.get("TK_CACHE_DIR", "exported/.cache"))
# 16, not 32: XNNPACK on 2 cores runs MobileNetV2 at 180 px ~15% faster at batch 8-16 (activations
# stay in cache), and decode overlaps better: 266 vs 210 images/s with decode (2026-11-24).
EXTRACT_BATCH = 16


def extractor_key(model: ModelSection, engine: str, seed: int) -> str:
    """Identity of the feature extractor (not of the head: heads share features)."""
    if model.weights in ("imagenet", "none"):
        weights = model.weights + (f"/seed{seed}" if model.weights == "none" else "")
    else:
        weights = "sha256:" + sha256_file(Path(model.weights))
    parts = [
        model.backbone,
        weights,
        model.feature_layer or "default",
        str(model.image_size),
        str(model.alpha) + ("" if model.minimalistic is None else f"|minimalistic={model.minimalistic}"),
        engine,
        "v1",
    ]
    return "|".join(parts)


def cache_key(extractor: str, paths: list[str]) -> str:
    digest = hashlib.sha256(extractor.encode())
    for path in paths:  # file contents, not names or times: a changed image is a new entry
        digest.update(sha256_file(Path(path)).encode())
    return digest.hexdigest()[:32]


def cached_features(
    make_extractor: Callable[[], object],
    paths: list[str],
    model: ModelSection,
    engine: str,
    seed: int,
    cache_dir: Optional[Path] = None,
    ctx: Context = SILENT,
    label: str = "",
) -> tuple[np.ndarray, bool]:
    """Features for `paths` from the cache, or computed and stored. Returns (features, hit).

    `make_extractor()` returns the Keras extractor; it is called on a cache miss only.
    """
    key = cache_key(extractor_key(model, engine, seed), paths)
    path = Path(cache_dir or CACHE_DIR) / "features" / f"{key}.npy"
    if path.is_file():
        ctx.say(f"features {label}: cache hit ({len(paths)} images, {path})")
        return np.load(path), True
    start = time.perf_counter()
    features = run_extractor(
        make_extractor(),
        paths,
        model.image_size,
        engine,
        key=extractor_key(model, engine, seed),
        cache_dir=cache_dir,
        ctx=ctx,
        label=label,
    )
    seconds = time.perf_counter() - start
    ctx.say(
        f"features {label}: {len(paths)} images in {seconds:.1f} s "
        f"({len(paths) / max(seconds, 1e-9):.0f} images/s, engine {engine}), cached at {path}"
    )
    with atomic_path(path, suffix=".npy") as tmp:
        with open(tmp, "wb") as fh:
            np.save(fh, features)
    return features, False


def run_extractor(
    extractor,
    paths: list[str],
    size: int,
    engine: str,
    key: Optional[str] = None,
    cache_dir: Optional[Path] = None,
    ctx: Context = SILENT,
    label: str = "",
) -> np.ndarray:
    """Run the Keras extractor (RGB 0..255 in, feature maps out) over image files.

    With `key` (extractor_key), the TFLite engine keeps the converted extractor in the cache:
    the conversion (SavedModel export + TFLiteConverter, ~15 s for MobileNetV2 on 2 cores) then
    happens once per backbone/weights/layer/size, not once per dataset or split.
    """
    if engine == "tflite":
        return _extract_tflite(extractor, paths, size, key, cache_dir, ctx, label)
    return _extract_keras(extractor, paths, size, ctx, label)


def _batches(paths: list[str], size: int, batch: int):
    """Decoded batches, the next one decoded on worker threads while the current one runs."""
    chunks = [paths[i : i + batch] for i in range(0, len(paths), batch)]
    with ThreadPoolExecutor(max_workers=2) as pool:
        pending = None
        for chunk in chunks:
            # Decode each batch with two threads (halves), one batch ahead of the model.
            future = [
                pool.submit(load_batch, half, (size, size))
                for half in (chunk[: len(chunk) // 2], chunk[len(chunk) // 2 :])
            ]
            if pending is not None:
                yield np.concatenate([f.result() for f in pending])
            pending = future
        if pending is not None:
            yield np.concatenate([f.result() for f in pending])


def _extract_tflite(
    extractor,
    paths: list[str],
    size: int,
    key: Optional[str] = None,
    cache_dir: Optional[Path] = None,
    ctx: Context = SILENT,
    label: str = "",
) -> np.ndarray:
    if key is None:
        with tempfile.TemporaryDirectory(prefix="tk-extractor-") as tmp:
            model_path = Path(tmp) / "extractor.tflite"
            with ctx.progress.task("features: converting the extractor to TFLite"):
                model_path.write_bytes(_convert(extractor))
            return _run_tflite(model_path, paths, size, ctx, label)
    name = hashlib.sha256(key.encode()).hexdigest()[:32]
    model_path = Path(cache_dir or CACHE_DIR) / "extractors" / f"{name}.tflite"
    if not model_path.is_file():
        with ctx.progress.task("features: converting the extractor to TFLite (once per backbone)"):
            data = _convert(extractor)
        with atomic_path(model_path, suffix=".tflite") as tmp:
            Path(tmp).write_bytes(data)
    return _run_tflite(model_path, paths, size, ctx, label)


def _run_tflite(model_path: Path, paths: list[str], size: int, ctx: Context, label: str = "") -> np.ndarray:
    from ..edge.predictors import TFLiteModel

    runner = TFLiteModel(model_path, num_threads=os.cpu_count())
    outputs = []
    with ctx.progress.task(_described("extracting features", label), len(paths)) as task:
        for batch in _batches(paths, size, EXTRACT_BATCH):
            outputs.append(runner.run(batch))
            task.advance(len(batch))
    return np.concatenate(outputs).astype(np.float32)


def _described(what: str, label: str) -> str:
    return f"{what} ({label} images)" if label else what


def _convert(extractor) -> bytes:
    """The Keras extractor as a float32 TFLite flatbuffer.

    Traced once and frozen in memory (variables become constants), then converted: ~5x faster
    than the SavedModel round trip of tk export (MobileNetV2: ~1.8 s instead of ~8.4 s on 2
    cores), same graph. Falls back to that round trip if TensorFlow moves the freezing helper.
    """
    import tensorflow as tf

    try:
        from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2
    except ImportError:  # pragma: no cover - a TensorFlow that reorganised its internals
        return _convert_via_saved_model(extractor)
    spec = tf.TensorSpec([None, *extractor.inputs[0].shape[1:]], tf.float32, name="image")
    traced = tf.function(lambda image: extractor(image, training=False)).get_concrete_function(spec)
    frozen = convert_variables_to_constants_v2(traced)
    return tf.lite.TFLiteConverter.from_concrete_functions([frozen]).convert()


def _convert_via_saved_model(extractor) -> bytes:
    # The slow path tk export takes (export/converters.py), written out here: training sits below
    # export and does not import it.
    import tensorflow as tf

    with tempfile.TemporaryDirectory(prefix="tk-extractor-") as tmp:
        spec = tf.TensorSpec([None, *extractor.inputs[0].shape[1:]], tf.float32, name="image")
        extractor.export(tmp, format="tf_saved_model", verbose=False, input_signature=[spec])
        return tf.lite.TFLiteConverter.from_saved_model(tmp).convert()


def _extract_keras(extractor, paths: list[str], size: int, ctx: Context, label: str = "") -> np.ndarray:
    import keras

    from .decoded import batches, decoded_images

    # The decoding's own lines would interleave with extraction's: only its progress shows.
    images = decoded_images(paths, size, CACHE_DIR, ctx.but(say=silent), label=label)
    with ctx.progress.task(_described("extracting features", label), len(images)) as task:
        # verbose=0: Keras' own progress bar would print beside tk's; this callback feeds tk's.
        done = keras.callbacks.LambdaCallback(
            on_predict_batch_end=lambda batch, logs: task.advance(min(32, len(images) - 32 * batch))
        )
        return np.asarray(
            extractor.predict(batches(images, None, 32), verbose=0, callbacks=[done])[: len(images)], np.float32
        )


def build_extractor(base, image_size: int, scaling: str):
    """RGB 0..255 -> Preprocess -> conv base: what runs once per image."""
    import keras

    from .backbones import preprocess_layer

    inputs = keras.Input((image_size, image_size, 3), name="image")
    return keras.Model(inputs, base(preprocess_layer(scaling)(inputs), training=False), name="extractor")
