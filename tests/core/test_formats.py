"""The formats table drives the registries: predictors, runtime packages, recipe defaults, help texts."""

from __future__ import annotations

import dataclasses

import pytest

from toolkit.core.formats import DEFAULT_FORMATS, DEVICE_FORMATS, EXPORT_FORMATS, FORMATS, runtime_packages, suffixes
from toolkit.core.recipe import ExportSection


def _marked(fmt):
    """Device formats' predictors must import on the base install too: the edge pass runs them there."""
    return pytest.param(fmt.name, marks=() if fmt.needs_tensorflow else pytest.mark.edge, id=fmt.name)


@pytest.mark.parametrize("name", [_marked(f) for f in FORMATS.values()])
def test_every_predictor_named_in_the_table_imports(name):
    from toolkit.edge.predictors import Predictor, predictor_class, tensorflow_installed

    fmt = FORMATS[name]
    if fmt.needs_tensorflow and not tensorflow_installed():
        pytest.skip("a TensorFlow predictor: the full install imports it")
    assert issubclass(predictor_class(fmt), Predictor)


@pytest.mark.edge
def test_bench_records_the_version_of_every_runtime_in_the_table():
    from toolkit.edge.machine import RUNTIME_PACKAGES

    assert RUNTIME_PACKAGES == runtime_packages()
    assert all(p in RUNTIME_PACKAGES for fmt in FORMATS.values() for p in fmt.packages)
    assert all(fmt.packages for fmt in FORMATS.values())  # every format says what runs it


@pytest.mark.edge
def test_recipes_export_the_default_formats_unless_they_name_others():
    assert ExportSection().formats == DEFAULT_FORMATS
    assert set(DEFAULT_FORMATS) <= set(EXPORT_FORMATS) and set(DEVICE_FORMATS) <= set(EXPORT_FORMATS)
    assert suffixes(DEVICE_FORMATS) == "/".join(FORMATS[n].suffix for n in DEVICE_FORMATS)


@pytest.fixture
def optional_format(monkeypatch):
    """A row with default=False (as OpenVINO's), added to the table for one test."""
    import toolkit.core.formats as formats
    import toolkit.export.exporter as exporter

    extra = dataclasses.replace(FORMATS["onnx"], name="extra", suffix=".xtra", default=False)
    monkeypatch.setitem(formats.FORMATS, "extra", extra)
    monkeypatch.setattr(exporter, "EXPORT_FORMATS", (*EXPORT_FORMATS, "extra"))
    return extra


def test_a_format_off_by_default_is_exported_only_when_named(optional_format):
    pytest.importorskip("tensorflow")
    from toolkit.export.exporter import plan

    section = ExportSection()
    assert [f.name for f, _ in plan(None, ["none"], section)] == list(DEFAULT_FORMATS)
    assert [f.name for f, _ in plan(["all"], ["none"], section)] == list(DEFAULT_FORMATS)
    assert [f.name for f, _ in plan(["extra"], ["none"], section)] == ["extra"]
    named = dataclasses.replace(section, formats=("tflite", "extra"))
    assert [f.name for f, _ in plan(None, ["none"], named)] == ["tflite", "extra"]
