"""train-classifier: train a GoogLeNet classifier with the paper's recipe (section 7).

    train-classifier --config configs/bccd_classifier.yaml --out runs/cls1 [--set train.seed=1]
    train-classifier --out runs/cls1                     # continue after an interruption
    train-classifier --out runs/cls1 --set train.epochs=12   # ... or for more epochs

Data: an ImageFolder-style directory (``data.format: imagefolder``) or a detection dataset
(``voc`` ...) whose ground-truth object crops become the classes. ``--out`` is a run folder
(run.json, config.yaml, metrics.jsonl, curves.png, train_state.pt, model.pt, best.pt when
validating); a run found there resumes, its config may differ only in test.* and a larger
train.epochs. Without --config and --data-root, the run's own config.yaml is used. ``model.pt``
(the Polyak-averaged weights) goes to ``classify``, ``eval-classifier`` or the detector's
``model.init``. The loop is :func:`detector.engine.train_classifier.train_classifier`.
"""

from __future__ import annotations

import argparse
import os


from backbone.errors import UserError
from detector.classification.init import IMAGENET, SCRATCH
from detector.cli.common import (
    add_config_args,
    add_device_arg,
    add_init_arg,
    add_threads_arg,
    cli_main,
    init_override,
    set_threads,
)
from detector.config import load_classifier_config
from detector.engine.devices import resolve_device
from detector.engine.run import CONFIG_FILE, RUN_FILE
from detector.engine.train_classifier import train_classifier
from detector.io.outputs import Outputs, add_output_arg


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="train-classifier", description=__doc__.split("\n\n")[0])
    add_config_args(p, required=False)
    add_output_arg(p, "--out", kind="run", required=True,
                   help="run folder (run.json, config.yaml, metrics.jsonl, curves.png, train_state.pt, model.pt, best.pt)")
    p.add_argument("--resume", action="store_true",
                   help="accepted for compatibility: a run found in --out always resumes (--set may raise train.epochs)")
    p.add_argument("--no-resume", action="store_true", help="refuse to continue a run found in --out")
    add_init_arg(p, "the network")
    add_device_arg(p)
    add_threads_arg(p)
    return p


@cli_main
def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.resume and args.no_resume:
        raise UserError("--resume and --no-resume: choose one")
    set_threads(args.threads)
    config = args.config
    if not config and not args.data_root:
        own = os.path.join(args.out, CONFIG_FILE)
        if not (os.path.isfile(own) and os.path.isfile(os.path.join(args.out, RUN_FILE))):
            raise UserError("give --config (see configs/bccd_classifier.yaml) or --data-root"
                            f" (or --out a run folder to resume: {args.out} holds none)")
        config = own  # resume: the run's own config (--set may raise train.epochs)
    overrides = list(args.overrides) + ([init_override(args.init)] if args.init else [])
    cfg = load_classifier_config(config, overrides, args.data_root)
    # the run folder is not inside the data (an image folder would read it as a class) nor an input
    init = cfg.model.init if cfg.model.init not in (IMAGENET, SCRATCH) else None
    inputs = [cfg.data.root, init] + ([config] if config != os.path.join(args.out, CONFIG_FILE) else [])
    Outputs(inputs, prog="train-classifier").check_folder(args.out, "--out")
    device = resolve_device(args.device)
    print(train_classifier(cfg, args.out, device, resume=not args.no_resume))
    return 0


if __name__ == "__main__":  # pragma: no cover
    main()
