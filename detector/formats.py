"""Ground-truth and detection files for ``eval-map``: readers, the format recognised from content.

Ground truth (:func:`read_ground_truth`) -> a :class:`Dataset`:

- a folder of VOC ``*.xml`` (all of them; image id = path below the folder without ``.xml``),
  or one ``.xml`` file;
- a split file of a dataset layout: ``<root>/ImageSets/Main/<split>.txt`` (PASCAL VOC) or
  ``<root>/ImageSets/DET/<split>.txt`` (ILSVRC DET, with ``--blacklist``);
- a COCO instances JSON;
- the ILSVRC devkit ground-truth cache ``.mat`` (``gt_img_ids``, ``gt_obj_labels``,
  ``gt_obj_bboxes`` 4 x n 1-based inclusive, ``gt_obj_thr``, ``num_pos_per_class``);
- a folder of text files, one per image: lines ``class left top right bottom [difficult]``.

Detections (:func:`read_detections`) -> per ground-truth image ``{"boxes", "scores", "labels"}``
arrays, aligned with the dataset's records, ready for :func:`eval.evaluate`:

- the project's detections JSON (DESIGN.md): ``[{"image": path, "detections": [{"box": [x1, y1,
  x2, y2], "score": s, "label": name}]}]``, boxes in our convention (0-based, x2 exclusive);
  ``image`` matches a record by path, else by image id, else by file stem;
- COCO results JSON ``[{"image_id", "category_id", "bbox": [x, y, w, h], "score"}]``;
- ILSVRC devkit submission lines ``image_index class_id confidence xmin ymin xmax ymax``
  (1-based inclusive; ``image_index`` is the split file's index column, or the ``.mat``'s ids);
- a folder of text files, one per image: lines ``class confidence left top right bottom``.

Text files hold inclusive pixels read as VOC's (x1 = left - 1, x2 = right); with
``box_format="xywh"`` the last numbers are ``left top width height`` and the right edge
``left + width`` is an inclusive pixel (as Object-Detection-Metrics reads them). An empty
detections file means no detections (AP 0), not an error. Every other defect raises
:class:`UserError` naming the file and line (or entry): malformed XML/JSON, an image the ground
truth lacks, an unknown class name or id, NaN/inf or negative-size boxes.

Writers: :func:`write_detections_json` (and :func:`detections_to_items` from arrays),
:func:`write_devkit_submission`, :func:`write_coco_results`.
"""

from __future__ import annotations

import glob
import json
import math
import os

import numpy as np

from backbone.errors import UserError

from .datasets.coco import coco_from_dict, load_json
from .datasets.common import BoxCleaner, ClassList, read_class_file
from .datasets.ilsvrc import read_blacklist, read_ilsvrc
from .datasets.records import Dataset, ImageRecord
from .datasets.voc import annotation_to_record, classes_found, find_image, parse_voc_annotation, read_voc

BOX_FORMATS = ("xyxy", "xywh")


# ---------------------------------------------------------------------------------------------
# content sniffing


def _head(path: str, n: int = 4096) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(n)
    except OSError as e:
        raise UserError(f"{path}: cannot read ({e.strerror or e})") from None


def sniff(path: str) -> str:
    """What a file or folder holds: ``xml-folder``, ``text-folder``, ``xml``, ``json``, ``mat``,
    ``split`` (a dataset split file), ``devkit`` (submission lines), ``empty``, ``text``."""
    if os.path.isdir(path):
        if glob.glob(os.path.join(glob.escape(path), "**", "*.xml"), recursive=True):
            return "xml-folder"
        if glob.glob(os.path.join(glob.escape(path), "**", "*.txt"), recursive=True):
            return "text-folder"
        raise UserError(f"{path}: a folder with neither *.xml nor *.txt files")
    if not os.path.exists(path):
        raise UserError(f"{path}: no such file or folder")
    head = _head(path)
    if head.startswith(b"MATLAB"):
        return "mat"
    s = head.lstrip()
    if not s:
        return "empty"
    if s[:1] in (b"[", b"{"):
        return "json"
    if s[:1] == b"<":
        return "xml"
    parent = os.path.basename(os.path.dirname(os.path.abspath(path)))
    if os.path.basename(os.path.dirname(os.path.dirname(os.path.abspath(path)))) == "ImageSets" and parent in ("Main", "DET"):
        return "split"
    first = s.split(b"\n", 1)[0].split()
    if len(first) == 7 and all(_is_number(t) for t in first):
        return "devkit"
    return "text"


def _is_number(t) -> bool:
    try:
        float(t)
        return True
    except ValueError:
        return False


def _classes(classes) -> ClassList | None:
    if classes is None or isinstance(classes, ClassList):
        return classes
    if isinstance(classes, str):
        return read_class_file(classes)
    return ClassList([str(c) for c in classes])


# ---------------------------------------------------------------------------------------------
# ground truth


def read_ground_truth(path: str, classes=None, box_format: str = "xyxy", blacklist: str | None = None) -> Dataset:
    """Read ground truth from ``path`` (format recognised from content, see the module doc).

    ``classes``: a class file path, a list of names, a :class:`ClassList`, or None (found in the
    data). ``blacklist``: ILSVRC blacklist file (lines ``image_index WNID``).
    """
    if box_format not in BOX_FORMATS:
        raise UserError(f"box format {box_format!r}: use xyxy or xywh")
    path = os.path.abspath(os.path.expanduser(path))
    cl = _classes(classes)
    kind = sniff(path)
    if kind == "xml-folder":
        ds = read_xml_folder(path, cl)
    elif kind == "xml":
        ds = read_xml_files([path], os.path.dirname(path), cl)
    elif kind == "split":
        split = os.path.splitext(os.path.basename(path))[0]
        root = os.path.dirname(os.path.dirname(os.path.dirname(path)))
        if os.path.basename(os.path.dirname(path)) == "DET":
            ds = read_ilsvrc(root, split, cl, blacklist)
            blacklist = None
        else:
            ds = read_voc(root, split, cl)
    elif kind == "json":
        ds = coco_from_dict(load_json(path, "ground truth"), path, cl)
    elif kind == "mat":
        ds = read_devkit_gt(path, cl)
    elif kind == "text-folder":
        ds = read_text_ground_truth(path, cl, box_format)
    elif kind == "empty":
        raise UserError(f"ground truth {path}: empty file")
    else:
        raise UserError(f"ground truth {path}: not a format eval-map reads (VOC XML, COCO JSON, "
                        f"devkit .mat, a split file under ImageSets/, or a folder of text files)")
    if blacklist:
        apply_blacklist(ds, blacklist)
    return ds


def apply_blacklist(ds: Dataset, path: str) -> None:
    """Set ``record.blacklist`` from a blacklist file (image index = devkit index, else position + 1)."""
    cl = ClassList(ds.classes, None, ds.class_ids)
    black = read_blacklist(path, cl)
    for i, r in enumerate(ds.records):
        idx = r.devkit_index if r.devkit_index is not None else i + 1
        r.blacklist = frozenset(black.get(idx, ()))


def read_xml_files(paths: list[str], base: str, classes: ClassList | None) -> Dataset:
    anns = [parse_voc_annotation(p) for p in paths]
    if classes is None:
        classes = classes_found(anns)
    index = {n: i + 1 for i, n in enumerate(classes.names)}
    cleaner = BoxCleaner(f"ground truth {base}", one_based=True)
    records = []
    for ann in anns:
        image_id = os.path.relpath(ann.path, base)[:-4].replace(os.sep, "/")
        folder = os.path.dirname(ann.path)
        img = find_image(folder, os.path.basename(image_id), ann.filename)
        if img is None:  # VOC layout: Annotations/ beside JPEGImages/
            img = find_image(os.path.join(os.path.dirname(folder), "JPEGImages"), os.path.basename(image_id), ann.filename)
        records.append(annotation_to_record(ann, image_id, img, index, cleaner))
    cleaner.report()
    return Dataset(classes=list(classes.names), records=records, root=base)


def read_xml_folder(path: str, classes: ClassList | None) -> Dataset:
    files = sorted(glob.glob(os.path.join(glob.escape(path), "**", "*.xml"), recursive=True))
    return read_xml_files(files, path, classes)


def _text_files(folder: str) -> dict[str, str]:
    files = sorted(glob.glob(os.path.join(glob.escape(folder), "**", "*.txt"), recursive=True))
    return {os.path.relpath(p, folder)[:-4].replace(os.sep, "/"): p for p in files}


def _read_lines(path: str):
    try:
        with open(path, encoding="utf-8") as f:
            return [(n, ln.split()) for n, ln in enumerate(f, 1) if ln.strip()]
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read ({e})") from None


def _numbers(tokens, path, n, what):
    try:
        v = [float(t) for t in tokens]
    except ValueError:
        raise UserError(f"{path} line {n}: expected {what}, got {' '.join(tokens)!r}") from None
    if not all(math.isfinite(x) for x in v):
        raise UserError(f"{path} line {n}: a number is NaN or infinite ({' '.join(tokens)})")
    return v


def _file_box(v, box_format):
    """left, top, right|w, bottom|h (inclusive pixels) -> xmin, ymin, xmax, ymax as in a VOC file."""
    l, t, a, b = v
    return (l, t, l + a, t + b) if box_format == "xywh" else (l, t, a, b)


def read_text_ground_truth(folder: str, classes: ClassList | None, box_format: str = "xyxy") -> Dataset:
    """One text file per image, lines ``class left top right bottom [difficult]``."""
    rows = {}
    for image_id, p in _text_files(folder).items():
        objs = []
        for n, tok in _read_lines(p):
            diff = False
            if len(tok) >= 6 and tok[-1].lower() == "difficult":
                diff, tok = True, tok[:-1]
            elif len(tok) >= 7 and tok[-1] in ("0", "1") and all(_is_number(t) for t in tok[-5:]):
                diff, tok = tok[-1] == "1", tok[:-1]
            if len(tok) < 5:
                raise UserError(f"{p} line {n}: expected `class left top right bottom [difficult]`, got {' '.join(tok)!r}")
            v = _numbers(tok[-4:], p, n, "`class left top right bottom [difficult]`")
            objs.append((" ".join(tok[:-4]), _file_box(v, box_format), diff, n))
        rows[image_id] = (p, objs)
    if classes is None:
        classes = ClassList(sorted({o[0] for _, objs in rows.values() for o in objs}))
    index = {c: i + 1 for i, c in enumerate(classes.names)}
    cleaner = BoxCleaner(f"ground truth {folder}", one_based=True)
    records = []
    for image_id, (p, objs) in rows.items():
        for name, _, _, n in objs:
            if name not in index:
                raise UserError(f"{p} line {n}: unknown class {name!r}")
        file_boxes = np.array([o[1] for o in objs], np.float64).reshape(-1, 4)
        boxes, keep = cleaner(file_boxes, 0, 0, os.path.basename(p))
        records.append(ImageRecord(image_id=image_id, path="", width=0, height=0, boxes=boxes,
                                   labels=np.array([index[o[0]] for o in objs], np.int64)[keep],
                                   difficult=np.array([o[2] for o in objs], bool)[keep]))
    cleaner.report()
    return Dataset(classes=list(classes.names), records=records, root=folder)


def _id_list(classes: ClassList) -> list[int]:
    return list(classes.ids) if classes.ids else list(range(1, len(classes.names) + 1))


def read_devkit_gt(path: str, classes: ClassList | None) -> Dataset:
    """The ILSVRC devkit's ground-truth cache ``.mat`` (scipy.io)."""
    import scipy.io

    try:
        m = scipy.io.loadmat(path)
    except Exception as e:  # scipy raises several types for corrupt files
        raise UserError(f"{path}: not a readable MATLAB file ({e})") from None
    need = ("gt_img_ids", "gt_obj_labels", "gt_obj_bboxes")
    for k in need:
        if k not in m:
            raise UserError(f"{path}: no variable {k!r} (an ILSVRC devkit ground-truth cache has {', '.join(need)})")
    ids = np.asarray(m["gt_img_ids"]).reshape(-1).astype(np.int64)
    labels = np.asarray(m["gt_obj_labels"], dtype=object).reshape(-1)
    bboxes = np.asarray(m["gt_obj_bboxes"], dtype=object).reshape(-1)
    if not (len(ids) == len(labels) == len(bboxes)):
        raise UserError(f"{path}: gt_img_ids, gt_obj_labels, gt_obj_bboxes differ in length")
    if classes is None:
        C = int(np.asarray(m["num_pos_per_class"]).size) if "num_pos_per_class" in m else 0
        C = max(C, max((int(np.max(l)) for l in labels if np.size(l)), default=0))
        classes = ClassList([str(c) for c in range(1, C + 1)], None, list(range(1, C + 1)))
    id_to_label = ({c: i + 1 for i, c in enumerate(classes.ids)} if classes.ids
                   else {i + 1: i + 1 for i in range(len(classes.names))})
    cleaner = BoxCleaner(f"ground truth {path}", one_based=True)
    records = []
    for i in range(len(ids)):
        lab = np.asarray(labels[i], dtype=np.float64).reshape(-1).astype(np.int64)
        box = np.asarray(bboxes[i], dtype=np.float64)
        box = box.reshape(4, -1).T if box.size else np.zeros((0, 4))
        if len(box) != len(lab):
            raise UserError(f"{path}: image {ids[i]} has {len(lab)} labels but {len(box)} boxes")
        bad = [c for c in lab.tolist() if c not in id_to_label]
        if bad:
            raise UserError(f"{path}: image {ids[i]}: unknown class id {bad[0]}")
        if not np.isfinite(box).all():
            raise UserError(f"{path}: image {ids[i]}: a box is NaN or infinite")
        b, keep = cleaner(box, 0, 0, f"image {ids[i]}")
        records.append(ImageRecord(image_id=str(ids[i]), path="", width=0, height=0, boxes=b,
                                   labels=np.array([id_to_label[c] for c in lab.tolist()], np.int64)[keep],
                                   difficult=np.zeros(int(keep.sum()), bool), devkit_index=int(ids[i])))
    cleaner.report()
    if "num_pos_per_class" in m:   # the devkit's own counts: say so when ours differ (dropped boxes)
        want = np.asarray(m["num_pos_per_class"], np.float64).reshape(-1)
        have = np.bincount(np.concatenate([r.labels for r in records] + [np.zeros(0, np.int64)]),
                           minlength=len(classes.names) + 1)[1:]
        if len(want) == len(have) and not np.array_equal(want, have):
            k = int(np.flatnonzero(want != have)[0])
            import warnings

            from .datasets.common import DatasetWarning
            warnings.warn(f"ground truth {path}: positives per class differ from its num_pos_per_class "
                          f"(e.g. class id {_id_list(classes)[k]}: {int(have[k])} boxes read, the file says "
                          f"{int(want[k])}); degenerate boxes are dropped", DatasetWarning, stacklevel=2)
    return Dataset(classes=list(classes.names), records=records, root=os.path.dirname(path),
                   class_ids=_id_list(classes), display_names=classes.display)


# ---------------------------------------------------------------------------------------------
# detections


class _Images:
    """Find a ground-truth record from the ways detection files name images."""

    def __init__(self, gt: Dataset):
        self.by_id = {r.image_id: i for i, r in enumerate(gt.records)}
        self.by_path = {os.path.abspath(r.path): i for i, r in enumerate(gt.records) if r.path}
        stems: dict[str, list[int]] = {}
        for i, r in enumerate(gt.records):
            for s in {os.path.splitext(os.path.basename(r.path))[0] if r.path else None,
                      r.image_id.rsplit("/", 1)[-1]}:
                if s:
                    stems.setdefault(s, []).append(i)
        self.by_stem = {s: v[0] for s, v in stems.items() if len(set(v)) == 1}
        self.by_index = {(r.devkit_index if r.devkit_index is not None else i + 1): i for i, r in enumerate(gt.records)}

    def find(self, name: str, base: str = "") -> int | None:
        if name in self.by_id:
            return self.by_id[name]
        for p in (name, os.path.join(base, name)):
            i = self.by_path.get(os.path.abspath(os.path.expanduser(p)))
            if i is not None:
                return i
        return self.by_stem.get(os.path.splitext(os.path.basename(name))[0])


def _group(n_images: int, img: np.ndarray, boxes: np.ndarray, scores: np.ndarray, labels: np.ndarray) -> list[dict]:
    """Flat detections -> one dict per image (input order kept within an image)."""
    o = np.argsort(img, kind="stable")
    bounds = np.searchsorted(img[o], np.arange(n_images + 1))
    out = []
    for i in range(n_images):
        s = o[bounds[i]:bounds[i + 1]]
        out.append({"boxes": boxes[s], "scores": scores[s], "labels": labels[s]})
    return out


def _check_det_boxes(boxes: np.ndarray, scores: np.ndarray, where) -> None:
    """NaN/inf or negative-size boxes raise, naming ``where(i)`` (file and line/entry)."""
    bad = np.flatnonzero(~np.isfinite(boxes).all(axis=1) | ~np.isfinite(scores))
    if bad.size:
        raise UserError(f"{where(bad[0])}: NaN or infinite number in box {boxes[bad[0]].tolist()} / score {scores[bad[0]]}")
    bad = np.flatnonzero((boxes[:, 2] < boxes[:, 0]) | (boxes[:, 3] < boxes[:, 1]))
    if bad.size:
        raise UserError(f"{where(bad[0])}: box {boxes[bad[0]].tolist()} has a negative size "
                        f"(is the box format right? --box-format xyxy|xywh)")


def read_detections(path: str, gt: Dataset, box_format: str = "xyxy") -> list[dict]:
    """Detections from ``path`` (format recognised from content), one dict per ``gt`` record."""
    if box_format not in BOX_FORMATS:
        raise UserError(f"box format {box_format!r}: use xyxy or xywh")
    path = os.path.abspath(os.path.expanduser(path))
    if os.path.isdir(path) and not any(os.scandir(path)):
        kind = "empty"            # an empty folder of per-image files: no detections, AP 0
    else:
        kind = sniff(path)
    if kind == "empty":
        n = len(gt.records)
        return _group(n, np.zeros(0, np.int64), np.zeros((0, 4)), np.zeros(0), np.zeros(0, np.int64))
    if kind == "json":
        data = load_json(path, "detections")
        if isinstance(data, list) and data and isinstance(data[0], dict) and "image_id" in data[0]:
            return read_coco_results(data, path, gt)
        return items_to_detections(validate_items(data, path), path, gt)
    if kind == "devkit":
        return read_devkit_submission(path, gt)
    if kind == "text-folder":
        return read_text_detections(path, gt, box_format)
    raise UserError(f"detections {path}: not a format eval-map reads (detections JSON, COCO results JSON, "
                    f"devkit submission lines, or a folder of text files)")


def validate_items(data, path: str) -> list[dict]:
    """Check the shape of the project's detections JSON; errors name the entry."""
    if not isinstance(data, list):
        raise UserError(f"{path}: expected a list of {{\"image\": ..., \"detections\": [...]}} objects")
    for k, item in enumerate(data):
        if not isinstance(item, dict) or "image" not in item or not isinstance(item.get("detections", []), list):
            raise UserError(f"{path}: entry #{k} is not {{\"image\": path, \"detections\": [...]}}")
        for j, d in enumerate(item.get("detections", [])):
            if not isinstance(d, dict) or not {"box", "score", "label"} <= set(d):
                raise UserError(f"{path}: entry #{k} ({item['image']}) detection #{j} lacks box/score/label")
            if not isinstance(d["box"], list) or len(d["box"]) != 4:
                raise UserError(f"{path}: entry #{k} ({item['image']}) detection #{j}: box is not 4 numbers")
    return data


def items_to_detections(items: list[dict], path: str, gt: Dataset) -> list[dict]:
    """The project's detections JSON objects -> per-record arrays (labels by name or 1..C)."""
    images = _Images(gt)
    index = {c: i + 1 for i, c in enumerate(gt.classes)}
    base = os.path.dirname(path)
    img, boxes, scores, labels, where = [], [], [], [], []
    for k, item in enumerate(items):
        i = images.find(str(item["image"]), base)
        if i is None:
            raise UserError(f"{path}: entry #{k}: image {item['image']!r} is not in the ground truth")
        for j, d in enumerate(item.get("detections", [])):
            lab = d["label"]
            if isinstance(lab, str) and lab in index:
                lab = index[lab]
            elif isinstance(lab, int) and not isinstance(lab, bool) and 1 <= lab <= len(gt.classes):
                pass
            else:
                raise UserError(f"{path}: entry #{k} ({item['image']}) detection #{j}: unknown class {lab!r}")
            try:
                boxes.append([float(v) for v in d["box"]])
                scores.append(float(d["score"]))
            except (TypeError, ValueError):
                raise UserError(f"{path}: entry #{k} ({item['image']}) detection #{j}: box/score are not numbers") from None
            img.append(i)
            labels.append(lab)
            where.append((k, j))
    boxes_a = np.array(boxes, np.float64).reshape(-1, 4)
    scores_a = np.array(scores, np.float64)
    _check_det_boxes(boxes_a, scores_a, lambda q: f"{path}: entry #{where[q][0]} detection #{where[q][1]}")
    return _group(len(gt.records), np.array(img, np.int64), boxes_a, scores_a, np.array(labels, np.int64))


def _label_of_id(gt: Dataset) -> dict[int, int]:
    ids = gt.class_ids or list(range(1, len(gt.classes) + 1))
    return {int(c): i + 1 for i, c in enumerate(ids)}


def read_coco_results(data: list, path: str, gt: Dataset) -> list[dict]:
    """COCO results JSON (bbox ``[x, y, w, h]`` continuous) -> per-record arrays.

    Columns are gathered at once and checked as arrays; only when a check fails does the
    entry-by-entry reader below run, to name the first bad entry."""
    images = _Images(gt)
    lab_of = _label_of_id(gt)
    try:
        bb = np.array([d["bbox"] for d in data], np.float64)
        scores = np.array([d["score"] for d in data], np.float64)
        cid = np.array([d["category_id"] for d in data])
        img = np.array([images.by_id.get(str(d["image_id"]), -1) for d in data], np.int64)
        lut = np.full(max(lab_of) + 2, -1, np.int64)
        lut[list(lab_of)] = list(lab_of.values())
        ok = (bb.shape == (len(data), 4) and cid.dtype.kind in "iu" and (img >= 0).all()
              and ((cid >= 0) & (cid < len(lut))).all())
        labels = lut[cid] if ok else None
        ok = ok and bool((labels > 0).all())
    except (KeyError, TypeError, ValueError, IndexError):
        ok = False
    if ok:
        boxes = np.concatenate([bb[:, :2], bb[:, :2] + bb[:, 2:]], axis=1)
        _check_det_boxes(boxes, scores, lambda q: f"{path}: result #{q}")
        return _group(len(gt.records), img, boxes, scores, labels)
    return _read_coco_results_checked(data, path, gt, images, lab_of)


def _read_coco_results_checked(data: list, path: str, gt: Dataset, images, lab_of) -> list[dict]:
    n = len(data)
    img = np.empty(n, np.int64)
    boxes = np.empty((n, 4))
    scores = np.empty(n)
    labels = np.empty(n, np.int64)
    for k, d in enumerate(data):
        try:
            iid, cid, bb, sc = d["image_id"], int(d["category_id"]), [float(v) for v in d["bbox"]], float(d["score"])
        except (KeyError, TypeError, ValueError):
            raise UserError(f"{path}: result #{k} lacks image_id / category_id / bbox / score") from None
        i = images.by_id.get(str(iid))
        if i is None:
            raise UserError(f"{path}: result #{k}: image_id {iid!r} is not in the ground truth")
        if cid not in lab_of or len(bb) != 4:
            raise UserError(f"{path}: result #{k}: unknown category id {cid}" if cid not in lab_of
                            else f"{path}: result #{k}: bbox is not 4 numbers")
        img[k], labels[k], scores[k] = i, lab_of[cid], sc
        boxes[k] = (bb[0], bb[1], bb[0] + bb[2], bb[1] + bb[3])
    _check_det_boxes(boxes, scores, lambda q: f"{path}: result #{q}")
    return _group(len(gt.records), img, boxes, scores, labels)


def read_devkit_submission(path: str, gt: Dataset) -> list[dict]:
    """Lines ``image_index class_id confidence xmin ymin xmax ymax`` (1-based inclusive)."""
    try:
        with open(path, encoding="utf-8") as f:
            text = f.read()
    except (OSError, UnicodeDecodeError) as e:
        raise UserError(f"{path}: cannot read ({e})") from None
    lines = text.splitlines()
    try:
        a = np.array(text.split(), dtype=np.float64)
        ok = a.size % 7 == 0 and all(len(ln.split()) in (0, 7) for ln in lines)
    except ValueError:
        ok = False
    if not ok:
        for n, ln in enumerate(lines, 1):
            tok = ln.split()
            if tok and (len(tok) != 7 or not all(_is_number(t) for t in tok)):
                raise UserError(f"{path} line {n}: expected `image_index class_id confidence xmin ymin xmax ymax`, got {ln.strip()!r}")
    a = a.reshape(-1, 7)
    line_of = np.flatnonzero([bool(ln.split()) for ln in lines]) + 1
    images = _Images(gt)
    lab_of = _label_of_id(gt)
    idx = a[:, 0].astype(np.int64)
    img = np.array([images.by_index.get(int(v), -1) for v in idx], np.int64)
    bad = np.flatnonzero(img < 0)
    if bad.size:
        raise UserError(f"{path} line {line_of[bad[0]]}: image index {idx[bad[0]]} is not in the ground truth")
    cls = a[:, 1].astype(np.int64)
    labels = np.array([lab_of.get(int(c), -1) for c in cls], np.int64)
    bad = np.flatnonzero(labels < 0)
    if bad.size:
        raise UserError(f"{path} line {line_of[bad[0]]}: unknown class id {cls[bad[0]]}")
    scores = a[:, 2]
    file_boxes = a[:, 3:7]
    boxes = file_boxes.copy()
    boxes[:, :2] -= 1.0
    _check_det_boxes(boxes, scores, lambda q: f"{path} line {line_of[q]}")
    return _group(len(gt.records), img, boxes, scores, labels)


def read_text_detections(folder: str, gt: Dataset, box_format: str = "xyxy") -> list[dict]:
    """One text file per image, lines ``class confidence left top right bottom``."""
    images = _Images(gt)
    index = {c: i + 1 for i, c in enumerate(gt.classes)}
    img, boxes, scores, labels, where = [], [], [], [], []
    for image_id, p in _text_files(folder).items():
        i = images.find(image_id)
        if i is None:
            raise UserError(f"{p}: image {image_id!r} is not in the ground truth")
        for n, tok in _read_lines(p):
            if len(tok) < 6:
                raise UserError(f"{p} line {n}: expected `class confidence left top right bottom`, got {' '.join(tok)!r}")
            name = " ".join(tok[:-5])
            if name not in index:
                raise UserError(f"{p} line {n}: unknown class {name!r}")
            try:
                v = [float(t) for t in tok[-5:]]
            except ValueError:
                raise UserError(f"{p} line {n}: expected `class confidence left top right bottom`, got {' '.join(tok)!r}") from None
            x1, y1, x2, y2 = _file_box(v[1:], box_format)
            img.append(i); labels.append(index[name]); scores.append(v[0])
            boxes.append((x1 - 1.0, y1 - 1.0, x2, y2)); where.append(f"{p} line {n}")
    boxes_a = np.array(boxes, np.float64).reshape(-1, 4)
    scores_a = np.array(scores, np.float64)
    _check_det_boxes(boxes_a, scores_a, lambda q: where[q])
    return _group(len(gt.records), np.array(img, np.int64), boxes_a, scores_a, np.array(labels, np.int64))


# ---------------------------------------------------------------------------------------------
# writers


def detections_to_items(dataset: Dataset, dets: list[dict]) -> list[dict]:
    """Per-record arrays -> the project's detections JSON objects (``image`` = record path)."""
    items = []
    for r, d in zip(dataset.records, dets):
        boxes = np.asarray(d["boxes"], np.float64).reshape(-1, 4)
        items.append({"image": r.path or r.image_id, "detections": [
            {"box": [float(v) for v in b], "score": float(s), "label": dataset.classes[int(c) - 1]}
            for b, s, c in zip(boxes, np.asarray(d["scores"]).reshape(-1), np.asarray(d["labels"]).reshape(-1))]})
    return items


def _atomic_write(path: str, text: str) -> None:
    path = os.path.abspath(os.path.expanduser(path))
    os.makedirs(os.path.dirname(path), exist_ok=True)
    tmp = path + ".tmp"
    try:
        with open(tmp, "w", encoding="utf-8") as f:
            f.write(text)
        os.replace(tmp, path)
    except OSError as e:
        raise UserError(f"{path}: cannot write ({e.strerror or e})") from None


def write_detections_json(path: str, items: list[dict]) -> None:
    """Write the project's detections JSON (one object per image), atomically."""
    validate_items(items, path)
    _atomic_write(path, json.dumps(items, indent=1) + "\n")


def read_detections_json(path: str) -> list[dict]:
    """Read and shape-check the project's detections JSON (the raw objects)."""
    return validate_items(load_json(path, "detections"), path)


def write_devkit_submission(path: str, dataset: Dataset, dets: list[dict]) -> None:
    """ILSVRC devkit lines ``image_index class_id confidence xmin ymin xmax ymax`` (1-based inclusive)."""
    ids = dataset.class_ids or list(range(1, len(dataset.classes) + 1))
    out = []
    for i, (r, d) in enumerate(zip(dataset.records, dets)):
        idx = r.devkit_index if r.devkit_index is not None else i + 1
        for b, s, c in zip(np.asarray(d["boxes"]).reshape(-1, 4), np.asarray(d["scores"]).reshape(-1),
                           np.asarray(d["labels"]).reshape(-1)):
            out.append(f"{idx} {ids[int(c) - 1]} {float(s):.6g} {b[0] + 1:.6g} {b[1] + 1:.6g} {b[2]:.6g} {b[3]:.6g}\n")
    _atomic_write(path, "".join(out))


def write_coco_results(path: str, dataset: Dataset, dets: list[dict]) -> None:
    """COCO results JSON; ``image_id`` is the record's id (an int when it is one)."""
    ids = dataset.class_ids or list(range(1, len(dataset.classes) + 1))
    out = []
    for r, d in zip(dataset.records, dets):
        iid = int(r.image_id) if r.image_id.isdigit() and str(int(r.image_id)) == r.image_id else r.image_id
        for b, s, c in zip(np.asarray(d["boxes"], np.float64).reshape(-1, 4), np.asarray(d["scores"]).reshape(-1),
                           np.asarray(d["labels"]).reshape(-1)):
            out.append({"image_id": iid, "category_id": int(ids[int(c) - 1]),
                        "bbox": [float(b[0]), float(b[1]), float(b[2] - b[0]), float(b[3] - b[1])], "score": float(s)})
    _atomic_write(path, json.dumps(out) + "\n")
