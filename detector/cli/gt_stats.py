"""gt-stats: how much ground-truth boxes of one class overlap each other, the evidence for an
NMS threshold. ``gt-stats --data DIR`` prints what the dataset holds instead (layout, images per
split, boxes per class, box sides, warnings: :mod:`detector.io.datasets.summary`).

``gt-stats --config configs/bccd.yaml --split trainval`` prints, for IoU thresholds t, the
share of boxes whose IoU with another box of their class in the same image exceeds t: greedy
per-class NMS at t can keep at most one box of such a pair. The numbers come from
:func:`detector.gt_stats.max_same_class_iou`.
"""

from __future__ import annotations

import argparse

from backbone.errors import UserError

from detector.cli.common import add_config_args, add_strict_arg, cli_main, config_source
from detector.io.datasets import load_dataset, resolve_data
from detector.io.datasets.summary import summarize
from detector.gt_stats import max_same_class_iou
from detector.config import load_detector_config

THRESHOLDS = (0.3, 0.4, 0.5, 0.6, 0.7)


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="gt-stats", description=__doc__.split("\n\n")[0])
    add_config_args(p, required=True, data=True)
    p.add_argument("--split", default="trainval", help="dataset split (default trainval)")
    add_strict_arg(p, "a dataset")
    return p


@cli_main
def main(argv=None) -> int:
    p = build_parser()
    args = p.parse_args(argv)

    config, overrides, data_root = config_source(args, p)
    cfg = load_detector_config(config, overrides, data_root)
    if args.data is not None:
        data, layout = resolve_data(cfg.data)   # the summary's first line names the layout
        summary = summarize(data, load_dataset, layout.line() if layout else None)
        print("\n".join(summary.lines()))
        return 0
    ds = load_dataset(cfg.data, args.split)
    m = max_same_class_iou(ds.records)
    if not len(ds.records):
        raise UserError(f"split {args.split!r} of {ds.root or cfg.data.root}: empty (no images), nothing to count")
    if not len(m):
        raise UserError(f"split {args.split!r} of {ds.root or cfg.data.root}: no ground-truth boxes in its "
                        f"{len(ds.records)} image(s), nothing to count")
    print(f"{args.split}: {len(m)} boxes")
    for t in THRESHOLDS:
        print(f"IoU with another box of the same class > {t}: {(m > t).mean():.1%}")
    return 0


if __name__ == "__main__":  # pragma: no cover
    main()
