"""detect: find objects in images with a trained detector (default: the bundled BCCD model).

Nothing a user had is overwritten: ``--out`` pictures and the ``--json`` file replace only
files an earlier ``detect`` wrote into that folder, as the folder's manifest
(:data:`MANIFEST`, the names and SHA-256 of what detect wrote) says; any other existing file is
refused unless ``--overwrite``, and an input image is never written (not even with
``--overwrite``). Pictures detect wrote are not read back as inputs when a folder is given.

Pictures keep the inputs' folder structure (:func:`picture_names`), so no two inputs share
one; the project's ``--json`` objects name each image's ``"picture"`` (relative to ``--out``).
An image that cannot be read is left out: the others' results are written, one warning line
names the images left out, and the exit code is :data:`EXIT_PARTIAL` (1); ``--strict`` decodes
every image first and makes a bad one the error (exit 2) before anything is written.

``--format`` writes the ``--json`` detections in another tool's format: ``coco`` (COCO results
JSON, images numbered in input order from 1, category id = label, the mapping in
``<name>.ids.json``), ``txt`` (``--json`` is a folder: one file per image, ``class score x1 y1 x2
y2`` in 1-based inclusive pixels, as Cartucho/mAP reads); ``eval-map --detections`` reads both.
A ``txt`` folder holding files detect did not write there is refused unless ``--overwrite``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import sys
import time
from dataclasses import replace

import cv2
import numpy as np

from backbone.errors import UserError
from backbone.io import atomic_write, check_writable
from detector.cli.common import add_device_arg, add_strict_arg, cli_main
from detector.engine.devices import resolve_device
from detector.io.datasets.records import Dataset, ImageRecord
from detector.io.detections import (
    FORMATS,
    detections_to_items,
    ids_path,
    text_files_of,
    write_detections,
    write_detections_json,
)
from detector.io.images import list_images, load_image
from detector.model import Detector
from detector.onnx import OnnxDetector

#: in every folder detect writes to: which files it wrote there (name -> SHA-256 of the content)
MANIFEST = ".detect-manifest.json"
#: the exit code of a run that left out images it could not read (the others' results written)
EXIT_PARTIAL = 1


def _sha256(path: str) -> str | None:
    h = hashlib.sha256()
    try:
        with open(path, "rb") as f:
            for chunk in iter(lambda: f.read(1 << 20), b""):
                h.update(chunk)
    except OSError:
        return None
    return h.hexdigest()


class Manifest:
    """The files detect wrote into one folder, as recorded in its :data:`MANIFEST`. A damaged
    or foreign manifest counts as empty: then nothing there is replaced without --overwrite."""

    def __init__(self, folder: str):
        self.folder = os.path.abspath(folder)
        self.path = os.path.join(self.folder, MANIFEST)
        self.files: dict[str, str] = {}
        self.dirty = False
        try:
            if os.path.isfile(self.path):
                with open(self.path, encoding="utf-8") as f:
                    data = json.load(f)
                files = data.get("files") if isinstance(data, dict) else None
                if isinstance(files, dict):
                    self.files = {k: v for k, v in files.items() if isinstance(k, str) and isinstance(v, str)}
        except (OSError, ValueError, RecursionError):
            self.files = {}

    def owns(self, path: str) -> bool:
        """Whether ``path`` (in this folder) is a file detect wrote and nobody changed since."""
        want = self.files.get(os.path.basename(path))
        return want is not None and os.path.isfile(path) and not os.path.islink(path) and _sha256(path) == want

    def record(self, path: str) -> None:
        digest = _sha256(path)
        if digest is not None:
            self.files[os.path.basename(path)] = digest
            self.dirty = True

    def save(self) -> None:
        if self.dirty:
            atomic_write(self.path, json.dumps({"written_by": "detect", "files": self.files}, indent=1,
                                               sort_keys=True) + "\n", what="detect manifest")
            self.dirty = False


class Outputs:
    """Every file this run writes: checked before any work, written atomically, recorded."""

    def __init__(self, inputs: list[str], overwrite: bool):
        self.inputs = {os.path.realpath(p): p for p in inputs}
        self.overwrite = overwrite
        self.manifests: dict[str, Manifest] = {}
        self.planned: set[str] = set()
        self.last_save = time.monotonic()

    def manifest(self, folder: str) -> Manifest:
        folder = os.path.abspath(folder)
        if folder not in self.manifests:
            m = self.manifests[folder] = Manifest(folder)
            if os.path.isdir(m.path):
                raise UserError(f"{m.path}: is a folder; detect keeps its record of the files it wrote there")
        return self.manifests[folder]

    def check(self, path: str, flag: str) -> str:
        """Refuse ``path`` when it is an input, the manifest, planned twice, or an existing
        file detect did not write (unless --overwrite)."""
        path = os.path.abspath(path)
        if os.path.basename(path) == MANIFEST:
            raise UserError(f"{flag} {path}: that name is detect's own record of the files it wrote; choose another")
        real = os.path.realpath(path)
        if real in self.inputs:
            raise UserError(f"{flag} {path}: is the input image {self.inputs[real]}; inputs are never written "
                            "(choose another output path)")
        if real in self.planned:
            raise UserError(f"{flag} {path}: written twice by this run (once as a picture, once as --json)")
        if os.path.isdir(path):
            raise UserError(f"{flag} {path}: is a folder, expected a file path")
        manifest = self.manifest(os.path.dirname(path))
        if os.path.lexists(path) and not self.overwrite and not manifest.owns(path):
            raise UserError(f"{flag} {path}: exists and was not written by detect (no record of it in "
                            f"{os.path.join(os.path.dirname(path), MANIFEST)}); use --overwrite to replace it")
        self.planned.add(real)
        return path

    def written(self, path: str) -> None:
        self.manifest(os.path.dirname(os.path.abspath(path))).record(path)
        if time.monotonic() - self.last_save > 2.0:  # a killed run loses at most 2 s of records
            self.save()

    def save(self) -> None:
        for m in self.manifests.values():
            m.save()
        self.last_save = time.monotonic()


def picture(image, det) -> bytes:
    """``image`` with labelled boxes drawn, as PNG bytes."""
    img = image[:, :, ::-1].copy()
    palette = [(0, 0, 255), (255, 128, 0), (0, 200, 0), (200, 0, 200), (0, 200, 200), (255, 0, 0), (128, 128, 0)]
    for b, s, l in sorted(zip(det.boxes, det.scores, det.labels), key=lambda t: t[1]):
        color = palette[(int(l) - 1) % len(palette)]
        x1, y1, x2, y2 = (int(round(v)) for v in b)
        cv2.rectangle(img, (x1, y1), (x2 - 1, y2 - 1), color, 2)
        text = f"{det.classes[int(l) - 1]} {s:.2f}"
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, 0.45, 1)
        ty = max(y1, th + 4)
        cv2.rectangle(img, (x1, ty - th - 4), (x1 + tw + 2, ty), color, -1)
        cv2.putText(img, text, (x1 + 1, ty - 3), cv2.FONT_HERSHEY_SIMPLEX, 0.45, (255, 255, 255), 1, cv2.LINE_AA)
    ok, buf = cv2.imencode(".png", img)
    if not ok:
        raise UserError("cannot encode the picture as PNG")
    return buf.tobytes()


def draw(image, det, path: str) -> None:
    """Write ``image`` with labelled boxes to ``path`` (PNG), atomically."""
    atomic_write(path, picture(image, det), what="picture")


def picture_names(inputs: list[str], images: list[str]) -> dict[str, str]:
    """Each image's picture name in ``--out`` (``/``-separated, without ``.png``): its path
    relative to the folder given that holds it, without the extension (``IN/c1/same.jpg`` of
    ``detect IN`` -> ``c1/same``), or the file stem of a file given alone. A name taken twice
    (files of one name from two folders, ``x.jpg`` beside ``x.png``, two names equal but for
    case) stays with the first image in input order; the others get ``name_2``, ``name_3``, ...,
    skipping every name an input has of its own (``c1/same_2.jpg`` keeps ``c1/same_2``) and the
    folders pictures go into. Deterministic: the same inputs give the same names."""
    folders = [os.path.abspath(p) for p in inputs if os.path.isdir(p)]
    wanted = {}
    for path in images:
        a = os.path.abspath(path)
        base = next((f for f in folders if a.startswith(f.rstrip(os.sep) + os.sep)), None)
        rel = os.path.relpath(a, base) if base else os.path.basename(a)
        wanted[path] = os.path.splitext(rel)[0].replace(os.sep, "/")
    own = {n.casefold() for n in wanted.values()}
    dirs = {"/".join(parts[:k]).casefold() for parts in (n.split("/") for n in wanted.values())
            for k in range(1, len(parts))}  # a picture named like a folder of pictures would be in its way
    used: set[str] = set()
    names = {}
    for path, name in wanted.items():
        pick, k = name, 1
        while (pick.casefold() in used or (pick + ".png").casefold() in dirs
               or (pick != name and pick.casefold() in own)):
            k += 1
            pick = f"{name}_{k}"
        used.add(pick.casefold())
        names[path] = pick
    return names


def _reason(path: str, e: UserError) -> str:
    """A load error's message without its ``image PATH: `` prefix (the path is named once)."""
    msg = str(e)
    prefix = f"image {path}: "
    return msg[len(prefix):] if msg.startswith(prefix) else msg


def plan_detections(outputs: Outputs, path: str, fmt: str, dataset: Dataset) -> list[str]:
    """Check every file the ``--json`` detections of format ``fmt`` write (a txt folder: each
    file, and no other file in it unless --overwrite); the paths, to record once written."""
    if fmt == "txt":
        files = text_files_of(path, dataset)
        if os.path.isdir(path) and not outputs.overwrite:
            mine = set(files)
            for root, dirs, names in os.walk(path):
                dirs[:] = [d for d in dirs if not d.startswith(".")]
                for f in names:
                    p = os.path.join(root, f)
                    if f != MANIFEST and p not in mine and not outputs.manifest(root).owns(p):
                        raise UserError(f"--json {path}: the folder holds {os.path.relpath(p, path)}, which detect did "
                                        f"not write; use another folder, or --overwrite to write beside it")
        return [outputs.check(f, "--json") for f in files]
    planned = [outputs.check(path, "--json")]
    if fmt == "coco":
        planned.append(outputs.check(ids_path(path), "--json (the ids mapping)"))
    return planned


def to_arrays(item: dict, classes: list[str]) -> dict:
    """One detections JSON object -> ``{"boxes", "scores", "labels"}`` arrays (every format is
    written from these, so they all hold the numbers of the JSON)."""
    d = item["detections"]
    return {"boxes": np.array([x["box"] for x in d], np.float64).reshape(-1, 4),
            "scores": np.array([x["score"] for x in d], np.float64),
            "labels": np.array([classes.index(x["label"]) + 1 for x in d], np.int64)}


def input_images(inputs: list[str]) -> list[str]:
    """The images of ``inputs`` (files as given; folders expanded, without the pictures an
    earlier detect wrote there, as their folder's manifest records)."""
    manifests: dict = {}

    def ours(f):
        folder = os.path.dirname(os.path.abspath(f))
        if folder not in manifests:
            manifests[folder] = Manifest(folder)
        return manifests[folder].owns(f)

    return list_images(inputs, skip=ours, skip_what="the pictures detect wrote")


@cli_main
def main(argv=None) -> int:
    p = argparse.ArgumentParser(
        prog="detect",
        description="Detect objects: selective search / MultiBox proposals scored by an Inception ensemble.",
        epilog="example: detect examples/BloodImage_00007.jpg --out out/ --json out/detections.json. "
               "Pictures keep the folders' structure: IN/c1/x.jpg of 'detect IN --out O' is O/c1/x.png (a file "
               "given alone: O/x.png; a name taken twice: x_2, x_3, ... in input order); each object of the "
               "--json detections names its \"picture\" (relative to --out; with --format coco the ids file's "
               "image_id is the picture's name). Exit status: 0 every image done; 1 some images could "
               "not be read: the others' results are written and one warning line names those left out; 2 bad "
               "usage or input, one error line (also when no image can be read, and with --strict when any "
               "image cannot be read or reads only with a warning: every image is decoded first, nothing is "
               "written).",
    )
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER")
    p.add_argument("--model", help="detector checkpoint (default: the bundled BCCD model), or FILE.onnx written by "
                   "export-model (the networks in onnxruntime, the rest as with the checkpoint)")
    p.add_argument("--out", help="folder for the images with boxes drawn (PNG)")
    p.add_argument("--json", metavar="PATH", help="write the detections to this file (one JSON object per image; "
                   "another tool's format with --format; with --format txt a folder)")
    p.add_argument("--format", choices=FORMATS, default="json",
                   help="format of --json: json (the project's, default), coco (COCO results JSON plus "
                        "<name>.ids.json: images numbered in input order, category id = label), txt (a folder, "
                        "one file per image: class score x1 y1 x2 y2, 1-based inclusive, as Cartucho/mAP reads); "
                        "devkit needs ILSVRC devkit ids: use eval-map --split --format devkit")
    p.add_argument("--overwrite", action="store_true",
                   help="replace existing files in the way of --out / --json even when detect did not write them "
                        "(inputs are never written)")
    p.add_argument("--score-thr", type=float, default=0.5,
                   help="minimum score (default 0.5, for boxes a person reads; eval-map --split uses the "
                        "config's test.score_thr, 0.05 in configs/bccd.yaml, as AP needs the low-score tail)")
    p.add_argument("--max-per-image", type=int, help="at most this many detections per image")
    p.add_argument("--timing", action="store_true",
                   help="print seconds per stage for each image: load, proposals, warp, network, postprocess")
    add_device_arg(p)
    add_strict_arg(p, "images")
    args = p.parse_args(argv)
    if args.model is not None and not args.model.strip():
        raise UserError(f"--model {args.model!r}: an empty path (leave --model out for the bundled model)")
    if not 0.0 <= args.score_thr <= 1.0:
        raise UserError(f"--score-thr {args.score_thr}: must be between 0 and 1")
    if args.max_per_image is not None and args.max_per_image < 1:
        raise UserError(f"--max-per-image {args.max_per_image}: must be >= 1")
    if args.format != "json" and not args.json:
        raise UserError(f"--format {args.format} is the format of --json PATH: give --json")
    if args.format == "devkit":
        raise UserError("--format devkit needs the ILSVRC devkit's image indexes and class ids, which images given "
                        "to detect do not have; use eval-map --split S --format devkit on an ILSVRC dataset, "
                        "or --format coco, txt or json")
    if args.json:
        check_writable(args.json, what="--json", folder=args.format == "txt")
    if args.out:
        check_writable(args.out, what="--out", folder=True)

    images = input_images(args.inputs)
    outputs = Outputs(images, args.overwrite)
    pictures = {}
    names = picture_names(args.inputs, images)
    if args.out:
        for path in images:
            pic = os.path.join(args.out, *names[path].split("/")) + ".png"
            pictures[path] = outputs.check(check_writable(pic, what="--out"), "--out")
    if args.strict:  # every image decoded before any work: a bad one is the error, nothing is written
        for path in images:
            load_image(path)
    detector = (OnnxDetector(args.model) if args.model and args.model.endswith(".onnx")
                else Detector.from_checkpoint(args.model, resolve_device(args.device)))
    dataset = Dataset(classes=list(detector.classes), records=[
        ImageRecord(image_id=names[p], path=p, width=0, height=0, boxes=np.zeros((0, 4)), labels=[], difficult=[])
        for p in images])
    if args.json:
        planned = plan_detections(outputs, args.json, args.format, dataset)
    test = replace(detector.cfg.test, score_thr=args.score_thr)
    if args.max_per_image is not None:
        test = replace(test, max_per_image=args.max_per_image)
    detector = detector.configured(test=test)
    results, done, bad = [], [], []
    try:
        for path, rec in zip(images, dataset.records):
            t0 = time.perf_counter()
            try:
                image = load_image(path)
            except UserError as e:  # left out, named in the one line at the end; the others go on
                bad.append((path, _reason(path, e)))
                continue
            t_load = time.perf_counter() - t0
            det = detector(image)
            det.seconds["load"] = t_load
            results.append(det.to_json(path))
            done.append(rec)
            rec.height, rec.width = image.shape[:2]
            print(f"{path}: {len(det.boxes)} detections")
            if len(det.boxes):
                print(f"  {'label':<12}{'score':>7}  box (x1, y1, x2, y2)")
                for b, s, name in zip(det.boxes, det.scores, det.names):
                    print(f"  {name:<12}{s:>7.3f}  {b[0]:.0f}, {b[1]:.0f}, {b[2]:.0f}, {b[3]:.0f}")
            if args.timing:
                print("  seconds: " + ", ".join(f"{k} {v:.3f}" for k, v in det.seconds.items()))
            if args.out:
                draw(image, det, pictures[path])
                outputs.written(pictures[path])
        named = ", ".join(f"{p} ({why})" for p, why in bad)
        if not done:
            if len(bad) == 1:
                raise UserError(f"image {bad[0][0]}: {bad[0][1]}")
            raise UserError(f"none of the {len(bad)} image(s) could be read: {named}")
        if args.json:
            good = Dataset(classes=dataset.classes, records=done)
            dets = [to_arrays(r, dataset.classes) for r in results]
            if bad and args.format == "txt":  # a file name may depend on the images there are: check the new ones
                mine = set(planned)
                planned += [outputs.check(f, "--json") for f in text_files_of(args.json, good) if f not in mine]
            if args.format == "json":  # the project's JSON: each image's picture too (relative to --out)
                items = detections_to_items(good, dets)
                if args.out:
                    items = [{"image": item["image"], "picture": names[rec.path] + ".png", **item}
                             for item, rec in zip(items, done)]
                write_detections_json(args.json, items)
            else:
                write_detections(args.json, args.format, good, dets)
            for f in planned:
                outputs.written(f)
            print(f"wrote {args.json}" + (f" ({len(done)} files)" if args.format == "txt" else "")
                  + (f" and {planned[1]}" if args.format == "coco" else ""), file=sys.stderr)
    finally:
        outputs.save()
    if bad:
        print(f"detect: warning: {len(bad)} image(s) could not be read and were left out: {named}", file=sys.stderr)
        return EXIT_PARTIAL
    return 0


if __name__ == "__main__":  # pragma: no cover
    main()
