"""The layering of DESIGN.md, checked on the source: imports only go down.

eval/ and backbone/ import nothing of ours; proposals/ imports backbone/ only (detector/ sits on
top and may import everything). Every import statement counts, wherever it sits (inside
functions, under ``try``), and so do ``importlib.import_module("...")`` / ``__import__("...")``
calls with a literal name. Relative imports are resolved against the file's package.
"""

from __future__ import annotations

import ast
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
