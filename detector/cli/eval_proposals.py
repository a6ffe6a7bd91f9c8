"""eval-proposals: recall at IoU 0.5 / 0.7, ABO, MABO, boxes and seconds per image of a
split's proposals (computed into the cache when missing), and the recall-vs-number-of-boxes
curve as a picture (only with ``--plot PATH``: nothing is written into the working folder
unasked). Outputs follow the rule of :mod:`detector.io.outputs`.

With ``--model CKPT`` the proposals measured are the ones that detector scores (its own when
its model proposes, e.g. ``proposals.method: trunk``; else its checkpoint's selective search /
MultiBox, from the cache), so that a proposal head and selective search are measured by the
same numbers; ``--config`` then gives only the data (its proposals section is not used)."""

from __future__ import annotations

import argparse
import json
import os

from backbone.errors import UserError
from backbone.io import cache_dir, check_writable
from detector.cli.common import (
    add_config_args,
    add_device_arg,
    add_proposal_args,
    add_proposal_model_arg,
    announce_layout,
    check_proposal_model_args,
    cli_main,
    model_proposals,
    proposal_config,
)
from detector.engine.devices import init_distributed, rank_sync, resolve_device
from detector.io.datasets import load_dataset
from detector.io.figures import figure_format, figure_writer
from detector.io.outputs import Outputs, add_output_arg, add_overwrite_arg
from detector.model import Detector
from detector.proposal_cache import ensure_proposals
from eval.figures import subplots
from eval.proposal_recall import proposal_recall, recall_curve

#: what matplotlib's Agg backend writes (by the --plot extension)
PLOT_FORMATS = {"png", "pdf", "svg", "svgz", "eps", "ps", "jpg", "jpeg", "tif", "tiff", "webp", "pgf", "raw", "rgba"}

CURVE_COUNTS = (1, 2, 5, 10, 20, 50, 100, 200, 500, 1000, 2000, 5000)


def evaluate_split(ds, boxes, max_boxes=None) -> dict:

    res = proposal_recall([r.boxes for r in ds.records], [r.labels for r in ds.records], boxes,
                          num_classes=len(ds.classes), max_boxes=max_boxes)
    res["classes"] = list(ds.classes)
    res["curve"] = {"counts": list(CURVE_COUNTS),
                    "recall@0.5": recall_curve([r.boxes for r in ds.records], boxes, CURVE_COUNTS, 0.5).tolist(),
                    "recall@0.7": recall_curve([r.boxes for r in ds.records], boxes, CURVE_COUNTS, 0.7).tolist()}
    return res


def format_report(res: dict) -> str:
    lines = [f"images {res['num_images']}  ground-truth boxes {res['num_gt']}  boxes/image {res['boxes_per_image']:.0f}"
             f"  s/image {res['seconds_per_image']:.2f}",
             f"{'class':<12}{'n':>6}{'recall@0.5':>12}{'recall@0.7':>12}{'ABO':>8}"]
    for c, rc, abo, n in zip(res["classes"], res["recall_per_class"], res["abo_per_class"], res["num_gt_per_class"]):
        if rc is None:
            lines.append(f"{c:<12}{n:>6}{'-':>12}{'-':>12}{'-':>8}")
        else:
            lines.append(f"{c:<12}{n:>6}{rc['0.5']:>12.3f}{rc['0.7']:>12.3f}{abo:>8.3f}")
    lines.append(f"{'all':<12}{res['num_gt']:>6}{res['recall']['0.5']:>12.3f}{res['recall']['0.7']:>12.3f}{res['abo']:>8.3f}")
    lines.append(f"MABO {res['mabo']:.3f}")
    return "\n".join(lines)


def plot_curve(res: dict, path: str, title: str, outputs: Outputs) -> None:
    """The recall curves of ``res`` to ``path`` (checked by ``outputs``), format by extension."""
    fig, ax = subplots(figsize=(5, 3.6))
    for key in ("recall@0.5", "recall@0.7"):
        ax.plot(res["curve"]["counts"], res["curve"][key], marker="o", label=key)
    ax.set_xscale("log")
    ax.set_xlabel("proposals per image (first n)")
    ax.set_ylabel("recall")
    ax.set_ylim(0, 1)
    ax.grid(True, alpha=0.3)
    ax.legend()
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    try:
        outputs.write(path, figure_writer(fig, figure_format(path)), what="--plot")
    except ValueError as e:  # matplotlib: an unknown format (extension)
        raise UserError(f"--plot {path}: cannot write that format ({e})") from None


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="eval-proposals", description=__doc__)
    add_config_args(p, required=True)
    p.add_argument("--split", required=True, help="dataset split (e.g. test)")
    p.add_argument("--workers", type=int, default=2, help="processes for selective search (default 2)")
    p.add_argument("--max-images", type=int, help="evaluate the first N images of the split only")
    p.add_argument("--max-boxes", type=int, help="score only the first N proposals of each image")
    add_output_arg(p, "--plot", help="write the recall-vs-#boxes curve to this picture (PNG, or by the extension: "
                                     "pdf, svg, ...); default: no picture")
    add_output_arg(p, "--json", help="write the numbers as JSON")
    add_overwrite_arg(p, "--plot / --json")
    add_proposal_args(p)
    add_proposal_model_arg(p)
    add_device_arg(p)
    return p


@cli_main
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    check_proposal_model_args(args)
    full, cfg = proposal_config(args)
    # fail now, not after computing the proposals of the whole split
    outputs = Outputs([args.config, args.model if args.model else cfg.multibox_checkpoint, full.data.root],
                      args.overwrite, prog="eval-proposals")
    plot_path = json_path = None
    if args.plot:
        if figure_format(args.plot) not in PLOT_FORMATS:
            raise UserError(f"--plot {args.plot}: unknown picture format (use one of .{', .'.join(sorted(PLOT_FORMATS))})")
        plot_path = outputs.check(args.plot, "--plot")
    if args.json:
        json_path = outputs.check(args.json, "--json")
    check_writable(args.cache_dir or cache_dir(), what="--cache-dir" if args.cache_dir else "cache folder", folder=True)

    device = resolve_device(args.device)
    detector = Detector.from_checkpoint(args.model, device) if args.model else None  # read before any work
    rank, _world = init_distributed(device)  # under torchrun: every rank computes its share
    announce_layout(full, "eval-proposals")
    ds = load_dataset(full.data, args.split)
    if args.max_images is not None:
        if args.max_images < 1:
            raise UserError(f"--max-images {args.max_images}: must be at least 1")
        ds.records = ds.records[: args.max_images]
    if detector is not None:
        boxes, secs, own = model_proposals(detector, ds, cache_dir=args.cache_dir, workers=args.workers,
                                           sync=rank_sync("eval-proposals"))
        cfg = detector.cfg.proposals
    else:
        boxes, secs = ensure_proposals(ds, cfg, cache_dir=args.cache_dir, workers=args.workers,
                                       device=device, with_seconds=True, sync=rank_sync("eval-proposals"))
    if rank != 0:  # rank 0 evaluates (reading the boxes per image) and reports
        return 0
    res = evaluate_split(ds, boxes, args.max_boxes)
    res["seconds_per_image"] = sum(secs) / max(len(secs), 1)  # read one file at a time
    res["split"] = args.split
    res["proposals"] = {k: getattr(cfg, k) for k in ("method", "backend", "preset", "superpixel_scale",
                                                     "working_width", "min_box_width", "multibox_top_k",
                                                     "max_total")}
    title = f"{args.split}: {cfg.method} {cfg.backend} {cfg.preset} x{cfg.superpixel_scale:g}"
    if detector is not None:
        res["proposals"].update(model=args.model, own=own)
        title = f"{args.split}: model {os.path.basename(args.model)}" + ("" if own else f" ({title.split(': ')[1]})")
        print(f"proposals of model {args.model}: " + ("its own" if own else
              f"its configured {cfg.method} (the cache's boxes eval-map --split scores)"))
    print(format_report(res))
    if plot_path:
        plot_curve(res, plot_path, title, outputs)
        print(f"curve: {args.plot}")
    if json_path:
        outputs.write(json_path, json.dumps(res, indent=1, allow_nan=False) + "\n", what="--json")
    return 0


if __name__ == "__main__":  # pragma: no cover
    main()
