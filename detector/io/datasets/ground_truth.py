"""Ground truth from a file or folder (``eval-map --ground-truth``), the format recognised from
content: the one entry point besides :func:`detector.io.datasets.load_dataset` (a config's
``data`` section); both give a :class:`Dataset`.

Ground truth (:func:`read_ground_truth`) -> a :class:`Dataset`:

- a folder of VOC ``*.xml`` (all of them; image id = path below the folder without ``.xml``),
  or one ``.xml`` file;
- a split file of a dataset layout: ``<root>/ImageSets/Main/<split>.txt`` (PASCAL VOC) or
  ``<root>/ImageSets/DET/<split>.txt`` (ILSVRC DET, with ``--blacklist``);
- a COCO instances JSON;
- the ILSVRC devkit ground-truth cache ``.mat`` (``gt_img_ids``, ``gt_obj_labels``,
  ``gt_obj_bboxes`` 4 x n 1-based inclusive, ``gt_obj_thr``, ``num_pos_per_class``);
- a folder of text files, one per image: lines ``class left top right bottom [difficult]``.
"""

from __future__ import annotations

import faulthandler
import os
import resource
import pickle
import select
import signal
import time
import warnings

import numpy as np
import scipy.io

from backbone.errors import UserError

from ..sniff import BOX_FORMATS, file_box, files_below, is_number, numbers, read_lines, sniff, text_files
from .coco import coco_from_dict, load_json
from .boxes import BoxCleaner
from .classes import ClassList, read_class_file
from .warning import DatasetWarning
from .ilsvrc import read_blacklist, read_ilsvrc
from .records import Dataset, ImageRecord
from .voc import annotation_to_record, classes_found, find_image, parse_voc_annotation, read_voc


def _classes(classes) -> ClassList | None:
    if classes is None or isinstance(classes, ClassList):
        return classes
    if isinstance(classes, str):
        return read_class_file(classes)
    return ClassList([str(c) for c in classes])


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
    files = files_below(path, ".xml")
    return read_xml_files(files, path, classes)


def read_text_ground_truth(folder: str, classes: ClassList | None, box_format: str = "xyxy") -> Dataset:
    """One text file per image, lines ``class left top right bottom [difficult]``."""
    rows = {}
    for image_id, p in text_files(folder).items():
        objs = []
        for n, tok in read_lines(p):
            diff = False
            if len(tok) >= 6 and tok[-1].lower() == "difficult":
                diff, tok = True, tok[:-1]
            elif len(tok) >= 7 and tok[-1] in ("0", "1") and all(is_number(t) for t in tok[-5:]):
                diff, tok = tok[-1] == "1", tok[:-1]
            if len(tok) < 5:
                raise UserError(f"{p} line {n}: expected `class left top right bottom [difficult]`, got {' '.join(tok)!r}")
            v = numbers(tok[-4:], p, n, "`class left top right bottom [difficult]`")
            objs.append((" ".join(tok[:-4]), file_box(v, box_format), diff, n))
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


def _mat_numbers(v, path: str, what: str) -> np.ndarray:
    """A MATLAB numeric array (or cell of one) as finite float64, else one :class:`UserError`."""
    try:
        a = np.asarray(v)
        if a.dtype == object and a.size == 1:
            a = np.asarray(a.reshape(-1)[0])
        if a.dtype.kind not in "biuf":
            raise TypeError(a.dtype)
        a = a.astype(np.float64)
    except (TypeError, ValueError, OverflowError):
        raise UserError(f"{path}: {what} is not a numeric array") from None
    if not np.isfinite(a).all():
        raise UserError(f"{path}: {what} holds NaN or infinite numbers")
    return a


def _mat_ids(v, path: str, what: str) -> np.ndarray:
    a = _mat_numbers(v, path, what).reshape(-1)
    if not ((a == np.round(a)) & (np.abs(a) < 2.0 ** 53)).all():
        raise UserError(f"{path}: {what} holds numbers that are not whole")
    return a.astype(np.int64)


def _mat_cells(v, path: str, what: str) -> np.ndarray:
    """A cell array (one cell per image) as a flat object array; a plain numeric array counts as
    one number per image (what scipy gives for cells of single numbers)."""
    a = np.asarray(v)
    if a.dtype != object:
        a = _mat_numbers(a, path, what).reshape(-1)
        out = np.empty(len(a), object)
        out[:] = list(a)
        return out
    return a.reshape(-1)


#: memory the MATLAB reader may take beyond what the process had (a damaged size field can ask
#: for terabytes), and the time it may take
MAT_MEMORY = 4 << 30
MAT_SECONDS = 300.0


def _loadmat_here(path: str):
    """``("ok", variables)`` or ``("error", message)``: scipy.io.loadmat in this process."""
    try:
        m = scipy.io.loadmat(path)
        return "ok", {k: v for k, v in m.items() if not k.startswith("__")}
    except MemoryError:
        return "error", "too large to read"
    except Exception as e:  # scipy raises many types for damaged files
        text = str(e).strip()
        return "error", text.splitlines()[0][:200] if text else type(e).__name__


def load_mat(path: str) -> dict:
    """``scipy.io.loadmat(path)`` in a forked child process, with a memory and time limit:
    scipy's C reader crashes the process (a segmentation fault, no message) on some damaged
    files, and a damaged size field can ask for any amount of memory. Any failure is one
    :class:`UserError`. Without ``os.fork`` (Windows) it runs in this process."""
    if not hasattr(os, "fork"):  # pragma: no cover - not on Linux / macOS
        status, value = _loadmat_here(path)
    else:
        status, value = _loadmat_forked(path)
    if status != "ok":
        raise UserError(f"{path}: not a readable MATLAB file ({value})")
    return value


def _loadmat_forked(path: str):
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: read, send the variables back pickled, leave without cleanup
        code = 1
        try:
            os.close(r)
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, 2)           # no crash report or reader warnings on the user's terminal
            try:
                faulthandler.disable()

                with open("/proc/self/statm") as f:
                    vm = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
                resource.setrlimit(resource.RLIMIT_AS, (vm + MAT_MEMORY, vm + MAT_MEMORY))
            except (ImportError, OSError, ValueError):
                pass
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")
                out = _loadmat_here(path)
            try:
                data = pickle.dumps(out, protocol=pickle.HIGHEST_PROTOCOL)
            except Exception as e:
                data = pickle.dumps(("error", f"unreadable content ({type(e).__name__})"))
            with os.fdopen(w, "wb") as f:
                f.write(data)
            code = 0
        finally:
            os._exit(code)
    os.close(w)
    chunks, deadline = [], time.monotonic() + MAT_SECONDS
    try:
        while True:
            left = deadline - time.monotonic()
            if left <= 0 or not select.select([r], [], [], left)[0]:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
                return "error", f"reading took more than {MAT_SECONDS:g} s"
            chunk = os.read(r, 1 << 20)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        os.close(r)
    _, status = os.waitpid(pid, 0)
    if os.WIFSIGNALED(status):
        return "error", f"the MATLAB reader crashed on it: {signal.Signals(os.WTERMSIG(status)).name}"
    try:
        return pickle.loads(b"".join(chunks))   # written by our own child above
    except Exception:
        return "error", "the MATLAB reader failed on it"


def read_devkit_gt(path: str, classes: ClassList | None) -> Dataset:
    """The ILSVRC devkit's ground-truth cache ``.mat`` (scipy.io, in a child process: see
    :func:`load_mat`)."""
    return devkit_gt_from_variables(load_mat(path), path, classes)


def devkit_gt_from_variables(m: dict, path: str, classes: ClassList | None) -> Dataset:
    """A :class:`Dataset` from the variables of a devkit ground-truth ``.mat`` (as
    ``scipy.io.loadmat`` gives them; ``path`` is named in errors)."""
    need = ("gt_img_ids", "gt_obj_labels", "gt_obj_bboxes")
    for k in need:
        if k not in m:
            raise UserError(f"{path}: no variable {k!r} (an ILSVRC devkit ground-truth cache has {', '.join(need)})")
    ids = _mat_ids(m["gt_img_ids"], path, "gt_img_ids")
    labels = _mat_cells(m["gt_obj_labels"], path, "gt_obj_labels")
    bboxes = _mat_cells(m["gt_obj_bboxes"], path, "gt_obj_bboxes")
    if not (len(ids) == len(labels) == len(bboxes)):
        raise UserError(f"{path}: gt_img_ids, gt_obj_labels, gt_obj_bboxes differ in length")
    if len(set(ids.tolist())) != len(ids):
        dup = [i for i in ids.tolist() if ids.tolist().count(i) > 1][0]
        raise UserError(f"{path}: image id {dup} appears twice in gt_img_ids")
    labs = [_mat_ids(l, path, f"gt_obj_labels of image {ids[i]}") for i, l in enumerate(labels)]
    boxes = [_mat_numbers(b, path, f"gt_obj_bboxes of image {ids[i]}") for i, b in enumerate(bboxes)]
    want = None
    if "num_pos_per_class" in m:
        want = _mat_numbers(m["num_pos_per_class"], path, "num_pos_per_class").reshape(-1)
    if classes is None:
        C = int(want.size) if want is not None else 0
        C = max(C, max((int(np.max(l)) for l in labs if l.size), default=0))
        if C > 100_000:
            raise UserError(f"{path}: class id {C} is implausibly large (give the class list)")
        classes = ClassList([str(c) for c in range(1, C + 1)], None, list(range(1, C + 1)))
    id_to_label = ({c: i + 1 for i, c in enumerate(classes.ids)} if classes.ids
                   else {i + 1: i + 1 for i in range(len(classes.names))})
    cleaner = BoxCleaner(f"ground truth {path}", one_based=True)
    records = []
    for i in range(len(ids)):
        lab, box = labs[i], boxes[i]
        if box.size % 4:
            raise UserError(f"{path}: image {ids[i]}: gt_obj_bboxes has {box.size} numbers, not 4 per box")
        box = box.reshape(4, -1).T if box.size else np.zeros((0, 4))
        if len(box) != len(lab):
            raise UserError(f"{path}: image {ids[i]} has {len(lab)} labels but {len(box)} boxes")
        bad = [c for c in lab.tolist() if c not in id_to_label]
        if bad:
            raise UserError(f"{path}: image {ids[i]}: unknown class id {bad[0]}")
        b, keep = cleaner(box, 0, 0, f"image {ids[i]}")
        records.append(ImageRecord(image_id=str(ids[i]), path="", width=0, height=0, boxes=b,
                                   labels=np.array([id_to_label[c] for c in lab.tolist()], np.int64)[keep],
                                   difficult=np.zeros(int(keep.sum()), bool), devkit_index=int(ids[i])))
    cleaner.report()
    if want is not None:   # the devkit's own counts: say so when ours differ (dropped boxes)
        have = np.bincount(np.concatenate([r.labels for r in records] + [np.zeros(0, np.int64)]),
                           minlength=len(classes.names) + 1)[1:]
        if len(want) == len(have) and not np.array_equal(want, have):
            k = int(np.flatnonzero(want != have)[0])
            warnings.warn(f"ground truth {path}: positives per class differ from its num_pos_per_class "
                          f"(e.g. class id {_id_list(classes)[k]}: {int(have[k])} boxes read, the file says "
                          f"{int(want[k])}); degenerate boxes are dropped", DatasetWarning, stacklevel=2)
    return Dataset(classes=list(classes.names), records=records, root=os.path.dirname(path),
                   class_ids=_id_list(classes), display_names=classes.display)
