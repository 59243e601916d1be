"""A SavedModel inside a .keras file: how `tk import` makes a run's model.keras from a SavedModel.

A SavedModel (what `model.export()` or `tf.saved_model.save` writes) has no Keras config, so Keras
cannot rebuild it as layers. keras.layers.TFSMLayer wraps one, but its config holds the folder's
path (the run would depend on a folder outside it) and Keras refuses to deserialize it in safe
mode. SavedModelGraph instead keeps the SavedModel's files in the .keras archive's assets (as
TextVectorization keeps its vocabulary): model.keras is complete in itself, its sha256 covers the
graph, and it loads with safe_mode on, like every model.keras tk opens. The graph is the one the
user chose to import; tk loads such graphs already (a run's saved_model/ in verify and bench).
Needs TensorFlow (the layer runs the SavedModel's signature as a TensorFlow function).
"""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any, Optional

from ..core.errors import TkError

SIGNATURE = "serving_default"
_LAYER = None


def _layer_class():
    import keras
    import tensorflow as tf

    @keras.saving.register_keras_serializable(package="tk")
    class SavedModelGraph(keras.layers.Layer):
        """One signature of a SavedModel as a layer: an image batch in, class scores out."""

        def __init__(self, classes: int, signature: str = SIGNATURE, source: Optional[str] = None, **kwargs: Any):
            kwargs.pop("trainable", None)  # in the saved config; a SavedModel graph is never trained here
            super().__init__(trainable=False, **kwargs)
            self.classes = int(classes)
            self.signature = signature
            self._source: Optional[Path] = None
            self._fn = None
            if source is not None:
                self._attach(Path(source))

        def _attach(self, folder: Path) -> None:
            restored = tf.saved_model.load(str(folder))
            self._restored = restored  # keeps its variables alive, and tracked for model.export()
            self._fn = restored.signatures[self.signature]
            (self._input_name,) = self._fn.structured_input_signature[1]
            (self._output_name,) = self._fn.structured_outputs
            self._source = folder

        def compute_output_spec(self, inputs):
            # Keras rebuilds the functional graph before the assets (the graph) are loaded.
            return keras.KerasTensor((inputs.shape[0], self.classes), dtype="float32")

        def call(self, inputs):
            if self._fn is None:
                raise TkError(f"{self.name}: the SavedModel graph was not loaded from the model's assets")
            return self._fn(**{self._input_name: tf.cast(inputs, tf.float32)})[self._output_name]

        def save_assets(self, dir_path):
            if self._source is not None and self._source.is_dir():
                shutil.copytree(self._source, dir_path, dirs_exist_ok=True)
            else:  # loaded from a .keras (its assets folder is gone): write the restored graph again
                tf.saved_model.save(self._restored, str(dir_path), signatures={self.signature: self._fn})

        def load_assets(self, dir_path):
            self._attach(Path(dir_path))
            self._source = None  # Keras deletes the extracted assets after loading

        def get_config(self):
            return {**super().get_config(), "classes": self.classes, "signature": self.signature}

    return SavedModelGraph


def saved_model_graph(folder: Path, classes: int, name: str = "saved_model"):
    """The layer running `folder`'s serving_default signature (folder checked by the caller)."""
    return layer_class()(classes, SIGNATURE, source=str(folder), name=name)


def layer_class():
    """The SavedModelGraph class, registered with Keras once per process (model.keras files of
    SavedModel imports need it registered before they load)."""
    global _LAYER
    if _LAYER is None:
        _LAYER = _layer_class()
    return _LAYER
