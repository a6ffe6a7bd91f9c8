"""MultiBox (Erhan et al., "Scalable Object Detection using Deep Neural Networks", CVPR 2014):
an Inception trunk regresses K boxes, each an offset from a prior, and K confidences.

- Priors: k-means over the training boxes in normalised ``x1, y1, x2, y2`` (:func:`kmeans_priors`).
- Network (:class:`MultiBox`): ``backbone.build_backbone(arch)`` trunk up to its last inception
  stage (:func:`backbone.extract_features`), then a 1x1 convolution to 64 channels, a fixed
  grid pool, and one linear layer to K x (4 offsets + 1 logit). Input: the whole image
  resized to ``input_size`` squared, ImageNet-normalised.
- Loss (:func:`multibox_loss`): each ground-truth box is matched to one prior (bipartite:
  Hungarian via ``scipy.optimize.linear_sum_assignment`` on the squared distance, or greedy);
  ``alpha / 2 * ||offset - target||^2`` on matched pairs plus the logistic confidence loss on
  all K (target 1 for matched priors). Erhan et al. match against the priors for stability, as
  here. Offsets are in units of ``OFFSET_SCALE`` of the image size, so both terms are O(1).
- Inference (:func:`predict`): the top-K boxes by confidence, in image pixels.
"""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, fields
from typing import ClassVar

import cv2
import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor, nn

from backbone import build_backbone, extract_features, stage_names
from backbone.config import from_dict, setting
from backbone.devices import to_device_format
from backbone.errors import UserError
from backbone.formats import STATE_DICT, SavedFormat, is_state_dict, is_str_keyed_dict, read_format, record
from backbone.io import safe_torch_load
from backbone.multicrop import IMAGENET_MEAN, IMAGENET_STD

from .config import MultiBoxConfig
from .selective_search import as_rgb_uint8

FORMAT_VERSION = 1
#: the marker of version 1 from before ``format_version``
LEGACY_FORMAT = "multibox-v1"
OFFSET_SCALE = 0.1
MEAN, STD = IMAGENET_MEAN, IMAGENET_STD
GRID = 7


def kmeans_priors(boxes: np.ndarray, k: int, seed: int = 0, iters: int = 50) -> np.ndarray:
    """(k, 4) float32 priors: k-means (k-means++ start) of normalised boxes (N, 4) in [0, 1].
    With fewer distinct boxes than k the priors are completed with jittered copies."""
    x = np.asarray(boxes, np.float64).reshape(-1, 4)
    if len(x) == 0:
        raise UserError("MultiBox priors: the training split has no boxes")
    rng = np.random.default_rng(seed)
    centers = [x[rng.integers(len(x))]]
    d2 = ((x - centers[0]) ** 2).sum(1)
    for _ in range(1, min(k, len(x))):
        if d2.sum() <= 0:
            break
        c = x[rng.choice(len(x), p=d2 / d2.sum())]
        centers.append(c)
        d2 = np.minimum(d2, ((x - c) ** 2).sum(1))
    c = np.array(centers)
    for _ in range(iters):
        assign = ((x[:, None, :] - c[None]) ** 2).sum(2).argmin(1)
        new = np.array([x[assign == j].mean(0) if (assign == j).any() else c[j] for j in range(len(c))])
        if np.allclose(new, c):
            break
        c = new
    if len(c) < k:  # few boxes: jittered copies so every prior is distinct
        extra = c[rng.integers(len(c), size=k - len(c))] + rng.normal(0, 0.02, (k - len(c), 4))
        c = np.concatenate([c, extra])
    c = np.clip(c, 0, 1)
    c[:, 2:] = np.maximum(c[:, 2:], c[:, :2] + 1e-3)
    return c.astype(np.float32)


def kmeans_shapes(wh: np.ndarray, k: int, seed: int = 0, iters: int = 100, restarts: int = 5) -> np.ndarray:
    """(k, 2) float32 prior shapes (w, h), smallest area first: k-means of box sizes (N, 2) with
    the distance 1 - IoU of boxes sharing a centre (YOLOv2's dimension clusters; k-means++ start,
    each centre the median of its cluster). The convolutional priors of the trunk proposal head
    (:mod:`detector.fast.proposer`) sit at every cell with these shapes; :func:`kmeans_priors`
    clusters positioned boxes for the MultiBox network. Fewer distinct sizes than k: the shapes
    are completed with scaled copies."""
    x = np.asarray(wh, np.float64).reshape(-1, 2)
    x = x[(x > 0).all(1) & np.isfinite(x).all(1)]
    if len(x) == 0:
        raise UserError("trunk proposal priors: the training split has no boxes")
    rng = np.random.default_rng(seed)

    def dist(a, c):  # 1 - IoU of centred boxes, (len(a), len(c))
        inter = np.minimum(a[:, None, 0], c[None, :, 0]) * np.minimum(a[:, None, 1], c[None, :, 1])
        return 1 - inter / (a[:, None].prod(2) + c[None].prod(2) - inter)

    best, best_cost = None, np.inf
    for _ in range(restarts):  # the lowest mean distance of a few k-means++ starts (1 - IoU has local minima)
        centers = x[[rng.integers(len(x))]]
        for _ in range(1, min(k, len(np.unique(x, axis=0)))):
            d = dist(x, centers).min(1) ** 2
            if d.sum() <= 0:
                break
            centers = np.concatenate([centers, x[[rng.choice(len(x), p=d / d.sum())]]])
        for _ in range(iters):
            assign = dist(x, centers).argmin(1)
            new = np.stack([np.median(x[assign == j], 0) if (assign == j).any() else centers[j]
                            for j in range(len(centers))])
            if np.allclose(new, centers):
                break
            centers = new
        cost = dist(x, centers).min(1).mean()
        if cost < best_cost:
            best, best_cost = centers, cost
    centers = best
    n = len(centers)
    for j in range(k - n):  # too few distinct sizes: scaled copies
        centers = np.concatenate([centers, centers[[j % n]] * 1.5 ** (1 + j // n)])
    return centers[np.argsort(centers.prod(1), kind="stable")][:k].astype(np.float32)


class MultiBox(nn.Module):
    """Inception trunk + box head. forward(x (N,3,S,S)) -> (offsets (N,K,4), logits (N,K))."""

    def __init__(self, cfg: MultiBoxConfig, priors: np.ndarray | Tensor):
        super().__init__()
        self.cfg = cfg
        priors = torch.as_tensor(np.asarray(priors, np.float32))
        if priors.ndim != 2 or priors.shape[1] != 4:
            raise UserError(f"MultiBox priors must be (K, 4), got {tuple(priors.shape)}")
        self.register_buffer("priors", priors)
        self.trunk = build_backbone(cfg.arch, num_classes=1, aux_logits=False)
        self.layer = stage_names(self.trunk)[-1]
        with torch.no_grad():
            self.trunk.eval()
            c = extract_features(self.trunk, torch.zeros(1, 3, 96, 96), [self.layer])[self.layer].shape[1]
        self.reduce = nn.Sequential(nn.Conv2d(c, 64, 1), nn.ReLU(inplace=True), nn.AdaptiveAvgPool2d(GRID))
        self.head = nn.Sequential(nn.Dropout(0.3), nn.Linear(64 * GRID * GRID, len(priors) * 5))
        nn.init.normal_(self.head[1].weight, std=0.001)
        nn.init.zeros_(self.head[1].bias)

    @property
    def num_priors(self) -> int:
        return self.priors.shape[0]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        f = extract_features(self.trunk, x, [self.layer])[self.layer]
        out = self.head(torch.flatten(self.reduce(f), 1)).view(x.shape[0], -1, 5)
        return out[..., :4], out[..., 4]

    def decode(self, offsets: Tensor) -> Tensor:
        """Normalised boxes (N, K, 4) from offsets."""
        return self.priors[None] + OFFSET_SCALE * offsets


def preprocess(images: list[np.ndarray], size: int, device="cpu") -> Tensor:
    """RGB uint8 images ((H, W) grey and RGBA accepted, any size from 1x1) -> (N, 3, size, size)
    normalised float tensor."""

    batch = np.stack([cv2.resize(as_rgb_uint8(im), (size, size), interpolation=cv2.INTER_AREA) for im in images])
    x = torch.from_numpy(batch).to(device).permute(0, 3, 1, 2).float().div_(255)
    mean = torch.tensor(MEAN, device=device).view(1, 3, 1, 1)
    std = torch.tensor(STD, device=device).view(1, 3, 1, 1)
    return to_device_format((x - mean) / std, device)


def match(priors: np.ndarray, gt: np.ndarray, method: str = "bipartite") -> tuple[np.ndarray, np.ndarray]:
    """Match each ground-truth box (G, 4) to one distinct prior (K, 4) by squared distance.
    Returns (prior indices, gt indices), both (min(G, K),)."""
    if len(gt) == 0:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    cost = ((priors[:, None, :] - gt[None, :, :]) ** 2).sum(2)  # (K, G)
    if method == "bipartite":
        # scipy.optimize takes ~0.3 s to import: only for bipartite
        from scipy.optimize import linear_sum_assignment

        pi, gi = linear_sum_assignment(cost)
        return pi.astype(np.int64), gi.astype(np.int64)
    if method == "greedy":
        order = np.argsort(cost, axis=None, kind="stable")
        used_p = np.zeros(cost.shape[0], bool)
        used_g = np.zeros(cost.shape[1], bool)
        pis, gis = [], []
        for flat in order:
            p, g = divmod(int(flat), cost.shape[1])
            if used_p[p] or used_g[g]:
                continue
            used_p[p] = used_g[g] = True
            pis.append(p)
            gis.append(g)
            if len(gis) == min(cost.shape):
                break
        return np.array(pis, np.int64), np.array(gis, np.int64)
    raise UserError(f"unknown MultiBox matching {method!r}: choose bipartite or greedy")


def multibox_loss(offsets: Tensor, logits: Tensor, priors: Tensor, gt_boxes: list[np.ndarray],
                  alpha: float = 0.3, matching: str = "bipartite") -> tuple[Tensor, dict]:
    """Erhan et al.'s loss for a batch. offsets (N, K, 4), logits (N, K), priors (K, 4);
    gt_boxes[i]: (G_i, 4) normalised xyxy. Returns (loss averaged over images, parts)."""
    N, K = logits.shape
    target_conf = torch.zeros_like(logits)
    loc = logits.new_zeros(())
    pri = priors.detach().cpu().numpy()
    for n, gt in enumerate(gt_boxes):
        gt = np.asarray(gt, np.float32).reshape(-1, 4)
        pi, gi = match(pri, gt, matching)
        if len(pi) == 0:
            continue
        pi_t = torch.as_tensor(pi, device=logits.device)
        target = (torch.as_tensor(gt[gi], device=logits.device) - priors[pi_t]) / OFFSET_SCALE
        loc = loc + (offsets[n, pi_t] - target).pow(2).sum()
        target_conf[n, pi_t] = 1.0
    loc = alpha / 2 * loc / N
    conf = F.binary_cross_entropy_with_logits(logits, target_conf, reduction="sum") / N
    return loc + conf, {"loc": float(loc.detach()), "conf": float(conf.detach())}


@torch.no_grad()
def predict(model: MultiBox, images: list[np.ndarray], top_k: int = 200, batch_size: int = 8) -> list[tuple[np.ndarray, np.ndarray]]:
    """Top-``top_k`` boxes by confidence for each RGB uint8 image ((H, W) grey and RGBA accepted,
    any size from 1x1): [(boxes (k, 4) float32 in the image's pixels, x1 <= x2 and y1 <= y2
    inside the image, scores (k,) float32)], best first. A non-uint8 or empty image raises one
    UserError."""
    if isinstance(top_k, bool) or not isinstance(top_k, (int, np.integer)) or top_k < 0:
        raise UserError(f"MultiBox top_k must be a whole number >= 0, got {top_k!r}")
    model.eval()
    device = model.priors.device
    out = []
    for s in range(0, len(images), batch_size):
        chunk = images[s:s + batch_size]
        offsets, logits = model(preprocess(chunk, model.cfg.input_size, device))
        boxes = model.decode(offsets).clamp(0, 1)
        scores = torch.sigmoid(logits)
        for im, b, sc in zip(chunk, boxes, scores):
            k = min(top_k, len(sc))
            top = torch.topk(sc, k).indices
            bb = b[top].cpu().numpy().astype(np.float32)
            h, w = im.shape[:2]
            bb[:, [0, 2]] *= w
            bb[:, [1, 3]] *= h
            x1 = np.minimum(bb[:, 0], bb[:, 2])
            x2 = np.maximum(bb[:, 0], bb[:, 2])
            y1 = np.minimum(bb[:, 1], bb[:, 3])
            y2 = np.maximum(bb[:, 1], bb[:, 3])
            out.append((np.stack([x1, y1, x2, y2], 1), sc[top].cpu().numpy().astype(np.float32)))
    return out


@dataclass(kw_only=True)
class MultiBoxCheckpoint(SavedFormat):
    """A MultiBox checkpoint (``multibox.pt``, or embedded in a detector checkpoint). Versions:
    1, marked ``"format": "multibox-v1"`` before ``format_version`` (both are written while
    the version is 1, so programs before ``format_version`` read the files too; a version 2
    writes ``format_version`` alone)."""

    VERSION: ClassVar[int] = FORMAT_VERSION
    LEGACY: ClassVar[dict] = {"format": {LEGACY_FORMAT: 1}}

    format_version: int = setting(FORMAT_VERSION, ge=1)
    kind: str = setting("multibox", choices=("multibox",))
    config: dict = setting(check=is_str_keyed_dict, expect="a dict of settings")
    state_dict: dict = setting(check=is_state_dict, expect=STATE_DICT)
    epoch: int = setting(0, ge=0)
    classes: list[str] | None = setting(None)  # train_multibox: the training set's classes


def checkpoint_dict(model: MultiBox, epoch: int = 0, extra: dict | None = None) -> dict:
    """A plain dict (torch.load weights_only-safe) that :func:`multibox_from_checkpoint` reads."""
    d = record(MultiBoxCheckpoint(config=asdict(model.cfg), epoch=int(epoch),
                                  state_dict={k: v.detach().cpu() for k, v in model.state_dict().items()}),
               extra)
    if d.get("classes", "") is None:
        del d["classes"]
    return {"format": LEGACY_FORMAT, **d}


def multibox_from_checkpoint(ck: dict, device="cpu", source: str = "MultiBox checkpoint") -> MultiBox:
    """Build the network from a checkpoint dict (:class:`MultiBoxCheckpoint`; as embedded in a
    detector checkpoint)."""
    if not MultiBoxCheckpoint.has_marker(ck):
        raise UserError(f"{source}: not a MultiBox checkpoint (expected format_version or format {LEGACY_FORMAT!r})")
    obj, _ = read_format(MultiBoxCheckpoint, ck, source=source)
    known = {f.name for f in fields(MultiBoxConfig)}
    cfg = from_dict(MultiBoxConfig, {k: v for k, v in obj.config.items() if k in known}, source=source)
    state = obj.state_dict
    if "priors" not in state:
        raise UserError(f"{source}: has no priors")
    model = MultiBox(cfg, state["priors"].float())
    try:
        model.load_state_dict({k: v.float() if v.is_floating_point() else v for k, v in state.items()})
    except RuntimeError as e:
        raise UserError(f"{source}: weights do not fit the network ({str(e).splitlines()[0][:160]})") from None
    return model.to(device).eval()


def load_multibox(path, device="cpu") -> MultiBox:
    """Load a MultiBox network from a checkpoint written by ``train_multibox``."""
    path = os.fspath(path)
    ck = safe_torch_load(path, "MultiBox checkpoint")
    return multibox_from_checkpoint(ck, device=device, source=f"MultiBox checkpoint {path}")
