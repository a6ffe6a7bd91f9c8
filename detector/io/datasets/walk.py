"""Paths of a dataset folder: a path resolved against the dataset root, the files below it, unique stems."""

from __future__ import annotations

import os

from backbone.errors import UserError


def resolve_path(path: str, root: str) -> str:
    """``path`` as given when it exists (or is absolute), else relative to the dataset root."""
    path = os.path.expanduser(path)
    if os.path.isabs(path) or os.path.exists(path) or not root:
        return os.path.abspath(path)
    return os.path.abspath(os.path.join(root, path))


def walk_files(root: str, exts: tuple[str, ...]) -> list[str]:
    """Files below ``root`` whose name ends with one of ``exts`` (case-insensitive), sorted;
    hidden folders and the written ``splits/`` folder are skipped, symlinked folders not followed."""
    out = []
    low = tuple(e.lower() for e in exts)
    for d, dirs, files in os.walk(root):
        dirs[:] = sorted(x for x in dirs if not x.startswith(".") and not (d == root and x == "splits"))
        out.extend(os.path.join(d, f) for f in files if f.lower().endswith(low) and not f.startswith("."))
    return sorted(out)


def check_unique_stems(paths: list[str], what: str) -> None:
    """Image ids are file stems: two files of one split with the same stem are an error naming both."""
    seen: dict[str, str] = {}
    for p in paths:
        stem = os.path.splitext(os.path.basename(p))[0]
        if stem in seen:
            raise UserError(f"{what}: {seen[stem]} and {p} have the same name {stem!r} in one split "
                            "(image ids are file names; rename one)")
        seen[stem] = p
