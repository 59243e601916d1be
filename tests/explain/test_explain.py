"""tk explain on the session's trained MiniVGGNet (32 px, synthetic shapes with known boxes).

The run folder is copied once per module so the PNGs written here never land in the shared run.
"""

from __future__ import annotations

import shutil
from pathlib import Path

import numpy as np
import pytest
from PIL import Image
from typer.testing import CliRunner

from toolkit.cli.app import app
from toolkit.core.errors import TkError
from toolkit.explain.figures import GRID_CELL_PX, GRID_TITLE_PX


@pytest.fixture(scope="module")
def run(trained_run, tmp_path_factory) -> Path:
    runs = tmp_path_factory.mktemp("explain_runs")
    return Path(shutil.copytree(trained_run, runs / trained_run.name))


@pytest.fixture(scope="module")
def ex(run):
    from toolkit.explain.explainer import load_explainer

    return load_explainer(run)


@pytest.fixture(scope="module")
def held_out(run, ex, synth_root):
    """The run's test split: paths, labels, and each object's box mask at the model's input size."""
    from toolkit.core.runs import load_split
    from toolkit.data.synth import load_boxes

    split = load_split(run / "split.json")
    boxes = load_boxes(synth_root)
    paths = split.paths("test")
    size = ex.size[0]  # square; the boxes are in the original (48 px) images' pixels
    masks = []
    for path in paths:
        x0, y0, x1, y1 = boxes[str(Path(path).relative_to(synth_root))]
        scale = size / Image.open(path).width
        mask = np.zeros((size, size), bool)
        mask[int(y0 * scale) : int(np.ceil(y1 * scale)), int(x0 * scale) : int(np.ceil(x1 * scale))] = True
        masks.append(mask)
    return paths, np.array(split.labels("test")), np.stack(masks)


def _inside_outside(heat: np.ndarray, masks: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    inside = np.array([h[m].mean() for h, m in zip(heat, masks, strict=True)])
    outside = np.array([h[~m].mean() for h, m in zip(heat, masks, strict=True)])
    return inside, outside


def test_gradcam_heat_sits_on_the_object(ex, held_out):
    paths, labels, masks = held_out
    layer = ex.gradcam_layer()
    heat, picked, probs = ex.gradcam(ex.load(paths), layer)
    assert heat.shape == (len(paths), *ex.size) and 0.0 <= heat.min() and heat.max() <= 1.0
    assert (picked == labels).mean() >= 0.9  # explaining a model that works
    inside, outside = _inside_outside(heat, masks)
    assert inside.mean() > 2.0 * outside.mean(), (inside.mean(), outside.mean())
    assert (inside > outside).mean() >= 0.9


def test_gradcam_follows_the_class_asked_for(ex, held_out):
    paths, labels, masks = held_out
    batch = ex.load(paths)
    layer = ex.gradcam_layer()
    predicted, _, _ = ex.gradcam(batch, layer)
    # The evidence for a class the image is not: heat elsewhere than on the object.
    wrong = (labels[0] + 1) % len(ex.classes)
    keep = labels != wrong
    other, picked, _ = ex.gradcam(batch[keep], layer, class_index=int(wrong))
    assert (picked == wrong).all()
    right_in, right_out = _inside_outside(predicted[keep], masks[keep])
    wrong_in, wrong_out = _inside_outside(other, masks[keep])
    assert (wrong_in / (wrong_out + 1e-6)).mean() < (right_in / (right_out + 1e-6)).mean()


@pytest.mark.parametrize("layer", ["block2_conv2", "head_dense1", "predictions"])
def test_activation_maximization_raises_the_filter_activation(ex, layer):
    from toolkit.explain.maximize import AscentSettings, maximize

    result = maximize(ex, layer, [0, 1, 2], AscentSettings(steps=40))
    assert result.images.shape == (3, *ex.size, 3)
    assert result.images.min() >= 0.0 and result.images.max() <= 255.0
    assert (result.final > result.start).all(), (result.start, result.final)


def test_feature_map_pngs(ex, run, held_out):
    from toolkit.explain.feature_maps import explain_feature_maps

    image = Path(held_out[0][0])
    written = explain_feature_maps(run, image, ["block1_conv1", "block2_conv2"], count=8, explainer=ex)
    assert [p.name for p in written] == [
        f"featuremaps_{image.stem}_block1_conv1.png",
        f"featuremaps_{image.stem}_block2_conv2.png",
    ]
    for path in written:
        assert path.parent == run / "explain"
        width, height = Image.open(path).size
        assert width == 3 * GRID_CELL_PX  # 8 channels: 3 x 3 grid
        header = height - 3 * (GRID_CELL_PX + GRID_TITLE_PX)
        assert 20 <= header <= 80
    assert not list((run / "explain").glob(".*tmp*"))  # atomic writes leave no temporaries


def test_gradcam_pngs_and_contact_sheet(ex, run, held_out, tmp_path):
    from toolkit.explain.explainer import OVERLAY_MIN_SIDE
    from toolkit.explain.figures import gradcam_pair_size_px
    from toolkit.explain.gradcam import explain_gradcam

    folder = tmp_path / "photos"
    folder.mkdir()
    for path in held_out[0][:5]:
        shutil.copy(path, folder)
    (folder / "notes.txt").write_text("not an image")
    results, sheet = explain_gradcam(run, folder, explainer=ex)
    assert len(results) == 5
    for r in results:
        assert r.png.name == f"gradcam_{r.image.stem}_{r.class_name}.png"
        # 48 px photos are enlarged for viewing: the image and its overlay side by side, a colour bar
        assert Image.open(r.png).size == gradcam_pair_size_px(OVERLAY_MIN_SIDE, OVERLAY_MIN_SIDE)
    assert sheet.name == "gradcam_sheet_photos.png"
    assert Image.open(sheet).size[0] == 3 * GRID_CELL_PX


def test_filters_png(ex, run):
    from toolkit.explain.maximize import AscentSettings, explain_filters

    path, result = explain_filters(run, "block1_conv1", count=4, settings=AscentSettings(steps=10), explainer=ex)
    assert path == run / "explain" / "filters_block1_conv1.png"
    assert Image.open(path).size[0] == 2 * GRID_CELL_PX and result.filters == [0, 1, 2, 3]


def test_unknown_layer_lists_the_valid_ones(ex, run, held_out):
    from toolkit.explain.feature_maps import explain_feature_maps
    from toolkit.explain.maximize import explain_filters

    with pytest.raises(TkError, match=r"block2_conv3.*did you mean.*valid layers: .*block1_conv1.*block2_pool"):
        explain_feature_maps(run, Path(held_out[0][0]), ["block2_conv3"], explainer=ex)
    with pytest.raises(TkError, match=r"valid layers: .*head_dense1.*predictions"):
        explain_filters(run, "dense_9", explainer=ex)


def test_unknown_class_lists_the_classes(ex, run, held_out):
    from toolkit.explain.gradcam import explain_gradcam

    with pytest.raises(TkError, match="'hexagon' is not a class.*classes: " + ", ".join(ex.classes)):
        explain_gradcam(run, Path(held_out[0][0]), class_name="hexagon", explainer=ex)


def test_cli(run, held_out):
    runner = CliRunner()
    image = held_out[0][0]
    runs_dir = str(run.parent)
    ok = runner.invoke(
        app, ["explain", "maps", "--runs-dir", runs_dir, "--image", image, "--layers", "block1_conv2", "--count", "4"]
    )
    assert ok.exit_code == 0, ok.output
    assert "using the latest run" in ok.output and "featuremaps_" in ok.output
    ok = runner.invoke(app, ["explain", "gradcam", str(run), "--image", image, "--class", "circle"])
    assert ok.exit_code == 0, ok.output
    assert (run / "explain" / f"gradcam_{Path(image).stem}_circle.png").is_file()
    ok = runner.invoke(app, ["explain", "filters", str(run), "--layer", "predictions", "--steps", "5"])
    assert ok.exit_code == 0, ok.output
    assert (run / "explain" / "filters_predictions.png").is_file()
    for args, message in (
        (["maps", "--image", image, "--layers", "nope"], "valid layers"),
        (["maps", "--image", image, "--count", "0"], "--count: must be >= 1"),
        (["gradcam", "--image", image, "--class", "hexagon"], "not a class"),
        (["filters", "--steps", "0"], "--steps: must be >= 1"),
        (["maps", "--image", str(Path(image).parent)], "is a folder"),
        (["maps", "--image", "missing.jpg"], "file not found"),
    ):
        bad = runner.invoke(app, ["explain", args[0], str(run), *args[1:]])
        assert bad.exit_code == 1, (args, bad.output)
        assert message in bad.output and "Traceback" not in bad.output
    for args in (["maps"], ["gradcam", "--class", "circle"]):  # the image is required: a usage error
        assert runner.invoke(app, ["explain", args[0], str(run), *args[1:]]).exit_code == 2


def test_gradcam_titles_name_true_and_predicted_class(ex, held_out, tmp_path):
    from toolkit.explain.gradcam import _titles, true_class

    path = Path(held_out[0][0])
    truth = true_class(path, ex.classes)
    assert truth == ex.classes[held_out[1][0]]  # class folders name the true class
    probs = np.zeros(len(ex.classes))
    probs[0], probs[1] = 0.7, 0.3
    left, right, header = _titles(ex.classes, path, probs, 1, "block2_conv2")
    assert left == f"true: {truth}"
    assert right.startswith(f"predicted: {ex.classes[0]} 0.70") and right.endswith(
        "✓" if truth == ex.classes[0] else "✗"
    )
    assert f"heat for class {ex.classes[1]} 0.30" in header and "block2_conv2" in header
    assert _titles(ex.classes, tmp_path / "x.png", probs, 0, "l")[0].startswith("true: unknown")
