"""detect: find objects in images with a trained detector (default: the bundled BCCD model).

Nothing a user had is overwritten: ``--out`` pictures and the ``--json`` file replace only
files an earlier ``detect`` wrote into that folder, as the folder's manifest
(:data:`MANIFEST`, the names and SHA-256 of what detect wrote) says; any other existing file is
refused unless ``--overwrite``, and an input image is never written (not even with
``--overwrite``). Pictures detect wrote are not read back as inputs when a folder is given.

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
from detector.cli.common import add_device_arg, cli_main
from detector.engine.devices import resolve_device
from detector.io.datasets.records import Dataset, ImageRecord
from detector.io.detections import FORMATS, ids_path, text_files_of, write_detections
from detector.io.images import list_images, load_image
from detector.io.report import PAGE_NAME, detect_page, write_report_page
from detector.model import Detector

#: in every folder detect writes to: which files it wrote there (name -> SHA-256 of the content)
MANIFEST = ".detect-manifest.json"


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


def unique_names(images: list[str]) -> dict[str, str]:
    """Each input's output name: its file stem, ``stem_2``, ``stem_3``, ... for repeated stems."""
    used, names = set(), {}
    for path in images:
        stem = os.path.splitext(os.path.basename(path))[0]
        name, k = stem, 1
        while name in used:  # two inputs with one name: never overwrite our own output
            k += 1
            name = f"{stem}_{k}"
        used.add(name)
        names[path] = name
    return names


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
        epilog="example: detect examples/BloodImage_00007.jpg --out out/ --json out/detections.json",
    )
    p.add_argument("inputs", nargs="+", metavar="IMAGE_OR_FOLDER")
    p.add_argument("--model", help="detector checkpoint (default: the bundled BCCD model)")
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
    args = p.parse_args(argv)
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
    names = unique_names(images)
    if args.out:
        for path in images:
            pictures[path] = outputs.check(os.path.join(args.out, names[path] + ".png"), "--out")
    page = outputs.check(os.path.join(args.out, PAGE_NAME), "--out (the page of the pictures)") if args.out else None
    detector = Detector.from_checkpoint(args.model, resolve_device(args.device))
    dataset = Dataset(classes=list(detector.classes), records=[
        ImageRecord(image_id=names[p], path=p, width=0, height=0, boxes=np.zeros((0, 4)), labels=[], difficult=[])
        for p in images])
    if args.json:
        planned = plan_detections(outputs, args.json, args.format, dataset)
    test = replace(detector.cfg.test, score_thr=args.score_thr)
    if args.max_per_image is not None:
        test = replace(test, max_per_image=args.max_per_image)
    detector = detector.configured(test=test)
    results = []
    try:
        for path in images:
            t0 = time.perf_counter()
            image = load_image(path)
            t_load = time.perf_counter() - t0
            det = detector(image)
            det.seconds["load"] = t_load
            results.append(det.to_json(path))
            rec = dataset.records[len(results) - 1]
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
        if page:  # the page of the pictures with their tables
            outputs.written(write_report_page(page, detect_page(results, pictures, args.out, detector.classes)))
        if args.json:
            write_detections(args.json, args.format, dataset, [to_arrays(r, dataset.classes) for r in results])
            for f in planned:
                outputs.written(f)
            print(f"wrote {args.json}" + (f" ({len(planned)} files)" if args.format == "txt" else "")
                  + (f" and {planned[1]}" if args.format == "coco" else ""), file=sys.stderr)
    finally:
        outputs.save()
    return 0


if __name__ == "__main__":  # pragma: no cover
    main()
