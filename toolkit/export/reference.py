"""The reference predictors: the trained Keras model and the SavedModel, both on TensorFlow.

They share the Predictor interface of edge/predictors.py, so verify and bench treat every format
alike, but live here, above the TensorFlow-free edge package: the device path never imports them.
`load_keras_model` is the one way tk opens a model.keras (tk's layers registered: Preprocess, and
SavedModelGraph for runs imported from a SavedModel; damage reported as one line), used by
export, verify and explain.
"""

from __future__ import annotations

import zipfile
from pathlib import Path
from typing import Any, Optional

import numpy as np

from ..core.errors import TkError
from ..edge.predictors import Predictor


def load_keras_model(path: Path):
    """A trained model.keras, loaded without its optimizer state."""
    import keras

    from ..train.backbones import ensure_custom_objects

    path = Path(path)
    # A .keras file is a zip: name the damage plainly rather than pass on Keras' zip/h5 errors.
    if path.is_file() and path.stat().st_size == 0:
        raise TkError(f"{path}: empty file, not a trained model; re-run tk train (or restore the file from a backup)")
    if path.is_file() and not zipfile.is_zipfile(path):
        raise TkError(
            f"{path}: not a .keras archive (damaged or truncated); re-run tk train (or restore the file from a backup)"
        )
    ensure_custom_objects()
    if keras.backend.backend() == "tensorflow":  # a run tk import made from a SavedModel holds its graph
        from .savedmodel_layer import layer_class

        layer_class()
    try:
        return keras.saving.load_model(str(path), compile=False)
    except Exception as exc:  # zip/h5 errors of every kind on a damaged file
        text = " ".join(str(exc).split())  # Keras' messages span lines; the CLI shows one
        if "Lambda" in text or "safe_mode" in text:
            # Loading it would run code stored in the file; tk never writes one, so refuse, not unlock.
            raise TkError(
                f"{path}: holds a Lambda layer (code Keras will not load from a file, safe_mode); "
                "tk models have none: re-run tk train to get one"
            ) from None
        raise TkError(f"{path}: cannot load the trained model ({text[:300]}); re-run tk train") from None


class KerasPredictor(Predictor):
    """The reference: the trained Keras model (imports TensorFlow)."""

    kind = "keras"

    def __init__(self, path: Path, manifest: dict[str, Any], num_threads: Optional[int] = None):
        super().__init__(path, manifest)
        _limit_tf_threads(num_threads)
        self.model = load_keras_model(path)
        self._check_input(self.model.inputs[0].shape)

    def predict(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self.model(images.astype(np.float32, copy=False), training=False))


class SavedModelPredictor(Predictor):
    kind = "savedmodel"

    def __init__(self, path: Path, manifest: dict[str, Any], num_threads: Optional[int] = None):
        super().__init__(path, manifest)
        _limit_tf_threads(num_threads)
        import tensorflow as tf

        try:
            self.model = tf.saved_model.load(str(path))
        except Exception as exc:
            raise TkError(f"{path}: cannot load the SavedModel: {exc}; re-run tk export") from None
        self._fn = self.model.signatures["serving_default"]
        # The input is named "image" by converters.export_saved_model; take whatever the one input is.
        ((self._input_name, spec),) = self._fn.structured_input_signature[1].items()
        self._check_input(spec.shape)

    def predict(self, images: np.ndarray) -> np.ndarray:
        import tensorflow as tf

        out = self._fn(**{self._input_name: tf.constant(images, tf.float32)})
        return np.asarray(next(iter(out.values())))


def _limit_tf_threads(num_threads: Optional[int]) -> None:
    if not num_threads:
        return
    import tensorflow as tf

    try:
        tf.config.threading.set_intra_op_parallelism_threads(num_threads)
        tf.config.threading.set_inter_op_parallelism_threads(1)
    except RuntimeError:
        pass  # TensorFlow already initialised in this process: keep its thread pool
