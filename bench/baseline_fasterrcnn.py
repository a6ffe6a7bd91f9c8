"""The baseline a user would pick instead of our detector: torchvision's Faster R-CNN with a
MobileNetV3-Large FPN backbone at 320 px (``fasterrcnn_mobilenet_v3_large_320_fpn``), trained
from scratch on BCCD ``trainval`` for a wall-clock budget, then scored on ``test`` with our
PASCAL VOC all-point AP at IoU 0.5 (``eval.evaluate("voc", ...)``, as ``eval-map`` does).

    python bench/baseline_fasterrcnn.py --minutes 60 --json runs/baseline.json

The issue's authors report mAP@0.5 0.665 (RBC 0.81, WBC 0.96, Platelets 0.22) at 0.09 s/image
from this recipe on this machine (2 CPU cores). The command above, run on 2026-11-22 (2 threads,
the CPU partly shared), gave 0.625 (RBC 0.817, WBC 0.984, Platelets 0.075) at 0.091 s/image
after 885 steps (12.1 epochs): docs/baseline_fasterrcnn_bccd.json.

Recipe:

- Model: ``fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None,
  num_classes=C + 1)``. Nothing is downloaded. With no pretrained weights torchvision makes every
  backbone layer trainable and uses ordinary (not frozen) BatchNorm. Everything else is
  torchvision's default: images resized to a short side of 320 (long side at most 640) and
  normalised inside the model; 150 RPN proposals per image at test time; RPN score threshold
  0.05; box score threshold 0.05 (``model.roi_heads.score_thresh``, set explicitly below, the
  same value as the default); NMS 0.5 per class; at most 100 detections per image.
- Data: the project's reader (``configs/bccd.yaml``, ``detector.datasets.load_dataset``). Boxes
  go in as they are (float xyxy, 0-based, x2 exclusive), the same continuous convention
  torchvision uses. Images are RGB in [0, 1]. The only augmentation is a random horizontal flip
  (p = 0.5).
- Training: SGD with momentum 0.9 and weight decay 1e-4, as in torchvision's detection reference
  (references/detection/train.py). The learning rate is 0.01 (``--lr``). The reference uses 0.02
  for 16 images per step. Batch size is 4 (``--batch-size``). The learning rate warms up
  linearly from lr/1000 over the first min(1000, steps per epoch - 1) steps, as the reference does
  in its first epoch, and then stays constant: with a time budget the number of epochs is not
  known in advance, so there are no LR steps. Epochs (a fresh shuffle each) repeat until
  ``--minutes`` of training time is spent; the clock is checked after every step, so the last
  epoch can be partial. Training time covers image loading and the optimiser steps, and leaves
  out model construction and evaluation.
- Evaluation: ``model.eval()`` on each test image in turn (batch 1). Seconds per image is the mean
  time of the model call alone (tensor conversion, the model's resize and normalisation, the
  network, postprocessing, copying the results back to numpy), after one untimed warm-up call.
  Image decoding is timed separately (``load_seconds_per_image``).

Options: ``--minutes`` (60), ``--seed`` (0), ``--threads`` (torch threads, 2), ``--lr``,
``--batch-size``, ``--data-root`` (default: the config's ``../shared/data/bccd``, relative to the
repository), ``--max-images N`` (only the first N trainval and N test images, for a smoke run),
``--json OUT`` (the numbers as JSON), ``--out DIR`` (saves the trained weights to
``DIR/baseline_fasterrcnn.pt``).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import math
import os
import random
import sys
import time

import numpy as np

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
sys.path.insert(0, REPO)

CONFIG = os.path.join(REPO, "configs", "bccd.yaml")
MODEL_NAME = "fasterrcnn_mobilenet_v3_large_320_fpn"


def parse_args(argv=None):
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--minutes", type=float, default=60.0, help="training time budget in minutes (default 60)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=2, help="torch intra-op threads (default 2)")
    p.add_argument("--lr", type=float, default=0.01)
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--data-root", default=None,
                   help="BCCD root (default: data.root of configs/bccd.yaml, relative to the repository)")
    p.add_argument("--max-images", type=int, default=None,
                   help="use only the first N trainval and N test images (smoke runs)")
    p.add_argument("--json", default=None, metavar="OUT", help="write the numbers to this JSON file")
    p.add_argument("--out", default=None, metavar="DIR", help="save the trained weights in DIR")
    args = p.parse_args(argv)
    if not args.minutes > 0:
        p.error("--minutes must be positive")
    if args.threads < 1 or args.batch_size < 1:
        p.error("--threads and --batch-size must be at least 1")
    if args.max_images is not None and args.max_images < 1:
        p.error("--max-images must be at least 1")
    return args


def load_data(data_root, max_images):
    from detector.config import load_detector_config
    from detector.io.datasets import load_dataset

    cfg = load_detector_config(CONFIG, [], data_root)
    if not os.path.isabs(cfg.data.root):
        # the config's root is relative to the repository, not to the working directory
        cfg.data.root = os.path.normpath(os.path.join(REPO, cfg.data.root))
    train = load_dataset(cfg.data, "trainval")
    test = load_dataset(cfg.data, cfg.data.test_split)
    if max_images is not None:
        train = dataclasses.replace(train, records=train.records[:max_images])
        test = dataclasses.replace(test, records=test.records[:max_images])
    return cfg, train, test


def to_tensor(img):
    import torch

    if not img.flags.writeable:   # PIL-backed arrays are read-only; torch.from_numpy warns on them
        img = img.copy()
    return torch.from_numpy(img).permute(2, 0, 1).float().div_(255.0)


def make_target(rec, width, flip):
    import torch

    boxes = np.asarray(rec.boxes, dtype=np.float32).reshape(-1, 4).copy()
    if flip and len(boxes):
        x1 = width - boxes[:, 2]
        x2 = width - boxes[:, 0]
        boxes[:, 0], boxes[:, 2] = x1, x2
    return {"boxes": torch.from_numpy(boxes), "labels": torch.as_tensor(rec.labels, dtype=torch.int64)}


def train(model, records, args, rng):
    import torch
    from tqdm import tqdm

    from detector.io.images import load_image

    params = [p for p in model.parameters() if p.requires_grad]
    opt = torch.optim.SGD(params, lr=args.lr, momentum=0.9, weight_decay=1e-4)
    steps_per_epoch = math.ceil(len(records) / args.batch_size)
    warmup_steps = min(1000, steps_per_epoch - 1)
    warmup_factor = 1.0 / 1000

    def lr_at(step):
        if step >= warmup_steps:
            return args.lr
        alpha = step / warmup_steps
        return args.lr * (warmup_factor * (1 - alpha) + alpha)

    budget = args.minutes * 60.0
    model.train()
    step = 0
    epoch = 0
    t0 = time.perf_counter()
    done = False
    while not done:
        order = rng.permutation(len(records))
        bar = tqdm(range(steps_per_epoch), desc=f"epoch {epoch + 1}", leave=False, file=sys.stderr,
                   dynamic_ncols=True)
        losses = []
        for b in bar:
            batch = [records[i] for i in order[b * args.batch_size:(b + 1) * args.batch_size]]
            images, targets = [], []
            for rec in batch:
                img = load_image(rec.path)
                flip = rng.random() < 0.5
                if flip:
                    img = img[:, ::-1]
                images.append(to_tensor(np.ascontiguousarray(img)))
                targets.append(make_target(rec, img.shape[1], flip))
            for g in opt.param_groups:
                g["lr"] = lr_at(step)
            loss_dict = model(images, targets)
            loss = sum(loss_dict.values())
            if not torch.isfinite(loss):
                raise SystemExit(f"step {step + 1}: loss is {loss.item()} "
                                 f"({ {k: round(v.item(), 4) for k, v in loss_dict.items()} }); try a lower --lr")
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            step += 1
            losses.append(loss.item())
            elapsed = time.perf_counter() - t0
            bar.set_postfix(loss=f"{losses[-1]:.3f}", lr=f"{lr_at(step - 1):.4g}",
                            min=f"{elapsed / 60:.1f}/{args.minutes:g}")
            if elapsed >= budget:
                done = True
                break
        bar.close()
        epoch += 1
        full = len(losses) == steps_per_epoch
        print(f"epoch {epoch}{'' if full else ' (partial)'}: {len(losses)} steps, mean loss "
              f"{np.mean(losses):.4f}, last {losses[-1]:.4f}, lr {lr_at(step - 1):.4g}, "
              f"{(time.perf_counter() - t0) / 60:.2f} min", flush=True)
    train_seconds = time.perf_counter() - t0
    return {"train_minutes": train_seconds / 60.0, "steps": step, "epochs": step / steps_per_epoch,
            "epochs_started": epoch, "steps_per_epoch": steps_per_epoch, "warmup_steps": warmup_steps,
            "final_epoch_mean_loss": float(np.mean(losses))}


def detect(model, records):
    import torch
    from tqdm import tqdm

    from detector.io.images import load_image

    model.eval()
    dets, model_s, load_s = [], [], []
    with torch.inference_mode():
        if records:
            model([to_tensor(load_image(records[0].path))])   # warm-up, not timed
        for rec in tqdm(records, desc="test", leave=False, file=sys.stderr, dynamic_ncols=True):
            t = time.perf_counter()
            img = load_image(rec.path)
            load_s.append(time.perf_counter() - t)
            t = time.perf_counter()
            out = model([to_tensor(img)])[0]
            d = {"boxes": out["boxes"].numpy().astype(np.float64).reshape(-1, 4),
                 "scores": out["scores"].numpy().astype(np.float64),
                 "labels": out["labels"].numpy().astype(np.int64)}
            model_s.append(time.perf_counter() - t)
            dets.append(d)
    return dets, float(np.mean(model_s)) if model_s else float("nan"), \
        float(np.mean(load_s)) if load_s else float("nan")


def main(argv=None):
    args = parse_args(argv)
    import torch
    import torchvision
    from torchvision.models.detection import fasterrcnn_mobilenet_v3_large_320_fpn

    from detector.io.datasets import ground_truth
    from eval import evaluate

    torch.set_num_threads(args.threads)
    random.seed(args.seed)
    np.random.seed(args.seed)
    torch.manual_seed(args.seed)
    rng = np.random.default_rng(args.seed)

    cfg, train_ds, test_ds = load_data(args.data_root, args.max_images)
    classes = list(train_ds.classes)
    C = len(classes)
    print(f"{MODEL_NAME} (torch {torch.__version__}, torchvision {torchvision.__version__}), "
          f"from scratch, {C} classes; data {cfg.data.root}: trainval {len(train_ds.records)} images, "
          f"test {len(test_ds.records)} images; budget {args.minutes:g} min, batch {args.batch_size}, "
          f"lr {args.lr:g}, seed {args.seed}, {args.threads} threads", flush=True)

    model = fasterrcnn_mobilenet_v3_large_320_fpn(weights=None, weights_backbone=None, num_classes=C + 1)
    model.roi_heads.score_thresh = 0.05

    info = train(model, train_ds.records, args, rng)
    if args.out:
        os.makedirs(args.out, exist_ok=True)
        path = os.path.join(args.out, "baseline_fasterrcnn.pt")
        torch.save({"model": MODEL_NAME, "classes": classes, "state_dict": model.state_dict(),
                    "args": vars(args), **info}, path)
        print(f"weights: {path}")

    dets, sec, load_sec = detect(model, test_ds.records)
    res = evaluate("voc", ground_truth(test_ds), dets, C)

    w = max(len("class"), *(len(c) for c in classes))
    print()
    print(f"{'class':<{w}}  {'AP':>6}  {'npos':>5}  {'dets':>6}")
    for name, ap, npos, nd in zip(classes, res["AP"], res["npos"], res["num_detections"]):
        print(f"{name:<{w}}  {ap:6.4f}  {npos:5d}  {nd:6d}")
    print(f"{'mAP':<{w}}  {res['mAP']:6.4f}")
    print(f"VOC all-point AP at IoU 0.5 on {len(test_ds.records)} test images; "
          f"{sec:.4f} s/image (model), {load_sec:.4f} s/image (image loading); trained "
          f"{info['train_minutes']:.2f} min, {info['epochs']:.2f} epochs, {info['steps']} steps")

    if args.json:
        out = {"model": MODEL_NAME, "protocol": "voc", "iou": 0.5, "mAP": res["mAP"],
               "AP": {c: a for c, a in zip(classes, res["AP"])},
               "npos": dict(zip(classes, res["npos"])),
               "num_detections": dict(zip(classes, res["num_detections"])),
               "seconds_per_image": sec, "load_seconds_per_image": load_sec,
               "train_images": len(train_ds.records), "test_images": len(test_ds.records),
               "data_root": cfg.data.root, "torch": torch.__version__, "torchvision": torchvision.__version__,
               "args": vars(args), **info}
        d = os.path.dirname(os.path.abspath(args.json))
        os.makedirs(d, exist_ok=True)
        with open(args.json, "w") as f:
            json.dump(out, f, indent=2, allow_nan=True)
            f.write("\n")
        print(f"json: {args.json}")


if __name__ == "__main__":
    main()
