"""``eval-map``: detection AP by the official protocols, from files or by running a model on a split.

File mode::

    eval-map --protocol voc --ground-truth GT --detections DETS [--classes F] [--iou T]
             [--box-format xyxy|xywh] [--blacklist F] [--json OUT] [--plots DIR]

Split mode (runs the detector, then scores it and saves its detections for re-scoring)::

    eval-map --split test --config C [--model CKPT] [--data-root D] [--set k=v ...]
             [--cache-dir D] [--device auto] [--protocol P] [--json OUT] [--plots DIR]
             [--save-detections FILE] [--format json|coco|txt|devkit]
    eval-map --split test --model RUN/model.pt [--data-root D]   (the data of the model's config)

Detections of classes the ground truth does not have are left out, as the VOC devkit, pycocotools
and Cartucho/mAP do, and inverted boxes (xmax < xmin or ymax < ymin) are scored as the devkits and
pycocotools score them (they match nothing), each with one counted warning per file (``--strict``:
the one-line error).

Formats are recognised from content (see :mod:`detector.formats`). Prints a per-class AP table
and the mean; ``--json`` writes the numbers, ``--plots`` a precision-recall PNG.

Every output follows the rule of :mod:`detector.io.outputs` (an input is never written; a file
this project did not write is replaced only with ``--overwrite``; a device is written into).
``--split`` saves its detections to ``--save-detections``, else beside ``--json``
(``detections_<split>.json``, with ``<json stem>.config.yaml``), else nowhere.
"""

from __future__ import annotations

import argparse
import math
import os
import re
import sys
import warnings

import yaml

from backbone.config import apply_overrides, from_dict, to_dict
from backbone.errors import InputWarning, UserError
from backbone.io import json_text, read_yaml
from detector.cli.common import add_batch_args, add_config_args, add_device_arg, add_strict_arg, announce_layout, cli_main
from detector.config import DetectorConfig, load_detector_config
from detector.engine.detect_split import detect_split
from detector.engine.devices import is_main
from detector.io.checkpoints import load_detector
from detector.io.datasets import ground_truth, load_dataset
from detector.io.datasets.ground_truth import read_ground_truth
from detector.io.detections import (
    FORMATS,
    check_format,
    ids_path,
    items_to_detections,
    read_detections,
    text_files_of,
    write_detections,
)
from detector.io.outputs import Outputs, add_output_arg, add_overwrite_arg, is_manifest, is_stream
from detector.io.figures import write_pr_curves, write_report
from detector.io.report import PAGE_NAME, analysis_page, write_report_page
from eval import evaluate
from eval.analysis import analyze, summary_lines

PROTOCOLS = ("ilsvrc", "voc07", "voc", "coco")
#: the names detector.io.figures.write_report gives the files of --analyze DIR
ANALYSIS_NAMES = re.compile(r"analysis\.json|summary\.txt|index\.html|(sensitivity|confusion)\.png"
                            r"|(hoiem|coco_stack|tide|gallery)_.*\.png")


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="eval-map", description=__doc__.split("\n\n")[0].replace("``", ""),
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--protocol", choices=PROTOCOLS,
                   help="ilsvrc (devkit), voc07 (11-point), voc (all-point, VOC2010+), coco (COCOeval); "
                        "default: voc, or the config's test.protocol with --split")
    p.add_argument("--ground-truth", metavar="GT", help="VOC XML file/folder, split file under ImageSets/, "
                   "COCO instances JSON, devkit ground-truth .mat, or a folder of text files")
    p.add_argument("--detections", metavar="DETS", help="detections JSON, COCO results JSON, devkit "
                   "submission lines, or a folder of text files")
    p.add_argument("--classes", metavar="FILE", help="class list: one name per line, or ILSVRC map_det.txt")
    p.add_argument("--iou", type=float, help="IoU threshold replacing 0.5 (ilsvrc: min(iou, wh/((w+10)(h+10))))")
    p.add_argument("--box-format", choices=("xyxy", "xywh"), default="xyxy",
                   help="text files: left top right bottom (xyxy, default) or left top width height (xywh)")
    p.add_argument("--blacklist", metavar="FILE", help="ILSVRC blacklist (lines `image_index WNID`)")
    add_strict_arg(p, "detections and ground truth")
    add_output_arg(p, "--json", metavar="OUT", help="write the numbers as JSON")
    add_output_arg(p, "--plots", kind="folder", help="write precision-recall curves as PNG into DIR (pr_<protocol>.png)")
    add_output_arg(p, "--analyze", kind="folder",
                   help="error analysis into DIR: Hoiem's false-positive types, COCO analyze's PR stack, TIDE's "
                        "dAP, AP by object size and aspect ratio, a confusion matrix, galleries of the worst false "
                        "positives and missed objects, the F1-best score threshold; analysis.json, summary.txt, PNGs")
    p.add_argument("--analyze-all", action="store_true",
                   help="with --analyze: figures for every class (default: all classes together and the 5 lowest-AP)")
    p.add_argument("--class-groups", metavar="FILE",
                   help="with --analyze: YAML/JSON mapping class -> group for the 'similar class' bin "
                        "(default: COCO's supercategories when the classes are COCO's, else no such bin)")
    g = p.add_argument_group("split mode (run a detector on a dataset split)")
    g.add_argument("--split", help="dataset split to detect and score (e.g. test)")
    g.add_argument("--model", metavar="CKPT", help="detector checkpoint")
    add_output_arg(g, "--save-detections", metavar="FILE",
                   help="where to save the split's detections (default: beside --json, detections_<split>.json, "
                        "a folder detections_<split> with --format txt, detections_<split>.txt with devkit; "
                        "without --json and --save-detections they are not saved)")
    g.add_argument("--format", choices=FORMATS, default="json",
                   help="format of the saved detections: json (the project's, default), coco (COCO results JSON; "
                        "without a COCO ground truth the ids mapping goes to *.ids.json beside it), txt (a folder, "
                        "one file per image: class score x1 y1 x2 y2, 1-based inclusive, as Cartucho/mAP reads), "
                        "devkit (ILSVRC submission lines; needs the devkit's ids)")
    g.add_argument("--proposals", choices=("model", "config"), default="model",
                   help="proposal settings: the checkpoint's (default) or --config's proposals section "
                        "(with --set proposals.KEY=VALUE), e.g. to score one region classifier on other proposals")
    add_config_args(g, required=False)
    add_batch_args(g)
    add_device_arg(g)
    add_overwrite_arg(p, "--json / --plots / --analyze / --save-detections")
    return p


def _fmt(v: float) -> str:
    return "   n/a" if v is None or (isinstance(v, float) and math.isnan(v)) else f"{v:.4f}"


def format_table(result: dict, names: list[str]) -> str:
    """The per-class AP table and the mean, as printed."""
    w = max([len("class")] + [len(n) for n in names])
    has_counts = "num_detections" in result
    head = f"{'class':<{w}}  {'AP':>6}  {'npos':>6}" + (f"  {'dets':>7}  {'TP':>6}" if has_counts else "")
    lines = [head, "-" * len(head)]
    for i, n in enumerate(names):
        row = f"{n:<{w}}  {_fmt(result['AP'][i]):>6}  {result['npos'][i]:>6}"
        if has_counts:
            row += f"  {result['num_detections'][i]:>7}  {result['num_tp'][i]:>6}"
        lines.append(row)
    lines.append("-" * len(head))
    iou = result["iou"]
    lines.append(f"{'mAP':<{w}}  {_fmt(result['mAP']):>6}   (median AP {_fmt(result['median_AP'])}, "
                 f"protocol {result['protocol']}, IoU {iou})")
    if "summary" in result:
        lines.extend(["", *result["summary"]])
    return "\n".join(lines)


def _write_json(outputs: Outputs, path: str, result: dict, names: list[str], extra: dict) -> None:
    out = {k: v for k, v in result.items() if k not in ("curves", "summary")}
    out["classes"] = names
    out["per_class_AP"] = {n: a for n, a in zip(names, result["AP"])}
    out.update(extra)
    outputs.write(path, json_text(out, nan_as_null=True), what="--json")


def plan_reports(outputs: Outputs, args, protocol: str) -> None:
    """Check --json, --plots and --analyze by the output rule (before any work); the paths to
    write go to ``args.json_path`` and ``args.plot_path``."""
    args.json_path = outputs.check(args.json, "--json") if args.json else None
    args.plot_path = None
    if args.plots:
        folder = outputs.check_folder(args.plots, "--plots")
        args.plot_path = outputs.check(os.path.join(folder, f"pr_{protocol}.png"), "--plots")
    if args.analyze:
        outputs.check_folder(args.analyze, "--analyze", names=ANALYSIS_NAMES)


def score(dataset, dets: list[dict], protocol: str, iou: float | None, args, extra: dict,
          outputs: Outputs) -> dict:
    """Evaluate, print the table, write --json, --plots and --analyze (checked by :func:`plan_reports`)."""

    groups = getattr(args, "groups", None)
    if groups:  # before the evaluation: a name the data does not have is a typo, not a group
        missing = [c for c in groups if c not in dataset.classes]
        if missing:
            raise UserError(f"--class-groups {args.class_groups}: class {missing[0]!r} is not a class of the data "
                            f"({', '.join(dataset.classes)})")
    if protocol != "ilsvrc" and any(r.blacklist for r in dataset.records):
        print("eval-map: note: the blacklist only applies to --protocol ilsvrc", file=sys.stderr)
    result = evaluate(protocol, ground_truth(dataset), dets, len(dataset.classes), iou=iou, return_curves=True)
    names = list(dataset.display_names or dataset.classes)
    if dataset.display_names:
        names = [f"{d} ({c})" for d, c in zip(dataset.display_names, dataset.classes)]
    print(format_table(result, names))
    if args.json:
        _write_json(outputs, args.json_path, result, names, extra)
    if args.plots:
        with outputs.staged(os.path.dirname(args.plot_path), "--plots") as tmp:
            write_pr_curves(result["curves"], result["AP"], names, os.path.join(tmp, os.path.basename(args.plot_path)),
                           title=protocol)
        print(f"precision-recall curves: {args.plot_path}", file=sys.stderr)
    if args.analyze:
        gts = ground_truth(dataset)
        paths = [r.path or None for r in dataset.records]
        paths = paths if all(paths) else None
        res = analyze(protocol, gts, dets, list(dataset.classes), iou=iou, class_groups=groups,
                      image_paths=paths)
        with outputs.staged(args.analyze, "--analyze") as tmp:
            written = write_report(res, tmp, list(dataset.classes), all_classes=args.analyze_all,
                                   image_paths=paths, gts=gts, dets=dets)
            written.append(write_report_page(os.path.join(tmp, PAGE_NAME), analysis_page(res, written, tmp)))
        print("\n" + "\n".join(summary_lines(res)))
        print(f"error analysis: {len(written)} files in {args.analyze}", file=sys.stderr)
    return result


def _class_groups(path: str | None) -> dict[str, str] | None:
    """--class-groups FILE: a YAML (or JSON) mapping class name -> group name."""
    if not path:
        return None
    data = read_yaml(path, f"--class-groups {path}")
    if not isinstance(data, dict) or not all(isinstance(k, str) and isinstance(v, str) for k, v in data.items()):
        raise UserError(f"--class-groups {path}: expected a mapping of class names to group names")
    return data


def _run_files(args) -> None:

    if not args.ground_truth or not args.detections:
        raise UserError("give --ground-truth and --detections (or --split with --config)")
    outputs = Outputs([args.ground_truth, args.detections, args.classes, args.blacklist, args.class_groups],
                      args.overwrite, prog="eval-map")
    plan_reports(outputs, args, args.protocol or "voc")
    gt = read_ground_truth(args.ground_truth, args.classes, args.box_format, args.blacklist)
    for r in gt.records:  # the images (the galleries read them), and a VOC split file's folders
        outputs.add_input(r.path or None, contents=False)
    if gt.root and "ImageSets" in os.path.normpath(os.path.abspath(args.ground_truth)).split(os.sep):
        for sub in ("Annotations", "JPEGImages", "ImageSets"):
            outputs.add_input(os.path.join(gt.root, sub))
    outputs.recheck()
    dets = read_detections(args.detections, gt, args.box_format)
    _flush_warnings(args)
    n = sum(len(d["scores"]) for d in dets)
    if n == 0:
        print(f"eval-map: warning: {args.detections} holds no detections (every AP is 0)", file=sys.stderr)
    score(gt, dets, args.protocol or "voc", args.iou, args,
          {"ground_truth": os.path.abspath(args.ground_truth), "detections": os.path.abspath(args.detections),
           "num_images": len(gt.records)}, outputs)


def _run_split(args) -> None:

    if args.detections or args.ground_truth:
        raise UserError("--split runs the detector: do not combine it with --ground-truth / --detections")
    cfg = split_config(args)
    announce_layout(cfg, "eval-map")
    protocol = args.protocol or cfg.test.protocol
    outputs = Outputs([args.config, args.model, args.class_groups, cfg.data.root], args.overwrite, prog="eval-map")
    split_set = None
    if args.format in ("devkit", "txt"):  # before the work: a format this data cannot have fails now
        split_set = load_dataset(cfg.data, args.split)
        check_format(args.format, split_set)
    save_path = _save_path(args)
    planned = _plan_detections(outputs, save_path, args, split_set) if save_path else []
    config_path = None
    if args.json and not is_stream(args.json):  # nothing goes beside a device (/dev/stdout.config.yaml)
        config_path = outputs.check(os.path.splitext(os.path.abspath(args.json))[0] + ".config.yaml", "--json")
    plan_reports(outputs, args, protocol)

    timing: dict = {}
    dataset, items = detect_split(cfg, args.split, model_path=args.model, cache_dir=args.cache_dir, device=args.device,
                                  proposals_from_config=args.proposals == "config", timing=timing,
                                  batch=args.batch, read_workers=args.read_workers)
    if not is_main():  # under torchrun every rank detects a shard; rank 0 writes and prints
        return
    dets = items_to_detections(items, save_path or os.path.join(os.path.abspath(cfg.data.root or "."), "detections"),
                               dataset)
    if save_path:
        if args.format == "txt":
            _check_text_folder(save_path, dataset)  # the split's own files were checked before the work
            for f in text_files_of(save_path, dataset):
                if os.path.realpath(f) not in outputs.planned:
                    outputs.check(f, "--save-detections")
            write_detections(save_path, args.format, dataset, dets)
            for f in text_files_of(save_path, dataset):
                outputs.written(f)
            outputs.save()
            written = [save_path]
        else:
            with outputs.staged(os.path.dirname(planned[0]), "--save-detections") as tmp:
                written = write_detections(os.path.join(tmp, os.path.basename(planned[0])), args.format, dataset, dets)
            written = [os.path.join(os.path.dirname(planned[0]), os.path.basename(w)) for w in written]
        print(f"detections: {save_path}" + (f" (ids: {written[1]})" if args.format == "coco" and len(written) > 1 else ""),
              file=sys.stderr)
    if timing:
        print("seconds per image: " + ", ".join(f"{k} {v:.3f}" for k, v in timing.items())
              + f" (total {sum(timing.values()):.3f})", file=sys.stderr)
    if config_path:
        outputs.write(config_path, yaml.safe_dump(to_dict(cfg), sort_keys=False), what="config")
        outputs.save()
    _flush_warnings(args)
    score(dataset, dets, protocol, args.iou, args,
          {"split": args.split, "config": os.path.abspath(args.config) if args.config else None, "model": args.model,
           "detections": save_path, "num_images": len(dataset.records),
           "seconds_per_image": timing or None}, outputs)


def _plan_detections(outputs: Outputs, path: str, args, split_set) -> list[str]:
    """Check the files the split's detections go to (before any work): the file, the coco ids
    mapping beside it, or a txt folder (holding no other files) and its files."""
    flag = "--save-detections"
    if args.format == "txt":
        outputs.check_folder(path, flag)
        _check_text_folder(path, split_set)
        return [outputs.check(f, flag) for f in text_files_of(path, split_set)]
    planned = [outputs.check(path, flag)]
    if args.format == "coco":
        if is_stream(path):
            raise UserError(f"{flag} {path}: --format coco writes its ids mapping beside the file "
                            f"({os.path.basename(ids_path(path))}); give a file path, not a device")
        planned.append(outputs.check(ids_path(path), flag + " (the ids mapping)"))
    return planned


def split_config(args) -> DetectorConfig:
    """The config of ``--split``: ``--config``'s, else the one inside ``--model``'s checkpoint (its
    data: root, format, classes; either kind), with ``--set`` and ``--data-root`` applied."""
    if args.config:
        return load_detector_config(args.config, args.overrides, args.data_root)
    if not args.model:
        raise UserError("--split needs --config (the detector config) or --model (a checkpoint, whose config gives the data)")
    cfg = from_dict(DetectorConfig, load_detector(args.model)["config"], source=f"model {args.model}'s config")
    if args.overrides:
        cfg = apply_overrides(cfg, args.overrides)
    if args.data_root is not None:
        cfg.data.root = args.data_root
    if not cfg.data.root:
        raise UserError(f"model {args.model}: its config names no data.root; give --data-root (or --config)")
    return cfg


def _save_path(args) -> str | None:
    """--save-detections, else beside --json, else None (never the working folder unasked)."""
    if args.save_detections:
        return os.path.abspath(args.save_detections)
    if not args.json or is_stream(args.json):  # never beside a device: /dev/detections_test.json
        return None
    out_dir = os.path.dirname(os.path.abspath(args.json))
    ext = {"json": ".json", "coco": ".json", "txt": "", "devkit": ".txt"}[args.format]
    return os.path.join(out_dir, f"detections_{args.split}{ext}")


def _check_text_folder(folder: str, dataset) -> None:
    """A text folder of detections holds this split's files only: an existing folder holding
    other files is refused (they would be read back as detections); this split's are replaced."""
    if not os.path.isdir(folder):
        return
    mine = set(text_files_of(folder, dataset))
    others = [os.path.join(r, f) for r, _, fs in os.walk(folder) for f in fs
              if os.path.join(r, f) not in mine and not is_manifest(f)]
    if others:
        raise UserError(f"--save-detections {folder}: the folder holds other files ({short_list(others, folder)}); "
                        f"choose a new or empty folder")


def short_list(paths: list[str], base: str) -> str:
    names = sorted(os.path.relpath(p, base) for p in paths)
    return ", ".join(names[:3]) + (f" and {len(names) - 3} more" if len(names) > 3 else "")


@cli_main
def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.iou is not None and not (0.0 < args.iou <= 1.0):
        raise UserError(f"--iou {args.iou}: must be in (0, 1]")
    if args.format != "json" and not args.split:
        raise UserError("--format is the format of the detections --split saves; --detections files are recognised from content")
    if args.save_detections and not args.split:
        raise UserError("--save-detections goes with --split (file mode reads its --detections)")
    if (args.analyze_all or args.class_groups) and not args.analyze:
        raise UserError("--analyze-all and --class-groups go with --analyze DIR")
    args.groups = _class_groups(args.class_groups)  # before the work
    # reader warnings (dropped / clipped boxes) are printed as one line each once the inputs
    # have been read; when an input is bad, only its error line is printed
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        if args.strict:   # the record filter above replaced --strict's (add_strict_arg): put it back first
            warnings.simplefilter("error", InputWarning)
        args._warnings = caught
        if args.split:
            _run_split(args)
        else:
            _run_files(args)
        _flush_warnings(args)
    return 0


def _flush_warnings(args) -> None:
    for w in args._warnings:
        if issubclass(w.category, UserWarning):
            print(f"eval-map: warning: {w.message}", file=sys.stderr)
    args._warnings.clear()


if __name__ == "__main__":  # pragma: no cover
    main()
