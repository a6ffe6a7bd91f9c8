"""The layering of DESIGN.md, checked on the source: imports only go down.

eval/ and backbone/ import nothing of ours; proposals/ imports backbone/ only (detector/ sits on
top and may import everything). Every import statement counts, wherever it sits (inside
functions, under ``try``), and so do ``importlib.import_module("...")`` / ``__import__("...")``
calls with a literal name. Relative imports are resolved against the file's package.

Two single homes are checked the same way: files are written (``open`` for writing, ``torch.save``)
only by the I/O layer, and ``torch.autocast`` / ``torch.channels_last`` appear only in the device
policy, ``backbone/devices.py``.
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
INFERENCE = ["detector/model.py", "detector/fast/batched.py", "detector/onnx.py", "detector/ensemble.py", "detector/transforms.py",
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


# --- one place writes figures (issue 22: eval/ returns Figures, the I/O layer writes them) --------

#: the I/O layer: the only places a figure is written (``savefig``, ``imsave``)
FIGURE_WRITERS = ("backbone/io.py", "detector/io/")


def figure_writes(path: Path) -> list[int]:
    """Lines of the file at ``path`` that call ``.savefig(...)`` / ``.imsave(...)`` (or a bare
    ``savefig(...)`` / ``imsave(...)``)."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if isinstance(node, ast.Call):
            f = node.func
            name = f.attr if isinstance(f, ast.Attribute) else f.id if isinstance(f, ast.Name) else None
            if name in ("savefig", "imsave"):
                out.append(node.lineno)
    return out


def test_only_the_io_layer_writes_figures():
    bad = []
    for pkg in sorted(OURS):
        for path in _files(pkg):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith(FIGURE_WRITERS):
                continue
            bad += [f"{rel}:{line}" for line in figure_writes(path)]
    assert not bad, ("figures written outside the I/O layer (return the Figure; write it with "
                     "detector.io.figures):\n" + "\n".join(bad))


def test_the_figure_write_check_can_fail(tmp_path, monkeypatch):
    for pkg in OURS:
        (tmp_path / pkg).mkdir()
        (tmp_path / pkg / "__init__.py").write_text("")
    (tmp_path / "eval" / "plots.py").write_text("def f(fig, path):\n    fig.savefig(path)\n")
    (tmp_path / "detector" / "io").mkdir()
    (tmp_path / "detector" / "io" / "figures.py").write_text("def f(fig, path):\n    fig.savefig(path)\n")
    (tmp_path / "backbone" / "io.py").write_text("from matplotlib.pyplot import imsave\nimsave('a.png', 0)\n")
    (tmp_path / "proposals" / "x.py").write_text("import matplotlib.pyplot as plt\nplt.imsave('a.png', 0)\n")
    monkeypatch.setattr(sys.modules[__name__], "ROOT", tmp_path)
    with pytest.raises(AssertionError) as e:
        test_only_the_io_layer_writes_figures()
    assert "eval/plots.py:2" in str(e.value) and "proposals/x.py:2" in str(e.value)
    assert "detector/io" not in str(e.value) and "backbone" not in str(e.value)


# --- writing files (docs/DESIGN.md, "Layers"): only the I/O layer ------------------------------

#: the I/O layer: the only code that opens files for writing or calls ``torch.save`` (so that every
#: file goes through ``backbone.io.atomic_write`` and, for outputs, ``detector.io.outputs.Outputs``)
IO_LAYER = ("backbone/io.py", "detector/io/")
#: (file, call) that writes outside the I/O layer -> why it may
WRITES_ALLOWED = {
    ("detector/engine/run.py", "os.open"): (
        "the run folder's job lock (lock_run): an flock on OUT/.lock, which must stay one inode while "
        "held (a rename over it would hand out a second lock); its text only names the holder"),
    ("detector/cli/common.py", "os.open"): "os.devnull, opened to silence stdout at exit: no file is written",
}
_WRITE_MODE = set("wax+")
_WRITE_FLAGS = {"O_WRONLY", "O_RDWR", "O_CREAT", "O_APPEND", "O_TRUNC"}


def _mode_writes(node: ast.Call, first_mode_arg: int) -> bool:
    """True when an ``open``-like call's mode (keyword ``mode`` or positional ``first_mode_arg``)
    writes, or is not a literal (it may)."""
    mode = next((k.value for k in node.keywords if k.arg == "mode"), None)
    if mode is None and len(node.args) > first_mode_arg:
        mode = node.args[first_mode_arg]
    if mode is None:
        return False  # "r"
    if not (isinstance(mode, ast.Constant) and isinstance(mode.value, str)):
        return True
    return bool(_WRITE_MODE & set(mode.value))


def file_writes(path: Path) -> list[tuple[int, str]]:
    """(line, call) of every call in ``path`` that writes a file: ``open``/``io.open``/
    ``os.fdopen``/``Path.open`` with a writing (or non-literal) mode, ``os.open`` with a writing
    flag, ``Path.write_text``/``write_bytes`` and ``torch.save``."""
    out = []
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"), filename=str(path))):
        if not isinstance(node, ast.Call):
            continue
        f = node.func
        owner = f.value.id if isinstance(f, ast.Attribute) and isinstance(f.value, ast.Name) else None
        if isinstance(f, ast.Name) and f.id == "open" or owner in ("io", "builtins") and f.attr == "open":
            if _mode_writes(node, 1):
                out.append((node.lineno, "open"))
        elif isinstance(f, ast.Attribute) and f.attr == "open" and owner == "os":
            flags = {n.attr if isinstance(n, ast.Attribute) else n.id
                     for a in node.args[1:2] for n in ast.walk(a) if isinstance(n, (ast.Attribute, ast.Name))}
            if flags & _WRITE_FLAGS:
                out.append((node.lineno, "os.open"))
        elif isinstance(f, ast.Attribute) and f.attr == "fdopen" and owner == "os":
            if _mode_writes(node, 1):
                out.append((node.lineno, "os.fdopen"))
        elif isinstance(f, ast.Attribute) and f.attr == "open" and owner is None:  # Path(...).open(mode)
            if _mode_writes(node, 0):
                out.append((node.lineno, "Path.open"))
        elif isinstance(f, ast.Attribute) and f.attr in ("write_text", "write_bytes"):
            out.append((node.lineno, f"Path.{f.attr}"))
        elif isinstance(f, ast.Attribute) and f.attr == "save" and owner == "torch":
            out.append((node.lineno, "torch.save"))
    return sorted(out)


def _in_io_layer(rel: str) -> bool:
    return any(rel == p or rel.startswith(p) for p in IO_LAYER)


def unexplained_writes(root: Path = ROOT) -> list[str]:
    bad = []
    for pkg in sorted(OURS):
        for path in sorted(p for p in (root / pkg).rglob("*.py") if "__pycache__" not in p.parts):
            rel = path.relative_to(root).as_posix()
            if _in_io_layer(rel):
                continue
            bad += [f"{rel}:{line} {what}" for line, what in file_writes(path) if (rel, what) not in WRITES_ALLOWED]
    return bad


def test_files_are_written_only_by_the_io_layer():
    bad = unexplained_writes()
    assert not bad, ("files opened for writing or torch.save outside the I/O layer (backbone/io.py, detector/io/; "
                     "use backbone.io.atomic_write / atomic_save / write_json, or Outputs.write):\n" + "\n".join(bad))


def test_every_allowed_write_is_still_there():
    for (rel, what), why in WRITES_ALLOWED.items():
        assert why and any(w == what for _, w in file_writes(ROOT / rel)), f"{rel}: no {what} left: drop its entry"


def test_the_write_checker_sees_every_kind_of_write(tmp_path):
    (tmp_path / "detector" / "io").mkdir(parents=True)
    (tmp_path / "eval").mkdir()
    (tmp_path / "detector" / "io" / "ok.py").write_text("open('x', 'w')\nimport torch\ntorch.save({}, 'x')\n")
    bad = tmp_path / "eval" / "bad.py"
    bad.write_text("import os, io, torch\nfrom pathlib import Path\n"
                   "open('a')\nopen('a', 'rb')\nopen('a', encoding='utf-8')\n"       # reads: lines 3-5
                   "open('a', 'w')\nopen('a', mode='ab')\nio.open('a', 'r+')\nopen('a', m)\n"  # lines 6-9
                   "os.open('a', os.O_RDONLY)\nos.open('a', os.O_WRONLY | os.O_CREAT)\n"        # 10, 11
                   "os.fdopen(3, 'wb')\nPath('a').open('x')\nPath('a').open()\n"              # 12, 13 (14 reads)
                   "Path('a').write_text('t')\np.write_bytes(b'')\ntorch.save({}, 'a')\n")    # 15-17
    assert file_writes(bad) == [(6, "open"), (7, "open"), (8, "open"), (9, "open"), (11, "os.open"),
                                (12, "os.fdopen"), (13, "Path.open"), (15, "Path.write_text"),
                                (16, "Path.write_bytes"), (17, "torch.save")]
    for pkg in ("backbone", "proposals"):
        (tmp_path / pkg).mkdir()
    found = unexplained_writes(tmp_path)
    assert len(found) == 10 and all(f.startswith("eval/bad.py:") for f in found)


# --- the device and precision policy: one home (backbone/devices.py) ---------------------------

POLICY_HOME = "backbone/devices.py"


def policy_uses(path: Path) -> list[tuple[int, str]]:
    """(line, name) of every ``torch.autocast`` and ``torch.channels_last`` in ``path``."""
    return sorted((n.lineno, f"torch.{n.attr}") for n in ast.walk(ast.parse(path.read_text(encoding="utf-8")))
                  if isinstance(n, ast.Attribute) and n.attr in ("autocast", "channels_last")
                  and isinstance(n.value, ast.Name) and n.value.id == "torch")


def test_autocast_and_channels_last_only_in_the_device_policy(tmp_path):
    bad = [f"{p.relative_to(ROOT).as_posix()}:{line} {name}" for pkg in sorted(OURS) for p in _files(pkg)
           if p.relative_to(ROOT).as_posix() != POLICY_HOME for line, name in policy_uses(p)]
    assert not bad, ("use backbone.devices.autocast / to_device_format (the one device and precision policy):\n"
                     + "\n".join(bad))
    assert [n for _, n in policy_uses(ROOT / POLICY_HOME)] == ["torch.autocast", "torch.channels_last", "torch.channels_last"]
    f = tmp_path / "m.py"
    f.write_text("import torch\nx = x.contiguous(memory_format=torch.channels_last)\nwith torch.autocast('cuda'):\n    pass\n")
    assert policy_uses(f) == [(2, "torch.channels_last"), (3, "torch.autocast")]
