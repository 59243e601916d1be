"""`tk data synth | inspect | fetch` through the CLI: exit codes, messages, JSON, no traceback."""

from __future__ import annotations

import hashlib
import json
import subprocess
import sys
import tarfile
from pathlib import Path

import pytest
from helpers import assert_one_line_error
from typer.testing import CliRunner

from toolkit.cli.app import app
from toolkit.data.synth import make_synthetic_dataset

REPO = Path(__file__).resolve().parents[2]
runner = CliRunner()


def tk(*args: str):
    return runner.invoke(app, [str(a) for a in args])


def write_recipe(path: Path, data: dict) -> Path:
    path.write_text(json.dumps({"name": path.stem, "data": data}))  # JSON is YAML
    return path


def test_synth(tmp_path):
    result = tk("data", "synth", tmp_path / "s", "--classes", 2, "--per-class", 5, "--size", 24)
    assert result.exit_code == 0, result.output
    assert "wrote 2 classes x 5 images (24 px)" in result.output
    assert len(list((tmp_path / "s").rglob("*.jpg"))) == 10


def test_synth_bad_option_is_one_line(tmp_path):
    assert_one_line_error(tk("data", "synth", tmp_path / "s", "--classes", 1), "--classes")


def test_inspect_quickstart_after_synth(tmp_path, monkeypatch):
    # The README flow: make the quickstart data where the shipped recipe expects it, then inspect.
    monkeypatch.chdir(tmp_path)
    assert tk("data", "synth", "data/quickstart", "--per-class", 20, "--size", 32).exit_code == 0
    result = tk("data", "inspect", REPO / "recipes" / "quickstart.yaml")
    assert result.exit_code == 0, result.output
    out = result.output
    assert "layout folder (detected)" in out and "3 classes, 60 images" in out
    for name in ("circle", "square", "triangle", "train", "validation", "test"):
        assert name in out
    assert "min 32x32" in out and "no problems found" in out


def test_inspect_json_counts_sizes_and_bad_files(tmp_path):
    root = make_synthetic_dataset(tmp_path / "d", classes=2, per_class=10, size=20, seed=0)
    (root / "square" / "broken.jpg").write_bytes(b"")
    recipe = write_recipe(tmp_path / "r.yaml", {"root": str(root), "strict": True})
    result = tk("data", "inspect", recipe, "--json")
    assert result.exit_code == 0, result.output  # inspect lists bad files even when strict
    report = json.loads(result.stdout)
    assert report["layout"] == "folder" and report["classes"] == ["circle", "square"]
    assert report["counts"]["train"] == {"circle": 7, "square": 7}
    assert sum(report["totals"].values()) == report["images"] == 20
    assert report["sizes"]["width"] == {"min": 20, "median": 20, "max": 20} and report["sizes"]["modes"] == {"RGB": 20}
    assert report["bad_files"] == [{"path": str(root / "square" / "broken.jpg"), "reason": "empty file"}]
    assert any("FAIL" in w and "strict" in w for w in report["warnings"])


def test_inspect_warns_about_missing_test_imbalance_and_empty_class(tmp_path):
    root = tmp_path / "pre"
    make_synthetic_dataset(root / "train", classes=3, per_class=20, size=16, seed=0)
    make_synthetic_dataset(root / "validation", classes=3, per_class=3, size=16, seed=1)
    for path in sorted((root / "train" / "square").glob("*.jpg"))[4:]:
        path.unlink()  # 20 circles, 4 squares: 5x imbalance
    for path in (root / "validation" / "triangle").glob("*.jpg"):
        path.unlink()  # no triangles to validate on
    recipe = write_recipe(tmp_path / "pre.yaml", {"root": str(root)})
    report = json.loads(tk("data", "inspect", recipe, "--json").stdout)
    assert report["layout"] == "presplit" and report["test_is_validation"]
    warnings = "\n".join(report["warnings"])
    assert "no test split (no test/ folder)" in warnings and "validation" in warnings
    assert "class imbalance" in warnings and "5.0x" in warnings
    assert "the validation split has 0 images of triangle" in warnings
    table = tk("data", "inspect", recipe).output
    assert "test (= validation)" in table and "warning: class imbalance" in table


def test_inspect_different_image_sizes(tmp_path):
    from PIL import Image

    root = tmp_path / "sizes"
    for k, name in enumerate(("a", "b")):
        (root / name).mkdir(parents=True)
        for i, (w, h) in enumerate([(30, 20), (50, 40), (90, 60)]):
            Image.new("L" if k else "RGB", (w, h)).save(root / name / f"{i}.png")
    report = json.loads(tk("data", "inspect", write_recipe(tmp_path / "s.yaml", {"root": str(root)}), "--json").stdout)
    assert report["sizes"]["width"] == {"min": 30, "median": 50, "max": 90}
    assert report["sizes"]["height"] == {"min": 20, "median": 40, "max": 60}
    assert report["sizes"]["modes"] == {"RGB": 3, "L": 3}


def test_inspect_missing_root_is_one_line(tmp_path):
    recipe = write_recipe(tmp_path / "r.yaml", {"root": str(tmp_path / "nowhere")})
    assert_one_line_error(tk("data", "inspect", recipe), "data.root: folder not found", "nowhere")


def test_fetch_then_skip(tmp_path):
    src = make_synthetic_dataset(tmp_path / "src" / "photos", classes=2, per_class=4, size=16)
    archive = tmp_path / "photos.tgz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(src, arcname="photos")
    digest = hashlib.sha256(archive.read_bytes()).hexdigest()
    root = tmp_path / "data" / "photos"
    recipe = write_recipe(
        tmp_path / "f.yaml",
        {"root": str(root), "source": {"url": archive.as_uri(), "sha256": digest, "subdir": "photos"}},
    )
    first = tk("data", "fetch", recipe)
    assert first.exit_code == 0, first.output
    assert "sha256 ok" in first.output and f"extracted 9 files to {root}" in first.output
    assert len(list(root.rglob("*.jpg"))) == 8
    second = tk("data", "fetch", recipe)
    assert second.exit_code == 0 and "skipping" in second.output


def test_fetch_bad_checksum_is_one_line(tmp_path):
    archive = tmp_path / "a.tgz"
    with tarfile.open(archive, "w:gz") as tf:
        tf.add(make_synthetic_dataset(tmp_path / "src", classes=2, per_class=2, size=16), arcname="x")
    recipe = write_recipe(
        tmp_path / "f.yaml", {"root": str(tmp_path / "out"), "source": {"url": archive.as_uri(), "sha256": "f" * 64}}
    )
    result = tk("data", "fetch", recipe)
    assert result.exit_code == 1 and "sha256 mismatch" in result.stderr and "Traceback" not in result.output
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("command", ["inspect", "fetch"])
def test_bad_recipe_path_is_one_line(tmp_path, command):
    assert_one_line_error(tk("data", command, tmp_path / "missing.yaml"), "recipe not found", "missing.yaml")


def test_bad_recipe_key_is_one_line(tmp_path):
    recipe = tmp_path / "typo.yaml"
    recipe.write_text("data:\n  roots: data/x\n")
    assert_one_line_error(tk("data", "inspect", recipe), str(recipe), "data.roots: unknown key", "'root'")


def test_data_commands_do_not_import_tensorflow(tmp_path):
    root = make_synthetic_dataset(tmp_path / "d", classes=2, per_class=5, size=16)
    recipe = write_recipe(tmp_path / "r.yaml", {"root": str(root)})
    code = (
        "import sys\nfrom toolkit.cli.app import app\n"
        f"try:\n    app(['data', 'inspect', {str(recipe)!r}, '--json'])\nexcept SystemExit as e:\n"
        "    assert not e.code, e.code\n"
        "import toolkit.data.fetch\n"
        "assert 'tensorflow' not in sys.modules and 'keras' not in sys.modules, 'TensorFlow imported'\n"
    )
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["images"] == 10
