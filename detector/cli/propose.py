"""propose: region proposals of images, or of a whole dataset split into the on-disk cache.

    propose IMAGE... [--method ss|multibox|ss+multibox] [--preset fast] [--superpixel-scale 2] [--max-total N] [--json OUT]
    propose IMAGE... --model CKPT [--json OUT]
    propose --config C --split S [--data-root R] [--set k=v] [--cache-dir D] [--workers N] [--model CKPT]

With --model, the boxes are the ones the detector CKPT scores in detect (Detector.propose):
its own when its model proposes (proposals.method trunk), else the selective search / MultiBox
of its checkpoint's proposals section (with --split: filled into the cache eval-map --split
reads). The proposal flags are refused beside it (they would change the model's proposals).
"""

from __future__ import annotations

import argparse
import json
import time

from backbone.errors import UserError
from backbone.io import cache_dir, check_writable
from detector.cli.common import (
    add_config_args,
    add_device_arg,
    add_proposal_args,
    add_proposal_model_arg,
    add_strict_arg,
    announce_layout,
    check_proposal_model_args,
    cli_main,
    model_proposals,
    proposal_config,
)
from detector.engine.devices import init_distributed, rank_sync, resolve_device
from detector.io.datasets import load_dataset
from detector.io.images import ImageReads, list_images
from detector.io.outputs import Outputs, add_output_arg, add_overwrite_arg
from detector.model import Detector
from detector.proposal_cache import ensure_proposals
from proposals import propose
from proposals.pipeline import get_multibox, validate




def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="propose", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter, epilog=__doc__.split("\n\n", 1)[1])
    p.add_argument("images", nargs="*", help="image files or folders")
    add_config_args(p, required=False)
    p.add_argument("--split", help="with --config: fill the proposal cache for this split")
    p.add_argument("--workers", type=int, default=2, help="processes for selective search over a split (default 2)")
    add_output_arg(p, "--json", help="write the boxes as JSON: [{image, boxes, seconds}]")
    add_overwrite_arg(p, "--json")
    add_proposal_args(p)
    add_proposal_model_arg(p)
    add_device_arg(p)
    add_strict_arg(p, "images")
    return p


@cli_main
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if bool(args.images) == bool(args.split):
        raise UserError("give image files, or --config CONFIG --split SPLIT (not both)")
    if args.split and not args.config:
        raise UserError("--split needs --config")
    check_proposal_model_args(args)
    full, cfg = proposal_config(args)
    if args.model is None:
        validate(cfg)  # flags included (--working-width 100000 asked for 22 GB), before any work
    outputs = Outputs([args.config, args.model if args.model else cfg.multibox_checkpoint,
                       full.data.root if full else None], args.overwrite, prog="propose")
    images = [] if args.split else list_images(args.images)
    for path in images:
        outputs.add_input(path, what="input image")
    json_path = outputs.check(args.json, "--json") if args.json else None  # fail now, not after the whole split
    if args.split:
        check_writable(args.cache_dir or cache_dir(), what="--cache-dir" if args.cache_dir else "cache folder",
                       folder=True)
    device = resolve_device(args.device)
    detector = Detector.from_checkpoint(args.model, device) if args.model else None  # read before any work

    if args.split:

        rank, _world = init_distributed(device)  # under torchrun: every rank computes its share
        announce_layout(full, "propose")
        ds = load_dataset(full.data, args.split)
        t0 = time.perf_counter()
        if detector is not None:
            boxes, secs, _own = model_proposals(detector, ds, cache_dir=args.cache_dir, workers=args.workers,
                                                sync=rank_sync("propose"))
        else:
            boxes, secs = ensure_proposals(ds, cfg, cache_dir=args.cache_dir, workers=args.workers, device=device,
                                           with_seconds=True, sync=rank_sync("propose"))
        if rank != 0:  # rank 0 reports
            return 0
        n = max(len(boxes), 1)
        total = seconds = 0.0
        for i in range(len(boxes)):  # one image at a time: never the whole split in memory
            b, s = boxes[i], secs[i]
            total, seconds = total + len(b), seconds + s
        print(f"{args.split}: {len(boxes)} images, {total / n:.0f} boxes/image, "
              f"{seconds / n:.2f} s/image when computed; done in {time.perf_counter() - t0:.1f} s")
        if json_path:
            _write_json(outputs, json_path, [{"image": r.path, "boxes": b.tolist(), "seconds": s}
                                             for r, b, s in zip(ds.records, boxes, secs)])
        return 0


    multibox = get_multibox(cfg, device) if detector is None and cfg.uses_multibox else None
    items = []
    reads = ImageReads("images", "left out")  # one counted warning for the truncated, one for the undecodable
    for path in images:
        image = reads.load(path)
        if image is None:
            continue
        t0 = time.perf_counter()
        boxes = detector.image_proposals(image) if detector is not None else propose(image, cfg, multibox=multibox)
        dt = time.perf_counter() - t0
        print(f"{path}: {len(boxes)} boxes in {dt:.2f} s ({image.shape[1]}x{image.shape[0]})")
        items.append({"image": path, "boxes": [[round(float(v), 2) for v in b] for b in boxes], "seconds": round(dt, 4)})
    reads.report()
    if json_path:
        _write_json(outputs, json_path, items)
    return 0


def _write_json(outputs: Outputs, path: str, items: list) -> None:
    outputs.write(path, json.dumps(items, allow_nan=False) + "\n", what="--json")


if __name__ == "__main__":  # pragma: no cover
    main()
