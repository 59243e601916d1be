"""Disk full and read-only folders end in one line naming the folder, not an OSError traceback.
Simulated with monkeypatch: tests may run as root, where chmod does not block writes."""

from __future__ import annotations

import errno

import pytest
from typer.testing import CliRunner

import toolkit.core.io as io
from toolkit.cli.app import app
from toolkit.core.errors import fault_line


@pytest.mark.parametrize("code, words", [(errno.ENOSPC, "disk is full"), (errno.EROFS, "read-only"),
                                         (errno.EACCES, "permission")])
def test_fault_errnos_become_one_line_naming_the_folder(code, words):
    line = fault_line(OSError(code, "boom", "/runs/r1/model.keras"))
    assert line.startswith("could not write in /runs/r1") and words in line


def test_other_oserrors_keep_their_traceback():
    assert fault_line(OSError(errno.EIO, "io")) is None


def test_disk_full_while_writing_synthetic_data_is_one_line(tmp_path, monkeypatch):
    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "data" / "x.json"))

    monkeypatch.setattr(io.tempfile, "mkstemp", full)
    import toolkit.core.images as images  # noqa: F401
    from PIL import Image

    monkeypatch.setattr(Image.Image, "save", full)
    result = CliRunner().invoke(app, ["data", "synth", str(tmp_path / "data")])
    assert result.exit_code == 1, result.output
    assert "disk is full" in result.output and "Traceback" not in result.output
