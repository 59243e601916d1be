"""Issue 10 probe: a damaged or Lambda model.keras is one line naming the file, in explain, export
and verify alike (all open it through export/reference.load_keras_model)."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from helpers import assert_one_line_error
from typer.testing import CliRunner

from toolkit.cli.app import app

runner = CliRunner()


def _truncated(path: Path) -> None:
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 2])


def _random(path: Path) -> None:
    path.write_bytes(bytes(range(256)) * 64)


def _empty(path: Path) -> None:
    path.write_bytes(b"")


def _lambda(path: Path) -> None:
    import keras

    model = keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Lambda(lambda x: x * 2.0),
            keras.layers.GlobalAveragePooling2D(),
            keras.layers.Dense(3),
        ]
    )
    path.unlink()
    model.save(path)


DAMAGE = {
    "truncated": (_truncated, "damaged or truncated"),
    "random": (_random, "damaged or truncated"),
    "empty": (_empty, "empty file"),
    "lambda": (_lambda, "Lambda layer"),
}


def _damaged(source: Path, tmp_path: Path, kind: str) -> Path:
    run = Path(shutil.copytree(source, tmp_path / "runs" / source.name))
    DAMAGE[kind][0](run / "model.keras")
    return run


@pytest.mark.parametrize("kind", sorted(DAMAGE))
@pytest.mark.parametrize(
    "command, options", [(["explain", "filters"], ["--layer", "block1_conv1"]), (["export"], ["--format", "tflite"])]
)
def test_damaged_model_keras_is_one_line_in_explain_and_export(trained_run, tmp_path, kind, command, options):
    run = _damaged(trained_run, tmp_path, kind)
    if command[0] == "export":  # export checks the trained model's hash first (provenance)
        result = runner.invoke(app, [*command, str(run), *options])
        assert_one_line_error(result, f"{run / 'model.keras'}: sha256 differs", "retrain it")
        _record_hash(run)
    result = runner.invoke(app, [*command, str(run), *options])
    assert_one_line_error(result, str(run / "model.keras"), DAMAGE[kind][1], "re-run tk train")


def _record_hash(run: Path) -> None:
    """The manifest copied along with the damaged file."""
    import json

    from toolkit.core.io import sha256_file

    manifest = json.loads((run / "manifest.json").read_text())
    manifest["artifacts"]["model.keras"]["sha256"] = sha256_file(run / "model.keras")
    (run / "manifest.json").write_text(json.dumps(manifest))


@pytest.mark.parametrize("kind", sorted(DAMAGE))
def test_damaged_model_keras_is_one_line_in_verify(exported_run, tmp_path, kind):
    run = _damaged(exported_run, tmp_path, kind)

    def error_line():
        result = runner.invoke(app, ["verify", str(run)])
        assert result.exit_code == 1 and "Traceback" not in result.output, result.output
        errors = [line for line in result.output.splitlines() if line.startswith("error: ")]
        assert len(errors) == 1 and result.output.strip().splitlines()[-1] == errors[0], result.output
        return errors[0]

    # verify hashes first: a changed model.keras is named before it is opened
    assert f"{run / 'model.keras'}: sha256 differs" in error_line()
    # the manifest copied along with the damaged file: then opening it is the one line
    _record_hash(run)
    line = error_line()
    for fragment in (str(run / "model.keras"), DAMAGE[kind][1], "re-run tk train"):
        assert fragment in line, line
