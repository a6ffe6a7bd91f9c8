"""The README and the pages in docs/ name only what exists.

- every relative link (``[text](path)`` and ``![alt](path)``) resolves to a file or folder,
  relative to the page; an ``#anchor`` must name a heading of the target page (GitHub's
  heading ids);
- every command named in the pages (the first word of an inline code span or of a line in a
  code block, ``$(which X)`` under torchrun) that looks like a console script (a hyphenated
  lower-case word) is one of pyproject.toml's ``[project.scripts]``, and every console script
  is shown somewhere;
- every code path starting with ``docs/``, ``configs/``, ``bench/``, ``tests/data/`` or
  ``examples/`` (repository-relative, as the commands run from the repository root) exists;
- the README stays a guide: at most 300 lines.

The checks are functions of a page's text, so that the last test can feed them a made-up page
and see each of them fail.
"""
from __future__ import annotations

import glob
import re
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]
PATH_PREFIXES = ("docs/", "configs/", "bench/", "tests/data/", "examples/")
# hyphenated words that are not our commands but may start a code span (tools and packages)
NOT_COMMANDS = {"opencv-contrib-python-headless", "test-slow"}

_FENCE = re.compile(r"^\s*```")
_LINK = re.compile(r"!?\[(?:[^\]\[]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
_SPAN = re.compile(r"(`+)(.+?)\1", re.S)
_SCRIPTLIKE = re.compile(r"^[a-z][a-z0-9]*(?:-[a-z0-9]+)+$")
_ENV = re.compile(r"^[A-Z_][A-Z0-9_]*=\S*$")
_WHICH = re.compile(r"\$\(which\s+([^)\s]+)\)")


def scripts() -> set[str]:
    with open(ROOT / "pyproject.toml", "rb") as f:
        return set(tomllib.load(f)["project"]["scripts"])


def split_page(text: str) -> tuple[list[str], list[str]]:
    """(prose lines, code-block lines) of a markdown page."""
    prose, code, inside = [], [], False
    for line in text.splitlines():
        if _FENCE.match(line):
            inside = not inside
            continue
        (code if inside else prose).append(line)
    return prose, code


def github_anchors(text: str) -> set[str]:
    """The ids GitHub gives the headings of a page (lower case, punctuation dropped, spaces
    to hyphens, repeats numbered)."""
    seen: dict[str, int] = {}
    out = set()
    prose, _ = split_page(text)
    for line in prose:
        m = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).lower().replace("`", "")).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        out.add(slug if n == 0 else f"{slug}-{n}")
    out.update(re.findall(r'<a (?:name|id)="([^"]+)"', text))
    return out


def broken_links(page: Path, text: str) -> list[str]:
    prose, _ = split_page(text)
    bad = []
    for target in _LINK.findall("\n".join(prose)):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target):      # http:, https:, mailto:
            continue
        path, _, anchor = target.partition("#")
        dest = (page.parent / path).resolve() if path else page
        if not dest.exists():
            bad.append(f"{page.name}: link {target!r}: no file {dest}")
        elif anchor and dest.suffix == ".md" and anchor not in github_anchors(dest.read_text()):
            bad.append(f"{page.name}: link {target!r}: no heading #{anchor} in {dest.name}")
    return bad


def commands(text: str) -> list[str]:
    """The first word of each command shown: inline code spans and code-block lines
    (after a ``$ `` prompt and VAR=value assignments), and ``$(which X)``."""
    prose, code = split_page(text)
    starts = [m.group(2) for m in _SPAN.finditer("\n".join(prose))]
    starts += [line.strip().removeprefix("$ ") for line in code]
    out = []
    for s in starts:
        words = s.split()
        while words and _ENV.match(words[0]):
            words = words[1:]
        if words:
            out.append(words[0])
        out += _WHICH.findall(s)
    return out


def unknown_commands(text: str, known: set[str]) -> list[str]:
    return sorted({w for w in commands(text)
                   if _SCRIPTLIKE.match(w) and w not in known and w not in NOT_COMMANDS})


def missing_paths(text: str) -> list[str]:
    prose, code = split_page(text)
    words = [w for m in _SPAN.finditer("\n".join(prose)) for w in m.group(2).split()]
    words += [w for line in code for w in line.split()]
    bad = []
    for w in words:
        w = w.strip("\"'(),;:`")
        if not w.startswith(PATH_PREFIXES) or "{" in w:
            continue
        w = w.split("#")[0]
        if not (glob.glob(str(ROOT / w)) if any(c in w for c in "*?[") else (ROOT / w).exists()):
            bad.append(w)
    return sorted(set(bad))


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_links_resolve(page):
    assert broken_links(page, page.read_text()) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_commands_are_console_scripts(page):
    assert unknown_commands(page.read_text(), scripts()) == []


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_named_files_exist(page):
    assert missing_paths(page.read_text()) == []


def test_every_console_script_is_shown():
    shown = set().union(*(commands(p.read_text()) for p in PAGES))
    assert sorted(scripts() - shown) == []


def test_readme_is_a_guide():
    assert len((ROOT / "README.md").read_text().splitlines()) <= 300


def test_the_checks_catch_what_they_are_for(tmp_path):
    page = tmp_path / "page.md"
    text = ("See [the page](nothing-here.md), ![a figure](img/none.png) and [ok](#a-heading).\n"
            "## A heading\n"
            "Run `frobnicate-map --split test` or `eval-map --split test`.\n"
            "```\n$ OMP_NUM_THREADS=1 deploy-model x\ntorchrun $(which train-bogus) --out d\n```\n"
            "Read `configs/no_such.yaml` and `configs/bccd.yaml`; [bad anchor](#nowhere).\n")
    page.write_text(text)
    bad = broken_links(page, text)
    assert len(bad) == 3 and "nothing-here.md" in bad[0] and "none.png" in bad[1]
    assert "#nowhere" in bad[2]
    assert unknown_commands(text, scripts()) == ["deploy-model", "frobnicate-map", "train-bogus"]
    assert missing_paths(text) == ["configs/no_such.yaml"]
