"""Classifiers built and trained outside tk's training code, in plain Keras, for the `tk import` tests.

Each stands for a way people save a model: a keras.applications MobileNetV2 fed preprocess_input
outside the graph (-1..1), a functional model with a logits output (0..1 input), a Sequential
saved as legacy .h5 (caffe input), and a SavedModel from model.export() (torch mean/std input).
They are small (32 px, a few thousand weights, or MobileNetV2 at alpha 0.35) and trained briefly,
but on held-out images they predict the right class with confidence: parity is then checked on
outputs that mean something (verify warns about near-constant ones).
"""

from __future__ import annotations

import colorsys
from pathlib import Path

import numpy as np

SIZE = 32
COLOURS = ("blue", "green", "red")  # sorted: the class order Keras' image_dataset_from_directory gives
SPLITS = (("train", 24), ("validation", 6), ("test", 12))


def make_colour_dataset(root: Path, seed: int = 5) -> Path:
    """root/{train,validation,test}/{blue,green,red}/*.png: noisy images of one hue each."""
    rng = np.random.default_rng(seed)
    hues = {"red": 0.0, "green": 1 / 3, "blue": 2 / 3}
    for split, count in SPLITS:
        for name in COLOURS:
            folder = root / split / name
            folder.mkdir(parents=True, exist_ok=True)
            for i in range(count):
                hue = (hues[name] + rng.uniform(-0.03, 0.03)) % 1
                rgb = colorsys.hsv_to_rgb(hue, rng.uniform(0.75, 1.0), rng.uniform(0.7, 1.0))
                pixels = np.asarray(rgb) * 255 + rng.normal(0, 8, (SIZE, SIZE, 3))
                _save(np.clip(pixels, 0, 255).astype(np.uint8), folder / f"{name}_{i:03d}.png")
    return root


def _save(pixels: np.ndarray, path: Path) -> None:
    from PIL import Image

    Image.fromarray(pixels).save(path)


def folder_images(root: Path) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(pixels 0..255 at SIZE, labels, classes) of a folder of class folders."""
    from toolkit.core.images import load_batch

    classes = sorted(p.name for p in root.iterdir() if p.is_dir())
    paths, labels = [], []
    for k, name in enumerate(classes):
        for path in sorted((root / name).iterdir()):
            if path.suffix in (".png", ".jpg"):
                paths.append(str(path))
                labels.append(k)
    return load_batch(paths, (SIZE, SIZE)), np.asarray(labels), classes


def mobilenet_v2(train_dir: Path, path: Path) -> Path:
    """keras.applications.MobileNetV2 (weights=None, alpha 0.35) + a softmax head trained on its
    features; the model expects preprocess_input's -1..1, applied outside the graph."""
    import keras

    x, y, classes = folder_images(train_dir)
    x = keras.applications.mobilenet_v2.preprocess_input(x)
    keras.utils.set_random_seed(0)
    base = keras.applications.MobileNetV2(
        input_shape=(SIZE, SIZE, 3), alpha=0.35, include_top=False, weights=None, pooling="avg"
    )
    # He-normal kernels: with Keras' glorot default a random MobileNetV2's activations shrink to
    # ~1e-12 over its 50 layers (nothing for int8 to represent); He keeps them near unit scale.
    rng = np.random.default_rng(0)
    for layer in base.layers:
        for weight in layer.weights:
            if len(weight.shape) == 4:
                depthwise = isinstance(layer, keras.layers.DepthwiseConv2D)
                fan_in = weight.shape[0] * weight.shape[1] * (1 if depthwise else weight.shape[2])
                weight.assign(rng.normal(0, np.sqrt(2 / fan_in), weight.shape).astype("float32"))
    features = base.predict(x, verbose=0)
    scale = keras.layers.Rescaling(1 / float(features.std()), -float(features.mean()) / float(features.std()))
    dense = keras.layers.Dense(len(classes), activation="softmax", name="predictions")
    head = keras.Sequential([keras.Input(features.shape[1:]), scale, dense])
    head.compile(keras.optimizers.Adam(1e-2), "sparse_categorical_crossentropy", jit_compile=False)
    head.fit(features, y, epochs=80, batch_size=32, verbose=0)
    model = keras.Sequential([keras.Input((SIZE, SIZE, 3)), base, scale, dense], name="mobilenetv2_colours")
    model.save(path)
    return path


def _small_convnet(inputs, classes: int, activation):
    from keras import layers

    x = layers.Conv2D(8, 3, activation="relu", name="conv1")(inputs)
    x = layers.MaxPooling2D(name="pool1")(x)
    x = layers.Conv2D(16, 3, activation="relu", name="conv2")(x)
    x = layers.GlobalAveragePooling2D(name="gap")(x)
    return layers.Dense(classes, activation=activation, name="scores")(x)


def _fit(model, x, y, from_logits: bool = False, epochs: int = 40) -> None:
    import keras

    loss = keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
    model.compile(keras.optimizers.Adam(3e-3), loss, jit_compile=False)
    model.fit(x, y, epochs=epochs, batch_size=16, verbose=0)


def logits_functional(images_dir: Path, path: Path) -> Path:
    """A functional convnet whose output is logits (no softmax), trained on pixels / 255."""
    import keras

    x, y, classes = folder_images(images_dir)
    keras.utils.set_random_seed(1)
    inputs = keras.Input((SIZE, SIZE, 3))
    model = keras.Model(inputs, _small_convnet(inputs, len(classes), None), name="logits_net")
    _fit(model, x / 255.0, y, from_logits=True)
    model.save(path)
    return path


CAFFE_MEAN = np.asarray([103.939, 116.779, 123.68], np.float32)  # BGR


def sequential_h5(images_dir: Path, path: Path) -> Path:
    """A Sequential convnet saved as legacy HDF5, trained on caffe-style input (BGR minus means)."""
    import keras

    x, y, classes = folder_images(images_dir)
    keras.utils.set_random_seed(2)
    model = keras.Sequential(
        [
            keras.Input((SIZE, SIZE, 3)),
            keras.layers.Conv2D(8, 3, activation="relu"),
            keras.layers.MaxPooling2D(),
            keras.layers.Conv2D(16, 3, activation="relu"),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(len(classes), activation="softmax"),
        ],
        name="sequential_caffe",
    )
    _fit(model, x[..., ::-1] - CAFFE_MEAN, y)
    model.save(path)
    return path


TORCH_MEAN = np.asarray([0.485, 0.456, 0.406], np.float32)
TORCH_STD = np.asarray([0.229, 0.224, 0.225], np.float32)


def saved_model(images_dir: Path, folder: Path) -> Path:
    """model.export() of a convnet trained on torch-style input ((pixels/255 - mean) / std)."""
    import keras

    x, y, classes = folder_images(images_dir)
    keras.utils.set_random_seed(3)
    inputs = keras.Input((SIZE, SIZE, 3))
    model = keras.Model(inputs, _small_convnet(inputs, len(classes), "softmax"), name="torch_net")
    _fit(model, (x / 255.0 - TORCH_MEAN) / TORCH_STD, y)
    model.export(str(folder), verbose=False)
    return folder


# name -> (builder in this module, file name, --input-range, tk import options)
FOREIGN = {
    "mobilenet_v2": ("mobilenet_v2", "mobilenet_v2.keras", "-1..1", []),
    # a flat folder of held-out images, split by fractions (set here: the test split gets 40%)
    "logits": (
        "logits_functional",
        "logits.keras",
        "0..1",
        ["--set", "data.split.train=0.5", "--set", "data.split.validation=0.1", "--set", "data.split.test=0.4"],
    ),
    "sequential_h5": ("sequential_h5", "sequential.h5", "caffe", []),
    "savedmodel": ("saved_model", "saved_model_dir", "torch", []),
}
