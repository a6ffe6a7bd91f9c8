"""Training the region classifier ensemble (R-CNN fine-tuning), resumable and distributed.

One member at a time: each member differs in its seed (initialisation, sampling order,
flips, dropout). Per step, ``train.images_per_batch`` images each give
``batch_size / images_per_batch`` regions, ``fg_fraction`` of them foreground (IoU >= 0.5
with a ground-truth box, the ground-truth boxes included) and the rest background, as
R-CNN's 32 + 96 of 128. After every epoch the state is saved atomically; a killed run
resumes from it and ends exactly where an unbroken run would (every random stream is seeded
by (seed, member, epoch)).
"""

from __future__ import annotations

import json
import math
import os
import sys
import time

import numpy as np
import torch
import torch.nn.functional as F
from torch.nn.parallel import DistributedDataParallel as DDP
from tqdm import tqdm

from backbone.errors import UserError

from .checkpoint import atomic_save, safe_torch_load, save_detector
from .config import save_config, to_dict
from .distributed import barrier, broadcast_object, dist_info, init_distributed
from .images import load_image
from .inference import BOX_CODER_WEIGHTS, Detector
from .region_classifier import RegionClassifier
from .sampling import flip_boxes, image_shards, label_regions, sample_regions
from .schema import DetectorConfig
from .warp import to_tensor_image, warp_regions

STATE_FILE = "train_state.pt"
MODEL_FILE = "model.pt"


def _seed(*parts: int) -> int:
    return int(np.random.SeedSequence(list(parts)).generate_state(1)[0])


def lr_at(cfg: DetectorConfig, epoch: int, step: int) -> float:
    """Step schedule (x lr_gamma at each epoch in lr_steps) with a linear warm-up."""
    t = cfg.train
    lr = t.lr * (t.lr_gamma ** sum(1 for s in t.lr_steps if epoch >= s))
    if t.warmup_steps and step < t.warmup_steps:
        lr *= (step + 1) / t.warmup_steps
    return lr


def resolve_transform_input(cfg: DetectorConfig) -> None:
    """Settle ``model.transform_input`` when left as None: on when ``model.init`` is
    torchvision ImageNet weights (or a classifier trained with them), else off."""
    m = cfg.model
    if m.transform_input is None:
        from .classifier_init import init_transform_input
        m.transform_input = init_transform_input(m.init, m.arch) if m.init else False


def build_member(cfg: DetectorConfig, num_classes: int, seed: int) -> RegionClassifier:
    """A fresh region classifier seeded by ``seed``, its backbone from ``model.init`` if set."""
    torch.manual_seed(seed)
    m = cfg.model
    resolve_transform_input(cfg)
    model = RegionClassifier(m.arch, num_classes, aux_logits=m.aux_logits, bbox_reg=m.bbox_reg,
                             transform_input=m.transform_input)
    if m.init:
        from .classifier_init import apply_init
        apply_init(model, m.init)
    return model


class RegionBatcher:
    """Builds training batches of warped regions from images, proposals and ground truth."""

    def __init__(self, cfg: DetectorConfig, dataset, proposals: list[np.ndarray], device: torch.device):
        self.cfg = cfg
        self.dataset = dataset
        self.proposals = [torch.as_tensor(np.asarray(p, np.float32).reshape(-1, 4)[: cfg.train.max_proposals]) for p in proposals]
        self.device = device
        self.cache: dict[int, torch.Tensor] | None = {} if len(dataset) <= cfg.train.cache_images else None
        self.coder = None
        if cfg.model.bbox_reg:
            from torchvision.models.detection._utils import BoxCoder
            self.coder = BoxCoder(BOX_CODER_WEIGHTS)

    def image(self, i: int) -> torch.Tensor:
        if self.cache is not None and i in self.cache:
            return self.cache[i]
        img = torch.from_numpy(np.array(load_image(self.dataset.records[i].path)))
        if self.cache is not None:
            self.cache[i] = img
        return img

    def batch(self, indices, gen: torch.Generator):
        t = self.cfg.train
        per_image = max(1, t.batch_size // len(indices))
        crops, labels, targets = [], [], []
        for i in indices:
            rec = self.dataset.records[i]
            img = self.image(i)
            props = self.proposals[i]
            gt = torch.as_tensor(rec.boxes)
            gl = torch.as_tensor(rec.labels)
            width = img.shape[1]
            if t.flip and torch.rand(1, generator=gen).item() < 0.5:
                img = img.flip(1)
                props = flip_boxes(props, width)
                gt = flip_boxes(gt, width)
            boxes, lab, idx, _ = label_regions(props, gt, gl, t.fg_iou, t.bg_iou_low)
            pick = sample_regions(lab, per_image, t.fg_fraction, gen)
            if len(pick) == 0:
                continue
            timg = to_tensor_image(img, self.device)
            crops.append(warp_regions(timg, boxes[pick], self.cfg.model.input_size, self.cfg.model.context_pad))
            labels.append(lab[pick])
            if self.coder is not None:
                matched = gt[idx[pick]] if len(gt) else boxes[pick]
                targets.append(self.coder.encode_single(matched.float(), boxes[pick].float()))
        if not crops:
            return None
        x = torch.cat(crops)
        y = torch.cat(labels).to(self.device)
        reg = torch.cat(targets).to(self.device) if targets else None
        return x, y, reg


def region_loss(out, y: torch.Tensor, reg_targets: torch.Tensor | None, cfg: DetectorConfig):
    """Cross-entropy (+ aux heads at aux_weight) + smooth-L1 box regression on foreground."""
    loss = F.cross_entropy(out.logits, y)
    parts = {"cls": loss.item()}
    for a in out.aux_logits:
        loss = loss + cfg.train.aux_weight * F.cross_entropy(a, y)
    if out.deltas is not None:
        fg = torch.nonzero(y > 0).flatten()
        if reg_targets is not None and len(fg):
            pred = out.deltas[fg, y[fg] - 1]
            box = F.smooth_l1_loss(pred, reg_targets[fg], beta=1 / 9, reduction="sum") / max(1, len(y))
            loss = loss + cfg.train.bbox_weight * box
            parts["box"] = box.item()
        else:
            # no foreground: the box head still joins the graph (zero gradient), as DDP
            # (find_unused_parameters=False) needs every parameter to get one on every rank
            loss = loss + 0.0 * out.deltas.sum()
    return loss, parts


def validate(cfg: DetectorConfig, classes, members, val_set, val_props, device) -> dict:
    """VOC-style mAP of ``members`` on the validation images (rank 0 only)."""
    from eval import evaluate

    det = Detector(cfg, classes, members, device=device)
    n = len(val_set) if not cfg.train.val_images else min(cfg.train.val_images, len(val_set))
    gts, dets = [], []
    for i in range(n):
        rec = val_set.records[i]
        d = det(load_image(rec.path), proposals=val_props[i])
        gts.append({"boxes": rec.boxes, "labels": rec.labels, "difficult": rec.difficult, "blacklist": rec.blacklist})
        dets.append({"boxes": d.boxes, "scores": d.scores, "labels": d.labels})
    res = evaluate(cfg.test.protocol, gts, dets, len(classes))
    return {"val_mAP": float(res["mAP"]), "val_AP": [None if (isinstance(a, float) and math.isnan(a)) else float(a) for a in res["AP"]]}


def _plot_curves(log_path: str, png_path: str) -> None:
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [json.loads(line) for line in open(log_path)]
    if not rows:
        return
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10, 4))
    for m in sorted({r["member"] for r in rows}):
        rs = [r for r in rows if r["member"] == m]
        a1.plot([r["epoch"] + 1 for r in rs], [r["loss"] for r in rs], marker="o", label=f"member {m}")
        vs = [r for r in rs if r.get("val_mAP") is not None]
        if vs:
            a2.plot([r["epoch"] + 1 for r in vs], [r["val_mAP"] for r in vs], marker="o", label=f"member {m}")
    a1.set(xlabel="epoch", ylabel="training loss", title="loss")
    a2.set(xlabel="epoch", ylabel="mAP", title="validation mAP")
    for a in (a1, a2):
        a.grid(alpha=0.3)
        if a.get_legend_handles_labels()[0]:
            a.legend()
    fig.tight_layout()
    fig.savefig(png_path, dpi=100)
    plt.close(fig)


def train_detector(cfg: DetectorConfig, out_dir: str, device: torch.device, *, cache_dir: str | None = None,
                   resume: bool = True, stage: str = "classifier", progress: bool = True,
                   train_proposals: list | None = None, val_proposals: list | None = None,
                   _stop_after_steps: int | None = None) -> str:
    """Train (stage ``multibox``, ``classifier`` or ``all``) into ``out_dir``; return the model path.

    ``train_proposals`` / ``val_proposals`` (lists aligned with the splits' records) bypass
    the proposal cache (tests). ``_stop_after_steps`` simulates a kill (tests of resume).
    """
    from .datasets import load_dataset

    if stage not in ("multibox", "classifier", "all"):
        raise UserError(f"--stage {stage}: choose multibox, classifier or all")
    rank, world = init_distributed(device)
    main = rank == 0
    os.makedirs(out_dir, exist_ok=True)
    state_path = os.path.join(out_dir, STATE_FILE)
    model_path = os.path.join(out_dir, MODEL_FILE)
    if not resume and (os.path.exists(state_path) or os.path.exists(model_path)):
        raise UserError(f"{out_dir} already holds a training run: resume it (drop --no-resume) or choose another --out")

    multibox_obj = None
    uses_multibox = "multibox" in cfg.proposals.method
    if stage == "multibox":  # MultiBox only, whatever the config's proposals use
        path = _train_multibox(cfg, out_dir, device, main)
        if main and (not uses_multibox or not cfg.proposals.multibox_checkpoint
                     or os.path.abspath(cfg.proposals.multibox_checkpoint) != path):
            print(f"train-detector: note: the config's proposals (proposals.method={cfg.proposals.method}, "
                  f"proposals.multibox_checkpoint={cfg.proposals.multibox_checkpoint}) do not use this MultiBox yet; "
                  f"to use it set proposals.method=ss+multibox (or multibox) and proposals.multibox_checkpoint={path}",
                  file=sys.stderr)
        return path
    if stage == "all" and uses_multibox and not cfg.proposals.multibox_checkpoint:
        cfg.proposals.multibox_checkpoint = _train_multibox(cfg, out_dir, device, main)
    if uses_multibox:
        if not cfg.proposals.multibox_checkpoint:
            raise UserError("proposals.method uses MultiBox but proposals.multibox_checkpoint is not set: "
                            "train it first (--stage multibox or --stage all) or use proposals.method=ss")
        multibox_obj = safe_torch_load(cfg.proposals.multibox_checkpoint, "MultiBox checkpoint")

    resolve_transform_input(cfg)  # before the config is saved: the checkpoint carries the answer
    if main:
        save_config(cfg, os.path.join(out_dir, "config.yaml"))
    train_set = load_dataset(cfg.data, cfg.data.train_split)
    classes = train_set.classes
    if cfg.model.init:  # a wrong --init file fails now, not after the proposals are computed
        build_member(cfg, len(classes), 0)
    if train_proposals is None:
        from .proposal_runner import ensure_proposals
        if main:
            ensure_proposals(train_set, cfg.proposals, cache_dir=cache_dir, device=str(device))
        barrier()
        train_proposals = ensure_proposals(train_set, cfg.proposals, cache_dir=cache_dir, device=str(device))
    val_set = None
    if cfg.train.val_every and main:
        try:
            val_set = load_dataset(cfg.data, cfg.data.val_split)
        except UserError as e:
            print(f"train-detector: no validation ({e})", file=sys.stderr)
        if val_set is not None and val_proposals is None:
            from .proposal_runner import ensure_proposals
            vs = val_set if not cfg.train.val_images else _head(val_set, cfg.train.val_images)
            val_proposals = ensure_proposals(vs, cfg.proposals, cache_dir=cache_dir, device=str(device))
        if val_set is not None and val_set.classes != classes:
            raise UserError(f"validation split classes {val_set.classes} differ from training classes {classes}")

    # resume
    done: list[dict] = []
    start_member, start_epoch = 0, 0
    current = None
    optim_state = None
    if resume and os.path.exists(state_path):
        st = safe_torch_load(state_path, "training state")
        if _training_part(st.get("config")) != _training_part(to_dict(cfg)):
            raise UserError(f"{state_path}: saved by a run with another config; use another --out to start afresh")
        done = st["done"]
        start_member, start_epoch = st["member"], st["epoch"] + 1
        current, optim_state = st.get("model"), st.get("optimizer")
        if main:
            print(f"train-detector: resuming member {start_member + 1}/{cfg.model.members} at epoch {start_epoch + 1}", file=sys.stderr)
    log_path = os.path.join(out_dir, "metrics.jsonl")
    if main and not (resume and os.path.exists(state_path)) and os.path.exists(log_path):
        os.remove(log_path)

    batcher = RegionBatcher(cfg, train_set, train_proposals, device)
    steps_done = 0
    for member in range(start_member, cfg.model.members):
        seed = cfg.train.seed + 1000 * member
        model = build_member(cfg, len(classes), _seed(seed, 0)).to(device)
        if device.type == "cpu":
            model = model.to(memory_format=torch.channels_last)
        params = [p for p in model.parameters() if p.requires_grad]
        opt = torch.optim.SGD(params, lr=cfg.train.lr, momentum=cfg.train.momentum, weight_decay=cfg.train.weight_decay)
        first_epoch = 0
        if member == start_member and current is not None:
            model.load_state_dict(current)
            opt.load_state_dict(optim_state)
            first_epoch = start_epoch
        net = DDP(model) if world > 1 else model
        per_epoch = len(image_shards(len(train_set), rank, world, 0)) // cfg.train.images_per_batch
        for epoch in range(first_epoch, cfg.train.epochs):
            t_epoch = time.time()
            model.train()
            torch.manual_seed(_seed(seed, epoch, rank, 1))
            gen = torch.Generator().manual_seed(_seed(seed, epoch, rank, 2))
            order = image_shards(len(train_set), rank, world, _seed(seed, epoch))
            losses, correct, fg_correct, fg_total, total = [], 0, 0, 0, 0
            bar = tqdm(range(per_epoch), desc=f"member {member + 1}/{cfg.model.members} epoch {epoch + 1}/{cfg.train.epochs}",
                       disable=not (progress and main and sys.stderr.isatty()), leave=False)
            for step in bar:
                idx = order[step * cfg.train.images_per_batch:(step + 1) * cfg.train.images_per_batch]
                b = batcher.batch([int(i) for i in idx], gen)
                if not _all_ranks_agree(b is not None, world, device):
                    continue  # no regions in these images (on some rank): every rank skips the step
                x, y, reg = b
                for g in opt.param_groups:
                    g["lr"] = lr_at(cfg, epoch, epoch * per_epoch + step)
                out = net(x)
                loss, parts = region_loss(out, y, reg, cfg)
                opt.zero_grad(set_to_none=True)
                loss.backward()
                if cfg.train.clip_grad_norm:
                    torch.nn.utils.clip_grad_norm_(params, cfg.train.clip_grad_norm)
                opt.step()
                if not math.isfinite(loss.item()):
                    raise UserError(f"training diverged (loss {loss.item()}) at member {member + 1} epoch {epoch + 1}: lower train.lr")
                losses.append(loss.item())
                pred = out.logits.argmax(1)
                correct += (pred == y).sum().item()
                total += len(y)
                fg = y > 0
                fg_correct += (pred[fg] == y[fg]).sum().item()
                fg_total += fg.sum().item()
                bar.set_postfix(loss=f"{np.mean(losses[-20:]):.3f}")
                steps_done += 1
                if _stop_after_steps is not None and steps_done >= _stop_after_steps:
                    raise KeyboardInterrupt
            row = {"member": member, "epoch": epoch, "loss": float(np.mean(losses)) if losses else None,
                   "acc": correct / max(1, total), "fg_acc": fg_correct / max(1, fg_total),
                   "lr": lr_at(cfg, epoch, 10**9), "seconds": round(time.time() - t_epoch, 1)}
            if main:
                last = epoch + 1 == cfg.train.epochs
                if val_set is not None and (last or (epoch + 1) % cfg.train.val_every == 0):
                    model.eval()
                    row.update(validate(cfg, classes, [model], val_set, val_proposals, device))
                with open(log_path, "a") as f:
                    f.write(json.dumps(row) + "\n")
                _plot_curves(log_path, os.path.join(out_dir, "curves.png"))
                loss_txt = "n/a (no step)" if row["loss"] is None else f"{row['loss']:.4f}"
                msg = f"member {member + 1} epoch {epoch + 1}: loss {loss_txt} acc {row['acc']:.3f} fg_acc {row['fg_acc']:.3f}"
                if "val_mAP" in row:
                    msg += f" val mAP {row['val_mAP']:.4f}"
                print(f"train-detector: {msg} ({row['seconds']} s)", file=sys.stderr)
                atomic_save({"config": to_dict(cfg), "done": done, "member": member, "epoch": epoch,
                             "model": model.state_dict(), "optimizer": opt.state_dict()}, state_path)
            barrier()
        done.append({k: v.detach().cpu().clone() for k, v in model.state_dict().items()})
        if main:
            atomic_save({"config": to_dict(cfg), "done": done, "member": member + 1, "epoch": -1,
                         "model": None, "optimizer": None}, state_path)
    if main:
        save_detector(model_path, to_dict(cfg), classes, done, multibox=multibox_obj)
    barrier()
    return model_path


def _train_multibox(cfg: DetectorConfig, out_dir: str, device: torch.device, main: bool) -> str:
    """Train MultiBox into ``out_dir/multibox`` on rank 0 (the others wait); its absolute path."""
    from .train_multibox import train_multibox

    path = None
    if main:
        path = os.path.abspath(train_multibox(cfg, os.path.join(out_dir, "multibox"), device=str(device)))
    barrier()
    return broadcast_object(path)


def _all_ranks_agree(ok: bool, world: int, device: torch.device) -> bool:
    """True when ``ok`` holds on every rank (one all-reduce under torchrun): a step that one
    rank cannot take is skipped by all of them, or the others would wait in DDP's all-reduce."""
    if world == 1:
        return ok
    import torch.distributed as dist
    flag = torch.tensor([1 if ok else 0], dtype=torch.int32, device=device)
    dist.all_reduce(flag, op=dist.ReduceOp.MIN)
    return bool(flag.item())


def _training_part(config: dict | None) -> dict | None:
    """The settings a resumed run must share with the saved one: all but ``test`` (NMS,
    thresholds and the like do not change training, and the final model carries the new ones)."""
    if config is None:
        return None
    return {k: v for k, v in config.items() if k != "test"}


def _head(dataset, n):
    from dataclasses import replace
    return replace(dataset, records=dataset.records[:n])


