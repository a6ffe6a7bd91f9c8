"""The layering of DESIGN.md, checked on the source: imports only go down.

eval/ and backbone/ import nothing of ours; proposals/ imports backbone/ only (detector/ sits on
top and may import everything). Every import statement counts, wherever it sits (inside
functions, under ``try``), and so do ``importlib.import_module("...")`` / ``__import__("...")``
calls with a literal name. Relative imports are resolved against the file's package.
"""

from __future__ import annotations

import ast
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
OURS = {"backbone", "proposals", "detector", "eval"}
ALLOWED = {"eval": set(), "backbone": set(), "proposals": {"backbone"}}


def imported_modules(path: Path, root: Path = ROOT) -> list[tuple[int, str]]:
    """(line, absolute module name) of every import in the file at ``path`` under ``root``."""
    # relative imports start from the file's package (a/b/c.py and a/b/__init__.py: a.b)
    package = list(path.relative_to(root).parts[:-1])
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Import):
            out += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                name = ".".join(base + ([node.module] if node.module else []))
            else:
                name = node.module
            out.append((node.lineno, name))
        elif (isinstance(node, ast.Call) and node.args and isinstance(node.args[0], ast.Constant)
              and isinstance(node.args[0].value, str)
              and ((isinstance(node.func, ast.Attribute) and node.func.attr == "import_module")
                   or (isinstance(node.func, ast.Name) and node.func.id in ("__import__", "import_module")))):
            out.append((node.lineno, node.args[0].value))
    return out


def _files(package: str) -> list[Path]:
    files = sorted(p for p in (ROOT / package).rglob("*.py") if "__pycache__" not in p.parts)
    assert files, f"no Python files under {package}/"
    return files


@pytest.mark.parametrize("package", sorted(ALLOWED))
def test_imports_only_go_down(package):
    bad = []
    for path in _files(package):
        for line, name in imported_modules(path):
            top = name.split(".")[0]
            if top in OURS and top != package and top not in ALLOWED[package]:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not bad, f"{package}/ may import only {sorted(ALLOWED[package]) or 'nothing of ours'}:\n" + "\n".join(bad)


def test_the_checker_sees_every_kind_of_import(tmp_path):
    pkg = tmp_path / "eval" / "sub"
    pkg.mkdir(parents=True)
    (pkg / "__init__.py").write_text("from . import m\n")
    f = pkg / "m.py"
    f.write_text("import os\nfrom .. import errors\nfrom ...detector import x\nfrom ..ap import y\n"
                 "def f():\n    import backbone.weights\n    importlib.import_module('proposals.config')\n")
    names = sorted(n for _, n in imported_modules(f, tmp_path))
    assert names == ["backbone.weights", "detector", "eval", "eval.ap", "os", "proposals.config"]
    assert [n for _, n in imported_modules(pkg / "__init__.py", tmp_path)] == ["eval.sub"]


# --- inside detector/ (docs/DESIGN.md, "Layers") ----------------------------------------------

#: detector sub-module (first component below detector/) -> the detector sub-modules it may import
DETECTOR_LAYERS = {
    "config": set(),
    "assets": set(),
    "gt_stats": set(),
    "transforms": set(),
    "io": {"config", "transforms"},
    "boxes": {"config"},
    "sampling": {"config", "boxes"},
    "ensemble": {"config"},
    "postprocess": {"config", "boxes"},
    "classification": {"config", "io"},
    "batching": {"config", "io", "boxes", "sampling"},
    "rcnn": {"config", "io", "transforms", "boxes", "sampling", "batching", "ensemble", "postprocess",
             "classification"},
    "fast": {"config", "io", "transforms", "boxes", "sampling", "batching", "ensemble", "postprocess",
             "classification"},
    "kinds": {"rcnn", "fast", "config", "ensemble"},
    "model": {"config", "io", "ensemble", "postprocess", "kinds", "assets"},
    "proposal_cache": {"config", "io"},
    "onnx": {"config", "io", "transforms", "ensemble", "kinds", "model", "rcnn", "fast"},
    "engine": {"config", "io", "transforms", "boxes", "batching", "sampling", "ensemble", "postprocess", "classification", "rcnn", "fast",
               "kinds", "model", "proposal_cache", "gt_stats", "assets"},
    "cli": None,  # anything
    "__init__": {"model", "assets"},
}


def _module_name(path: Path, root: Path = ROOT) -> str:
    parts = list(path.relative_to(root).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def _sub(name: str) -> str | None:
    parts = name.split(".")
    return (parts[1] if len(parts) > 1 else "__init__") if parts[0] == "detector" else None


def test_detector_sub_layers():
    modules = _all_modules()
    bad = []
    for path in _files("detector"):
        me = _sub(_module_name(path)) if path.name != "__init__.py" or path.parent.name != "detector" else "__init__"
        allowed = DETECTOR_LAYERS.get(me, "unknown")
        assert allowed != "unknown", f"{path.relative_to(ROOT)}: not in DETECTOR_LAYERS (add it, and to docs/DESIGN.md)"
        if allowed is None:
            continue
        for line, name in _targets(path, modules):
            sub = _sub(name)
            if sub is None or sub == me:
                continue
            if sub not in allowed:
                bad.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not bad, "imports against detector's layers (docs/DESIGN.md):\n" + "\n".join(bad)


#: the inference path: it imports nothing from a training module (the transforms, the ensemble
#: and the kinds' scoring are their own modules)
INFERENCE = ["detector/model.py", "detector/onnx.py", "detector/ensemble.py", "detector/transforms.py",
             "detector/fast/infer.py", "detector/rcnn/infer.py"]


def _is_training_module(name: str) -> bool:
    parts = name.split(".")
    return parts[0] == "detector" and ("engine" in parts or any(p == "train" or p.startswith("train_") for p in parts))


def test_inference_imports_no_training_module():
    modules = _all_modules()
    bad = [f"{f}:{line} imports {name}" for f in INFERENCE for line, name in _targets(ROOT / f, modules)
           if _is_training_module(name)]
    assert not bad, "inference imports a training module:\n" + "\n".join(bad)


def test_library_never_imports_the_cli():
    bad = [f"{p.relative_to(ROOT)}:{line} imports {name}"
           for pkg in sorted(OURS) for p in _files(pkg) if "cli" not in p.relative_to(ROOT).parts
           for line, name in imported_modules(p) if name == "detector.cli" or name.startswith("detector.cli.")]
    assert not bad, "\n".join(bad)


def _function_level_imports(path: Path):
    tree = ast.parse(path.read_text(encoding="utf-8"))
    for fn in ast.walk(tree):
        if isinstance(fn, (ast.FunctionDef, ast.AsyncFunctionDef)):
            for node in ast.walk(fn):
                if isinstance(node, (ast.Import, ast.ImportFrom)):
                    yield node


def test_no_function_level_import_of_our_modules_and_third_party_ones_say_why():
    ours, unexplained = [], []
    for pkg in sorted(OURS):
        for path in _files(pkg):
            lines = path.read_text(encoding="utf-8").splitlines()
            for node in _function_level_imports(path):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else [node.module or ""]
                if isinstance(node, ast.ImportFrom) and node.level or any(n.split(".")[0] in OURS for n in names):
                    ours.append(f"{path.relative_to(ROOT)}:{node.lineno}")
                    continue
                here = lines[node.lineno - 1]
                above = lines[node.lineno - 2].strip() if node.lineno > 1 else ""
                if "#" not in here and not above.startswith("#"):
                    unexplained.append(f"{path.relative_to(ROOT)}:{node.lineno} {here.strip()}")
    assert not ours, "imports of our own modules inside functions (move them to the top):\n" + "\n".join(ours)
    assert not unexplained, ("third-party imports inside functions without a comment saying why "
                             "(import time?):\n" + "\n".join(unexplained))


def _all_modules() -> set[str]:
    return {_module_name(p) for pkg in sorted(OURS) for p in _files(pkg)}


def _targets(path: Path, modules: set[str]) -> list[tuple[int, str]]:
    """Like :func:`imported_modules`, with ``from pkg import submodule`` naming the submodule
    (not the package) when ``pkg.submodule`` is one of ``modules``."""
    froms = {}
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom):
            froms.setdefault(node.lineno, []).extend(a.name for a in node.names)
    out = []
    for line, name in imported_modules(path):
        names = froms.get(line, [])
        subs = [f"{name}.{n}" for n in names if f"{name}.{n}" in modules]
        out += [(line, s) for s in subs]
        if not subs or len(subs) < len(names):
            out.append((line, name))
    return out


def _graph() -> dict[str, set[str]]:
    files = {_module_name(p): p for pkg in sorted(OURS) for p in _files(pkg)}
    graph: dict[str, set[str]] = {m: set() for m in files}
    for mod, path in files.items():
        graph[mod] |= {t for _, t in _targets(path, files) if t in files and t != mod}
    return graph


def test_no_import_cycle():
    graph = _graph()
    state: dict[str, int] = {}
    stack: list[str] = []

    def visit(m):
        state[m] = 1
        stack.append(m)
        for n in sorted(graph[m]):
            if state.get(n) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(n):] + [n]))
            if n not in state:
                visit(n)
        stack.pop()
        state[m] = 2

    for m in sorted(graph):
        if m not in state:
            visit(m)


def test_cycle_and_function_import_checks_can_fail(tmp_path, monkeypatch):
    pkg = tmp_path / "eval"
    pkg.mkdir()
    (pkg / "a.py").write_text("from . import b\n")
    (pkg / "b.py").write_text("def f():\n    from . import a\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)  # this module (__import__ gave the package)
    g = {"eval.a": {"eval.b"}, "eval.b": {"eval.a"}}
    monkeypatch.setattr(f"{__name__}._graph", lambda: g)
    with pytest.raises(AssertionError, match="import cycle: eval.a -> eval.b -> eval.a"):
        test_no_import_cycle()
    assert [n.lineno for n in _function_level_imports(pkg / "b.py")] == [2]
