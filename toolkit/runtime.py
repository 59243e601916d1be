"""One Predictor interface over .keras, SavedModel, .tflite and .onnx artifacts.

A predictor is built from an artifact and its run's manifest (labels, input size, quantization)
and takes RGB 0..255 float32 images, as images.load_image makes them: the backbone's scaling is
inside every exported graph. The .tflite and .onnx predictors import numpy, Pillow and their
runtime only, never TensorFlow or Keras: this is the device path.
"""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from .errors import TkError
from .images import load_batch
from .quiet import silenced_stderr
from .manifest import MANIFEST, sha256_file


class Predictor:
    """Run a classifier artifact: images (N, H, W, 3) float32 0..255 -> probabilities (N, C)."""

    kind = "abstract"

    def __init__(self, path: Path, entry: dict[str, Any], manifest: dict[str, Any]):
        self.path = Path(path)
        self.entry = entry
        self.labels: list[str] = list(manifest["classes"])
        size = manifest["preprocessing"]["size"]
        self.size: tuple[int, int] = (int(size[0]), int(size[1]))

    def predict(self, images: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def predict_files(self, paths: Sequence[str | Path], batch_size: int = 32) -> np.ndarray:
        chunks = [self.predict(load_batch(list(paths[i:i + batch_size]), self.size))
                  for i in range(0, len(paths), batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, len(self.labels)), np.float32)

    def _check_input(self, shape: Sequence[Any]) -> None:
        if len(shape) != 4:
            raise TkError(f"{self.path}: model input has shape {list(shape)}, expected (batch, height, width, 3); "
                          "re-run tk export")
        if not all(isinstance(d, (int, np.integer)) for d in shape[1:3]):
            return  # symbolic height/width (a fully dynamic graph): any size the manifest names fits
        height, width = int(shape[1]), int(shape[2])
        if (height, width) != self.size:
            raise TkError(f"{self.path}: model input is {height}x{width} but the manifest says "
                          f"{self.size[0]}x{self.size[1]}; the manifest is out of date, re-run tk export")


def _interpreter_class():
    """LiteRT where it has wheels (x86_64, aarch64), tflite-runtime on 32-bit Pi OS (armv7l)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            machine = platform.machine()
            package = "tflite-runtime" if machine.startswith("armv7") else "ai-edge-litert"
            raise TkError(f"no TFLite runtime installed for .tflite models on {machine}: "
                          f"pip install {package}") from None
    return Interpreter


class TFLiteModel:
    """A .tflite interpreter that takes float batches of any size (quantizing int8 I/O)."""

    def __init__(self, path: Path, num_threads: Optional[int] = None):
        Interpreter = _interpreter_class()
        try:
            with silenced_stderr():  # LiteRT's "Created XNNPACK delegate" INFO line
                self.interpreter = Interpreter(model_path=str(path), num_threads=num_threads or os.cpu_count())
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise TkError(f"{path}: not a valid .tflite model (truncated or corrupt?): {exc}; re-run tk export") from None
        self._details()
        self.input_shape = tuple(self._in["shape"])
        self._batch = int(self._in["shape"][0])

    def _details(self) -> None:
        self._in = self.interpreter.get_input_details()[0]
        self._out = self.interpreter.get_output_details()[0]

    def run(self, images: np.ndarray) -> np.ndarray:
        n = len(images)
        if n != self._batch:
            self.interpreter.resize_tensor_input(self._in["index"], [n, *self.input_shape[1:]])
            self.interpreter.allocate_tensors()
            self._details()
            self._batch = n
        self.interpreter.set_tensor(self._in["index"], quantize(images, self._in))
        self.interpreter.invoke()
        return dequantize(self.interpreter.get_tensor(self._out["index"]), self._out)


class TFLitePredictor(Predictor):
    kind = "tflite"

    def __init__(self, path: Path, entry: dict[str, Any], manifest: dict[str, Any],
                 num_threads: Optional[int] = None):
        super().__init__(path, entry, manifest)
        self.model = TFLiteModel(path, num_threads)
        self._check_input(self.model.input_shape)

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self.model.run(images)


def quantize(x: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    dtype = detail["dtype"]
    if dtype == np.float32:
        return x.astype(np.float32, copy=False)
    scale, zero_point = detail["quantization"]
    info = np.iinfo(dtype)
    return np.clip(np.round(x / scale + zero_point), info.min, info.max).astype(dtype)


def dequantize(q: np.ndarray, detail: dict[str, Any]) -> np.ndarray:
    if detail["dtype"] == np.float32:
        return q.astype(np.float32, copy=True)
    scale, zero_point = detail["quantization"]
    return ((q.astype(np.float32) - zero_point) * scale).astype(np.float32)


class OnnxPredictor(Predictor):
    kind = "onnx"

    def __init__(self, path: Path, entry: dict[str, Any], manifest: dict[str, Any],
                 num_threads: Optional[int] = None):
        super().__init__(path, entry, manifest)
        try:
            import onnxruntime as ort
        except ImportError:
            raise TkError(f"{path}: onnxruntime is not installed; pip install onnxruntime") from None

        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise TkError(f"{path}: not a valid .onnx model (truncated or corrupt?): {exc}; re-run tk export") from None
        self._input = self.session.get_inputs()[0]
        self._check_input(self._input.shape)

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self.session.run(None, {self._input.name: images.astype(np.float32, copy=False)})[0]


class KerasPredictor(Predictor):
    """The reference: the trained Keras model (imports TensorFlow)."""

    kind = "keras"

    def __init__(self, path: Path, entry: dict[str, Any], manifest: dict[str, Any],
                 num_threads: Optional[int] = None):
        super().__init__(path, entry, manifest)
        _limit_tf_threads(num_threads)
        import keras

        from .backbones import ensure_custom_objects

        ensure_custom_objects()
        try:
            self.model = keras.saving.load_model(str(path), compile=False)
        except Exception as exc:  # zip/h5 errors of every kind on a damaged file
            raise TkError(f"{path}: cannot load the Keras model: {exc}; re-run tk train") from None
        self._check_input(self.model.inputs[0].shape)

    def predict(self, images: np.ndarray) -> np.ndarray:
        return np.asarray(self.model(images.astype(np.float32, copy=False), training=False))


class SavedModelPredictor(Predictor):
    kind = "savedmodel"

    def __init__(self, path: Path, entry: dict[str, Any], manifest: dict[str, Any],
                 num_threads: Optional[int] = None):
        super().__init__(path, entry, manifest)
        _limit_tf_threads(num_threads)
        import tensorflow as tf

        try:
            self.model = tf.saved_model.load(str(path))
        except Exception as exc:
            raise TkError(f"{path}: cannot load the SavedModel: {exc}; re-run tk export") from None
        self._fn = self.model.signatures["serving_default"]
        # The input is named "image" by converters.export_saved_model; take whatever the one input is.
        (self._input_name, spec), = self._fn.structured_input_signature[1].items()
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


# Artifact kind by how its path looks; one entry per format.
PREDICTORS: dict[str, type[Predictor]] = {
    "tflite": TFLitePredictor,
    "onnx": OnnxPredictor,
    "keras": KerasPredictor,
    "savedmodel": SavedModelPredictor,
}


def artifact_kind(path: Path) -> str:
    if path.is_dir():
        if (path / "saved_model.pb").is_file():
            return "savedmodel"
        raise TkError(f"{path}: a folder but not a SavedModel (no saved_model.pb)")
    kinds = {".tflite": "tflite", ".onnx": "onnx", ".keras": "keras"}
    if path.suffix not in kinds:
        raise TkError(f"{path}: unknown model format {path.suffix or '(no suffix)'}; "
                      "expected .tflite, .onnx, .keras or a SavedModel folder")
    return kinds[path.suffix]


def load_predictor(path: str | Path, num_threads: Optional[int] = None, check_hash: bool = True) -> Predictor:
    """The predictor for an artifact, configured from the manifest in its folder."""
    path = Path(path)
    if not path.exists():
        raise TkError(f"{path}: model file not found")
    kind = artifact_kind(path)
    manifest_path = path.parent / MANIFEST
    if not manifest_path.is_file():
        raise TkError(f"{path}: no {MANIFEST} beside it; copy the run's manifest.json with the model "
                      "(it holds the labels and preprocessing)")
    try:
        manifest = json.loads(manifest_path.read_text())
    except json.JSONDecodeError as exc:
        raise TkError(f"{manifest_path}: not valid JSON ({exc}); copy it again from the run folder") from None
    _check_manifest(manifest, manifest_path)
    entry = manifest.get("artifacts", {}).get(path.name)
    if entry is None:
        raise TkError(f"{path}: not listed in {manifest_path}; the manifest is out of date (re-run tk export)")
    if check_hash and entry.get("sha256") and sha256_file(path) != entry["sha256"]:
        raise TkError(f"{path}: sha256 differs from {manifest_path}; the file changed after export "
                      "(re-run tk export, or copy the matching manifest)")
    return PREDICTORS[kind](path, entry, manifest, num_threads=num_threads)


def _check_manifest(manifest: Any, manifest_path: Path) -> None:
    """The fields every predictor reads; a hand-edited or foreign JSON file fails here, by name."""
    try:
        classes, size = manifest["classes"], manifest["preprocessing"]["size"]
        ok = isinstance(classes, list) and len(classes) >= 2 and len(size) == 2 and all(int(v) > 0 for v in size)
    except (KeyError, TypeError, ValueError):
        ok = False
    if not ok:
        raise TkError(f"{manifest_path}: not a tk manifest (needs classes and preprocessing.size); "
                      "copy manifest.json from the run folder")
