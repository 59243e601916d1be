"""The inputs one `tk export` shares between its formats, built once and only when a format needs them.

The Keras model (refused when a diverged training left NaN/Inf weights: the converters segfault
on them), the SavedModel every converter starts from, the run's split, the int8 calibration
images, every TFLite flatbuffer (converted once each, the int8 one from the float32 one) and the
float ONNX model. ONNX Runtime's int8 calibration, the longest single step, can start on a second
thread while TFLite converts (prefetch_onnx_int8). The writers of exporter.py and the int8 search of int8_gate.py
both read a job; neither imports the other.
"""

from __future__ import annotations

import functools
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np

from ..core.context import SILENT, Context
from ..core.errors import TkError
from ..core.io import WORK_PREFIX
from ..core.recipe import ExportSection, Recipe
from ..core.runs import REFERENCE, SPLIT, check_files_exist, load_manifest, load_split, stratified_sample


class ExportJob:
    """The shared, lazily built inputs of one `tk export`: model, SavedModel, calibration images."""

    def __init__(self, run_dir: Path, recipe: Recipe, opset: int, ctx: Context = SILENT):
        self.run_dir = run_dir
        self.ctx = ctx  # ctx.data_root: where the split's images are now, if they moved
        self.recipe = recipe
        self.section: ExportSection = recipe.export
        self.opset = opset
        self.manifest = load_manifest(run_dir)
        height, width = self.manifest["preprocessing"]["size"]
        self.size = (int(height), int(width))
        # Beside the run (same filesystem), so copying the SavedModel into place is cheap.
        self.workdir = Path(tempfile.mkdtemp(prefix=WORK_PREFIX, dir=run_dir))
        self.labels: list[str] = list(self.manifest["classes"])  # checked against labels.txt in export_run
        self._onnx_int8: Optional[_Background] = None

    def close(self, wait: bool = True) -> None:
        """Remove the work folder, after the prefetch thread finished writing into it. wait=False
        (an interrupt): no waiting for a calibration nobody will use; the thread removes the folder
        again when it ends (what it wrote after this), and if the process exits first (a daemon
        thread), the next export removes the folder as a leftover."""
        if self._onnx_int8 is not None:
            if wait:
                self._onnx_int8.wait()
            else:
                self._onnx_int8.abandon(lambda: shutil.rmtree(self.workdir, ignore_errors=True))
        shutil.rmtree(self.workdir, ignore_errors=True)

    @functools.cached_property
    def model(self):
        from .reference import load_keras_model

        model = load_keras_model(self.run_dir / REFERENCE)
        refuse_non_finite_weights(model, self.run_dir / REFERENCE)
        return model

    @functools.cached_property
    def saved_model(self) -> Path:
        from .converters import export_saved_model

        path = self.workdir / "saved_model"
        export_saved_model(self.model, path)
        return path

    @functools.cached_property
    def split(self):
        """The run's split.json, its paths resolved against the data root (or --data-root)."""
        return load_split(self.run_dir / SPLIT, self.ctx.data_root)

    @functools.cached_property
    def calibration(self) -> np.ndarray:
        """A class-stratified sample of the TRAIN split, decoded exactly as training decodes it."""
        from ..core.images import load_batch

        split = self.split
        items = split.splits.get("train", [])
        wanted = self.section.calibration_samples
        if not items:
            raise TkError(
                f"{self.run_dir}/split.json: the train split is empty, so there is no int8 "
                "calibration data; re-run tk train on a dataset with training images"
            )
        sample = stratified_sample(items, wanted, self.recipe.seed)
        paths = [path for path, _ in sample]
        check_files_exist(paths, self.run_dir, split)
        labels = {label for _, label in sample}
        if len(labels) < 2:
            name = self.manifest["classes"][labels.pop()] if labels else "?"
            fix = (
                "raise export.calibration_samples (got 1)"
                if len({y for _, y in items}) > 1
                else "give the train split images of every class (re-run tk train)"
            )
            raise TkError(
                f"{self.run_dir}/{SPLIT}: every int8 calibration image is of class {name!r}, so the "
                f"int8 ranges would fit that class only; {fix}, or export without int8 "
                "(--quantize none,float16,dynamic)"
            )
        if len(paths) < wanted:
            self.ctx.say(
                f"warning: int8 calibration uses {len(paths)} training images, fewer than "
                f"export.calibration_samples={wanted} (the train split has only {len(items)})"
            )
        return load_batch(paths, self.size)

    def calibration_record(self) -> dict[str, Any]:
        """What the manifest says about an int8 artifact's calibration (TFLite and ONNX share it)."""
        return {"split": "train", "samples": int(len(self.calibration)), "requested": self.section.calibration_samples}

    @functools.cached_property
    def onnx_float(self):
        """The float32 ONNX model (tf2onnx), converted once for model.onnx and model_int8.onnx."""
        import onnx

        from .converters import onnx_from_saved_model

        proto = onnx_from_saved_model(self.saved_model, self.opset)
        onnx.checker.check_model(proto)
        return proto

    @functools.cached_property
    def tflite_conversions(self):
        from .converters import TFLiteConversions

        return TFLiteConversions(self.saved_model)

    def tflite(self, quantization: str) -> bytes:
        """The TFLite flatbuffer of one quantization (int8: calibrated on the calibration images, with
        export.int8_io input and output), converted once for the writers and the int8 searches."""
        representative = self.representative if quantization == "int8" else None
        return self.tflite_conversions.convert(quantization, representative, self.section.int8_io)

    @functools.cached_property
    def onnx_float_file(self) -> Path:
        """model.onnx in the work folder: what onnxruntime's quantizer reads."""
        import onnx

        path = self.workdir / "model.onnx"
        onnx.save(self.onnx_float, str(path))
        return path

    def quantize_onnx(self, out: Path, nodes_to_exclude=()) -> dict[str, Any]:
        """Write `out`, the static int8 QDQ ONNX model (onnx_int8.py); the manifest fields."""
        from .onnx_int8 import quantize_onnx_int8

        return quantize_onnx_int8(
            self.onnx_float_file,
            self.calibration,
            out,
            activations=self.section.onnx_int8_activations,
            method=self.section.onnx_int8_calibration,
            nodes_to_exclude=nodes_to_exclude,
            work=self.workdir / "onnx-int8",  # prepared model and calibrated ranges, made once
        )

    def prefetch_onnx_int8(self) -> None:
        """Start the plain int8 ONNX model (onnxruntime's calibration and quantization) on a second
        thread; onnx_int8() waits for it.

        Its calibration runs every calibration image through the model and histograms every
        activation: single-threaded numpy for the most part, while TFLite's conversions, next on this
        thread, use one core too. tf2onnx and the calibration images are made here first, so that
        TensorFlow builds graphs on one thread only.
        """
        self.onnx_float_file  # noqa: B018
        self.calibration  # noqa: B018
        out = self.workdir / "model_int8.onnx"
        self._onnx_int8 = _Background(lambda: (out, self.quantize_onnx(out)))

    def onnx_int8(self) -> tuple[Path, dict[str, Any]]:
        """(file, manifest fields) of the plain int8 ONNX model: the prefetched one, or made now."""
        if self._onnx_int8 is not None:
            return self._onnx_int8.result()
        out = self.workdir / "model_int8.onnx"
        return out, self.quantize_onnx(out)

    def representative(self):
        for image in self.calibration:
            yield [image[None]]


class _Background:
    """One call on a daemon thread; result() returns its value or raises its exception here."""

    def __init__(self, call: Callable[[], Any]):
        self._value: Any = None
        self._error: Optional[BaseException] = None
        self._on_abandon: Optional[Callable[[], None]] = None
        self._thread = threading.Thread(target=self._run, args=(call,), name="tk-export-onnx-int8", daemon=True)
        self._thread.start()

    def _run(self, call: Callable[[], Any]) -> None:
        try:
            self._value = call()
        except BaseException as exc:  # noqa: BLE001 -- handed to the thread that asks for the result
            self._error = exc
        finally:
            if self._on_abandon is not None:  # set before the caller's own clean-up: one of them sees all
                self._on_abandon()

    def abandon(self, clean_up: Callable[[], None]) -> None:
        """Nobody will ask for the result: run clean_up when the call ends."""
        self._on_abandon = clean_up

    def wait(self) -> None:
        self._thread.join()

    def result(self) -> Any:
        self.wait()
        if self._error is not None:
            raise self._error
        return self._value


def refuse_non_finite_weights(model, path: Path) -> None:
    """The converters segfault on NaN/Inf weights (a diverged training): refuse before them."""
    bad = [w.path for w in model.weights if not np.isfinite(np.asarray(w)).all()]
    if bad:
        raise TkError(
            f"{path}: {len(bad)} weight tensors hold NaN/Inf (first: {bad[0]}); training "
            f"diverged: retrain with a lower train.learning_rate"
        )
