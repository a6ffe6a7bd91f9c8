"""detector.io.datasets.index: the annotation records index (issue 15): re-read on change, new and
deleted files, damaged or unwritable index, class lists sharing one cache, index on == off."""

import os
import shutil
import warnings

import numpy as np
import pytest

from backbone.errors import UserError
from detector.io.datasets import DatasetWarning
from detector.io.datasets.common import ClassList
from detector.io.datasets.index import DISABLE_ENV, AnnotationIndex, index_path
from detector.io.datasets.voc import (
    VocAnnotation,
    VocObject,
    parse_voc_annotation,
    read_voc,
)


@pytest.fixture
def cache(tmp_path, monkeypatch):
    c = tmp_path / "cache"
    monkeypatch.setenv("GOOGLENET_DET_CACHE", str(c))
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    return c


@pytest.fixture
def voc(test_data, tmp_path):
    dst = tmp_path / "voc"
    shutil.copytree(test_data / "voc-mini", dst)
    return dst


class Counting:
    def __init__(self):
        self.calls = []

    def __call__(self, path):
        self.calls.append(os.path.basename(path))
        return parse_voc_annotation(path)


def _run(ann_dir, names):
    """One 'run': a fresh index over ``names``; returns (annotations, files parsed)."""
    parse = Counting()
    idx = AnnotationIndex(str(ann_dir), parse, VocAnnotation, VocObject)
    anns = [idx.get(str(ann_dir / n)) for n in names]
    idx.save()
    return anns, parse.calls


NAMES = ["BloodImage_00000.xml", "BloodImage_00001.xml", "BloodImage_00338.xml"]


def test_second_run_parses_nothing_and_equals_the_first(voc, cache):
    a1, p1 = _run(voc / "Annotations", NAMES)
    a2, p2 = _run(voc / "Annotations", NAMES)
    assert p1 == NAMES and p2 == []
    assert a1 == a2
    assert os.path.isfile(index_path(str(voc / "Annotations")))


def test_edited_file_is_read_again(voc, cache):
    ann = voc / "Annotations"
    a1, _ = _run(ann, NAMES)
    p = ann / NAMES[0]
    st = os.stat(p)
    text = p.read_text().replace("<xmin>260</xmin>", "<xmin>26</xmin>")
    assert "<xmin>26</xmin>" in text
    p.write_text(text)
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))     # same mtime: only the size changed
    a2, p2 = _run(ann, NAMES)
    assert p2 == [NAMES[0]] and a2[0].objects[0].box[0] == 26
    # same size, other mtime: read again too
    p.write_text(text.replace("<xmin>26</xmin>", "<xmin>27</xmin>"))
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    assert os.path.getsize(p) == len(text.encode())
    a3, p3 = _run(ann, NAMES)
    assert p3 == [NAMES[0]] and a3[0].objects[0].box[0] == 27
    assert a3[1:] == a1[1:]


def test_new_and_deleted_files(voc, cache):
    ann = voc / "Annotations"
    _run(ann, NAMES[:2])
    _, p = _run(ann, NAMES)                       # a new file: parsed, the others from the index
    assert p == [NAMES[2]]
    os.remove(ann / NAMES[1])
    idx = AnnotationIndex(str(ann), Counting(), VocAnnotation, VocObject)
    with pytest.raises(UserError):
        idx.get(str(ann / NAMES[1]))             # gone: the parser says why
    idx.save()
    idx2 = AnnotationIndex(str(ann), Counting(), VocAnnotation, VocObject)
    assert sorted(idx2._files) == [NAMES[0], NAMES[2]]   # dropped from the saved index


def test_damaged_index_rebuilt_with_one_warning(voc, cache):
    ann = voc / "Annotations"
    a1, _ = _run(ann, NAMES)
    path = index_path(str(ann))
    with open(path, "rb") as f:
        data = bytearray(f.read())
    data[len(data) // 2] ^= 0xFF
    with open(path, "wb") as f:
        f.write(data)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        a2, p2 = _run(ann, NAMES)
    ours = [w for w in rec if issubclass(w.category, DatasetWarning)]
    assert len(ours) == 1 and "rebuilt" in str(ours[0].message)
    assert p2 == NAMES and a2 == a1
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        _, p3 = _run(ann, NAMES)                 # rebuilt index is good again
    assert p3 == []


def _arrays(ds):
    return [(r.image_id, r.path, r.width, r.height, r.boxes.tolist(), r.labels.tolist(),
             getattr(r, "difficult", np.zeros(0)).tolist()) for r in ds.records]


def test_index_on_equals_off(voc, cache, monkeypatch):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetWarning)
        first = read_voc(str(voc), "train")
        again = read_voc(str(voc), "train")      # from the index
        monkeypatch.setenv(DISABLE_ENV, "1")
        off = read_voc(str(voc), "train")
    assert first.classes == again.classes == off.classes
    assert _arrays(first) == _arrays(again) == _arrays(off)
    assert os.path.isfile(index_path(str(voc / "Annotations")))


def test_two_class_lists_share_a_cache(voc, cache):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetWarning)
        wr = read_voc(str(voc), "train", ClassList(["WBC", "RBC"]))
        rw = read_voc(str(voc), "train", ClassList(["RBC", "WBC"]))
        wr2 = read_voc(str(voc), "train", ClassList(["WBC", "RBC"]))
    assert _arrays(wr) == _arrays(wr2)
    assert wr.classes == ["WBC", "RBC"] and rw.classes == ["RBC", "WBC"]
    for a, b in zip(wr.records, rw.records):     # same boxes, labels swapped: nothing mixed
        np.testing.assert_array_equal(a.boxes, b.boxes)
        np.testing.assert_array_equal(a.labels, 3 - b.labels)


def test_unwritable_cache_one_warning_records_returned(voc, tmp_path, monkeypatch):
    blocker = tmp_path / "not-a-folder"
    blocker.write_text("x")                       # the cache 'folder' is a file: nothing can be written
    monkeypatch.setenv("GOOGLENET_DET_CACHE", str(blocker))
    monkeypatch.delenv(DISABLE_ENV, raising=False)
    with warnings.catch_warnings(record=True) as rec:
        warnings.simplefilter("always")
        a, p = _run(voc / "Annotations", NAMES)
    ours = [w for w in rec if issubclass(w.category, DatasetWarning)]
    assert len(ours) == 1 and "not saved" in str(ours[0].message)
    assert p == NAMES and [x.path for x in a] == [str(voc / "Annotations" / n) for n in NAMES]


def test_unchanged_index_is_not_written_again(voc, cache):
    ann = voc / "Annotations"
    _run(ann, NAMES)
    path = index_path(str(ann))
    os.utime(path, ns=(1_000_000_000, 1_000_000_000))
    _run(ann, NAMES)
    assert os.stat(path).st_mtime_ns == 1_000_000_000


def test_edit_keeping_size_and_mtime_is_read_again(voc, cache):
    """``rsync -a`` and ``touch -r`` give an edited file its old mtime; with the same size the
    index kept the old labels (issue 20): the ctime and the inode say the file changed."""
    ann = voc / "Annotations"
    _run(ann, NAMES)
    p = ann / NAMES[0]
    st = os.stat(p)
    text = p.read_text()
    assert "<xmin>260</xmin>" in text
    p.write_text(text.replace("<xmin>260</xmin>", "<xmin>261</xmin>"))     # in place, as an editor
    os.utime(p, ns=(st.st_atime_ns, st.st_mtime_ns))                       # touch -r: the old mtime
    assert (os.path.getsize(p), os.stat(p).st_mtime_ns) == (st.st_size, st.st_mtime_ns)
    a2, p2 = _run(ann, NAMES)
    assert p2 == [NAMES[0]] and a2[0].objects[0].box[0] == 261
    tmp = ann / ".new.tmp"                                                  # rsync -a: a new file renamed over
    tmp.write_text(text.replace("<xmin>260</xmin>", "<xmin>262</xmin>"))
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))
    os.replace(tmp, p)
    a3, p3 = _run(ann, NAMES)
    assert p3 == [NAMES[0]] and a3[0].objects[0].box[0] == 262
    _, p4 = _run(ann, NAMES)
    assert p4 == []                                                         # and then from the index again
