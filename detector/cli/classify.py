"""classify: the top-5 classes of images, with multi-crop testing and ensembles (paper section 7).

    classify photo.jpg folder/ --model runs/a/model.pt runs/b/model.pt --crops 144
    classify photo.jpg --arch googlenet_bn --weights ~/.cache/torch/hub/checkpoints/googlenet-1378be20.pth

``--model`` takes ``train-classifier`` checkpoints (each carries its network, input size and
class list; several make an ensemble, which must share the class list). ``--arch`` with
``--weights`` takes torchvision ImageNet state dicts (1000 classes, named from torchvision's
weight metadata; several files make an ensemble): torchvision's weights are for
``googlenet_bn`` (its GoogLeNet has batch norm) and ``inception_v3``; the paper's
``googlenet`` has none in torchvision and takes 1000-class state dicts in this project's layout. Probabilities are the softmax averaged over
the crops and over the ensemble members.
"""

from __future__ import annotations

import argparse


from backbone import NETWORKS
from backbone.config import MAX_INPUT_SIZE
from backbone.errors import UserError
from backbone.multicrop import CROP_COUNTS, predict_probs
from detector.classification.members import load_members
from detector.classification.transforms import to_chw
from detector.cli.common import add_device_arg, add_threads_arg, cli_main, set_threads, write_json_output
from detector.engine.devices import resolve_device
from detector.io.images import list_images, load_image
from detector.io.outputs import Outputs, add_output_arg, add_overwrite_arg


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="classify", description=__doc__.split("\n\n")[0])
    p.add_argument("paths", nargs="+", metavar="IMAGE_OR_FOLDER", help="image files and/or folders of images")
    p.add_argument("--model", nargs="+", metavar="CKPT", help="train-classifier checkpoint(s); several = an ensemble")
    p.add_argument("--arch", choices=sorted(NETWORKS),
                   help="network of the --weights files: googlenet_bn (torchvision's GoogLeNet, file "
                        "googlenet-*.pth) or inception_v3 (inception_v3_google-*.pth) for torchvision's ImageNet "
                        "weights; googlenet is the paper's network (no batch norm), for which torchvision has "
                        "no ImageNet weights: it takes state dicts in this project's own layout only")
    p.add_argument("--weights", nargs="+", metavar="FILE", help="torchvision ImageNet state dict(s) for --arch")
    p.add_argument("--input-size", type=int, help="crop size for --arch models (default: 224, inception_v3 299)")
    p.add_argument("--crops", type=int, default=1, choices=CROP_COUNTS, help="test crops per image (default 1)")
    p.add_argument("--top", type=int, default=5, help="classes to show per image (default 5)")
    add_output_arg(p, "--json", help="also write the results as JSON")
    add_overwrite_arg(p, "--json")
    p.add_argument("--batch-size", type=int, default=256, help="crops per forward pass (default 256)")
    add_device_arg(p)
    add_threads_arg(p)
    return p


@cli_main
def main(argv=None):
    args = build_parser().parse_args(argv)
    for flag, n in (("--top", args.top), ("--batch-size", args.batch_size)):
        if n < 1:
            raise UserError(f"{flag} {n}: must be >= 1")
    if args.input_size is not None and not 1 <= args.input_size <= MAX_INPUT_SIZE:  # 100000: 200 GB
        raise UserError(f"--input-size {args.input_size}: must be in [1, {MAX_INPUT_SIZE}]")
    set_threads(args.threads)
    device = resolve_device(args.device)
    files = list_images(args.paths)  # before loading models: bad paths fail fast
    outputs = Outputs([*(args.model or []), *(args.weights or [])], args.overwrite, prog="classify")
    for f in files:
        outputs.add_input(f, what="input image")
    json_path = outputs.check(args.json, "--json") if args.json else None
    members = load_members(args.model, args.arch, args.weights, device, args.input_size)
    classes = members[0].classes
    images = (to_chw(load_image(f)) for f in files)
    probs = predict_probs([m.model for m in members], images, args.crops, [m.input_size for m in members],
                          mean=[m.mean for m in members], std=[m.std for m in members], batch_size=args.batch_size,
                          device=device, total=len(files)).mean(1)  # ensemble: mean over members
    k = max(1, min(args.top, len(classes)))
    top_p, top_i = probs.topk(k, 1)
    results = []
    for f, ps, ix in zip(files, top_p.tolist(), top_i.tolist()):
        results.append({"image": f, "top": [{"label": classes[i], "prob": round(p, 6)} for p, i in zip(ps, ix)]})
        print(f)
        for p, i in zip(ps, ix):
            print(f"  {p:7.4f}  {classes[i]}")
    if json_path:
        write_json_output(outputs, json_path, {"models": [m.name for m in members], "crops": args.crops, "results": results})
    return 0


if __name__ == "__main__":  # pragma: no cover
    main()
