"""The layout's rules, enforced: imports point down the package order, and the device path stays
free of TensorFlow.

Order, top to bottom (README "Layout"): cli -> report, explain, web -> export -> train -> data -> edge
-> core. A module may import its own package and any package below it, at module level or inside
a function; nothing imports cli. web (the browser target) is a leaf beside report: only cli imports
it, and it imports edge and core only. core, edge and web import with tensorflow and keras unimportable.
"""

from __future__ import annotations

import ast
import re
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
PRINTS_ALLOWED = {"edge/bench_child.py:child_main"}  # the measuring child speaks to its parent on stdout


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


# "module:Class" strings are imports the import check above cannot see (core/formats names the
# predictor of each format that way, imported only when a file of that format is opened).
TF_FREE = ("core", "edge")


def string_paths(root: Path = PACKAGE) -> list[tuple[str, str]]:
    """(where, "toolkit.pkg.module:Name") for every such string constant in the package."""
    found = []
    for path in sorted(root.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Constant) and isinstance(node.value, str):
                if re.fullmatch(r"toolkit(\.\w+)+:\w+", node.value):
                    found.append((f"{path.relative_to(root)}:{node.lineno}", node.value))
    return found


def unresolved(dotted: str, root: Path = PACKAGE) -> str:
    """Why a "toolkit.pkg.module:Name" string names nothing (read from the source, nothing imported), or ''."""
    module, name = dotted.split(":")
    file = root.joinpath(*module.split(".")[1:]).with_suffix(".py")
    if not file.is_file():
        return f"{dotted}: no module {file.relative_to(root.parent)}"
    defined = {n.name for n in ast.parse(file.read_text()).body if isinstance(n, (ast.ClassDef, ast.FunctionDef))}
    return "" if name in defined else f"{dotted}: {module} defines no {name}"


def test_every_module_class_string_names_a_real_class():
    paths = string_paths()
    assert any(value.endswith(":TFLitePredictor") for _, value in paths)  # the check sees the table
    assert [f"{where}: {why}" for where, value in paths if (why := unresolved(value))] == []


def test_device_predictors_live_in_tensorflow_free_packages():
    from toolkit.core.formats import FORMATS

    wrong = [
        f"{fmt.name}: {fmt.predictor} is in toolkit.{fmt.predictor.split('.')[1]}, which may import TensorFlow"
        for fmt in FORMATS.values()
        if not fmt.needs_tensorflow and fmt.predictor.split(".")[1] not in TF_FREE
    ]
    assert wrong == []
    assert all(not unresolved(fmt.predictor) for fmt in FORMATS.values())


def test_the_string_check_catches_a_wrong_path(tmp_path):
    (tmp_path / "edge").mkdir()
    (tmp_path / "edge" / "p.py").write_text("class Real:\n    pass\n")
    assert unresolved("toolkit.edge.p:Real", tmp_path) == ""
    assert "defines no Gone" in unresolved("toolkit.edge.p:Gone", tmp_path)
    assert "no module" in unresolved("toolkit.edge.q:Real", tmp_path)


def _literal_suffix_lists(path: Path, root: Path = PACKAGE) -> list[str]:
    """User-facing strings that spell two format suffixes themselves instead of asking core/formats."""
    tree = ast.parse(path.read_text())
    docstrings = {
        id(n.body[0].value)
        for n in ast.walk(tree)
        if isinstance(n, (ast.Module, ast.ClassDef, ast.FunctionDef)) and n.body and isinstance(n.body[0], ast.Expr)
    }
    return [
        f"{path.relative_to(root)}:{n.lineno}: {n.value!r}"
        for n in ast.walk(tree)
        if isinstance(n, ast.Constant)
        and isinstance(n.value, str)
        and id(n) not in docstrings
        and ".tflite" in n.value
        and ".onnx" in n.value
    ]


@pytest.mark.parametrize(
    "path", [p for p in MODULES if p.name != "formats.py"], ids=lambda p: str(p.relative_to(PACKAGE))
)
def test_messages_and_help_name_formats_from_the_table(path):
    assert _literal_suffix_lists(path) == []


def import_graph(root: Path = PACKAGE) -> dict[str, set[str]]:
    """module -> the toolkit modules it imports anywhere (module level, in functions, under TYPE_CHECKING)."""
    names = {
        ".".join(("toolkit", *p.with_suffix("").relative_to(root).parts)).removesuffix(".__init__"): p
        for p in root.rglob("*.py")
        if "vendor" not in p.parts
    }
    graph = {}
    for name, path in names.items():
        package = name if path.name == "__init__.py" else name.rsplit(".", 1)[0]
        deps = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom):
                base = package.split(".")[: len(package.split(".")) - max(node.level - 1, 0)] if node.level else []
                target = ".".join(base + ([node.module] if node.module else []))
                deps |= {t for t in [target] + [f"{target}.{a.name}" for a in node.names] if t in names}
            elif isinstance(node, ast.Import):
                deps |= {a.name for a in node.names if a.name in names}
        graph[name] = deps - {name}
    return graph


def import_cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """Each cycle once, as its modules in order from the smallest name."""
    found: list[list[str]] = []

    def walk(start: str, node: str, path: list[str]) -> None:
        for dep in sorted(graph[node]):
            if dep == start:
                found.append(path)
            elif dep not in path and dep > start:
                walk(start, dep, [*path, dep])

    for module in sorted(graph):
        walk(module, module, [module])
    return found


def test_no_import_cycles():
    # Even a TYPE_CHECKING or in-function cycle means two modules that each need the other:
    # what they share belongs in a third (export/job.py holds what exporter and int8_gate share).
    assert import_cycles(import_graph()) == []


def test_the_cycle_check_sees_a_cycle_through_a_type_checking_import(tmp_path):
    (tmp_path / "export").mkdir()
    (tmp_path / "export" / "a.py").write_text("def f():\n    from .b import g\n")
    (tmp_path / "export" / "b.py").write_text(
        "from typing import TYPE_CHECKING\nif TYPE_CHECKING:\n    from .a import f\n"
    )
    assert import_cycles(import_graph(tmp_path)) == [["toolkit.export.a", "toolkit.export.b"]]


def test_the_readme_layout_map_names_every_module():
    text = (PACKAGE.parent / "README.md").read_text()
    blocks: dict[str, str] = {}
    package = None
    for line in text[text.index("## Layout") : text.index("The rules, enforced by")].splitlines():
        start = re.match(r"      (\w+)/ ", line)
        if start:
            package = start.group(1)
        elif not line.startswith(" " * 17):
            package = None
        if package:
            blocks[package] = blocks.get(package, "") + " " + line
    missing = [
        f"{package}/{path.name}"
        for package in RANK
        for path in sorted((PACKAGE / package).glob("*.py"))
        if path.stem != "__init__" and path.stem not in re.findall(r"\w+", blocks.get(package, ""))
    ]
    assert missing == []
