"""Classifiers trained elsewhere, opened and checked for `tk import`: .keras, legacy .h5, SavedModel.

What tk can take is one NHWC RGB image input and one output of class scores (probabilities or
logits). Everything else is refused with one line before anything is written: several inputs or
outputs, a non-image input, layers Keras can only rebuild by running code (Lambda, custom classes:
named, and Keras' safe_mode stays on). The config is read from the file before Keras loads it, so
the layers that need code are named rather than reported as Keras' first failure. A SavedModel has
no Keras config: its serving signature becomes one layer (savedmodel_layer.SavedModelGraph).
"""

from __future__ import annotations

import json
import re
import zipfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional

from ..core.errors import TkError
from ..core.io import sha256_file

FORMATS = {".keras": "keras", ".h5": "h5", ".hdf5": "h5"}
_MODEL_CLASSES = ("Functional", "Sequential", "Model", "InputLayer")


@dataclass
class ForeignModel:
    model: Any  # keras.Model: the classifier as it was given (a SavedModel: wrapped in one layer)
    path: Path
    format: str  # keras | h5 | savedmodel
    sha256: str  # of the file (or of the SavedModel folder's files)
    size: tuple[int, int]  # (height, width) of its input
    classes: int  # its output's width
    output: Optional[str]  # probabilities | logits | None: decided on the test images
    output_from: str  # how `output` was decided, for the manifest and the message


def load_foreign(path: Path, image_size: Optional[tuple[int, int]] = None) -> ForeignModel:
    """Open and check a classifier trained elsewhere; TkError naming what does not fit."""
    path = Path(path)
    if not path.exists():
        raise TkError(f"{path}: no such model file or folder (pass a .keras, a .h5 or a SavedModel folder)")
    if path.is_dir():
        if not (path / "saved_model.pb").is_file():
            raise TkError(f"{path}: a folder but not a SavedModel (no saved_model.pb in it)")
        return _load_saved_model(path, image_size)
    fmt = FORMATS.get(path.suffix.lower())
    if fmt is None:
        raise TkError(
            f"{path}: unknown model format {path.suffix or '(no suffix)'}; tk import takes a Keras 3 .keras, "
            "a legacy .h5 or a SavedModel folder"
        )
    config = _keras_config(path) if fmt == "keras" else _h5_config(path)
    needs_code = [f"{cls} {name!r}" for cls, name in _layers_needing_code(config)]
    if needs_code:
        shown = ", ".join(needs_code[:8]) + (f" and {len(needs_code) - 8} more" if len(needs_code) > 8 else "")
        raise TkError(
            f"{path}: layers Keras can only rebuild by running code from outside the file: {shown}; "
            "tk loads models with Keras' safe_mode on: replace them with built-in Keras layers (or move the "
            "preprocessing out of the model and state it with --input-range), or export the model as a "
            "SavedModel (model.export(DIR)) and import that folder"
        )
    model = _load_keras(path)
    size, classes = check_io(model, path, image_size)
    output, output_from = output_kind(model, path)
    return ForeignModel(model, path, fmt, sha256_file(path), size, classes, output, output_from)


def _keras_config(path: Path) -> dict:
    if path.stat().st_size == 0 or not zipfile.is_zipfile(path):
        raise TkError(f"{path}: not a .keras archive (empty, damaged or truncated); save the model again")
    try:
        with zipfile.ZipFile(path) as zf:
            return json.loads(zf.read("config.json"))
    except (KeyError, ValueError, zipfile.BadZipFile) as exc:
        raise TkError(f"{path}: not a Keras 3 .keras file (no readable config.json: {exc}); save it again") from None


def _h5_config(path: Path) -> dict:
    import h5py

    try:
        with h5py.File(path, "r") as f:
            raw = f.attrs.get("model_config")
    except OSError as exc:
        raise TkError(f"{path}: not a readable HDF5 file ({exc}); save the model again") from None
    if raw is None:
        raise TkError(
            f"{path}: holds weights only (no model config); save the whole model (model.save('model.h5') "
            "or model.save('model.keras')) and import that"
        )
    return json.loads(raw.decode("utf-8") if isinstance(raw, bytes) else raw)


def _layer_configs(config: dict) -> Iterator[dict]:
    """Every layer config in a model config, nested models and wrapped layers included."""
    inner = config.get("config") if isinstance(config, dict) else None
    if not isinstance(inner, dict):
        return
    for layer in inner.get("layers") or []:
        if isinstance(layer, dict):
            yield layer
            yield from _layer_configs(layer)
    wrapped = inner.get("layer")  # TimeDistributed, Bidirectional, ...
    if isinstance(wrapped, dict) and "class_name" in wrapped:
        yield wrapped
        yield from _layer_configs(wrapped)


def _layers_needing_code(config: dict) -> list[tuple[str, str]]:
    """(class, layer name) of each layer that is not a Keras built-in nor registered in this process."""
    import keras

    from ..train.backbones import ensure_custom_objects
    from .savedmodel_layer import layer_class

    ensure_custom_objects()  # tk's own layers (a tk model.keras imports too)
    layer_class()
    found = []
    for layer in _layer_configs(config):
        cls = str(layer.get("class_name", "?"))
        name = str((layer.get("config") or {}).get("name", layer.get("name", "?")))
        module = layer.get("module") or ""
        if cls == "Lambda":
            found.append((cls, name))
        elif cls in _MODEL_CLASSES or module.startswith("keras"):
            continue
        elif keras.saving.get_registered_object(layer.get("registered_name") or cls) is not None:
            continue
        elif not module and hasattr(keras.layers, cls):  # a legacy .h5 records no module
            continue
        else:
            found.append((cls, name))
    return found


def _load_keras(path: Path):
    import keras

    try:
        return keras.saving.load_model(str(path), compile=False)  # safe_mode stays on
    except Exception as exc:  # Keras raises ValueError/TypeError/OSError of every kind here
        text = " ".join(str(exc).split())
        raise TkError(f"{path}: Keras cannot load it ({text[:300]})") from None


def check_io(model, path: Path, image_size: Optional[tuple[int, int]]) -> tuple[tuple[int, int], int]:
    """(input size, number of classes) of a one-image-in, one-scores-out model; TkError otherwise."""
    if len(model.inputs) != 1:
        raise TkError(
            f"{path}: the model has {len(model.inputs)} inputs; tk import takes one image input "
            "(build a model of the image branch alone)"
        )
    if len(model.outputs) != 1:
        raise TkError(
            f"{path}: the model has {len(model.outputs)} outputs; tk import takes one output of class "
            "scores (keras.Model(model.input, model.outputs[i]) keeps one)"
        )
    shape, dtype = tuple(model.inputs[0].shape), str(model.inputs[0].dtype)
    if len(shape) != 4 or shape[-1] != 3 or not dtype.startswith(("float", "bfloat")):
        layout = " (channels first: tk feeds NHWC)" if len(shape) == 4 and shape[1] == 3 else ""
        raise TkError(
            f"{path}: the model's input is {dtype} of shape {list(shape)}{layout}, not an RGB image batch; "
            "tk import takes one float input of shape (batch, height, width, 3)"
        )
    size = _input_size(shape, path, image_size)
    out = tuple(model.outputs[0].shape)
    if len(out) != 2 or not isinstance(out[1], int) or out[1] < 2:
        raise TkError(
            f"{path}: the model's output has shape {list(out)}; tk import takes one score per class, "
            "(batch, classes) with 2 or more classes (a 1-unit sigmoid: output two softmax units instead)"
        )
    return size, int(out[1])


def _input_size(shape: tuple, path: Path, image_size: Optional[tuple[int, int]]) -> tuple[int, int]:
    fixed = all(isinstance(d, int) for d in shape[1:3])
    if fixed:
        size = (int(shape[1]), int(shape[2]))
        if image_size and tuple(image_size) != size:
            raise TkError(
                f"--image-size: the model takes {size[0]}x{size[1]} images (got {image_size[0]}x{image_size[1]})"
            )
        return size
    if not image_size:
        raise TkError(
            f"{path}: the model takes images of any size ({list(shape)}); say which it was trained at: "
            "--image-size HEIGHTxWIDTH (e.g. 224x224)"
        )
    return (int(image_size[0]), int(image_size[1]))


def output_kind(model, path: Path) -> tuple[Optional[str], str]:
    """probabilities or logits, from the layer that makes the output; (None, why) when it cannot say."""
    import keras

    layer = _output_layer(model)
    if layer is None:
        return None, "its output layer is not visible"
    activation = getattr(getattr(layer, "activation", None), "__name__", None)
    if isinstance(layer, keras.layers.Softmax) or activation == "softmax":
        return "probabilities", f"its output layer {layer.name!r} applies softmax"
    if activation == "linear":
        return "logits", f"its output layer {layer.name!r} ({type(layer).__name__}) has no activation"
    if activation is not None:
        raise TkError(
            f"{path}: its output layer {layer.name!r} applies {activation}; tk import takes single-label classifiers "
            "whose output is softmax probabilities or logits"
        )
    return None, f"its output layer {layer.name!r} ({type(layer).__name__}) has no activation to read"


def _output_layer(model):
    """The layer whose output is the model's output (looking inside nested models)."""
    import keras

    history = getattr(model.outputs[0], "_keras_history", None)
    layer = getattr(history, "operation", None) or (model.layers[-1] if model.layers else None)
    if isinstance(layer, keras.Model) and layer is not model:
        return _output_layer(layer)
    return layer


def _load_saved_model(path: Path, image_size: Optional[tuple[int, int]]) -> ForeignModel:
    import keras
    import tensorflow as tf

    from .savedmodel_layer import SIGNATURE, saved_model_graph

    try:
        restored = tf.saved_model.load(str(path))
    except Exception as exc:  # TensorFlow raises many kinds on a damaged SavedModel
        raise TkError(f"{path}: TensorFlow cannot load this SavedModel ({' '.join(str(exc).split())[:300]})") from None
    if SIGNATURE not in restored.signatures:
        raise TkError(
            f"{path}: the SavedModel has no {SIGNATURE} signature (it has: "
            f"{', '.join(restored.signatures) or 'none'}); export it with model.export(DIR)"
        )
    fn = restored.signatures[SIGNATURE]
    args, inputs = fn.structured_input_signature
    outputs = fn.structured_outputs
    if args or len(inputs) != 1:
        raise TkError(
            f"{path}: the {SIGNATURE} signature takes {len(args) + len(inputs)} inputs; tk import takes one image"
        )
    if len(outputs) != 1:
        raise TkError(
            f"{path}: the {SIGNATURE} signature has {len(outputs)} outputs ({', '.join(outputs)}); "
            "tk import takes one output of class scores"
        )
    spec = next(iter(inputs.values()))
    out_spec = next(iter(outputs.values()))
    shape = tuple(None if d is None else int(d) for d in spec.shape)
    if spec.dtype != tf.float32 or len(shape) != 4 or shape[-1] != 3:
        raise TkError(
            f"{path}: the {SIGNATURE} input is {spec.dtype.name} of shape {list(shape)}, not an RGB image batch; "
            "tk import takes one float32 input of shape (batch, height, width, 3)"
        )
    size = _input_size(shape, path, image_size)
    classes = out_spec.shape[-1] if out_spec.shape.rank == 2 else None
    if classes is None or classes < 2:
        raise TkError(
            f"{path}: the {SIGNATURE} output has shape {out_spec.shape.as_list()}; tk import takes (batch, "
            "classes) scores with 2 or more classes"
        )
    image = keras.Input((*size, 3), name="image")
    name = re.sub(r"[^A-Za-z0-9_.-]+", "_", path.resolve().name) or "saved_model"
    model = keras.Model(image, saved_model_graph(path, int(classes))(image), name=name)
    how = "a SavedModel's output cannot be read as layers"
    return ForeignModel(model, path, "savedmodel", sha256_file(path), size, int(classes), None, how)
