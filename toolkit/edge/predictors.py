"""One Predictor interface over .keras, SavedModel, .tflite and .onnx artifacts.

A predictor is built from an artifact and its run's manifest (labels, input size, quantization)
and takes RGB 0..255 float32 images, as images.load_image makes them: the backbone's scaling is
inside every exported graph. A bare .tflite or .onnx (no manifest.json beside it) is run with what
the file itself carries (bare.py: TFLite metadata, ONNX metadata_props): its labels, its input
size and its normalization, applied here. The .tflite and .onnx predictors import numpy, Pillow
and their runtime only, never TensorFlow or Keras: this is the device path.
"""

from __future__ import annotations

import importlib
import os
import platform
from pathlib import Path
from typing import Any, Optional, Sequence

import numpy as np

from ..core import schemas
from ..core.caps import check_threads
from ..core.errors import TkError
from ..core.formats import (
    BARE_FORMATS,
    DEVICE_FORMATS,
    FORMATS,
    Format,
    companion_files,
    format_of_path,
    install_hint,
    suffixes,
)
from ..core.images import load_batch
from ..core.io import sha256_file
from ..core.paths import confine
from ..core.quiet import silenced_stderr
from ..core.runs import MANIFEST
from .bare import Contract
from .feed import PIXELS, dequantize, pixels_uint8, predict_batch, quantize_into

BATCH = 32  # images decoded (or held) at a time by callers with many; each runtime call is batch_size


class Predictor:
    """Run a classifier artifact: images (N, H, W, 3) float32 0..255 -> probabilities (N, C).

    `manifest` None: a bare file; `contract` then says what it carries (labels None: indices,
    named once the output size is known; size None: the model input's own)."""

    kind = "abstract"
    # Whether its runtime's idle threads spin between calls; such a class takes spin=False (load_predictor).
    spins = False

    def __init__(self, path: Path, manifest: Optional[dict[str, Any]], contract: Optional[Contract] = None):
        self.path = Path(path)
        self.contract = contract or Contract()
        self.notes: list[str] = list(self.contract.notes)  # what a bare file lacked, said once by the caller
        if manifest is not None:
            self.labels: Optional[list[str]] = list(manifest["classes"])
            size = manifest["preprocessing"]["size"]
            self.size: Optional[tuple[int, int]] = (int(size[0]), int(size[1]))
        else:
            self.labels = list(self.contract.labels) if self.contract.labels else None
            self.size = self.contract.size
        entry = (manifest or {}).get("artifacts", {}).get(self.path.name, {})
        # Images per runtime call when predicting many (feed.PREDICT_BATCH, measured per runtime).
        self.batch_size = predict_batch(self.kind, entry.get("quantization") if isinstance(entry, dict) else None)

    def predict(self, images: np.ndarray) -> np.ndarray:
        raise NotImplementedError

    def normalized(self, images: np.ndarray) -> np.ndarray:
        """Float input for a bare model whose metadata asks (pixel - mean) / std; tk's own take the pixels."""
        if self.contract.mean is None:
            return images
        mean = np.asarray(self.contract.mean, np.float32)
        std = np.asarray(self.contract.std, np.float32)
        return (images.astype(np.float32, copy=False) - mean) / std

    def runtime_info(self) -> dict[str, Any]:
        """What the runtime chose that the numbers depend on (OpenVINO: precision, threads); bench records it."""
        return {}

    def _check_outputs(self, count: int, shape: Sequence[Any]) -> None:
        """One output of (batch, classes), as many classes as the manifest names: labels are never
        attached to an output they do not describe."""
        if count != 1:
            raise TkError(
                f"{self.path}: model has {count} outputs; tk runs classifiers with one output "
                "(class probabilities): export the model with a single output"
            )
        self._check_classes(shape)

    def _check_classes(self, shape: Sequence[Any]) -> None:
        if len(shape) != 2:
            raise TkError(
                f"{self.path}: model output has shape {list(shape)}, expected (batch, classes); "
                "tk runs image classifiers"
            )
        classes = shape[-1]
        if self.labels is None and isinstance(classes, (int, np.integer)):
            self.labels = [str(i) for i in range(int(classes))]  # a bare model without labels: indices
        if isinstance(classes, (int, np.integer)) and self.labels is not None and classes != len(self.labels):
            if self.contract.source:
                raise TkError(
                    f"{self.path}: model outputs {classes} classes but its {self.contract.source} lists "
                    f"{len(self.labels)} labels; the labels belong to another model (re-export it)"
                )
            raise TkError(
                f"{self.path}: model outputs {classes} classes but the manifest lists "
                f"{len(self.labels)} ({', '.join(self.labels)}); copy the manifest.json of the "
                "run that exported this model"
            )

    def predict_batched(self, images: np.ndarray, batch_size: Optional[int] = None) -> np.ndarray:
        """Probabilities for any number of decoded images, `batch_size` (default: the runtime's) at a time."""
        batch_size = batch_size or self.batch_size
        chunks = [self.predict(images[i : i + batch_size]) for i in range(0, len(images), batch_size)]
        return np.concatenate(chunks) if chunks else np.zeros((0, len(self.labels)), np.float32)

    def predict_files(self, paths: Sequence[str | Path], batch_size: int = BATCH) -> np.ndarray:
        """Probabilities for image files, decoded `batch_size` at a time (memory stays bounded) and
        run at the runtime's batch size."""
        chunks = [
            self.predict_batched(load_batch(list(paths[i : i + batch_size]), self.size))
            for i in range(0, len(paths), batch_size)
        ]
        return np.concatenate(chunks) if chunks else np.zeros((0, len(self.labels)), np.float32)

    def _check_input(self, shape: Sequence[Any]) -> None:
        if len(shape) != 4:
            raise TkError(
                f"{self.path}: model input has shape {list(shape)}, expected (batch, height, width, 3); "
                "re-run tk export"
            )
        channels = shape[3]
        if isinstance(channels, (int, np.integer)) and channels != 3:
            layout = " (channels-first NCHW: tk feeds NHWC)" if shape[1] == 3 else ""
            raise TkError(
                f"{self.path}: model input has {channels} channel(s){layout}, shape {list(shape)}; "
                "tk feeds RGB images as (batch, height, width, 3): export the model with that input"
            )
        if not all(isinstance(d, (int, np.integer)) and d > 0 for d in shape[1:3]):
            if self.size is None:
                raise TkError(
                    f"{self.path}: model input has no fixed size ({list(shape)}) and nothing beside or in "
                    "it says which: copy the run's manifest.json beside it (or re-export it with tk)"
                )
            return  # symbolic height/width (a fully dynamic graph): any size the manifest names fits
        height, width = int(shape[1]), int(shape[2])
        if self.size is None:  # a bare file: its own input size
            self.size = (height, width)
        if (height, width) != self.size:
            raise TkError(
                f"{self.path}: model input is {height}x{width} but the manifest says "
                f"{self.size[0]}x{self.size[1]}; the manifest is out of date, re-run tk export"
            )


def interpreter_class():
    """LiteRT where it has wheels (x86_64, aarch64), tflite-runtime on 32-bit Pi OS (armv7l)."""
    try:
        from ai_edge_litert.interpreter import Interpreter
    except ImportError:
        try:
            from tflite_runtime.interpreter import Interpreter
        except ImportError:
            machine = platform.machine()
            package = "tflite-runtime" if machine.startswith("armv7") else "ai-edge-litert"
            raise TkError(
                f"no TFLite runtime installed for .tflite models on {machine}: pip install {package}"
            ) from None
    return Interpreter


class TFLiteModel:
    """A .tflite interpreter that takes float batches of any size (quantizing int8 I/O).

    raw_uint8: a uint8 input gets the pixel itself (TFLite metadata semantics, see bare.Contract)
    instead of the pixel quantized by the input's scale and zero-point.

    The input is resized to each batch: only a new largest batch costs a re-plan of the XNNPACK
    delegate (0.03-0.5 s for MobileNetV2 at batch 4-32); a smaller one (the last of a run) and a
    return to a size already planned cost nothing measurable, less than padding it (BENCHMARKS.md,
    "No regression elsewhere"). The feed buffer (and, for an integer input, its float32 scratch)
    is allocated for the largest batch and used through its first rows, so quantization makes no
    temporaries."""

    def __init__(self, path: Path, num_threads: Optional[int] = None, raw_uint8: bool = False):
        self.raw_uint8 = raw_uint8
        Interpreter = interpreter_class()
        try:
            with silenced_stderr():  # LiteRT's "Created XNNPACK delegate" INFO line
                self.interpreter = Interpreter(model_path=str(path), num_threads=num_threads or os.cpu_count())
                self.interpreter.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise TkError(
                f"{path}: not a valid .tflite model (truncated or corrupt?): {exc}; re-run tk export"
            ) from None
        self._details()
        self.input_shape = tuple(self._in["shape"])
        self.output_count = len(self.interpreter.get_output_details())
        self._batch = int(self._in["shape"][0])  # the input's batch now
        self._capacity = self._batch  # the largest batch planned, and the feed buffers' size
        self._buffers: Optional[tuple[np.ndarray, np.ndarray]] = None  # (feed, float32 scratch)

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
            if n > self._capacity:
                self._capacity, self._buffers = n, None
        detail = PIXELS if self.raw_uint8 and self._in["dtype"] == np.uint8 else self._in
        if np.dtype(detail["dtype"]) == np.float32:
            feed = images.astype(np.float32, copy=False)  # set_tensor copies it: no buffer needed
        else:
            feed, scratch = (buffer[:n] for buffer in self._feed_buffers(detail["dtype"]))
            quantize_into(images, detail, feed, scratch)
        self.interpreter.set_tensor(self._in["index"], feed)
        self.interpreter.invoke()
        return dequantize(self.interpreter.get_tensor(self._out["index"]), self._out)

    def _feed_buffers(self, dtype: Any) -> tuple[np.ndarray, np.ndarray]:
        """An integer input's feed buffer and its float32 scratch (a float input needs neither)."""
        if self._buffers is None:
            shape = (self._capacity, *self.input_shape[1:])
            self._buffers = (np.empty(shape, dtype), np.empty(shape, np.float32))
        return self._buffers


class TFLitePredictor(Predictor):
    kind = "tflite"

    def __init__(self, path: Path, manifest: Optional[dict[str, Any]], num_threads: Optional[int] = None):
        from .bare import tflite_contract

        super().__init__(path, manifest, tflite_contract(Path(path)) if manifest is None else None)
        self.model = TFLiteModel(path, num_threads, raw_uint8=self.contract.raw_uint8)
        self._check_input(self.model.input_shape)
        self._check_outputs(self.model.output_count, tuple(self.model._out["shape"]))
        self._float_input = np.issubdtype(self.model._in["dtype"], np.floating)

    def predict(self, images: np.ndarray) -> np.ndarray:
        return self.model.run(self.normalized(images) if self._float_input else images)


class OnnxPredictor(Predictor):
    kind = "onnx"
    spins = True

    def __init__(
        self, path: Path, manifest: Optional[dict[str, Any]], num_threads: Optional[int] = None, spin: bool = True
    ):
        try:
            import onnxruntime as ort
        except ImportError:
            raise TkError(f"{path}: onnxruntime is not installed; {install_hint(FORMATS['onnx'])}") from None

        options = ort.SessionOptions()
        options.intra_op_num_threads = num_threads or os.cpu_count() or 1
        options.inter_op_num_threads = 1
        if not spin:  # its workers sleep between calls instead of spinning through the caller's decoding
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        try:
            self.session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        except Exception as exc:  # onnxruntime raises its own Fail/InvalidProtobuf types
            raise TkError(f"{path}: not a valid .onnx model (truncated or corrupt?): {exc}; re-run tk export") from None
        contract = None
        if manifest is None:  # a bare file: what tk's export wrote into its metadata_props
            from .bare import onnx_contract

            contract = onnx_contract(dict(self.session.get_modelmeta().custom_metadata_map or {}), Path(path))
        super().__init__(path, manifest, contract)
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1:
            raise TkError(f"{path}: model has {len(inputs)} inputs; tk runs classifiers with one image input")
        self._input = inputs[0]
        self._check_input(self._input.shape)
        self._check_outputs(len(outputs), outputs[0].shape)
        if self._input.type not in _ONNX_INPUTS:
            raise TkError(
                f"{path}: model input type {self._input.type} is not supported; tk feeds "
                f"{', '.join(sorted(_ONNX_INPUTS))} (RGB pixels 0..255)"
            )
        if outputs[0].type not in _ONNX_FLOATS:
            raise TkError(
                f"{path}: model output type {outputs[0].type} is not supported; tk reads class "
                "probabilities as float (a quantized output needs its scale: use QDQ, as tk export does)"
            )
        # A fixed batch dimension (e.g. 1) is fed that many images per call.
        batch = self._input.shape[0]
        self._batch = int(batch) if isinstance(batch, (int, np.integer)) and batch > 0 else None

    def predict(self, images: np.ndarray) -> np.ndarray:
        if self._input.type in _ONNX_FLOATS:
            images = self.normalized(images)
        pixels = _ONNX_INPUTS[self._input.type](images)
        step = self._batch or max(len(pixels), 1)
        chunks = []
        for i in range(0, len(pixels), step):
            chunk = pixels[i : i + step]
            if len(chunk) < step and self._batch:  # pad the last chunk to the fixed batch
                chunk = np.concatenate([chunk, np.repeat(chunk[-1:], step - len(chunk), axis=0)])
            out = np.asarray(self.session.run(None, {self._input.name: chunk})[0], dtype=np.float32)
            chunks.append(out[: len(pixels) - i])
        probs = np.concatenate(chunks) if chunks else np.zeros((0, len(self.labels)), np.float32)
        self._check_classes(probs.shape)  # a symbolic class dimension is checked on the first output
        return probs


_ONNX_FLOATS = ("tensor(float)", "tensor(float16)", "tensor(double)")
# What an image input of each type is fed: float types take the 0..255 pixels as they are; uint8
# takes the pixel itself (what load_image decoded, so rounding restores it exactly).
_ONNX_INPUTS = {
    "tensor(float)": lambda x: x.astype(np.float32, copy=False),
    "tensor(float16)": lambda x: x.astype(np.float16),
    "tensor(double)": lambda x: x.astype(np.float64),
    "tensor(uint8)": pixels_uint8,
}


def predictor_class(fmt: Format) -> type[Predictor]:
    """The class that runs a format, imported only now (TensorFlow predictors live in export/)."""
    module, name = fmt.predictor.split(":")
    return getattr(importlib.import_module(module), name)


def load_predictor(
    path: str | Path, num_threads: Optional[int] = None, check_hash: bool = True, spin: bool = True
) -> Predictor:
    """The predictor for an artifact, configured from the manifest in its folder.

    spin=False: the caller works between calls (tk predict decodes the next image), so a runtime
    whose idle threads spin (ONNX Runtime's default) is told to let them sleep: over 200 images
    that halved tk predict's CPU seconds on ONNX (BENCHMARKS.md, "Throughput over many images").
    bench keeps the runtime's default: it times calls back to back, as a device loop runs them."""
    path = Path(path)
    if not path.exists():
        raise TkError(f"{path}: model file not found")
    if num_threads is not None:
        check_threads([num_threads])
    fmt = format_of_path(path)
    if fmt.needs_tensorflow and not tensorflow_installed():
        raise TkError(
            f"{path}: a {fmt.name} model needs TensorFlow, which the base install does not have: "
            f"pip install 'tk-edge[train]', or use the run's {suffixes(DEVICE_FORMATS)} files"
        )
    manifest_path = path.parent / MANIFEST
    if not os.path.lexists(manifest_path):
        if fmt.name not in BARE_FORMATS:
            raise TkError(
                f"{path}: no {MANIFEST} beside it; copy the run's manifest.json with the model "
                "(it holds the labels and preprocessing)"
            )
        # A bare .tflite/.onnx: run with the labels and preprocessing it carries (bare.py).
        return _construct(predictor_class(fmt), path, None, num_threads, spin)
    # The manifest is the folder's own file: one linked from elsewhere is not read.
    confine(path.parent, MANIFEST, manifest_path, "copy the run's manifest.json beside the model instead of linking it")
    manifest = read_manifest(manifest_path)
    entry = artifact_entries(manifest, manifest_path).get(path.name)
    if not isinstance(entry, dict):
        raise TkError(f"{path}: not listed in {manifest_path}; the manifest is out of date (re-run tk export)")
    if check_hash:
        # A manifest entry without sha256 is refused, not trusted: the hash is what ties this file
        # to the labels and preprocessing beside it.
        if not entry.get("sha256"):
            raise TkError(
                f"{manifest_path}: no sha256 recorded for {path.name}; copy the manifest.json of "
                "the run that exported it (or re-run tk export / tk pack)"
            )
        if sha256_file(path) != entry["sha256"]:
            raise TkError(
                f"{path}: sha256 differs from {manifest_path}; the file changed after export "
                "(re-run tk export, or copy the matching manifest)"
            )
        check_companions(path, entry, manifest_path)
    return _construct(predictor_class(fmt), path, manifest, num_threads, spin)


def _construct(cls: type[Predictor], path: Path, manifest: Optional[dict], num_threads: Optional[int], spin: bool):
    return cls(path, manifest, num_threads=num_threads, **({} if spin or not cls.spins else {"spin": False}))


def check_companions(path: Path, entry: dict[str, Any], manifest_path: Path) -> None:
    """The files that belong to `path` (an IR's .bin) are there and are the bytes the manifest hashed:
    a .bin swapped for another export's fails here like a changed model file."""
    recorded = entry.get("companions") if isinstance(entry.get("companions"), dict) else {}
    for name in companion_files(path.name):
        companion = path.with_name(name)
        if not companion.is_file():
            raise TkError(
                f"{companion}: missing; {path.name} needs it beside it (the model's weights): copy both "
                "files (tk pack copies both), or re-run tk export"
            )
        expected = recorded.get(name, {}).get("sha256") if isinstance(recorded.get(name), dict) else None
        if not expected:
            raise TkError(
                f"{manifest_path}: no sha256 recorded for {name} (the weights of {path.name}); copy the "
                "manifest.json of the run that exported it (or re-run tk export / tk pack)"
            )
        if sha256_file(companion) != expected:
            raise TkError(
                f"{companion}: sha256 differs from {manifest_path}; the weights changed after export or "
                f"come from another export than {path.name} (re-run tk export, or copy the matching files)"
            )


def tensorflow_installed() -> bool:
    """Both TensorFlow and Keras importable (the [train] install); never imports them."""
    import importlib.util

    return all(importlib.util.find_spec(name) is not None for name in ("tensorflow", "keras"))


def read_manifest(manifest_path: Path) -> dict[str, Any]:
    """A manifest beside a model, checked by its schema (classes, input size, artifacts: core/schemas.py)."""
    return schemas.load_manifest(manifest_path)


def artifact_entries(manifest: dict[str, Any], manifest_path: Path) -> dict[str, Any]:
    """The manifest's artifacts mapping (file -> entry); the schema already refused any other shape."""
    return manifest.get("artifacts", {})
