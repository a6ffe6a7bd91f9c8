"""Size rules of the packages (issue 22): no function over 120 lines, no file over 600 lines
(ast-based: a function's lines run from its ``def`` (decorators aside) to its last statement)."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("backbone", "proposals", "eval", "detector")
MAX_FUNCTION, MAX_FILE = 120, 600


def oversized(root: Path = ROOT) -> list[str]:
    """``path:line name (N lines)`` of every function and file over the limits."""
    out = []
    for pkg in PACKAGES:
        for path in sorted((root / pkg).rglob("*.py")):
            text = path.read_text(encoding="utf-8")
            rel = path.relative_to(root)
            lines = len(text.splitlines())
            if lines > MAX_FILE:
                out.append(f"{rel} ({lines} lines, more than {MAX_FILE})")
            for node in ast.walk(ast.parse(text, str(rel))):
                if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                    n = node.end_lineno - node.lineno + 1
                    if n > MAX_FUNCTION:
                        out.append(f"{rel}:{node.lineno} {node.name} ({n} lines, more than {MAX_FUNCTION})")
    return out


def test_no_package_function_or_file_is_too_long():
    assert oversized() == []


@pytest.mark.parametrize("body, needle", [
    ("def big():\n" + "    x = 1\n" * 120, "big (121 lines"),
    ("class A:\n    def m(self):\n" + "        x = 1\n" * 121, "m (122 lines"),
    ("x = 1\n" * 601, "(601 lines, more than 600)"),
])
def test_an_injected_violation_is_found(tmp_path, body, needle):
    for pkg in PACKAGES:
        (tmp_path / pkg).mkdir()
    (tmp_path / "eval" / "ok.py").write_text("def small():\n    return 1\n")
    (tmp_path / "detector" / "bad.py").write_text(body)
    found = oversized(tmp_path)
    assert len(found) == 1 and found[0].startswith("detector/bad.py") and needle in found[0]
