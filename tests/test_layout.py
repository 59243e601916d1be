"""The layout's rules, enforced: imports point down the package order, and the device path stays
free of TensorFlow.

Order, top to bottom (README "Layout"): cli -> report, explain, web -> export -> train -> data -> edge
-> core. A module may import its own package and any package below it, at module level or inside
a function; nothing imports cli. web (the browser target) is a leaf beside report: only cli imports
it, and it imports edge and core only. core, edge and web import with tensorflow and keras unimportable.
"""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "toolkit"
# Rank of each package: an import must go to a rank <= its own (report and explain share a rank
# and do not import each other).
RANK = {"core": 0, "edge": 1, "data": 2, "train": 3, "export": 4, "report": 5, "explain": 5, "web": 5, "cli": 6}
# Packages that may import only these (besides themselves): web runs where edge runs, without TensorFlow.
ONLY = {"web": {"core", "edge"}}


def _toolkit_imports(path: Path, root: Path = PACKAGE) -> list[tuple[int, str]]:
    """(line, package) for every import of a toolkit subpackage in a module, wherever it stands."""
    package = path.relative_to(root).parts[0]
    found = []
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom):
            if node.level == 0 and (node.module or "").startswith("toolkit."):
                target = node.module.split(".")[1]
            elif node.level == 1:
                target = package
            elif node.level == 2 and node.module:
                target = node.module.split(".")[0]
            else:
                continue
            found.append((node.lineno, target))
        elif isinstance(node, ast.Import):
            found += [(node.lineno, a.name.split(".")[1]) for a in node.names if a.name.startswith("toolkit.")]
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if p.parent != PACKAGE)


def test_every_module_lives_in_a_ranked_package():
    assert {p.relative_to(PACKAGE).parts[0] for p in MODULES} == set(RANK)
    assert sorted(p.name for p in PACKAGE.glob("*.py")) == ["__init__.py", "__main__.py"]


def upward_imports(path: Path, root: Path = PACKAGE) -> list[str]:
    package = path.relative_to(root).parts[0]
    found = []
    for line, target in _toolkit_imports(path, root):
        where = f"{path.relative_to(root)}:{line} imports toolkit.{target}"
        if target not in RANK or (RANK[target] >= RANK[package] and target != package):
            found.append(f"{where}, which sits above {package}")
        elif package in ONLY and target not in ONLY[package] | {package}:
            found.append(f"{where}, which {package} may not import (only {', '.join(sorted(ONLY[package]))})")
    return found


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_imports_point_down(path):
    assert upward_imports(path) == []


def test_the_contract_catches_upward_imports(tmp_path):
    (tmp_path / "edge").mkdir()
    module = tmp_path / "edge" / "m.py"
    module.write_text(
        "from ..core.io import now\n\ndef f():\n    from ..export.reference import KerasPredictor\n"
        "    import toolkit.cli.app\n"
    )
    found = upward_imports(module, tmp_path)
    assert [line.split(" imports ")[1].split(",")[0] for line in found] == ["toolkit.export", "toolkit.cli"]


def test_web_imports_only_edge_and_core(tmp_path):
    (tmp_path / "web").mkdir()
    module = tmp_path / "web" / "m.py"
    module.write_text("from ..edge.pack import pack\nfrom ..export.verify import compare\nfrom ..data import synth\n")
    found = upward_imports(module, tmp_path)
    assert [line.split(" imports ")[1].split(",")[0] for line in found] == ["toolkit.export", "toolkit.data"]


@pytest.mark.edge
@pytest.mark.parametrize("package", ["core", "edge", "web"])
def test_base_packages_import_without_tensorflow(package):
    modules = [f"toolkit.{package}." + p.stem for p in sorted((PACKAGE / package).glob("*.py")) if p.stem != "__init__"]
    code = (
        "import sys; sys.modules['tensorflow'] = None; sys.modules['keras'] = None\n"
        f"import importlib\nfor m in {modules!r}: importlib.import_module(m)\n"
        "heavy = [m for m in sys.modules if m.split('.')[0] in ('tensorflow', 'keras', 'tf2onnx', 'matplotlib')"
        " and sys.modules[m] is not None]\nassert not heavy, heavy\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr[-2000:]


# The bench child's stdout is a pipe its parent reads (a protocol), not a person's terminal.
PRINTS_ALLOWED = {"edge/bench.py:child_main"}


def prints_outside_cli(path: Path, root: Path = PACKAGE) -> list[str]:
    """`print(...)` calls and `print` defaults (say=print) in a module outside cli/."""
    rel = str(path.relative_to(root))
    if rel.startswith("cli/") or "vendor" in path.parts:
        return []
    found = []
    for func in ast.walk(ast.parse(path.read_text())):
        if not isinstance(func, (ast.FunctionDef, ast.AsyncFunctionDef)):
            continue
        defaults = func.args.defaults + [d for d in func.args.kw_defaults if d is not None]
        found += [
            f"{rel}:{d.lineno} defaults to print" for d in defaults if isinstance(d, ast.Name) and d.id == "print"
        ]
        if f"{rel}:{func.name}" in PRINTS_ALLOWED:
            continue
        calls = [n for n in ast.walk(func) if isinstance(n, ast.Call) and getattr(n.func, "id", None) == "print"]
        found += [f"{rel}:{c.lineno} prints ({func.name})" for c in calls]
    return sorted(set(found))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_cli_prints_and_domain_code_is_silent_by_default(path):
    assert prints_outside_cli(path) == []


def test_the_print_check_sees_calls_and_defaults(tmp_path):
    (tmp_path / "train").mkdir()
    module = tmp_path / "train" / "m.py"
    module.write_text("def f(x, say=print):\n    say(x)\n\ndef g(x):\n    print(x)\n")
    assert prints_outside_cli(module, tmp_path) == ["train/m.py:1 defaults to print", "train/m.py:5 prints (g)"]
