"""Never lose a file: the one rule every output of every console script follows.

The rule (checked by :class:`Outputs` before any work; every ``--json``, ``--out``, ``--plot``,
``--plots``, ``--analyze``, ``--save-detections``, ``--half`` and every file written beside them
goes through it):

1. **An input of the run is never written**, not even with ``--overwrite``: an output path that
   is an input (the same real path, or the same file by ``st_dev``/``st_ino``, e.g. a hard link)
   or lies inside an input folder (a data set's root, a ``--ground-truth`` folder) is refused.
   ``train-detector --half`` counts the run's own ``model.pt``, ``train_state.pt``, ``best.pt``
   (and the other run files) as inputs.
2. **A file this project did not write is not replaced without ``--overwrite``.** Every folder an
   output goes to gets a manifest, :data:`MANIFEST` (the names and SHA-256 of the files written
   there; detect's older ``.detect-manifest.json`` is read too); an existing file that the
   manifest does not list with its current content is refused unless ``--overwrite``.
3. **Only regular files are ever replaced.** An existing FIFO or character device (``/dev/null``,
   a terminal, ``--json /dev/stdout | jq``) is written INTO (opened for writing, never created,
   truncated, replaced or unlinked), with or without ``--overwrite``; so is whatever
   ``/dev/stdout``, ``/dev/stderr``, ``/dev/fd/N`` and ``/proc/self/fd/N`` name. Anything else
   that is not a regular file (a folder where a file goes, a socket, a block device, a dangling
   symbolic link) is refused. A symbolic link to a regular file is kept: its target is what the
   rule checks and replaces.
4. **Refusals come before any work**, as one line ``prog: error: FLAG PATH: ...`` and exit 2.
5. **Regular files are written atomically** (:func:`backbone.io.atomic_write`: a temp file in
   the same folder, renamed over the target), so a crash never leaves half a file.

No script writes into the working folder unless the user named an output there.

Declare outputs with :func:`add_output_arg` (it tags the argparse action with ``output_kind``:
``"file"``, ``"folder"`` or ``"run"``, a training run folder whose own resume rule is
:mod:`detector.engine.run`), so that tests can enumerate every script's outputs.
"""

from __future__ import annotations

import argparse
import contextlib
import hashlib
import json
import os
import re
import shutil
import stat
import tempfile
import time
from typing import Any, BinaryIO, Callable, Iterable, Iterator

from backbone.errors import UserError
from backbone.io import atomic_write, check_writable

#: in every folder an output goes to: which files this project wrote there (name -> SHA-256)
MANIFEST = ".googlenet-det-manifest.json"
#: manifests of earlier versions, still read (detect wrote this one)
OLD_MANIFESTS = (".detect-manifest.json",)
MANIFEST_NAMES = (MANIFEST, *OLD_MANIFESTS)
#: paths naming this process's own streams: written into, whatever they are
STREAM_PATHS = re.compile(r"^/(dev/(stdout|stderr|fd/\d+)|proc/(self|thread-self|\d+)/fd/\d+)$")

OUTPUT_KINDS = ("file", "folder", "run")


# --------------------------------------------------------------------------------- the flags


def add_output_arg(p, *flags: str, kind: str = "file", **kw) -> argparse.Action:
    """``p.add_argument(*flags, **kw)`` for an output path, tagged ``action.output_kind = kind``
    (``file``, ``folder`` or ``run``) so that tests find every output of every script."""
    if kind not in OUTPUT_KINDS:
        raise ValueError(f"output kind {kind!r}: one of {OUTPUT_KINDS}")
    kw.setdefault("metavar", {"file": "FILE", "folder": "DIR", "run": "RUN"}[kind])
    action = p.add_argument(*flags, **kw)
    action.output_kind = kind
    return action


def add_overwrite_arg(p, what: str = "the outputs") -> None:
    p.add_argument("--overwrite", action="store_true",
                   help=f"replace existing files in the way of {what} even when this project did not write them "
                        "(inputs of the run and anything that is not a regular file are never replaced)")


def output_actions(p: argparse.ArgumentParser) -> list[argparse.Action]:
    """The actions of ``p`` declared with :func:`add_output_arg`."""
    return [a for a in p._actions if getattr(a, "output_kind", None)]


# --------------------------------------------------------------------------------- manifests


def _sha256(path: str) -> str | None:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()


def is_manifest(name: str) -> bool:
    return os.path.basename(name) in MANIFEST_NAMES


class Manifest:
    """The files this project wrote into one folder, as its :data:`MANIFEST` (and an old
    :data:`OLD_MANIFESTS` one) records. A damaged or foreign manifest counts as empty: then
    nothing there is replaced without --overwrite."""

    def __init__(self, folder: str):
        self.folder = os.path.abspath(folder)
        self.path = os.path.join(self.folder, MANIFEST)
        self.files: dict[str, str] = {}
        self.dirty = False
        for name in reversed(MANIFEST_NAMES):  # the current manifest wins
            self.files.update(self._read(os.path.join(self.folder, name)))

    @staticmethod
    def _read(path: str) -> dict[str, str]:
        try:
            if not os.path.isfile(path):
                return {}
            with open(path, encoding="utf-8") as f:
                data = json.load(f)
        except (OSError, ValueError, RecursionError):
            return {}
        files = data.get("files") if isinstance(data, dict) else None
        if not isinstance(files, dict):
            return {}
        return {k: v for k, v in files.items() if isinstance(k, str) and isinstance(v, str)}

    def owns(self, path: str) -> bool:
        """Whether ``path`` (in this folder) is a file we wrote and nobody changed since."""
        want = self.files.get(os.path.basename(path))
        return want is not None and os.path.isfile(path) and not os.path.islink(path) and _sha256(path) == want

    def record(self, path: str) -> None:
        digest = _sha256(path)
        if digest is not None:
            self.files[os.path.basename(path)] = digest
            self.dirty = True

    def save(self) -> None:
        if self.dirty:
            atomic_write(self.path, json.dumps({"written_by": "googlenet-det", "files": self.files}, indent=1,
                                               sort_keys=True) + "\n", what="manifest")
            self.dirty = False


# --------------------------------------------------------------------------------- the rule


def _node(path: str) -> str:
    """What is at ``path`` (symbolic links followed): missing, file, stream (FIFO or character
    device), folder, or other (socket, block device, dangling link)."""
    try:
        st = os.stat(path)
    except (FileNotFoundError, NotADirectoryError):
        return "other" if os.path.lexists(path) else "missing"
    except OSError:
        return "other"
    if stat.S_ISREG(st.st_mode):
        return "file"
    if stat.S_ISDIR(st.st_mode):
        return "folder"
    if stat.S_ISFIFO(st.st_mode) or stat.S_ISCHR(st.st_mode):
        return "stream"
    return "other"


def _what(path: str) -> str:
    try:
        st = os.stat(path)
    except OSError:
        return "a dangling symbolic link"
    return "a block device" if stat.S_ISBLK(st.st_mode) else "a socket" if stat.S_ISSOCK(st.st_mode) \
        else "not a regular file"


def is_stream(path: str) -> bool:
    """Whether ``path`` is written into rather than replaced: an existing FIFO or character
    device, or one of this process's stream paths (``/dev/stdout``, ``/dev/fd/N``, ...)."""
    path = os.path.abspath(os.path.expanduser(os.fspath(path)))
    node = _node(path)
    return node == "stream" or (node == "file" and bool(STREAM_PATHS.match(path)))


def write_into(path: str, data: "str | bytes | Callable[[BinaryIO], Any]") -> None:
    """Write ``data`` into an existing FIFO, character device or stream path: opened for writing
    (appending), never created, truncated or replaced."""
    fd = os.open(path, os.O_WRONLY | os.O_APPEND)
    with os.fdopen(fd, "wb") as f:
        if callable(data):
            data(f)
        else:
            f.write(data.encode("utf-8") if isinstance(data, str) else data)


class Outputs:
    """Every file one run writes: checked by the rule (module docstring) before any work,
    written atomically (or into a stream), recorded in its folder's manifest.

    ``inputs``: files (and folders) the run reads; ``overwrite``: --overwrite; ``prog``: the
    name in messages."""

    def __init__(self, inputs: Iterable[str | None] = (), overwrite: bool = False, prog: str = "googlenet-det"):
        self.overwrite = overwrite
        self.prog = prog
        self.inputs: dict[str, str] = {}          # real path -> as given
        self.inodes: dict[tuple[int, int], str] = {}
        self.folders: dict[str, str] = {}         # input folders whose contents are inputs
        self.manifests: dict[str, Manifest] = {}
        self.planned: dict[str, str] = {}         # real path -> flag
        self.planned_folders: dict[str, str] = {} # output folders: real path -> flag
        self.streams: set[str] = set()            # planned paths written into, not replaced
        self.last_save = time.monotonic()
        for p in inputs:
            self.add_input(p)

    # -- inputs

    def add_input(self, path: str | None, *, contents: bool | None = None, what: str = "input") -> None:
        """``path`` is read by this run (``what`` names it in messages). A folder's contents
        count as inputs too (``contents``, default: True for folders)."""
        if not path:
            return
        path = os.path.expanduser(os.fspath(path))
        real = os.path.realpath(path)
        self.inputs.setdefault(real, f"{what} {path}")
        try:
            st = os.stat(path)
        except OSError:
            return
        if stat.S_ISREG(st.st_mode):
            self.inodes.setdefault((st.st_dev, st.st_ino), f"{what} {path}")
        elif stat.S_ISDIR(st.st_mode) and contents is not False:
            self.folders.setdefault(real, f"{what} folder {path}")

    def _input_of(self, path: str) -> str | None:
        real = os.path.realpath(path)
        if real in self.inputs:
            return f"is the {self.inputs[real]}"
        try:
            st = os.stat(path)
            if stat.S_ISREG(st.st_mode) and (st.st_dev, st.st_ino) in self.inodes:
                return f"is the {self.inodes[(st.st_dev, st.st_ino)]} (the same file)"
        except OSError:
            pass
        for folder, given in self.folders.items():
            if real.startswith(folder.rstrip(os.sep) + os.sep):
                return f"is inside the {given}"
        return None

    def recheck(self) -> None:
        """Refuse again every planned output that an input added since is (or holds)."""
        for real, flag in [*self.planned.items(), *self.planned_folders.items()]:
            why = self._input_of(real)
            if why:
                raise UserError(f"{flag} {real}: {why}; inputs are never written (choose another output path)")

    # -- checks (before any work)

    def manifest(self, folder: str) -> Manifest:
        folder = os.path.abspath(folder)
        if folder not in self.manifests:
            m = self.manifests[folder] = Manifest(folder)
            if os.path.isdir(m.path):
                raise UserError(f"{m.path}: is a folder; this project keeps its record of the files it wrote there")
        return self.manifests[folder]

    def check(self, path: str, flag: str) -> str:
        """Refuse ``path`` as an output file by the rule; returns the absolute path to write
        (the target of a symbolic link to a regular file)."""
        given = path
        path = os.path.abspath(os.path.expanduser(os.fspath(path)))
        if is_manifest(path):
            raise UserError(f"{flag} {given}: that name is {self.prog}'s own record of the files it wrote; "
                            "choose another")
        why = self._input_of(path)
        if why:
            raise UserError(f"{flag} {given}: {why}; inputs are never written (choose another output path)")
        node = _node(path)
        if STREAM_PATHS.match(path) and node in ("file", "stream"):
            node = "stream"
        real = os.path.realpath(path)
        if real in self.planned:
            raise UserError(f"{flag} {given}: written twice by this run (also as {self.planned[real]})")
        if node == "folder":
            raise UserError(f"{flag} {given}: is a folder, expected a file path")
        if node == "other":
            raise UserError(f"{flag} {given}: is {_what(path)}; only regular files are replaced")
        if node == "stream":
            self.streams.add(path)
            self.planned[real] = flag
            return path
        if node == "file":
            target = real  # a link to a file: the link stays, its target is replaced
            if not self.overwrite and not self.manifest(os.path.dirname(target)).owns(target):
                raise UserError(f"{flag} {given}: exists and was not written by {self.prog} (nor another googlenet-det command: no record of it in "
                                f"{os.path.join(os.path.dirname(target), MANIFEST)}); use --overwrite to replace it")
            path = target
        else:
            check_writable(path, what=flag)
            self.manifest(os.path.dirname(path))
        self.planned[real] = flag
        return path

    def check_folder(self, path: str, flag: str, names: "str | re.Pattern | None" = None) -> str:
        """Refuse ``path`` as an output folder: not a folder (a file, a device), an input, or
        inside one; with ``names`` (a regular expression of the file names written there) any
        existing file of such a name is checked as :meth:`check` would, before any work."""
        given = path
        path = os.path.abspath(os.path.expanduser(os.fspath(path)))
        why = self._input_of(path)
        if why:
            raise UserError(f"{flag} {given}: {why}; inputs are never written (choose another output folder)")
        node = _node(path)
        if node not in ("missing", "folder"):
            raise UserError(f"{flag} {given}: is {'a file' if node == 'file' else _what(path) if node == 'other' else 'a device or FIFO'}, "
                            "expected a folder")
        check_writable(path, what=flag, folder=True)
        self.planned_folders[os.path.realpath(path)] = flag
        if node == "folder":
            self.manifest(path)
            if names is not None:
                pattern = re.compile(names) if isinstance(names, str) else names
                for name in sorted(os.listdir(path)):
                    if pattern.fullmatch(name):
                        self.check(os.path.join(path, name), flag)
        return path

    # -- writing (after the work)

    def write(self, path: str, data: "str | bytes | Callable[[BinaryIO], Any]", *, what: str = "file",
              save: bool = True) -> str:
        """Write ``data`` (as :func:`backbone.io.atomic_write` takes) to the checked ``path`` and
        record it (``save=False``: the manifest is saved within 2 s, or by :meth:`save`)."""
        if path in self.streams:
            try:
                write_into(path, data)
            except OSError as e:
                raise UserError(f"{what} {path}: cannot write ({e.strerror or e})") from None
            return path
        atomic_write(path, data, what=what)
        self.written(path)
        if save:
            self.save()
        return path

    @contextlib.contextmanager
    def staged(self, folder: str, flag: str) -> Iterator[str]:
        """A private folder for code that writes files by name (figures, reports, detections):
        what it holds afterwards goes to ``folder`` through the rule (files renamed into place,
        streams written into); names not checked before are checked now."""
        folder = os.path.abspath(folder)
        tmp = tempfile.mkdtemp(prefix="googlenet-det-")  # not in the user's folder; copied atomically
        try:
            yield tmp
            for root, dirs, names in os.walk(tmp):
                dirs.sort()
                for name in sorted(names):
                    src = os.path.join(root, name)
                    dest = os.path.join(folder, os.path.relpath(src, tmp))
                    if os.path.realpath(dest) not in self.planned:
                        dest = self.check(dest, flag)
                    elif os.path.islink(dest) and _node(dest) == "file":
                        dest = os.path.realpath(dest)
                    with open(src, "rb") as f:
                        self.write(dest, lambda out: shutil.copyfileobj(f, out), what=flag, save=False)
        finally:
            shutil.rmtree(tmp, ignore_errors=True)
            self.save()

    def written(self, path: str) -> None:
        """Record ``path`` (written by the caller, after :meth:`check`) in its folder's manifest."""
        if path in self.streams:
            return
        self.manifest(os.path.dirname(os.path.abspath(path))).record(path)
        if time.monotonic() - self.last_save > 2.0:  # a killed run loses at most 2 s of records
            self.save()

    def save(self) -> None:
        for m in self.manifests.values():
            m.save()
        self.last_save = time.monotonic()


__all__ = ["MANIFEST", "OLD_MANIFESTS", "Manifest", "Outputs", "add_output_arg", "add_overwrite_arg",
           "output_actions", "is_manifest", "is_stream", "write_into"]
