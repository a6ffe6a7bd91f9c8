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
import os

import torch

from backbone import NETWORKS, build_backbone
from backbone.errors import UserError
from backbone.multicrop import CROP_COUNTS, IMAGENET_MEAN, IMAGENET_STD, predict_probs

from ..classifier_io import load_classifier
from ..datasets.crops import to_chw
from ..images import list_images, load_image
from .common import add_device_arg, cli_main, resolve_device
from .eval_classifier import write_json

#: native input size of the torchvision ImageNet weights
TORCHVISION_INPUT = {"googlenet": 224, "googlenet_bn": 224, "inception_v3": 299}


def imagenet_classes(arch: str) -> list[str]:
    """The 1000 ImageNet class names of torchvision's weight metadata (no download)."""
    import torchvision.models as tvm

    weights = tvm.Inception_V3_Weights.IMAGENET1K_V1 if arch == "inception_v3" else tvm.GoogLeNet_Weights.IMAGENET1K_V1
    return list(weights.meta["categories"])


def load_members(args, device) -> tuple[list, list[int], list, list, list[str], list[str]]:
    """-> models, input sizes, means, stds, class names, member names."""
    if args.model and (args.arch or args.weights):
        raise UserError("give either --model CKPT... or --arch NAME --weights FILE..., not both")
    if args.model:
        models, sizes, means, stds, names = [], [], [], [], []
        classes = None
        for path in args.model:
            model, meta = load_classifier(path, device, aux_logits=False)
            if classes is None:
                classes = list(meta["classes"])
            elif list(meta["classes"]) != classes:
                raise UserError(f"--model {path}: its classes {meta['classes']} differ from {args.model[0]}'s {classes}; "
                                "an ensemble needs one class list")
            models.append(model)
            sizes.append(int(meta["input_size"]))
            means.append(tuple(meta["mean"]))
            stds.append(tuple(meta["std"]))
            names.append(path)
        return models, sizes, means, stds, classes, names
    if args.arch or args.weights:
        if not args.arch:
            raise UserError("--weights needs --arch NAME (googlenet_bn or inception_v3 for torchvision's ImageNet "
                            "weights, googlenet for the paper's network in this project's layout)")
        if not args.weights:
            raise UserError("--arch needs --weights FILE (a torchvision ImageNet state dict)")
        size = args.input_size or TORCHVISION_INPUT.get(args.arch, 224)
        models = []
        for w in args.weights:
            try:
                models.append(build_backbone(args.arch, 1000, weights=os.path.expanduser(w)).to(device).eval())
            except UserError as e:
                if args.arch == "googlenet" and "does not match" in str(e):
                    raise UserError(f"{e} (torchvision's ImageNet GoogLeNet weights are for --arch googlenet_bn)") from None
                raise
        n = len(models)
        return (models, [size] * n, [IMAGENET_MEAN] * n, [IMAGENET_STD] * n, imagenet_classes(args.arch),
                list(args.weights))
    raise UserError("no model given: use --model CKPT [CKPT ...] (train-classifier checkpoints) or "
                    "--arch NAME --weights FILE [FILE ...] (torchvision ImageNet state dicts)")


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
    p.add_argument("--json", metavar="FILE", help="also write the results as JSON")
    p.add_argument("--batch-size", type=int, default=256, help="crops per forward pass (default 256)")
    add_device_arg(p)
    p.add_argument("--threads", type=int, metavar="N",
                   help="CPU threads for torch (default: torch's choice; 1 is fastest on a shared, busy CPU)")
    return p


@cli_main
def main(argv=None):
    args = build_parser().parse_args(argv)
    if args.threads:
        if args.threads < 1:
            raise UserError(f"--threads {args.threads}: must be >= 1")
        torch.set_num_threads(args.threads)
    device = resolve_device(args.device)
    files = list_images(args.paths)  # before loading models: bad paths fail fast
    models, sizes, means, stds, classes, names = load_members(args, device)
    images = (to_chw(load_image(f)) for f in files)
    probs = predict_probs(models, images, args.crops, sizes, mean=means, std=stds, batch_size=args.batch_size,
                          device=device, total=len(files)).mean(1)  # ensemble: mean over members
    k = max(1, min(args.top, len(classes)))
    top_p, top_i = probs.topk(k, 1)
    results = []
    for f, ps, ix in zip(files, top_p.tolist(), top_i.tolist()):
        results.append({"image": f, "top": [{"label": classes[i], "prob": round(p, 6)} for p, i in zip(ps, ix)]})
        print(f)
        for p, i in zip(ps, ix):
            print(f"  {p:7.4f}  {classes[i]}")
    if args.json:
        write_json(args.json, {"models": names, "crops": args.crops, "results": results})
    return 0


if __name__ == "__main__":  # pragma: no cover
    main()
