"""``eval-map``: detection AP by the official protocols, from files or by running a model on a split.

File mode::

    eval-map --protocol voc --ground-truth GT --detections DETS [--classes F] [--iou T]
             [--box-format xyxy|xywh] [--blacklist F] [--json OUT] [--plots DIR]

Split mode (runs the detector, then scores it and saves its detections for re-scoring)::

    eval-map --split test --config C [--model CKPT] [--data-root D] [--set k=v ...]
             [--cache-dir D] [--device auto] [--protocol P] [--json OUT] [--plots DIR]
             [--save-detections FILE] [--format json|coco|txt|devkit]
    eval-map --split test --model RUN/model.pt [--data-root D]   (the data of the model's config)

Detections of classes the ground truth does not have are left out with one warning
(``--strict``: an error), as the VOC devkit, pycocotools and Cartucho/mAP do.

Formats are recognised from content (see :mod:`detector.formats`). Prints a per-class AP table
and the mean; ``--json`` writes the numbers, ``--plots`` a precision-recall PNG.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import warnings

import numpy as np

from backbone.config import apply_overrides, from_dict, save_config
from backbone.errors import UserError
from backbone.io import check_writable, read_yaml, write_json
from detector.cli.common import add_config_args, add_device_arg, announce_layout, cli_main
from detector.config import DetectorConfig, load_detector_config
from detector.engine.detect_split import detect_split
from detector.engine.devices import is_main
from detector.io.checkpoints import load_detector
from detector.io.datasets import ground_truth, load_dataset
from detector.io.datasets.ground_truth import read_ground_truth
from detector.io.detections import (
    FORMATS,
    check_format,
    items_to_detections,
    read_detections,
    text_files_of,
    write_detections,
)
from detector.io.report import PAGE_NAME, analysis_page, write_report_page
from eval import evaluate
from eval.analysis import analyze, summary_lines, write_report
from eval.plots import plot_pr_curves

PROTOCOLS = ("ilsvrc", "voc07", "voc", "coco")


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
    p.add_argument("--strict", action="store_true",
                   help="detections of classes the ground truth does not have are an error (default: left out, "
                        "counted in one warning)")
    p.add_argument("--json", metavar="OUT", help="write the numbers as JSON")
    p.add_argument("--plots", metavar="DIR", help="write precision-recall curves as PNG into DIR")
    p.add_argument("--analyze", metavar="DIR",
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
    g.add_argument("--save-detections", metavar="FILE",
                   help="where to save the split's detections (default: <dir of --json or .>/detections_<split>.json, "
                        "a folder detections_<split> with --format txt, detections_<split>.txt with devkit)")
    g.add_argument("--format", choices=FORMATS, default="json",
                   help="format of the saved detections: json (the project's, default), coco (COCO results JSON; "
                        "without a COCO ground truth the ids mapping goes to *.ids.json beside it), txt (a folder, "
                        "one file per image: class score x1 y1 x2 y2, 1-based inclusive, as Cartucho/mAP reads), "
                        "devkit (ILSVRC submission lines; needs the devkit's ids)")
    g.add_argument("--proposals", choices=("model", "config"), default="model",
                   help="proposal settings: the checkpoint's (default) or --config's proposals section "
                        "(with --set proposals.KEY=VALUE), e.g. to score one region classifier on other proposals")
    add_config_args(g, required=False)
    add_device_arg(g)
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


def _json_safe(v):
    if isinstance(v, float):
        return None if math.isnan(v) else v
    if isinstance(v, dict):
        return {k: _json_safe(x) for k, x in v.items()}
    if isinstance(v, (list, tuple)):
        return [_json_safe(x) for x in v]
    if isinstance(v, np.generic):
        return _json_safe(v.item())
    return v


def _write_json(path: str, result: dict, names: list[str], extra: dict) -> None:
    out = {k: v for k, v in result.items() if k not in ("curves", "summary")}
    out["classes"] = names
    out["per_class_AP"] = {n: a for n, a in zip(names, result["AP"])}
    out.update(extra)
    write_json(path, _json_safe(out), what="--json")


def score(dataset, dets: list[dict], protocol: str, iou: float | None, args, extra: dict) -> dict:
    """Evaluate, print the table, write --json and --plots."""


    if protocol != "ilsvrc" and any(r.blacklist for r in dataset.records):
        print("eval-map: note: the blacklist only applies to --protocol ilsvrc", file=sys.stderr)
    result = evaluate(protocol, ground_truth(dataset), dets, len(dataset.classes), iou=iou, return_curves=True)
    names = list(dataset.display_names or dataset.classes)
    if dataset.display_names:
        names = [f"{d} ({c})" for d, c in zip(dataset.display_names, dataset.classes)]
    print(format_table(result, names))
    if args.json:
        _write_json(args.json, result, names, extra)
    if args.plots:
        try:
            path = plot_pr_curves(result["curves"], result["AP"], names,
                                  os.path.join(args.plots, f"pr_{protocol}.png"), title=protocol)
        except OSError as e:
            raise UserError(f"--plots {args.plots}: cannot write ({e.strerror or e})") from None
        print(f"precision-recall curves: {path}", file=sys.stderr)
    if args.analyze:
        gts = ground_truth(dataset)
        paths = [r.path or None for r in dataset.records]
        paths = paths if all(paths) else None
        res = analyze(protocol, gts, dets, list(dataset.classes), iou=iou, class_groups=_class_groups(args.class_groups),
                      image_paths=paths)
        written = write_report(res, args.analyze, list(dataset.classes), all_classes=args.analyze_all,
                               image_paths=paths, gts=gts, dets=dets)
        written.append(write_report_page(os.path.join(args.analyze, PAGE_NAME), analysis_page(res, written, args.analyze)))
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
    gt = read_ground_truth(args.ground_truth, args.classes, args.box_format, args.blacklist)
    dets = read_detections(args.detections, gt, args.box_format, strict=args.strict)
    _flush_warnings(args)
    n = sum(len(d["scores"]) for d in dets)
    if n == 0:
        print(f"eval-map: warning: {args.detections} holds no detections (every AP is 0)", file=sys.stderr)
    score(gt, dets, args.protocol or "voc", args.iou, args,
          {"ground_truth": os.path.abspath(args.ground_truth), "detections": os.path.abspath(args.detections),
           "num_images": len(gt.records)})


def _run_split(args) -> None:

    if args.detections or args.ground_truth:
        raise UserError("--split runs the detector: do not combine it with --ground-truth / --detections")
    cfg = split_config(args)
    announce_layout(cfg, "eval-map")
    if args.format in ("devkit", "txt"):  # before the work: a format this data cannot have fails now
        check_format(args.format, load_dataset(cfg.data, args.split))

    timing: dict = {}
    dataset, items = detect_split(cfg, args.split, model_path=args.model, cache_dir=args.cache_dir, device=args.device,
                                  proposals_from_config=args.proposals == "config", timing=timing)
    if not is_main():  # under torchrun every rank detects a shard; rank 0 writes and prints
        return
    save_path = _save_path(args)
    dets = items_to_detections(items, save_path, dataset)
    if args.format == "txt":
        _check_text_folder(save_path, dataset)
    written = write_detections(save_path, args.format, dataset, dets)
    print(f"detections: {save_path}" + (f" (ids: {written[1]})" if args.format == "coco" and len(written) > 1 else ""),
          file=sys.stderr)
    if timing:
        print("seconds per image: " + ", ".join(f"{k} {v:.3f}" for k, v in timing.items())
              + f" (total {sum(timing.values()):.3f})", file=sys.stderr)
    if args.json:
        save_config(cfg, os.path.splitext(os.path.abspath(args.json))[0] + ".config.yaml")
    _flush_warnings(args)
    score(dataset, dets, args.protocol or cfg.test.protocol, args.iou, args,
          {"split": args.split, "config": os.path.abspath(args.config) if args.config else None, "model": args.model,
           "detections": save_path, "num_images": len(dataset.records),
           "seconds_per_image": timing or None})


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


def _save_path(args) -> str:
    if args.save_detections:
        return os.path.abspath(args.save_detections)
    out_dir = os.path.dirname(os.path.abspath(args.json)) if args.json else os.getcwd()
    ext = {"json": ".json", "coco": ".json", "txt": "", "devkit": ".txt"}[args.format]
    return os.path.join(out_dir, f"detections_{args.split}{ext}")


def _check_text_folder(folder: str, dataset) -> None:
    """A text folder of detections holds this split's files only: an existing folder holding
    other files is refused (they would be read back as detections); this split's are replaced."""
    if not os.path.isdir(folder):
        return
    mine = set(text_files_of(folder, dataset))
    others = [os.path.join(r, f) for r, _, fs in os.walk(folder) for f in fs if os.path.join(r, f) not in mine]
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
    txt = args.format == "txt"
    if args.format != "json" and not args.split:
        raise UserError("--format is the format of the detections --split saves; --detections files are recognised from content")
    for flag, path, folder in (("--json", args.json, False), ("--save-detections", args.save_detections, txt),
                               ("--plots", args.plots, True), ("--analyze", args.analyze, True)):
        if path:  # before the work: a read-only or wrong output path fails now, not after a split's detection
            check_writable(path, what=flag, folder=folder)
    if (args.analyze_all or args.class_groups) and not args.analyze:
        raise UserError("--analyze-all and --class-groups go with --analyze DIR")
    # reader warnings (dropped / clipped boxes) are printed as one line each once the inputs
    # have been read; when an input is bad, only its error line is printed
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
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
