"""eval-classifier: top-1 / top-5 accuracy with 1, 10 and 144 crops, for each model and their
ensemble (the paper's table 3).

    eval-classifier --model runs/a/model.pt runs/b/model.pt runs/c/model.pt --json runs/eval.json

The data come from the first checkpoint's config (``data`` and ``crops`` sections), or from
``--config``; ``--data-root`` and ``--set`` override; ``--split`` (default ``data.test_split``)
picks the split. Every model sees the same crops; the ensemble averages the members' softmax.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy as np

from backbone.config import apply_overrides, from_dict
from backbone.errors import UserError
from backbone.multicrop import CROP_COUNTS, predict_probs
from detector.classification.data import (
    build_classification_set,
    has_split,
    split_folder,
)
from detector.classification.members import checkpoint_members
from detector.classification.transforms import to_chw
from detector.cli.common import (
    add_config_args,
    add_device_arg,
    add_threads_arg,
    cli_main,
    set_threads,
    write_json_output,
)
from detector.config import ClassifierConfig, load_classifier_config, validate_config
from detector.engine.devices import resolve_device
from detector.io.outputs import Outputs, add_output_arg, add_overwrite_arg
from eval.classification import topk_accuracy


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="eval-classifier", description=__doc__.split("\n\n")[0])
    p.add_argument("--model", nargs="+", required=True, metavar="CKPT", help="train-classifier checkpoint(s)")
    add_config_args(p, required=False)
    p.add_argument("--split", help="split to evaluate (default: data.test_split)")
    p.add_argument("--crops", type=int, nargs="+", choices=CROP_COUNTS, help="crop counts (default: test.crops)")
    p.add_argument("--every", type=int, default=1, metavar="K",
                   help="evaluate every K-th image only (default 1: all), for quick runs on a slow machine")
    p.add_argument("--no-ensemble", action="store_true", help="only the single models")
    add_output_arg(p, "--json", help="write the results as JSON")
    add_overwrite_arg(p, "--json")
    p.add_argument("--batch-size", type=int, help="crops per forward pass (default: test.batch_size)")
    add_device_arg(p)
    add_threads_arg(p)
    return p


def format_table(rows: list[dict]) -> str:
    """The results as a text table (one line per model x crop count)."""
    name_w = max([len("model")] + [len(r["model"]) for r in rows])
    lines = [f"{'model':<{name_w}}  crops  top-1 err  top-5 err  top-1 acc"]
    for r in rows:
        lines.append(f"{r['model']:<{name_w}}  {r['crops']:>5}  {100 * r['top1_error']:8.2f}%  "
                     f"{100 * r['top5_error']:8.2f}%  {100 * r['top1']:8.2f}%")
    return "\n".join(lines)


@cli_main
def main(argv=None):
    args = build_parser().parse_args(argv)
    set_threads(args.threads)
    device = resolve_device(args.device)
    outputs = Outputs([*args.model, args.config], args.overwrite, prog="eval-classifier")
    json_path = outputs.check(args.json, "--json") if args.json else None  # before loading anything
    members = checkpoint_members(args.model, device)
    classes = members[0].classes
    if args.config:
        cfg = load_classifier_config(args.config, args.overrides, args.data_root)
    else:
        cfg = from_dict(ClassifierConfig, members[0].config, source=args.model[0])
        if args.overrides:
            cfg = apply_overrides(cfg, args.overrides)
        if args.data_root:
            cfg.data.root = args.data_root
        validate_config(cfg)
    split = args.split or cfg.data.test_split
    outputs.add_input(cfg.data.root)  # the data set is an input too (its folder's contents)
    outputs.recheck()
    crop_counts = args.crops or cfg.test.crops
    batch = args.batch_size or cfg.test.batch_size
    if cfg.data.format == "imagefolder":

        if not cfg.data.root:
            raise UserError("data.root is not set (give --data-root or set data.root in the config)")
        split_folder(cfg.data.root, split)  # a missing root or split: one error, before any note
        if not has_split(cfg.data.root, split):
            print(f"eval-classifier: note: no folder {os.path.join(cfg.data.root, split)}; evaluating the class "
                  f"folders of {cfg.data.root} itself", file=sys.stderr)
    data = build_classification_set(cfg, split, classes=classes)
    if args.every < 1:
        raise UserError(f"--every {args.every}: must be >= 1")
    index = list(range(0, len(data), args.every))
    labels = data.labels[index]
    counts = np.bincount(labels, minlength=len(classes))
    print(f"eval-classifier: {len(data)} images of split {split!r} in {len(classes)} classes, "
          f"{len(members)} model(s), crops {crop_counts}"
          + (f"; every {args.every}-th image only: {len(index)}" if args.every > 1 else "")
          + " (" + ", ".join(f"{c} {n}" for c, n in zip(classes, counts.tolist())) + ")", file=sys.stderr)
    models = [m.model for m in members]
    sizes = [m.input_size for m in members]
    means = [m.mean for m in members]
    stds = [m.std for m in members]
    rows = []
    for n in crop_counts:
        t0 = time.time()
        images = (to_chw(data.image(i)) for i in index)
        probs = predict_probs(models, images, n, sizes, mean=means, std=stds, batch_size=batch, device=device,
                              total=len(index))
        seconds = time.time() - t0
        entries = [(path, probs[:, i]) for i, path in enumerate(args.model)]
        if len(models) > 1 and not args.no_ensemble:
            entries.append((f"ensemble of {len(models)}", probs.mean(1)))
        for name, p in entries:
            acc = topk_accuracy(p.numpy(), labels, (1, 5))
            rows.append({"model": name, "crops": n, "top1": acc["top1"], "top5": acc["top5"],
                         "top1_error": 1 - acc["top1"], "top5_error": 1 - acc["top5"], "images": acc["n"],
                         "seconds": round(seconds, 1)})
        print(f"eval-classifier: {n} crop(s) done in {seconds:.0f} s", file=sys.stderr)
    print(format_table(rows))
    if json_path:
        write_json_output(outputs, json_path, {"split": split, "data_root": cfg.data.root, "classes": classes, "class_counts": counts.tolist(), "images": len(index), "every": args.every,
                               "models": list(args.model), "results": rows})
    return 0


if __name__ == "__main__":  # pragma: no cover
    main()
