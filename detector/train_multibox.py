"""Training loop of the MultiBox proposal network (the network, priors and loss are in
``proposals.multibox``). Called by ``train-detector --stage multibox``.

Writes into ``out_dir``: ``config.yaml`` (the resolved detector config), ``metrics.jsonl``
(one line per epoch), ``last.pt`` (model + optimizer, for resuming after a kill) and
``multibox.pt`` (the final network, what ``load_multibox`` reads). Each is written atomically.
"""

from __future__ import annotations

import json
import os
import sys
import time

import numpy as np
import torch
from tqdm import tqdm

from backbone.errors import UserError
from proposals.multibox import MultiBox, checkpoint_dict, kmeans_priors, multibox_loss, preprocess

from .checkpoint import atomic_save, safe_torch_load
from .config import save_config, to_dict
from .datasets import load_dataset
from .images import load_image


def _normalised_boxes(rec) -> np.ndarray:
    b = np.asarray(rec.boxes, np.float32).reshape(-1, 4).copy()
    b[:, [0, 2]] /= max(rec.width, 1)
    b[:, [1, 3]] /= max(rec.height, 1)
    b = b.clip(0, 1)
    ok = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])  # drop degenerate (point) boxes
    return b[ok]


def _flip(boxes: np.ndarray, horizontal: bool) -> np.ndarray:
    b = boxes.copy()
    if horizontal:
        b[:, [0, 2]] = 1 - boxes[:, [2, 0]]
    else:
        b[:, [1, 3]] = 1 - boxes[:, [3, 1]]
    return b


def train_multibox(cfg, out_dir: str, device="cpu", split: str | None = None) -> str:
    """Train MultiBox on ``split`` (default ``cfg.data.train_split``) with
    ``cfg.proposals.multibox``; resumes from ``out_dir/last.pt``. Returns the checkpoint path."""
    mb = cfg.proposals.multibox
    if mb.matching not in ("bipartite", "greedy"):
        raise UserError(f"proposals.multibox.matching {mb.matching!r}: choose bipartite or greedy")
    if mb.optimizer not in ("adam", "sgd"):
        raise UserError(f"proposals.multibox.optimizer {mb.optimizer!r}: choose adam or sgd")
    device = torch.device(device)
    os.makedirs(out_dir, exist_ok=True)
    final = os.path.join(out_dir, "multibox.pt")
    last = os.path.join(out_dir, "last.pt")
    save_config(cfg, os.path.join(out_dir, "config.yaml"))

    ds = load_dataset(cfg.data, split or cfg.data.train_split)
    if len(ds) == 0:
        raise UserError(f"split {split or cfg.data.train_split}: no images")
    gts = [_normalised_boxes(r) for r in ds.records]
    S = mb.input_size
    # the whole split, resized once (BCCD: 205 images x 224^2 x 3 = 31 MB)
    images = np.stack([__import__("cv2").resize(load_image(r.path), (S, S), interpolation=__import__("cv2").INTER_AREA)
                       for r in tqdm(ds.records, desc="multibox: images", disable=not sys.stderr.isatty())])

    torch.manual_seed(mb.seed)
    rng = np.random.default_rng(mb.seed)
    start_epoch = 0
    state = None
    if os.path.isfile(last):
        state = safe_torch_load(last, "MultiBox resume checkpoint")
        if state.get("config") != to_dict(mb):
            raise UserError(f"{last}: written with other MultiBox settings; delete it or use another output folder")
        priors = state["state_dict"]["priors"].numpy()
    else:
        priors = kmeans_priors(np.concatenate(gts), mb.num_priors, seed=mb.seed)
    model = MultiBox(mb, priors).to(device).to(memory_format=torch.channels_last)
    if mb.optimizer == "adam":
        opt = torch.optim.AdamW(model.parameters(), lr=mb.lr, weight_decay=mb.weight_decay)
    else:
        opt = torch.optim.SGD(model.parameters(), lr=mb.lr, momentum=mb.momentum, weight_decay=mb.weight_decay)
    sched = torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, mb.epochs))
    if state is not None:
        model.load_state_dict(state["state_dict"])
        opt.load_state_dict(state["optimizer"])
        sched.load_state_dict(state["scheduler"])
        start_epoch = int(state["epoch"])
        rng = np.random.default_rng(mb.seed + start_epoch)
        torch.manual_seed(mb.seed + start_epoch)

    n = len(images)
    for epoch in range(start_epoch, mb.epochs):
        model.train()
        t0 = time.perf_counter()
        order = rng.permutation(n)
        tot = {"loss": 0.0, "loc": 0.0, "conf": 0.0}
        steps = 0
        bar = tqdm(range(0, n, mb.batch_size), desc=f"multibox epoch {epoch + 1}/{mb.epochs}",
                   disable=not sys.stderr.isatty())
        for s in bar:
            idx = order[s:s + mb.batch_size]
            batch, boxes = [], []
            for i in idx:
                im, b = images[i], gts[i]
                if rng.random() < 0.5:
                    im, b = im[:, ::-1], _flip(b, True)
                if rng.random() < 0.5:  # cells have no up or down
                    im, b = im[::-1], _flip(b, False)
                batch.append(np.ascontiguousarray(im))
                boxes.append(b)
            x = preprocess(batch, S, device)
            offsets, logits = model(x)
            loss, parts = multibox_loss(offsets, logits, model.priors, boxes, mb.alpha, mb.matching)
            opt.zero_grad(set_to_none=True)
            loss.backward()
            opt.step()
            tot["loss"] += loss.item()
            tot["loc"] += parts["loc"]
            tot["conf"] += parts["conf"]
            steps += 1
            bar.set_postfix(loss=f"{float(loss.detach()):.3f}")
        sched.step()
        metrics = {"epoch": epoch + 1, **{k: v / max(steps, 1) for k, v in tot.items()},
                   "lr": opt.param_groups[0]["lr"], "seconds": round(time.perf_counter() - t0, 2)}
        with open(os.path.join(out_dir, "metrics.jsonl"), "a", encoding="utf-8") as f:
            f.write(json.dumps(metrics) + "\n")
        print(f"multibox epoch {epoch + 1}/{mb.epochs}: loss {metrics['loss']:.4f} (loc {metrics['loc']:.4f}, "
              f"conf {metrics['conf']:.4f}) {metrics['seconds']:.0f}s", file=sys.stderr, flush=True)
        atomic_save({"config": to_dict(mb), "epoch": epoch + 1,
                     "state_dict": {k: v.detach().cpu() for k, v in model.state_dict().items()},
                     "optimizer": opt.state_dict(), "scheduler": sched.state_dict()}, last)
    model.eval()
    atomic_save(checkpoint_dict(model, epoch=mb.epochs, extra={"classes": list(ds.classes)}), final)
    return final
