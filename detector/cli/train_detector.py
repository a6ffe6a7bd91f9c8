"""train-detector: train MultiBox and/or the region classifier ensemble from a config.

``--out`` is a run folder (its resume rule: :mod:`detector.engine.run`). ``--half FILE`` follows
the output rule of :mod:`detector.io.outputs`; the run's own files (``model.pt``,
``train_state.pt``, ``best.pt``, ...) and the training data, config and ``--init`` count as its
inputs, so it is never one of them."""

from __future__ import annotations

import argparse
import os
import sys
from dataclasses import replace

from backbone.io import check_writable
from detector.classification.init import IMAGENET, SCRATCH
from detector.cli.common import (add_config_args, add_device_arg, add_init_arg, add_strict_arg, cli_main,
                                 config_source, init_override)
from detector.config import load_detector_config
from detector.engine.devices import is_main, resolve_device
from detector.engine.run import RUN_FILE, RUN_FILES
from detector.engine.train_detector import train_detector
from detector.io.checkpoints import load_detector, save_detector
from detector.io.datasets import load_dataset, resolve_data
from detector.io.datasets.summary import summarize
from detector.io.outputs import Outputs, add_output_arg, add_overwrite_arg


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="train-detector",
        description="Train the R-CNN detector: MultiBox proposals (--stage multibox), the Inception region "
                    "classifier ensemble (--stage classifier), or both (--stage all). A run found in --out resumes "
                    "(its config may differ only in test.* and a larger train.epochs).",
        epilog="examples: train-detector --data DIR --out runs/mine (any layout: VOC, loose VOC XML, YOLO, "
               "COCO; configs/default.yaml applied); train-detector --config configs/bccd.yaml --out runs/bccd",
    )
    add_config_args(p, data=True)
    add_output_arg(p, "--out", kind="run", required=True, help="run folder: run.json, config.yaml, metrics.jsonl, curves.png, "
                                                "train_state.pt, model.pt, best.pt (when validating), multibox/")
    p.add_argument("--stage", default="all", choices=["multibox", "classifier", "all"],
                   help="what to train: multibox = the MultiBox network only, into OUT/multibox, whatever "
                        "proposals.method says (then set proposals.method=ss+multibox and "
                        "proposals.multibox_checkpoint to use it); classifier = the region classifier only; "
                        "all (default) = MultiBox when the config uses it and has no checkpoint, then the classifier")
    p.add_argument("--members", type=int, help="ensemble size (overrides model.members)")
    add_init_arg(p, "the networks' trunks")
    p.add_argument("--no-resume", action="store_true", help="refuse to continue a run found in --out")
    add_output_arg(p, "--half", help="also write a compact float16 copy of the final model to FILE (not a file of "
                                     "the run folder nor an input)")
    add_overwrite_arg(p, "--half")
    add_device_arg(p)
    add_strict_arg(p, "data")
    return p


@cli_main
def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)

    check_writable(args.out, what="--out", folder=True)  # refusals before the data is read
    if args.half:
        check_writable(args.half, what="--half")  # (the output rule's full check needs the data: below)
    outputs = Outputs(overwrite=args.overwrite, prog="train-detector")
    for folder in (args.out, os.path.join(args.out, "multibox")):  # the run's own files are never --half
        for name in (RUN_FILE, *RUN_FILES):
            outputs.add_input(os.path.join(folder, name), what="run file")
    if args.init not in (IMAGENET, SCRATCH):
        outputs.add_input(args.init, what="--init checkpoint")
    config, overrides, data_root = config_source(args, p)
    if args.members is not None:
        overrides.append(f"model.members={args.members}")
    if args.init:
        overrides.append(init_override(args.init))
    cfg = load_detector_config(config, overrides, data_root)
    cfg.data = resolve_dataset(cfg.data, is_main())
    outputs.add_input(config, what="config")
    outputs.add_input(cfg.data.root, what="training data")  # its annotations and images
    if cfg.model.init not in (IMAGENET, SCRATCH):
        outputs.add_input(cfg.model.init, what="model.init checkpoint")
    half = outputs.check(args.half, "--half") if args.half else None  # before the training
    outputs.check_folder(args.out, "--out")  # the run folder is not inside the data (nor the data itself)
    device = resolve_device(args.device)
    path = train_detector(cfg, args.out, device, cache_dir=args.cache_dir, resume=not args.no_resume, stage=args.stage)
    if is_main():
        if half and args.stage != "multibox":
            ck = load_detector(path)
            with outputs.staged(os.path.dirname(half), "--half") as tmp:
                save_detector(os.path.join(tmp, os.path.basename(half)), ck["config"], ck["classes"], ck["members"],
                              ck.get("multibox"), compact=True)
            print(f"train-detector: wrote {args.half}", file=sys.stderr)
        print(path)
    return 0


def resolve_dataset(data, say: bool):
    """``data`` with its root absolute, the layout named (``auto``: the one found, in one line) and
    the classes found, so that RUN/config.yaml needs nothing else later; the summary is printed
    (stderr) when the layout was recognised."""
    resolved, layout = resolve_data(data)
    if layout is None:
        return resolved
    if say:
        print(f"train-detector: {layout.line()}", file=sys.stderr)
    summary = summarize(resolved, load_dataset, layout.line())
    if say:
        for line in summary.lines()[1:]:
            print(f"train-detector: {line}", file=sys.stderr)
    return replace(resolved, classes=resolved.classes or summary.classes)


if __name__ == "__main__":  # pragma: no cover
    main()
