"""detect: find objects in images with a trained detector (default: the bundled BCCD model).

Nothing a user had is overwritten: ``--out`` pictures and the ``--json`` file follow the output
rule of :mod:`detector.io.outputs` (files this project wrote, as the folder's manifest records,
are replaced; any other existing file only with ``--overwrite``; an input image never; a device
or FIFO is written into). Pictures detect wrote are not read back as inputs when a folder is given.

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
import os
import sys
import time
from dataclasses import replace

import numpy as np

from backbone.errors import UserError
from backbone.io import check_writable
from detector.cli.common import add_batch_args, add_device_arg, add_strict_arg, cli_main
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
from detector.io.image_stream import READ_WORKERS, read_images
from detector.io.images import list_images, load_image
from detector.io.outputs import MANIFEST, Manifest, Outputs, add_output_arg, add_overwrite_arg, is_manifest, is_stream
from detector.io.report import PAGE_NAME, detect_page
from detector.io.pictures import picture
from detector.model import DETECT_BATCH, Detector
from detector.onnx import OnnxDetector

#: the exit code of a run that left out images it could not read (the others' results written)
EXIT_PARTIAL = 1

__all__ = ["MANIFEST", "Manifest", "Outputs", "build_parser", "main"]  # Manifest, Outputs: detector.io.outputs

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


def _reason(path: str, e: UserError | str) -> str:
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
                    if not is_manifest(f) and p not in mine and not outputs.manifest(root).owns(p):
                        raise UserError(f"--json {path}: the folder holds {os.path.relpath(p, path)}, which detect did "
                                        f"not write; use another folder, or --overwrite to write beside it")
        return [outputs.check(f, "--json") for f in files]
    planned = [outputs.check(path, "--json")]
    if fmt == "coco":
        if is_stream(path):
            raise UserError(f"--json {path}: --format coco writes its ids mapping beside the file "
                            f"({os.path.basename(ids_path(path))}); give a file path, not a device")
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


def build_parser() -> argparse.ArgumentParser:
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
    add_output_arg(p, "--out", kind="folder", help="folder for the images with boxes drawn (PNG)")
    add_output_arg(p, "--json", metavar="PATH", help="write the detections to this file (one JSON object per image; "
                   "another tool's format with --format; with --format txt a folder)")
    p.add_argument("--format", choices=FORMATS, default="json",
                   help="format of --json: json (the project's, default), coco (COCO results JSON plus "
                        "<name>.ids.json: images numbered in input order, category id = label), txt (a folder, "
                        "one file per image: class score x1 y1 x2 y2, 1-based inclusive, as Cartucho/mAP reads); "
                        "devkit needs ILSVRC devkit ids: use eval-map --split --format devkit")
    add_overwrite_arg(p, "--out / --json")
    p.add_argument("--score-thr", type=float, default=0.5,
                   help="minimum score (default 0.5, for boxes a person reads; eval-map --split uses the "
                        "config's test.score_thr, 0.05 in configs/bccd.yaml, as AP needs the low-score tail)")
    p.add_argument("--max-per-image", type=int, help="at most this many detections per image")
    p.add_argument("--timing", action="store_true",
                   help="print seconds per stage for each image: load (the time waited for the decoded image), "
                        "proposals, then the kind's (R-CNN: warp, network; fast: trunk, head), postprocess")
    add_batch_args(p)
    add_device_arg(p)
    add_strict_arg(p, "images")
    return p


@cli_main
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
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
    images = input_images(args.inputs)
    outputs = Outputs([args.model], args.overwrite, prog="detect")
    for path in images:
        outputs.add_input(path, what="input image")
    if args.json and args.format == "txt":
        outputs.check_folder(args.json, "--json")
    if args.out:
        outputs.check_folder(args.out, "--out")
    pictures = {}
    names = picture_names(args.inputs, images)
    if args.out:
        for path in images:
            pic = os.path.join(args.out, *names[path].split("/")) + ".png"
            pictures[path] = outputs.check(check_writable(pic, what="--out"), "--out")
    page = outputs.check(os.path.join(args.out, PAGE_NAME), "--out (the page of the pictures)") if args.out else None
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
    batch = args.batch if hasattr(detector, "detect_batch") else 1
    record = dict(zip(images, dataset.records))

    def finish(pending: list) -> None:
        """Detect the decoded images of ``pending`` (one detect_batch call) and write them, in order."""
        dets = (detector.detect_batch([r.image for r, _ in pending]) if len(pending) > 1
                else [detector(r.image) for r, _ in pending])
        for (r, t_load), det in zip(pending, dets):
            path, image, rec = r.path, r.image, record[r.path]
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
                outputs.write(pictures[path], picture(image, det), what="picture", save=False)
        pending.clear()

    try:
        pending: list = []
        stream = read_images(images, workers=args.read_workers)
        while True:
            t0 = time.perf_counter()
            r = next(stream, None)
            if r is None:
                break
            if r.image is None:  # left out, named in the one line at the end; the others go on
                bad.append((r.path, _reason(r.path, r.error)))
                continue
            pending.append((r, time.perf_counter() - t0))  # load: the time the loop waited for the image
            if len(pending) >= batch:
                finish(pending)
        finish(pending)
        named = ", ".join(f"{p} ({why})" for p, why in bad)
        if not done:
            if len(bad) == 1:
                raise UserError(f"image {bad[0][0]}: {bad[0][1]}")
            raise UserError(f"none of the {len(bad)} image(s) could be read: {named}")
        if page:  # the page of the pictures with their tables
            outputs.write(page, detect_page(results, pictures, args.out, detector.classes), what="page", save=False)
        if args.json:
            good = Dataset(classes=dataset.classes, records=done)
            dets = [to_arrays(r, dataset.classes) for r in results]
            if args.format == "txt":  # one checked file per image, each written atomically
                if bad:  # a file name may depend on the images there are: check the new ones
                    mine = set(planned)
                    planned += [outputs.check(f, "--json") for f in text_files_of(args.json, good) if f not in mine]
                write_detections(args.json, args.format, good, dets)
                for f in planned:
                    outputs.written(f)
            else:  # the file (and the coco ids mapping) through the rule: a device is written into
                with outputs.staged(os.path.dirname(planned[0]), "--json") as tmp:
                    target = os.path.join(tmp, os.path.basename(planned[0]))
                    if args.format == "json":  # the project's JSON: each image's picture too (relative to --out)
                        items = detections_to_items(good, dets)
                        if args.out:
                            items = [{"image": item["image"], "picture": names[rec.path] + ".png", **item}
                                     for item, rec in zip(items, done)]
                        write_detections_json(target, items)
                    else:
                        write_detections(target, args.format, good, dets)
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
