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
from backbone.io import json_text
from detector.cli.common import cli_main
from detector.assets import default_model_path
from detector.io.outputs import Outputs, add_output_arg, add_overwrite_arg, is_stream
from detector.model import Detector
from detector.onnx import export_onnx, sidecar_path


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="export-model", description=__doc__.split("\n\n")[0],
                                epilog="example: export-model --model runs/mine/model.pt --out runs/mine/model.onnx; "
                                       "detect --model runs/mine/model.onnx IMAGE")
    p.add_argument("--model", help="detector checkpoint (default: the bundled default model)")
    add_output_arg(p, "--out", required=True, metavar="FILE.onnx", help="the ONNX file (its sidecar: FILE.onnx.json)")
    add_overwrite_arg(p, "--out")
    return p


@cli_main
def main(argv=None) -> int:
    args = build_parser().parse_args(argv)
    if not args.out.endswith(".onnx"):
        raise UserError(f"--out {args.out}: name the file FILE.onnx (its sidecar is FILE.onnx.json)")
    outputs = Outputs([args.model or default_model_path()], args.overwrite, prog="export-model")
    out = outputs.check(args.out, "--out")
    if is_stream(out) or out in outputs.streams:
        raise UserError(f"--out {args.out}: a device or FIFO; export-model writes its sidecar beside the file "
                        "(FILE.onnx.json): give a file path")
    side_path = outputs.check(sidecar_path(out), "--out (its sidecar)")
    det = Detector.from_checkpoint(args.model, torch.device("cpu"))
    data, side = export_onnx(det)
    outputs.write(out, data, what="ONNX model", save=False)
    outputs.write(side_path, json_text(side), what="ONNX sidecar")
    print(f"export-model: wrote {args.out} ({side['kind']}, {side['members']} member(s), classes "
          f"{', '.join(side['classes'])}) and {args.out}.json", file=sys.stderr)
    return 0


if __name__ == "__main__":  # pragma: no cover
    main()
