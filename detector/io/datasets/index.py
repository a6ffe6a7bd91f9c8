"""The annotation records index: every VOC/ILSVRC XML annotation parsed once, reused by later runs.

An ILSVRC DET training split is 456,567 XML files; parsing them all again on every run costs
minutes. :func:`annotation_parser` hands the readers a ``parse(path)`` that answers from an index
in the cache folder (:func:`backbone.io.cache_dir`)::

    annotations/<folder name>-<hash of the folder's absolute path>.npz

one file per annotation folder (the VOC ``Annotations/`` folder shared by its splits, or an
ILSVRC ``Annotations/DET/<split>/``). An entry is the parse result of one file (the
:class:`~detector.io.datasets.voc.VocAnnotation`: filename, size, objects with their names,
boxes as written, difficult flags and lines) with the file's path (relative to the folder,
whose absolute path is in the header), size, modification and status-change times in ns and
inode. Every lookup stats the file: a changed size, mtime, ctime or inode is parsed again (only
that file; the ctime and inode catch an edit that kept size and mtime, as ``rsync -a`` or
``touch -r`` leave it), a file gone is dropped, a new one parsed and added; the index is
written back (atomically) only when something changed.
The entries hold what is in the files, before any class list, blacklist or box cleaning is
applied, so readers of different settings share one index and cannot mix results.

Format: a ``.npz`` (``numpy.load(allow_pickle=False)``; no pickle) of concatenated arrays plus
one UTF-8 JSON member for the strings. A damaged, foreign or older-version index is rebuilt
with one :class:`~detector.io.datasets.warning.DatasetWarning`; an index that cannot be written
(read-only or full disk) is one warning too, the records are still returned.
``GOOGLENET_DET_NO_ANNOTATION_INDEX=1`` turns the index off (every file parsed every run).
"""

from __future__ import annotations

import hashlib
import json
import os
import warnings
import zipfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import numpy as np

from backbone.errors import UserError
from backbone.io import atomic_write, cache_dir, check_zip_crcs, one_line

from .sizes import image_header
from .warning import DatasetWarning

#: bump when the parse result of a file changes (older indexes are then rebuilt)
INDEX_VERSION = 2
INDEX_KIND = "googlenet-det annotation index"
DISABLE_ENV = "GOOGLENET_DET_NO_ANNOTATION_INDEX"

#: the file's stat fields an entry is valid for (any change: parsed again)
_STAT = ("size", "mtime_ns", "ctime_ns", "inode")
_INT_ARRAYS = (*_STAT, "width", "height", "obj_start", "obj_line")


def _stat_key(st: os.stat_result) -> tuple[int, int, int, int]:
    """The :data:`_STAT` of a file, each an int64 (an inode above 2^63 wraps, as C's cast)."""
    return tuple(v - (1 << 64) if v >= 1 << 63 else v
                 for v in (st.st_size, st.st_mtime_ns, st.st_ctime_ns, st.st_ino))


def index_disabled() -> bool:
    return os.environ.get(DISABLE_ENV, "").strip() not in ("", "0")


def index_path(folder: str, cache: str | None = None) -> str:
    """The index file of annotation folder ``folder`` in the cache folder ``cache``."""
    folder = os.path.abspath(folder)
    stem = "".join(c if c.isalnum() or c in "-_." else "_" for c in os.path.basename(folder))[:40] or "root"
    digest = hashlib.sha256(folder.encode("utf-8", "surrogateescape")).hexdigest()[:16]
    return os.path.join(cache or cache_dir(), "annotations", f"{stem}-{digest}.npz")


class AnnotationIndex:
    """The parsed annotations of one folder; :meth:`get` is ``parse`` with a cache.

    ``parse(path)`` returns an annotation ``make_annotation(path, filename, width, height,
    objects)`` whose objects are ``make_object(name, box, difficult, line)`` (the VOC reader's
    ``parse_voc_annotation``, ``VocAnnotation`` and ``VocObject``: passed in, as the reader
    module imports this one)."""

    def __init__(self, folder: str, parse: Callable, make_annotation: Callable, make_object: Callable,
                 cache: str | None = None):
        self._parse, self._make_annotation, self._make_object = parse, make_annotation, make_object
        self.folder = os.path.abspath(folder)
        self.path = index_path(self.folder, cache)
        self._prefix = self.folder.rstrip(os.sep) + os.sep
        self._rows: dict[str, int] = {}        # relative path -> row of the loaded arrays
        self._stale: set[int] = set()          # loaded rows replaced or dropped
        self._new: dict[str, tuple[int, int, Any]] = {}
        self._a: dict[str, np.ndarray] = {}
        self._files: list[str] = []
        self._filenames: list[str | None] = []
        self._vocab: list[str] = []
        self.hits = self.parsed = 0
        self.dirty = False
        self._load()

    # ---- reading the index file ----
    def _load(self) -> None:
        if not os.path.exists(self.path):
            return
        try:
            self._read()
        except (UserError, OSError, ValueError, KeyError, TypeError, EOFError, IndexError,
                zipfile.BadZipFile, UnicodeDecodeError, json.JSONDecodeError) as e:
            reason = str(e) if isinstance(e, UserError) else one_line(e)
            warnings.warn(f"annotation index {self.path}: unusable ({reason}); rebuilt from the "
                          "annotation files", DatasetWarning, stacklevel=4)
            self._rows, self._a, self._files, self._filenames, self._vocab = {}, {}, [], [], []
            self.dirty = True

    def _read(self) -> None:
        if not os.path.isfile(self.path):
            raise ValueError("not a regular file")
        check_zip_crcs(self.path, "annotation index")
        with np.load(self.path, allow_pickle=False) as z:
            header = json.loads(bytes(z["header"]).decode("utf-8"))
            if not isinstance(header, dict) or header.get("kind") != INDEX_KIND:
                raise ValueError("not an annotation index")
            if header.get("version") != INDEX_VERSION:
                raise ValueError(f"version {header.get('version')!r}, this program writes {INDEX_VERSION}")
            if header.get("folder") != self.folder:
                raise ValueError(f"made for folder {header.get('folder')!r}")
            strings = json.loads(bytes(z["strings"]).decode("utf-8"))
            a = {k: np.asarray(z[k], dtype=np.int64) for k in _INT_ARRAYS}
            a["obj_box"] = np.asarray(z["obj_box"], dtype=np.float64)
            a["obj_name"] = np.asarray(z["obj_name"], dtype=np.int64)
            a["obj_difficult"] = np.asarray(z["obj_difficult"], dtype=bool)
        files, filenames, vocab = strings["files"], strings["filenames"], strings["vocab"]
        n = len(files)
        start = a["obj_start"]
        m = int(start[-1]) if len(start) else -1
        ok = (isinstance(files, list) and isinstance(filenames, list) and isinstance(vocab, list)
              and len(filenames) == n and all(isinstance(s, str) for s in files)
              and all(isinstance(s, str) for s in vocab)
              and all(s is None or isinstance(s, str) for s in filenames)
              and all(len(a[k]) == n for k in (*_STAT, "width", "height"))
              and len(start) == n + 1 and start[0] == 0 and bool(np.all(np.diff(start) >= 0))
              and a["obj_box"].shape == (m, 4) and all(len(a[k]) == m for k in ("obj_name", "obj_difficult", "obj_line"))
              and (m == 0 or (a["obj_name"].min() >= 0 and a["obj_name"].max() < len(vocab))))
        if not ok:
            raise ValueError("inconsistent contents")
        self._a, self._files, self._filenames, self._vocab = a, files, filenames, vocab
        self._rows = {f: i for i, f in enumerate(files)}
        if len(self._rows) != n:
            raise ValueError("a file listed twice")

    def _from_row(self, path: str, r: int) -> Any:
        a = self._a
        s, e = int(a["obj_start"][r]), int(a["obj_start"][r + 1])
        boxes = a["obj_box"][s:e].tolist()
        names, diff, lines = a["obj_name"][s:e].tolist(), a["obj_difficult"][s:e].tolist(), a["obj_line"][s:e].tolist()
        objects = [self._make_object(self._vocab[names[j]], tuple(boxes[j]), bool(diff[j]), int(lines[j]))
                   for j in range(e - s)]
        return self._make_annotation(path, self._filenames[r], int(a["width"][r]), int(a["height"][r]), objects)

    # ---- lookups ----
    def get(self, path: str) -> Any:
        """``parse(path)``, from the index when the file is unchanged."""
        if not path.startswith(self._prefix):
            return self._parse(path)   # outside the folder: not indexed
        rel = path[len(self._prefix):]
        try:
            st = os.stat(path)
            regular = os.path.isfile(path)
        except OSError:
            st, regular = None, False
        r = self._rows.get(rel)
        if not regular:                          # gone (or a folder, FIFO...): dropped, the parser says why
            self._drop(rel, r)
            return self._parse(path)
        key = _stat_key(st)
        if r is not None and r not in self._stale and tuple(int(self._a[k][r]) for k in _STAT) == key:
            self.hits += 1
            return self._from_row(path, r)
        new = self._new.get(rel)
        if new is not None and new[0] == key:
            self.hits += 1
            return new[1]
        self._drop(rel, r)
        ann = self._parse(path)
        self._new[rel] = (key, ann)
        self.parsed += 1
        self.dirty = True
        return ann

    def _drop(self, rel: str, r: int | None) -> None:
        if r is not None and r not in self._stale:
            self._stale.add(r)
            self.dirty = True
        if self._new.pop(rel, None) is not None:
            self.dirty = True

    # ---- writing ----
    def save(self) -> bool:
        """Write the index when it changed; returns whether a file was written."""
        if not self.dirty:
            return False
        a, n = self._a, len(self._files)
        keep = np.ones(n, dtype=bool)
        if self._stale:
            keep[np.fromiter(self._stale, dtype=np.int64)] = False
        vocab = list(self._vocab)
        code = {v: i for i, v in enumerate(vocab)}
        new = list(self._new.items())
        for _, (_, ann) in new:
            for o in ann.objects:
                if o.name not in code:
                    code[o.name] = len(vocab)
                    vocab.append(o.name)
        if n:
            counts = np.diff(a["obj_start"])
            keep_obj = np.repeat(keep, counts)
            old = {k: a[k][keep] for k in (*_STAT, "width", "height")}
            old_counts = counts[keep]
            old_obj = {k: a[k][keep_obj] for k in ("obj_box", "obj_name", "obj_difficult", "obj_line")}
        else:
            old = {k: np.zeros(0, np.int64) for k in (*_STAT, "width", "height")}
            old_counts = np.zeros(0, np.int64)
            old_obj = {"obj_box": np.zeros((0, 4)), "obj_name": np.zeros(0, np.int64),
                       "obj_difficult": np.zeros(0, bool), "obj_line": np.zeros(0, np.int64)}
        objs = [o for _, (_, ann) in new for o in ann.objects]
        out = {k: np.concatenate([old[k], np.array([v[0][j] for _, v in new], np.int64)]) for j, k in enumerate(_STAT)}
        out.update({
            "width": np.concatenate([old["width"], np.array([v[1].width for _, v in new], np.int64)]),
            "height": np.concatenate([old["height"], np.array([v[1].height for _, v in new], np.int64)]),
            "obj_start": np.concatenate([[0], np.cumsum(np.concatenate(
                [old_counts, np.array([len(v[1].objects) for _, v in new], np.int64)]))]).astype(np.int64),
            "obj_box": np.concatenate([old_obj["obj_box"], np.array([o.box for o in objs], np.float64).reshape(-1, 4)]),
            "obj_name": np.concatenate([old_obj["obj_name"], np.array([code[o.name] for o in objs], np.int64)]),
            "obj_difficult": np.concatenate([old_obj["obj_difficult"], np.array([o.difficult for o in objs], bool)]),
            "obj_line": np.concatenate([old_obj["obj_line"], np.array([o.line for o in objs], np.int64)]),
        })
        kept = np.flatnonzero(keep).tolist()
        strings = {"files": [self._files[i] for i in kept] + [rel for rel, _ in new],
                   "filenames": [self._filenames[i] for i in kept] + [v[1].filename for _, v in new],
                   "vocab": vocab}
        header = {"kind": INDEX_KIND, "version": INDEX_VERSION, "folder": self.folder}
        out["header"] = np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8)
        out["strings"] = np.frombuffer(json.dumps(strings, ensure_ascii=False).encode("utf-8", "surrogatepass"),
                                       dtype=np.uint8)
        try:
            atomic_write(self.path, lambda f: np.savez(f, **out), what="annotation index")
        except UserError as e:
            warnings.warn(f"{e} (not saved; the annotation files are parsed again next run)",
                          DatasetWarning, stacklevel=4)
            return False
        self.dirty = False
        return True


@contextmanager
def annotation_parser(folder: str, parse: Callable, make_annotation: Callable, make_object: Callable,
                      cache: str | None = None) -> Iterator[Callable[[str], Any]]:
    """``with annotation_parser(ann_dir, parse, ...) as get: ann = get(path)``: ``parse``
    answered from the index of ``folder`` (saved on leaving, also when a file was bad, so the
    work done is kept). ``parse`` itself when the index is disabled (:data:`DISABLE_ENV`)."""
    if index_disabled():
        yield parse
        return
    index = AnnotationIndex(folder, parse, make_annotation, make_object, cache)
    try:
        yield index.get
    finally:
        index.save()




# ---------------------------------------------------------------------------------------------
# the image size index: every image header read once, reused by later runs

SIZE_INDEX_VERSION = 1
SIZE_INDEX_KIND = "googlenet-det image size index"


def size_index_path(folder: str, cache: str | None = None) -> str:
    """The size index file of image folder ``folder``: ``image-sizes/`` beside ``annotations/``
    in the cache folder, the file named as :func:`index_path` names it."""
    p = index_path(folder, cache)
    return os.path.join(os.path.dirname(os.path.dirname(p)), "image-sizes", os.path.basename(p))


class ImageSizeIndex:
    """``(stored width, stored height, EXIF orientation)`` of the images below one folder
    (:func:`detector.io.datasets.sizes.image_header`), kept in the cache folder as the
    annotation index is: the dataset readers compare every annotated size with the image's
    own, and an ILSVRC DET training split is 456,567 images, too many to open on every run.
    An entry holds the file's size and mtime (ns); a changed file is read again, a gone one
    dropped; the index is written back (atomically) only when something changed. A damaged or
    older index is rebuilt with one :class:`DatasetWarning`; one that cannot be written is one
    warning too. Images outside the folder are read directly."""

    def __init__(self, folder: str, read: Callable[[str], tuple[int, int, int]], cache: str | None = None):
        self.read = read
        self.folder = os.path.abspath(folder)
        self.path = size_index_path(self.folder, cache)
        self._prefix = self.folder.rstrip(os.sep) + os.sep
        self.entries: dict[str, tuple[int, int, int, int, int]] = {}   # rel -> size, mtime_ns, w, h, orientation
        self.used: set[str] = set()
        self.hits = self.read_count = 0
        self.dirty = False
        if os.path.exists(self.path):
            try:
                self._load()
            except (UserError, OSError, ValueError, KeyError, TypeError, EOFError, IndexError,
                    zipfile.BadZipFile, UnicodeDecodeError, json.JSONDecodeError) as e:
                reason = str(e) if isinstance(e, UserError) else one_line(e)
                warnings.warn(f"image size index {self.path}: unusable ({reason}); rebuilt from the image headers",
                              DatasetWarning, stacklevel=4)
                self.entries, self.dirty = {}, True

    def _load(self) -> None:
        if not os.path.isfile(self.path):
            raise ValueError("not a regular file")
        check_zip_crcs(self.path, "image size index")
        with np.load(self.path, allow_pickle=False) as z:
            header = json.loads(bytes(z["header"]).decode("utf-8"))
            if not isinstance(header, dict) or header.get("kind") != SIZE_INDEX_KIND:
                raise ValueError("not an image size index")
            if header.get("version") != SIZE_INDEX_VERSION:
                raise ValueError(f"version {header.get('version')!r}, this program writes {SIZE_INDEX_VERSION}")
            if header.get("folder") != self.folder:
                raise ValueError(f"made for folder {header.get('folder')!r}")
            files = json.loads(bytes(z["files"]).decode("utf-8"))
            table = np.asarray(z["table"], dtype=np.int64)
        if not (isinstance(files, list) and all(isinstance(f, str) for f in files)
                and table.shape == (len(files), 5) and (len(files) == 0 or
                                                        (table[:, 2:4].min() >= 0 and table[:, 4].min() >= 1
                                                         and table[:, 4].max() <= 8))):
            raise ValueError("inconsistent contents")
        self.entries = dict(zip(files, map(tuple, table.tolist())))
        if len(self.entries) != len(files):
            raise ValueError("a file listed twice")

    def get(self, path: str) -> tuple[int, int, int]:
        """``read(path)``, from the index when the file is unchanged."""
        path = os.path.abspath(path)
        if not path.startswith(self._prefix):
            return self.read(path)
        rel = path[len(self._prefix):]
        try:
            st = os.stat(path)
        except OSError:
            st = None
        e = self.entries.get(rel)
        if st is not None and e is not None and e[0] == st.st_size and e[1] == st.st_mtime_ns:
            self.hits += 1
            return e[2], e[3], e[4]
        if e is not None:
            del self.entries[rel]
            self.dirty = True
        w, h, o = self.read(path)   # a damaged header raises: nothing kept
        if st is not None:
            self.entries[rel] = (st.st_size, st.st_mtime_ns, int(w), int(h), int(o))
            self.dirty = True
        self.read_count += 1
        return w, h, o

    __call__ = get

    def save(self) -> bool:
        """Write the index when it changed; returns whether a file was written."""
        if not self.dirty:
            return False
        files = list(self.entries)
        table = np.array([self.entries[f] for f in files], np.int64).reshape(-1, 5)
        header = {"kind": SIZE_INDEX_KIND, "version": SIZE_INDEX_VERSION, "folder": self.folder}
        out = {"header": np.frombuffer(json.dumps(header).encode("utf-8"), dtype=np.uint8),
               "files": np.frombuffer(json.dumps(files, ensure_ascii=False).encode("utf-8", "surrogatepass"),
                                      dtype=np.uint8),
               "table": table}
        try:
            atomic_write(self.path, lambda f: np.savez(f, **out), what="image size index")
        except UserError as e:
            warnings.warn(f"{e} (not saved; the image headers are read again next run)", DatasetWarning, stacklevel=4)
            return False
        self.dirty = False
        return True


def size_index(folder: str, cache: str | None = None) -> Callable[[str], tuple[int, int, int]]:
    """``header = size_index(root)``; ``w, h, orientation = header(path)``: the image header
    (:func:`detector.io.datasets.sizes.image_header`) answered from the size index of
    ``folder`` (:class:`ImageSizeIndex`; ``header.save()`` writes it back: the
    :class:`~detector.io.datasets.boxes.BoxCleaner` it is given does at its ``report()``). The
    header itself when the index is disabled (:data:`DISABLE_ENV` turns both indexes off)."""
    if index_disabled():
        return image_header
    return ImageSizeIndex(folder, image_header, cache)


__all__ = ["DISABLE_ENV", "INDEX_VERSION", "SIZE_INDEX_VERSION", "AnnotationIndex", "ImageSizeIndex", "annotation_parser",
           "index_disabled", "index_path", "size_index", "size_index_path"]
