"""Fuzzing every reader of files a user hands us: any input gives a result or a
:class:`UserError` (one line in the CLIs), never another exception, never a hang.

Readers: VOC XML (one annotation, a folder), COCO instances JSON, the project's detections
JSON, COCO results, devkit submission lines, folders of text files (detections and ground
truth), the devkit ground-truth ``.mat``, and checkpoints (detector, classifier, any ``.pt``).

Inputs are valid files mutated with their structure in mind (keys dropped or duplicated,
values of the wrong type, huge numbers, NaN, deep nesting, a DTD, elements removed or repeated,
tokens replaced), then perhaps a few random bytes changed, plus plain random bytes. numpy's
RuntimeWarnings (a NaN cast to an integer, an overflow) count as failures too: they mean a
reader computed with garbage instead of refusing it.

The default run is derandomized and takes well under a minute; ``-m slow`` runs many more
examples with random seeds.
"""

from __future__ import annotations

import contextlib
import copy
import io
import json
import os
import tempfile
import warnings
import xml.etree.ElementTree as ET

import numpy as np
import pytest
import scipy.io
import torch
from hypothesis import HealthCheck, given, settings, strategies as st
from PIL import Image

from backbone.errors import InputWarning, UserError
from backbone.io import safe_torch_load
from detector.io.checkpoints import load_detector, read_classifier
from detector.io.datasets import read_ground_truth
from detector.io.datasets.coco import coco_from_dict
from detector.io.datasets.common import ClassList, DatasetWarning, image_size
from detector.io.datasets.ground_truth import _loadmat_here, devkit_gt_from_variables, load_mat, read_devkit_gt
from detector.io.datasets.records import Dataset, ImageRecord
from detector.io.datasets.voc import parse_voc_annotation, read_voc
from detector.io.detections import read_detections

# ---------------------------------------------------------------------------------------------
# running a reader


def result_or_user_error(fn, *args, **kwargs):
    """Call a reader: its result, or None for a UserError; anything else fails the test."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DatasetWarning)
        warnings.simplefilter("error", RuntimeWarning)   # numpy computing with garbage
        try:
            return fn(*args, **kwargs)
        except UserError as e:
            msg = str(e)
            assert msg and "\n" not in msg, repr(msg)    # one line
            return None


def fuzz(strategy, examples: int, slow_examples: int | None = None):
    """Two tests of ``check(value)``: the default one (derandomized, ``examples`` inputs) and
    one marked ``slow`` (random, many more inputs)."""
    def make(n, derandomize):
        def deco(check):
            @settings(max_examples=n, deadline=None, database=None, derandomize=derandomize,
                      suppress_health_check=list(HealthCheck))
            @given(strategy)
            def test(value):
                check(value)
            test.__name__ = check.__name__
            test.__doc__ = check.__doc__
            return test
        return deco

    def both(check):
        return make(examples, True)(check), pytest.mark.slow(make(slow_examples or examples * 20, False)(check))
    return both


@contextlib.contextmanager
def folder():
    with tempfile.TemporaryDirectory() as d:
        yield d


def write(path, content) -> str:
    with open(path, "wb") as f:
        f.write(content if isinstance(content, bytes) else content.encode("utf-8", "surrogatepass"))
    return path


# ---------------------------------------------------------------------------------------------
# byte-level and token-level mutation


@st.composite
def byte_edits(draw, data: bytes, max_edits: int = 4) -> bytes:
    """``data`` with a few bytes flipped, inserted, deleted, or cut off."""
    b = bytearray(data)
    for _ in range(draw(st.integers(1, max_edits))):
        op = draw(st.sampled_from(["flip", "insert", "delete", "truncate", "splice"]))
        i = draw(st.integers(0, max(len(b) - 1, 0)))
        if op == "flip" and b:
            b[i] = draw(st.integers(0, 255))
        elif op == "insert":
            b[i:i] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete" and b:
            del b[i:i + draw(st.integers(1, 16))]
        elif op == "truncate":
            del b[i:]
        elif op == "splice" and b:
            j = draw(st.integers(0, len(b) - 1))
            b[i:i] = b[j:j + draw(st.integers(1, 32))]
    return bytes(b)


def maybe_bytes(draw, data: bytes) -> bytes:
    return draw(byte_edits(data)) if draw(st.integers(0, 3)) == 0 else data


NASTY_TOKENS = ["nan", "NaN", "inf", "-inf", "1e400", "-1e400", "9" * 400, "1" * 5000, "-0", "0", "-1", "1.5",
                "abc", "0x10", "1_000", "", "1e-400", "4294967297", "9223372036854775808", "\x00", "é", "1,5"]


@st.composite
def token_edits(draw, text: str) -> str:
    """Whitespace-separated text with tokens replaced, dropped or repeated and lines dropped,
    repeated, joined or blanked."""
    lines = [ln.split() for ln in text.splitlines()]
    for _ in range(draw(st.integers(1, 5))):
        op = draw(st.sampled_from(["token", "token", "drop-token", "dup-token", "drop-line", "dup-line", "join",
                                   "blank", "extra"]))
        if not lines:
            lines = [[]]
        li = draw(st.integers(0, len(lines) - 1))
        line = lines[li]
        ti = draw(st.integers(0, max(len(line) - 1, 0)))
        if op == "token" and line:
            line[ti] = draw(st.sampled_from(NASTY_TOKENS) | st.text(max_size=6))
        elif op == "drop-token" and line:
            del line[ti]
        elif op == "dup-token" and line:
            line.insert(ti, line[ti])
        elif op == "drop-line":
            del lines[li]
        elif op == "dup-line":
            lines.insert(li, list(line))
        elif op == "join" and li + 1 < len(lines):
            lines[li:li + 2] = [lines[li] + lines[li + 1]]
        elif op == "blank":
            lines.insert(li, [])
        elif op == "extra":
            line.append(draw(st.sampled_from(NASTY_TOKENS)))
    return "\n".join(" ".join(ln) for ln in lines) + draw(st.sampled_from(["\n", "", "\r\n", "\n\n"]))


# ---------------------------------------------------------------------------------------------
# structure-aware JSON mutation

DEEP = "\x01deep\x01"   # replaced by a deeply nested list after json.dumps


def nasty_values():
    return st.sampled_from([None, True, False, 0, -1, 1, 2, 2 ** 63, 10 ** 400, -10 ** 30, 1e308, -1e308, 0.5, 1.5,
                            float("nan"), float("inf"), float("-inf"), "", "abc", "1234", "0.5", "1", "cat",
                            "/data/1.jpg", "~", "~\x00x", "\ud800", "a" * 3000, [], {}, [1, 2, 3, 4], [1, 2, 3],
                            ["1", "2", "3", "4"], [[1, 2, 3, 4]], {"a": 1}, {"id": 1}, DEEP]) | st.integers() | st.floats()


def _slots(node, out):
    """Every (container, key) below ``node`` (depth first)."""
    if isinstance(node, dict):
        for k in list(node):
            out.append((node, k))
            _slots(node[k], out)
    elif isinstance(node, list):
        for i in range(len(node)):
            out.append((node, i))
            _slots(node[i], out)
    return out


@st.composite
def json_mutants(draw, doc):
    """``doc`` with 1-4 structural mutations: a value replaced by a nasty one, a key or element
    dropped or duplicated, a key added, a value wrapped in a list."""
    root = [copy.deepcopy(doc)]
    for _ in range(draw(st.integers(1, 4))):
        slots = _slots(root, [])
        parent, key = slots[draw(st.integers(0, len(slots) - 1))]
        op = draw(st.sampled_from(["replace", "replace", "drop", "dup", "add", "wrap"]))
        if op == "replace":
            parent[key] = draw(nasty_values())
        elif op == "drop" and parent is not root:
            del parent[key]
        elif op == "dup":
            if isinstance(parent, list):
                parent.insert(key, copy.deepcopy(parent[key]))
            else:
                parent[f"{key}_"] = copy.deepcopy(parent[key])
        elif op == "add" and isinstance(parent[key], dict):
            parent[key][draw(st.sampled_from(["id", "image", "image_id", "bbox", "score", "x", "width"]))] = \
                draw(nasty_values())
        elif op == "wrap":
            parent[key] = [parent[key]]
    text = json.dumps(root[0])
    depth = draw(st.sampled_from([3, 900, 2000, 100_000]))
    return text.replace(json.dumps(DEEP), "[" * depth + "]" * depth)


@st.composite
def json_files(draw, doc):
    """Mutated JSON text, sometimes with bytes changed after; or random bytes."""
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(max_size=200))
    text = draw(json_mutants(doc)).encode("utf-8", "surrogatepass")
    return maybe_bytes(draw, text)


# ---------------------------------------------------------------------------------------------
# the ground truth the detection files are read against

def small_gt() -> Dataset:
    recs = [ImageRecord(image_id=str(i), path=f"/data/{i}.jpg", width=100, height=80,
                        boxes=np.array([[10, 10, 40, 40]], np.float32), labels=np.array([i]),
                        difficult=np.array([False])) for i in (1, 2)]
    return Dataset(classes=["cat", "dog"], records=recs)


DETECTIONS = [{"image": "1", "detections": [{"box": [1, 2, 30, 40], "score": 0.9, "label": "cat"},
                                            {"box": [5, 5, 20, 20], "score": 0.25, "label": 2}]},
              {"image": "/data/2.jpg", "detections": []}]
COCO_RESULTS = [{"image_id": 1, "category_id": 1, "bbox": [1, 2, 10, 10], "score": 0.5},
                {"image_id": 2, "category_id": 2, "bbox": [3, 3, 5.5, 6], "score": 0.75},
                {"image_id": 1, "category_id": 2, "bbox": [0, 0, 1, 1], "score": 1}]
COCO_GT = {"images": [{"id": 1, "file_name": "a.jpg", "width": 100, "height": 80},
                      {"id": 2, "file_name": "b.jpg", "width": 64, "height": 48}],
           "annotations": [{"id": 1, "image_id": 1, "category_id": 1, "bbox": [1, 1, 10, 10], "area": 100, "iscrowd": 0},
                           {"id": 2, "image_id": 2, "category_id": 7, "bbox": [5, 5, 20, 10], "iscrowd": 1}],
           "categories": [{"id": 1, "name": "cat"}, {"id": 7, "name": "dog"}]}
DEVKIT = "1 1 0.9 1 1 10 10\n2 2 0.5 5 5 20 20\n1 2 0.25 3 3 8 9\n"
TEXT_DETS = {"1.txt": "cat 0.9 1 1 10 10\ndog 0.5 5 5 20 20\n", "2.txt": "dog 0.25 3 3 8 9\n"}
TEXT_GT = {"1.txt": "cat 1 1 10 10\ndog 5 5 20 20 difficult\n", "2.txt": "dog 3 3 8 9 1\n"}
VOC = """<annotation>
  <filename>a.jpg</filename>
  <size><width>64</width><height>48</height><depth>3</depth></size>
  <object><name>cat</name><difficult>0</difficult>
    <bndbox><xmin>2</xmin><ymin>3</ymin><xmax>30</xmax><ymax>40</ymax></bndbox></object>
  <object><name>dog</name><difficult>1</difficult>
    <bndbox><xmin>10</xmin><ymin>10</ymin><xmax>64</xmax><ymax>48</ymax></bndbox></object>
</annotation>
"""


# ---------------------------------------------------------------------------------------------
# JSON readers


@st.composite
def detections_inputs(draw):
    return draw(json_files(draw(st.sampled_from([DETECTIONS, COCO_RESULTS]))))


def check_detections_json(content):
    """The project's detections JSON and COCO results, read against a small ground truth."""
    with folder() as d:
        result_or_user_error(read_detections, write(os.path.join(d, "d.json"), content), small_gt())


test_detections_json, test_detections_json_slow = fuzz(detections_inputs(), 500)(check_detections_json)


def check_coco_ground_truth(content):
    """COCO instances JSON through read_ground_truth (load_json + coco_from_dict)."""
    with folder() as d:
        result_or_user_error(read_ground_truth, write(os.path.join(d, "gt.json"), content))


test_coco_ground_truth, test_coco_ground_truth_slow = fuzz(json_files(COCO_GT), 400)(check_coco_ground_truth)


@st.composite
def coco_dicts(draw):
    return json.loads(draw(json_mutants(COCO_GT)).replace("[" * 2000, "[").replace("]" * 2000, "]")
                      .replace("[" * 100_000, "[").replace("]" * 100_000, "]"))


def check_coco_from_dict(data):
    """coco_from_dict on mutated dicts, with and without a configured class list."""
    result_or_user_error(coco_from_dict, data, "gt.json", None)
    result_or_user_error(coco_from_dict, data, "gt.json", ClassList(["dog", "cat"]))


test_coco_from_dict, test_coco_from_dict_slow = fuzz(coco_dicts(), 400)(check_coco_from_dict)


# ---------------------------------------------------------------------------------------------
# text readers: devkit lines, text folders


@st.composite
def devkit_inputs(draw):
    if draw(st.integers(0, 7)) == 0:
        return draw(st.binary(max_size=120))
    return maybe_bytes(draw, draw(token_edits(DEVKIT)).encode("utf-8"))


def check_devkit_lines(content):
    """ILSVRC devkit submission lines."""
    with folder() as d:
        result_or_user_error(read_detections, write(os.path.join(d, "sub.txt"), content), small_gt())


test_devkit_lines, test_devkit_lines_slow = fuzz(devkit_inputs(), 500)(check_devkit_lines)


@st.composite
def text_folders(draw):
    base = draw(st.sampled_from([TEXT_DETS, TEXT_GT]))
    files = {}
    for name, text in base.items():
        k = draw(st.integers(0, 5))
        if k == 0:
            continue                                     # file dropped
        files[name] = draw(st.binary(max_size=60)) if k == 1 else maybe_bytes(draw, draw(token_edits(text)).encode())
    if draw(st.booleans()):
        files[draw(st.sampled_from(["3.txt", "sub/1.txt", "x.txt", ".hidden.txt"]))] = draw(token_edits(base["1.txt"]))
    return files


def check_text_folders(files):
    """Folders of per-image text files, as detections and as ground truth."""
    with folder() as d:
        for name, content in files.items():
            os.makedirs(os.path.dirname(os.path.join(d, name)), exist_ok=True)
            write(os.path.join(d, name), content)
        result_or_user_error(read_detections, d, small_gt())
        result_or_user_error(read_detections, d, small_gt(), box_format="xywh")
        result_or_user_error(read_ground_truth, d)


test_text_folders, test_text_folders_slow = fuzz(text_folders(), 300)(check_text_folders)


CLASS_FILE = "n02672831 1 accordion\nn02691156 2 airplane\n"
BLACKLIST = "1 n02672831\n2 2\n"
SPLIT = "a 1\nb 2\n"


@st.composite
def small_text_files(draw):
    base = draw(st.sampled_from([CLASS_FILE, "cat\ndog\n", BLACKLIST, SPLIT]))
    if draw(st.integers(0, 7)) == 0:
        return base, draw(st.binary(max_size=80))
    return base, maybe_bytes(draw, draw(token_edits(base)).encode("utf-8", "surrogatepass"))


def check_small_text_files(value):
    """Class files (plain or map_det.txt), ILSVRC blacklists and split files."""
    from detector.io.datasets.common import read_class_file, read_split_file
    from detector.io.datasets.ilsvrc import read_blacklist, read_split_with_index

    base, content = value
    with folder() as d:
        p = write(os.path.join(d, "f.txt"), content)
        if base in (CLASS_FILE, "cat\ndog\n"):
            result_or_user_error(read_class_file, p)
        elif base == BLACKLIST:
            result_or_user_error(read_blacklist, p, ClassList(["n02672831", "n02691156"], None, [1, 2]))
        else:
            result_or_user_error(read_split_with_index, p)
            result_or_user_error(read_split_file, p)


test_small_text_files, test_small_text_files_slow = fuzz(small_text_files(), 300)(check_small_text_files)


# ---------------------------------------------------------------------------------------------
# VOC XML

XML_TEXTS = ["", "abc", "1e400", "nan", "inf", "-5", "0", "1" * 400, "0x10", " 12 ", "1.5", "\u0663", "&amp;", "x" * 500]


@st.composite
def voc_mutants(draw):
    root = ET.fromstring(VOC)
    for _ in range(draw(st.integers(1, 4))):
        elems = list(root.iter())
        e = elems[draw(st.integers(0, len(elems) - 1))]
        parent = next((p for p in root.iter() if e in list(p)), None)
        op = draw(st.sampled_from(["text", "text", "drop", "dup", "rename", "nest", "child"]))
        if op == "text":
            e.text = draw(st.sampled_from(XML_TEXTS) | st.text(max_size=8))
        elif op == "drop" and parent is not None:
            parent.remove(e)
        elif op == "dup" and parent is not None:
            parent.append(copy.deepcopy(e))
        elif op == "rename":
            e.tag = draw(st.sampled_from(["annotation", "object", "size", "bndbox", "name", "xmin", "x", "width"]))
        elif op == "nest":          # a marker, replaced by deep nesting after serializing
            ET.SubElement(e, "deep")
        elif op == "child":
            ET.SubElement(e, draw(st.sampled_from(["object", "bndbox", "size", "name", "width", "xmin"]))).text = \
                draw(st.sampled_from(XML_TEXTS))
    text = ET.tostring(root, encoding="unicode")
    depth = draw(st.sampled_from([10, 500, 3000, 100_000]))
    text = text.replace("<deep />", "<object>" * depth + "</object>" * depth)
    prefix = draw(st.sampled_from(["", "", "", '<?xml version="1.0"?>\n', '<!DOCTYPE a [<!ENTITY e "x">]>\n',
                                   '<!DOCTYPE annotation SYSTEM "/etc/passwd">\n']))
    return maybe_bytes(draw, (prefix + text).encode("utf-8", "surrogatepass"))


@st.composite
def voc_inputs(draw):
    return draw(st.binary(max_size=200)) if draw(st.integers(0, 9)) == 0 else draw(voc_mutants())


def check_voc(content):
    """One VOC annotation, and a folder of it (+ an image, read when <size> is gone)."""
    with folder() as d:
        p = write(os.path.join(d, "a.xml"), content)
        write(os.path.join(d, "a.jpg"), JPEG)
        result_or_user_error(parse_voc_annotation, p)
        result_or_user_error(read_ground_truth, d)
        result_or_user_error(read_ground_truth, d, classes=["cat", "dog"])


def _jpeg() -> bytes:
    from PIL import Image

    buf = io.BytesIO()
    Image.new("RGB", (64, 48), (10, 200, 30)).save(buf, "JPEG")
    return buf.getvalue()


JPEG = _jpeg()
test_voc, test_voc_slow = fuzz(voc_inputs(), 300)(check_voc)


# ---------------------------------------------------------------------------------------------
# the devkit ground-truth .mat


def _cells(*arrays):
    c = np.empty((1, len(arrays)), dtype=object)
    for i, a in enumerate(arrays):
        c[0, i] = a
    return c


def devkit_mat() -> dict:
    return {"gt_img_ids": np.array([[5, 9]]),
            "gt_obj_labels": _cells(np.array([[1.0, 2.0]]), np.array([[2.0]])),
            "gt_obj_bboxes": _cells(np.array([[1, 21], [1, 21], [10, 40], [10, 40]], float), np.array([[5], [5], [24], [24]], float)),
            "num_pos_per_class": np.array([[1, 2]])}


def mat_values():
    return st.sampled_from([
        np.array([[np.nan]]), np.array([[np.inf, 1]]), np.array([[1e300]]), np.array([[1.5, 2]]), np.array([[-3]]),
        np.zeros((0, 0)), np.array("abc"), np.array([[True, False]]), np.array([[1 + 2j]]), np.array([[5, 5]]),
        np.array([[5, 9, 11]]), np.zeros((3, 2)), np.ones((4, 3)), np.array([[2 ** 62]], np.int64), np.int8(-1),
        _cells(np.array([[1.0]])), _cells(np.array("x"), np.array([[1.0]])), _cells(_cells(np.array([[1.0]])), np.zeros((0, 0))),
        _cells(np.array([[1e15]]), np.array([[3.0]])), {"a": np.array([[1]])}, np.array([[1e15]]),
    ])


@st.composite
def mat_files(draw):
    m = devkit_mat()
    for _ in range(draw(st.integers(1, 3))):
        key = draw(st.sampled_from(sorted(m) + ["gt_obj_thr"]))
        op = draw(st.sampled_from(["replace", "replace", "drop", "cell"]))
        if op == "drop":
            m.pop(key, None)
        elif op == "replace":
            m[key] = draw(mat_values())
        elif op == "cell" and key in m and isinstance(m[key], np.ndarray) and m[key].dtype == object and m[key].size:
            cells = m[key].copy()
            cells[0, draw(st.integers(0, cells.shape[1] - 1))] = draw(mat_values())
            m[key] = cells
    buf = io.BytesIO()
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            scipy.io.savemat(buf, m)
    except Exception:                          # a value savemat itself cannot write
        buf = io.BytesIO()
        scipy.io.savemat(buf, devkit_mat())
    data = buf.getvalue()
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return b"MATLAB 5.0 MAT-file" + draw(st.binary(max_size=200)), True
    return (draw(byte_edits(data)), True) if kind < 4 else (data, False)


def check_devkit_mat(value):
    """The devkit ground-truth cache, without and with a class list. Damaged files go through
    load_mat (scipy in a child process, as read_devkit_gt reads); files savemat wrote are read
    here directly (faster: a fork of this big process costs tens of ms)."""
    content, damaged = value
    with folder() as d:
        p = write(os.path.join(d, "gt.mat"), content)
        if damaged:
            m = result_or_user_error(load_mat, p)
        else:
            status, m = _loadmat_here(p)
            assert status == "ok", m
        if m is not None:
            result_or_user_error(devkit_gt_from_variables, m, p, None)
            result_or_user_error(devkit_gt_from_variables, m, p, ClassList(["a", "b"], None, [1, 2]))


test_devkit_mat, test_devkit_mat_slow = fuzz(mat_files(), 200)(check_devkit_mat)


# ---------------------------------------------------------------------------------------------
# checkpoints


def detector_ckpt() -> dict:
    return {"format_version": 2, "kind": "detector", "detector_kind": "rcnn",
            "config": {"model": {"kind": "rcnn", "arch": "googlenet"}, "test": {"nms_iou": 0.3}},
            "classes": ["cat", "dog"], "members": [{"w": torch.arange(6.0).view(2, 3), "n": torch.tensor(3)}],
            "multibox": None}


def classifier_ckpt() -> dict:
    return {"format_version": 2, "kind": "classifier", "arch": "googlenet", "num_classes": 2, "classes": ["cat", "dog"],
            "input_size": 32, "aux_logits": False, "transform_input": False, "mean": [0.5] * 3, "std": [0.25] * 3,
            "config": {}, "state_dict": {"fc.weight": torch.zeros(2, 4)}, "epoch": 1, "metrics": {"loss": 0.5}}


def ckpt_values():
    return st.sampled_from([None, True, 0, -1, 3, 10 ** 30, 1e308, float("nan"), "", "abc", "2", "detector", "classifier",
                            [], {}, ["cat"], [1, 2], {"w": 1}, {1: torch.zeros(1)}, [{"w": torch.zeros(1)}], [[]],
                            torch.zeros(2), torch.tensor(2), torch.zeros(0, dtype=torch.int8), ("a", "b"), b"x",
                            {"model": {"kind": "fast"}}, {"model": 5}])


@st.composite
def ckpt_files(draw):
    ck = draw(st.sampled_from([detector_ckpt, classifier_ckpt]))()
    for _ in range(draw(st.integers(0, 3))):
        key = draw(st.sampled_from(sorted(ck)))
        op = draw(st.sampled_from(["replace", "replace", "drop", "inner"]))
        if op == "drop":
            ck.pop(key, None)
        elif op == "replace":
            ck[key] = draw(ckpt_values())
        elif op == "inner" and isinstance(ck.get(key), dict) and ck[key]:
            ck[key][draw(st.sampled_from(sorted(map(str, ck[key]))))] = draw(ckpt_values())
        elif op == "inner" and isinstance(ck.get(key), list) and ck[key]:
            ck[key][0] = draw(ckpt_values())
    buf = io.BytesIO()
    torch.save(ck, buf)
    data = buf.getvalue()
    kind = draw(st.integers(0, 9))
    if kind == 0:
        return draw(st.binary(max_size=300))
    if kind == 1:
        return b"PK\x03\x04" + draw(st.binary(max_size=300))
    return draw(byte_edits(data)) if kind < 5 else data


def _ckpt(content, reader):
    with folder() as d:
        result_or_user_error(reader, write(os.path.join(d, "model.pt"), content))


def check_torch_load(content):
    """backbone.io.safe_torch_load on mutated real checkpoints and random bytes."""
    _ckpt(content, safe_torch_load)


def check_detector_checkpoints(content):
    """detector.io.checkpoints.load_detector on mutated real checkpoints."""
    _ckpt(content, load_detector)


def check_classifier_checkpoints(content):
    """detector.io.checkpoints.read_classifier on mutated real checkpoints."""
    _ckpt(content, read_classifier)


test_torch_load, test_torch_load_slow = fuzz(ckpt_files(), 150)(check_torch_load)
test_detector_checkpoints, test_detector_checkpoints_slow = fuzz(ckpt_files(), 150)(check_detector_checkpoints)
test_classifier_checkpoints, test_classifier_checkpoints_slow = fuzz(ckpt_files(), 150)(check_classifier_checkpoints)


# ---------------------------------------------------------------------------------------------
# the bases are valid (so the mutants start from something every reader accepts)


def test_the_unmutated_inputs_are_read():
    gt = small_gt()
    with folder() as d:
        assert read_detections(write(os.path.join(d, "d.json"), json.dumps(DETECTIONS)), gt)[0]["scores"].tolist() == [0.9, 0.25]
        assert len(read_detections(write(os.path.join(d, "r.json"), json.dumps(COCO_RESULTS)), gt)[0]["scores"]) == 2
        assert len(read_detections(write(os.path.join(d, "sub.txt"), DEVKIT), gt)[1]["scores"]) == 1
        assert len(read_ground_truth(write(os.path.join(d, "gt.json"), json.dumps(COCO_GT))).records) == 2
        scipy.io.savemat(os.path.join(d, "gt.mat"), devkit_mat())
        assert len(read_devkit_gt(os.path.join(d, "gt.mat"), None).records) == 2
        assert len(parse_voc_annotation(write(os.path.join(d, "a.xml"), VOC)).objects) == 2
        buf = io.BytesIO()
        torch.save(detector_ckpt(), buf)
        assert load_detector(write(os.path.join(d, "m.pt"), buf.getvalue()))["classes"] == ["cat", "dog"]
        buf = io.BytesIO()
        torch.save(classifier_ckpt(), buf)
        assert read_classifier(write(os.path.join(d, "c.pt"), buf.getvalue()))["num_classes"] == 2
    for files in (TEXT_DETS, TEXT_GT):
        with folder() as d:
            for name, text in files.items():
                write(os.path.join(d, name), text)
            if files is TEXT_DETS:
                assert len(read_detections(d, gt)[0]["scores"]) == 2
            else:
                assert len(read_ground_truth(d).records) == 2


# --- inverted boxes (h1) ---
# Valid detections of small_gt() with corners swapped (x2 < x1, y2 < y1, or both), in every
# detections format: each reader gives a result holding every detection as it was (inverted ones
# stay inverted: eval scores them as the devkits and pycocotools do), with at most InputWarnings
# (one InvertedBoxWarning when a box is inverted), never an error; the protocols score the result;
# under --strict's filter the InvertedBoxWarning is the error.

import math  # noqa: E402

from detector.io.datasets import ground_truth  # noqa: E402
from detector.io.detections import InvertedBoxWarning  # noqa: E402
from eval import evaluate  # noqa: E402

INVERTED_FORMATS = ["json", "coco", "devkit", "txt", "txt-xywh"]


@st.composite
def inverted_detections(draw):
    """(format, [(image 1|2, label 1|2, score, [x1, y1, x2, y2] 0-based, perhaps swapped)])."""
    dets = []
    for _ in range(draw(st.integers(1, 6))):
        half = st.integers(0, 160).map(lambda v: v / 2)
        x, y = draw(half), draw(half)
        w, h = draw(st.integers(1, 60)) / 2, draw(st.integers(1, 60)) / 2
        box = [x, y, x + w, y + h]
        swap = draw(st.sampled_from(["", "x", "y", "xy"]))
        if "x" in swap:
            box[0], box[2] = box[2], box[0]
        if "y" in swap:
            box[1], box[3] = box[3], box[1]
        dets.append((draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, 2])), draw(st.integers(1, 99)) / 100, box))
    return draw(st.sampled_from(INVERTED_FORMATS)), dets


def _write_inverted(d: str, fmt: str, dets) -> str:
    names = ["cat", "dog"]
    if fmt == "json":
        items = [{"image": str(i), "detections": [{"box": b, "score": s, "label": names[c - 1]}
                                                  for im, c, s, b in dets if im == i]} for i in (1, 2)]
        return write(os.path.join(d, "d.json"), json.dumps(items))
    if fmt == "coco":
        return write(os.path.join(d, "r.json"), json.dumps([
            {"image_id": im, "category_id": c, "score": s, "bbox": [b[0], b[1], b[2] - b[0], b[3] - b[1]]}
            for im, c, s, b in dets]))
    if fmt == "devkit":   # 1-based inclusive: xmin = x1 + 1, xmax = x2
        return write(os.path.join(d, "sub.txt"), "".join(
            f"{im} {c} {s!r} {b[0] + 1!r} {b[1] + 1!r} {b[2]!r} {b[3]!r}\n" for im, c, s, b in dets))
    folder_ = os.path.join(d, "dets")
    os.makedirs(folder_)
    for im, c, s, b in dets:
        if fmt == "txt":
            tail = f"{b[2]!r} {b[3]!r}"
        else:             # xywh: the right edge left + width is inclusive, so width = x2 - x1 - 1
            tail = f"{b[2] - b[0] - 1!r} {b[3] - b[1] - 1!r}"
        with open(os.path.join(folder_, f"{im}.txt"), "a", encoding="utf-8") as f:
            f.write(f"{names[c - 1]} {s!r} {b[0] + 1!r} {b[1] + 1!r} {tail}\n")
    return folder_


def check_inverted_boxes(value):
    """Detections with swapped corners, in every format: read, kept, one warning, scored."""
    fmt, dets = value
    gt = small_gt()
    box_format = "xywh" if fmt == "txt-xywh" else "xyxy"
    want_inverted = sorted(bool(b[2] < b[0] or b[3] < b[1]) for _, _, _, b in dets)
    with folder() as d:
        path = _write_inverted(d, fmt, dets)
        with warnings.catch_warnings(record=True) as seen:
            warnings.simplefilter("always")
            warnings.simplefilter("error", RuntimeWarning)
            got = result_or_user_error(read_detections, path, gt, box_format)
        assert got is not None, (fmt, dets)                  # valid input: never an error
        assert all(issubclass(w.category, InputWarning) for w in seen), [str(w.message) for w in seen]
        assert sum(w.category is InvertedBoxWarning for w in seen) == int(any(want_inverted)), [str(w.message) for w in seen]
        boxes = np.concatenate([r["boxes"] for r in got])
        assert sorted(((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1])).tolist()) == want_inverted
        for protocol in ("voc", "ilsvrc"):
            r = evaluate(protocol, ground_truth(gt), got, len(gt.classes))
            assert all(math.isnan(a) or 0 <= a <= 1 for a in r["AP"])
        with warnings.catch_warnings():                      # --strict
            warnings.simplefilter("error", InputWarning)
            try:
                read_detections(path, gt, box_format)
                assert not any(want_inverted)
            except InvertedBoxWarning as e:
                assert any(want_inverted) and "inverted" in str(e) and "\n" not in str(e)


test_inverted_boxes, test_inverted_boxes_slow = fuzz(inverted_detections(), 150)(check_inverted_boxes)


# --- BOMs and duplicate lines (h3) ---
# A UTF-8 BOM (what Windows Notepad writes as "UTF-8") prepended to any text a reader takes
# changes nothing: the same records, the same warnings, the same refusal. A split or label line
# given twice is read once, with at most one counted InputWarning per file.

from backbone.io import read_yaml  # noqa: E402
from detector.io.datasets.common import read_class_file, read_split_file  # noqa: E402
from detector.io.datasets.ilsvrc import read_blacklist, read_split_with_index  # noqa: E402
from detector.io.datasets.yolo import _images_of, _parse_labels  # noqa: E402

BOM = "\ufeff".encode("utf-8")
YOLO_LABELS = "0 0.5 0.5 0.2 0.2\n1 0.1 0.2 0.05 0.1\n2 0.3 0.3 0.1 0.1 0.4 0.4 0.2 0.5\n"
DATA_YAML = "path: .\ntrain: images\nnames: [cat, dog]\n"


def _norm(x):
    """A reader's result as plain data (arrays as lists, dataclasses as dicts), for repr()."""
    if isinstance(x, np.ndarray):
        return ("array", x.dtype.str, x.tolist())
    if hasattr(x, "__dataclass_fields__"):
        return (type(x).__name__, _norm(vars(x)))
    if isinstance(x, dict):
        return sorted((repr(k), _norm(v)) for k, v in x.items())
    if isinstance(x, (list, tuple)):
        return [_norm(v) for v in x]
    if isinstance(x, (set, frozenset)):
        return sorted(repr(v) for v in x)
    return x


def outcome(fn, *args, one_line: bool = True, **kwargs):
    """(repr of the result or "UserError", the warnings' messages); any warning that is not an
    InputWarning, any exception other than UserError (and with ``one_line`` an error message of
    more than one line) fails the test."""
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        warnings.simplefilter("error", RuntimeWarning)
        try:
            got = repr(_norm(fn(*args, **kwargs)))
        except UserError as e:
            assert str(e) and (not one_line or "\n" not in str(e)), repr(str(e))
            got = "UserError"
    others = [w for w in seen if not issubclass(w.category, InputWarning)]
    assert not others, [str(w.message) for w in others]
    return got, [str(w.message) for w in seen]


def _text_readers():
    """(name, base text, reader of a path) of every text reader of dataset files."""
    gt = small_gt()
    return [
        ("class file", CLASS_FILE, read_class_file), ("class file", "cat\ndog\n", read_class_file),
        ("split file", SPLIT, read_split_file), ("split file", SPLIT, read_split_with_index),
        ("blacklist", BLACKLIST, lambda p: read_blacklist(p, ClassList(["n02672831", "n02691156"], None, [1, 2]))),
        ("yolo labels", YOLO_LABELS, lambda p: _parse_labels(p, 3, "data.yaml", 640, 480)),
        ("image list", "a.jpg\nsub/b.png\n", lambda p: _images_of(p, "data.yaml")),
        ("data.yaml", DATA_YAML, lambda p: read_yaml(p, "data.yaml")),
        ("VOC XML", VOC, parse_voc_annotation),
        ("COCO", json.dumps(COCO_GT), read_ground_truth),
        ("detections", json.dumps(DETECTIONS), lambda p: read_detections(p, gt)),
        ("COCO results", json.dumps(COCO_RESULTS), lambda p: read_detections(p, gt)),
    ]


@st.composite
def bom_inputs(draw):
    """(reader index, text): a reader's base text with tokens/lines or JSON values mutated."""
    readers = _text_readers()
    k = draw(st.integers(0, len(readers) - 1))
    name, base, _ = readers[k]
    if name in ("COCO", "detections", "COCO results"):
        text = draw(json_mutants(json.loads(base))) if draw(st.booleans()) else base
    elif name == "VOC XML":
        text = base
    else:
        text = draw(token_edits(base)) if draw(st.booleans()) else base
    return k, text


def check_bom_changes_nothing(value):
    k, text = value
    with folder() as d:
        name, _, reader = _text_readers()[k]
        p = os.path.join(d, "f.json" if name in ("COCO", "detections", "COCO results") else
                         "f.xml" if name == "VOC XML" else "f.yaml" if name == "data.yaml" else "f.txt")
        data = text.encode("utf-8", "surrogatepass")
        # read_yaml's message for a control character (yaml's ReaderError) is two lines today:
        # the YAML reader's own fuzzing owns that; here it is the BOM that must change nothing
        one = name != "data.yaml"
        without = outcome(reader, write(p, data), one_line=one)
        with_bom = outcome(reader, write(p, BOM + data), one_line=one)
    assert with_bom == without, (name, text)


test_bom_changes_nothing, test_bom_changes_nothing_slow = fuzz(bom_inputs(), 200)(check_bom_changes_nothing)


NAMES = st.from_regex(r"[A-Za-z0-9_]{1,8}", fullmatch=True)


@st.composite
def repeated_lines(draw):
    """(kind, unique lines, the same lines with some repeated later)."""
    kind = draw(st.sampled_from(["split file", "ilsvrc split", "yolo labels", "image list"]))
    if kind == "yolo labels":
        coord = st.integers(0, 10 ** 6).map(lambda v: f"{v / 10 ** 6:.6f}")
        line = st.tuples(st.integers(0, 2), coord, coord, coord, coord).map(lambda t: " ".join(map(str, t)))
    elif kind == "ilsvrc split":
        line = NAMES.map(lambda n: f"{n} {sum(map(ord, n))}")
    elif kind == "image list":
        line = NAMES.map(lambda n: f"images/{n}.jpg")
    else:
        line = NAMES
    lines = draw(st.lists(line, min_size=1, max_size=8, unique_by=lambda ln: ln.split()[0] if kind != "yolo labels"
                          else ln))
    out = list(lines)
    for _ in range(draw(st.integers(0, 4))):
        i = draw(st.integers(0, len(out) - 1))
        out.insert(draw(st.integers(i + 1, len(out))), out[i])   # a line given again, later
    return kind, lines, out


def check_repeated_lines_read_once(value):
    kind, lines, repeated = value
    readers = {"split file": read_split_file, "ilsvrc split": read_split_with_index,
               "image list": lambda p: _images_of(p, "data.yaml"),
               "yolo labels": lambda p: _parse_labels(p, 3, "data.yaml", 640, 480, tally)}
    from backbone.errors import Tally
    with folder() as d:
        p = os.path.join(d, "f.txt")
        tally = Tally("dataset", "repeated label line(s) dropped", DatasetWarning)
        once = outcome(readers[kind], write(p, "".join(ln + "\n" for ln in lines)))
        assert tally.count == 0 and once[1] == []
        twice = outcome(readers[kind], write(p, "".join(ln + "\n" for ln in repeated)))
    n = len(repeated) - len(lines)
    assert twice[0] == once[0], (kind, repeated)
    if kind == "yolo labels":
        assert tally.count == n and twice[1] == []
    else:
        assert len(twice[1]) == (1 if n else 0), twice[1]
        assert not n or f"{n} line(s) repeat" in twice[1][0]


test_repeated_lines_read_once, test_repeated_lines_read_once_slow = fuzz(repeated_lines(), 150)(
    check_repeated_lines_read_once)


# --- damaged proposal cache (h4) ---
# detector.proposal_cache reads back its own .npz files; one damaged by a full disk, a killed copy
# or an edit (NaN boxes, truncated bytes, another dtype or shape) is recomputed: the reader
# returns finite (N, 4) float32 boxes or None (recompute), never another exception


@st.composite
def proposal_cache_files(draw):
    dtype = draw(st.sampled_from([np.float32, np.float64, np.float16, np.int64, np.uint8, np.bool_,
                                  np.complex64, "U3"]))
    shape = draw(st.sampled_from([(0, 4), (3, 4), (2, 5), (8,), (), (1, 4, 1)]))
    values = draw(st.lists(st.sampled_from([0.0, 1.5, 640.0, -3.0, np.nan, np.inf, -np.inf, 1e300]),
                           min_size=1, max_size=4))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # building the garbage (NaN cast to int, ...) is not the reader's
        boxes = np.resize(np.array(values), shape).astype(dtype)
    seconds = draw(st.sampled_from([np.float64(0.5), np.float64(np.nan), np.zeros(3), np.array("x")]))
    parts = {"boxes": boxes, "seconds": seconds}
    if draw(st.booleans()):
        parts.pop(draw(st.sampled_from(["boxes", "seconds"])))
    buf = io.BytesIO()
    np.savez(buf, **parts)
    data = buf.getvalue()
    kind = draw(st.integers(0, 5))
    if kind == 0:
        return draw(st.binary(max_size=300))
    if kind == 1:
        return data[: draw(st.integers(0, len(data)))]   # truncated (a full disk)
    return draw(byte_edits(data)) if kind == 2 else data


def check_proposal_cache(content):
    """detector.proposal_cache._load on mutated cache files: finite (N, 4) boxes or None."""
    from detector.proposal_cache import _load

    with folder() as d, warnings.catch_warnings():
        warnings.simplefilter("error", RuntimeWarning)
        warnings.simplefilter("error", ResourceWarning)   # an unclosed file of a damaged zip
        damaged = {}
        got = _load(write(os.path.join(d, "x.npz"), content), damaged)
        if got is None:
            return
        boxes, seconds = got
        assert not damaged
        assert boxes.dtype == np.float32 and boxes.ndim == 2 and boxes.shape[1] == 4 and np.isfinite(boxes).all()
        assert isinstance(seconds, float) and np.isfinite(seconds)


test_proposal_cache, test_proposal_cache_slow = fuzz(proposal_cache_files(), 200)(check_proposal_cache)


# --- annotated sizes (h2) ---
# A VOC dataset whose <size> is mutated (any number, the stored or shown size of an
# EXIF-rotated photo, missing): read with at most InputWarnings (the image's own size wins, one
# counted warning), or refused with one line; the record always has the image's size.


def _size_dataset(d, size_xml, orientation):
    os.makedirs(os.path.join(d, "Annotations"))
    os.makedirs(os.path.join(d, "JPEGImages"))
    os.makedirs(os.path.join(d, "ImageSets", "Main"))
    write(os.path.join(d, "ImageSets", "Main", "train.txt"), "a\n")
    ex = Image.Exif()
    ex[0x0112] = orientation
    Image.new("RGB", (64, 48), (90, 120, 150)).save(os.path.join(d, "JPEGImages", "a.jpg"), exif=ex)
    write(os.path.join(d, "Annotations", "a.xml"), VOC.replace(
        "<size><width>64</width><height>48</height><depth>3</depth></size>", size_xml))


_SIDE = st.one_of(st.sampled_from(["64", "48", "0", "-1", "32", "128", "64.4", "1e3", "2147483648", "", "x"]),
                  st.integers(-10, 5000).map(str))


@st.composite
def voc_sizes(draw):
    w, h = draw(_SIDE), draw(_SIDE)
    size = draw(st.sampled_from([f"<size><width>{w}</width><height>{h}</height></size>", f"<size><width>{w}</width></size>",
                                 "", "<size/>"]))
    return size, draw(st.integers(1, 8))


def check_mutated_voc_size(value):
    """A VOC XML whose <size> is mutated: read with InputWarnings only, the record the image's size."""
    size_xml, orientation = value
    old = os.environ.get("GOOGLENET_DET_NO_ANNOTATION_INDEX")
    os.environ["GOOGLENET_DET_NO_ANNOTATION_INDEX"] = "1"   # no index files for throw-away folders
    try:
        with folder() as d:
            _size_dataset(d, size_xml, orientation)
            with warnings.catch_warnings(record=True) as seen:
                warnings.simplefilter("always")
                try:
                    ds = read_voc(d, "train", ClassList(["cat", "dog"]))
                except UserError as e:
                    assert str(e) and "\n" not in str(e)
                    ds = None
            assert all(issubclass(w.category, InputWarning) for w in seen), [w.category for w in seen]
            if ds is not None:
                r = ds.records[0]
                assert (r.width, r.height) == image_size(r.path)
                assert np.all(r.boxes[:, 2] <= r.width) and np.all(r.boxes[:, 3] <= r.height)
                assert np.all(r.boxes >= 0)
    finally:
        if old is None:
            os.environ.pop("GOOGLENET_DET_NO_ANNOTATION_INDEX", None)
        else:
            os.environ["GOOGLENET_DET_NO_ANNOTATION_INDEX"] = old


test_mutated_voc_size, test_mutated_voc_size_slow = fuzz(voc_sizes(), 30, 300)(check_mutated_voc_size)
