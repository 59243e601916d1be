"""The batch-1 .tflite copy LiteRT.js needs: a fixed batch dimension, otherwise the same file and the
same outputs (checked with the LiteRT runtime on the run's real test images)."""

from __future__ import annotations

import numpy as np
import pytest

from toolkit.core.errors import TkError
from toolkit.core.images import load_batch
from toolkit.core.runs import load_manifest, load_split
from toolkit.web.batch1 import batch1_bytes, batch1_name

pytestmark = pytest.mark.edge


@pytest.mark.parametrize("file", ["model_float32.tflite", "model_int8.tflite"])
def test_batch1_copy_fixes_the_batch_and_keeps_the_outputs(device_run, tmp_path, file):
    from ai_edge_litert.interpreter import Interpreter

    original = (device_run / file).read_bytes()
    copy = batch1_bytes(original, file)
    assert len(copy) == len(original)
    # Only shape-signature words changed: -1 (ff ff ff ff) became 1 (01 00 00 00).
    changed = [i for i, (a, b) in enumerate(zip(original, copy, strict=True)) if a != b]
    assert changed and all(copy[i] in (0, 1) and original[i] == 0xFF for i in changed)
    (tmp_path / batch1_name(file)).write_bytes(copy)

    interpreters = [Interpreter(model_content=data) for data in (original, copy)]
    details = [i.get_input_details()[0] for i in interpreters]
    assert details[0]["shape_signature"][0] == -1 and list(details[1]["shape_signature"]) == [
        1,
        *details[0]["shape"][1:],
    ]
    size = tuple(load_manifest(device_run)["preprocessing"]["size"])
    images = load_batch(load_split(device_run / "split.json").paths("test")[:8], size)
    outputs = []
    for interpreter, detail in zip(interpreters, details, strict=True):
        interpreter.allocate_tensors()
        rows = []
        for image in images:
            interpreter.set_tensor(detail["index"], image[None].astype(detail["dtype"]))
            interpreter.invoke()
            rows.append(interpreter.get_tensor(interpreter.get_output_details()[0]["index"])[0].copy())
        outputs.append(np.stack(rows))
    np.testing.assert_array_equal(outputs[0], outputs[1])


def test_batch1_name_and_refusal():
    assert batch1_name("model_int8.tflite") == "model_int8.b1.tflite"
    with pytest.raises(TkError, match="not a"):
        batch1_bytes(b"\0" * 64, "x.tflite")
