"""export-model: a detector checkpoint's networks as ONNX, for onnxruntime and other runtimes.

Writes FILE.onnx (every member's networks in one graph: the fast kind's trunk, roi_align and
head with a dynamic image size and box count; R-CNN's region classifier over a dynamic batch
of warped crops) and FILE.onnx.json beside it (the classes, the whole config: preprocessing
and postprocessing settings, the graph's input and output names). ``detect --model FILE.onnx``
runs the same pipeline with the networks in onnxruntime (proposals, resizing or warping, the
ensemble average and post-processing in Python). Needs ``pip install -e '.[onnx]'``.
"""

from __future__ import annotations

import argparse
import sys

import torch

from backbone.errors import UserError
from backbone.io import check_writable
from detector.cli.common import cli_main
from detector.model import Detector
from detector.onnx import export_onnx


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="export-model", description=__doc__.split("\n\n")[0],
                                epilog="example: export-model --model runs/mine/model.pt --out runs/mine/model.onnx; "
                                       "detect --model runs/mine/model.onnx IMAGE")
    p.add_argument("--model", help="detector checkpoint (default: the bundled default model)")
    p.add_argument("--out", required=True, metavar="FILE.onnx", help="the ONNX file (its sidecar: FILE.onnx.json)")
    return p


@cli_main
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not args.out.endswith(".onnx"):
        raise UserError(f"--out {args.out}: name the file FILE.onnx (its sidecar is FILE.onnx.json)")
    check_writable(args.out, what="--out")
    check_writable(args.out + ".json", what="--out (its sidecar)")
    det = Detector.from_checkpoint(args.model, torch.device("cpu"))
    side = export_onnx(det, args.out)
    print(f"export-model: wrote {args.out} ({side['kind']}, {side['members']} member(s), classes "
          f"{', '.join(side['classes'])}) and {args.out}.json", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    main()
