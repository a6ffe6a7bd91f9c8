"""Fast R-CNN on an Inception trunk (Girshick 2015): the trunk runs once per image, every
proposal is pooled from its feature map (``torchvision.ops.roi_align``) and scored by a light
head.

::

    images (B, 3, H, W) --trunk (build_backbone stages up to the tap)--> (B, C_tap, H/s, W/s)
        --1x1 conv + norm + ReLU (one tap) or FeaturePyramidNetwork (several taps)--> reduce_channels
    boxes --roi_align (R x R, aligned, at the box's level)--> (N, reduce_channels, R, R)
        --flatten, [low-rank] FC fc_dim + ReLU (x num_fc)--> predictor: C + 1 scores, 4 C deltas

Boxes are float xyxy in each image's own pixels (0-based, x2 exclusive). Images of a batch
may differ in size. In training mode they are zero-padded at the bottom and right to the
largest (zero is the mean after normalisation) and run as one batch, so that batch norm sees
the whole batch; each image's maps are then cropped back to the size the image alone gives.
In eval mode images of different sizes run as separate batches, so an image's scores never
depend on the others. Images whose shorter side is below the trunk's minimum
(:data:`MIN_INPUT`) are upsampled to it (bilinear) and their boxes scaled with them.

The output has the fields of R-CNN's ``RegionOutputs`` (logits, deltas, aux_logits), so one
ensemble averages members of either kind.
"""

from __future__ import annotations

import math
from collections import OrderedDict
from typing import NamedTuple, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchvision.ops import FeaturePyramidNetwork, roi_align

from backbone import build_backbone, extract_features, stage_names
from backbone.devices import to_device_format
from backbone.errors import UserError
from backbone.weights import AUX_PREFIXES, HEAD_PREFIXES, read_state_dict

from ..boxes import encode_boxes
from ..sampling import label_regions, sample_regions
from .proposer import TrunkProposer

#: shorter side below which an image is upsampled before the trunk (googlenet's
#: ``MIN_INPUT_SIZE``; torchvision's Inception v3 needs 75 px)
MIN_INPUT = {"googlenet": 31, "googlenet_bn": 31, "inception_v3": 75}

#: trunk attributes that are never used by a detector (class and auxiliary heads)
_HEAD_MODULES = ("avgpool", "dropout", "fc", "aux1", "aux2", "AuxLogits")

NORMS = ("bn", "gn", "none")


class FastOutputs(NamedTuple):
    """Same fields as R-CNN's ``RegionOutputs``."""

    logits: Tensor            # (N, C + 1), N = all boxes of all images, in order
    deltas: Tensor            # (N, C, 4) class-specific BoxCoder offsets (weights 10, 10, 5, 5)
    aux_logits: list          # always empty (no auxiliary heads)


class FeatureMaps(NamedTuple):
    """Output of :meth:`FastRCNN.features`, input of :meth:`FastRCNN.head`."""

    maps: list                # per image: OrderedDict level name -> (1, reduce_channels, h, w)
    scales: list              # per image: (sx, sy) trunk-input pixels per image pixel (upsampling)
    sizes: list | None = None  # per image: (h, w) of the trunk input (after upsampling)


class OnePassOutputs(NamedTuple):
    """:meth:`FastRCNN.one_pass` in training: the region outputs (the fields of
    :class:`FastOutputs`) of regions sampled from the member's own proposals, their labels and
    box targets, and the proposal head's losses."""

    logits: Tensor            # (N, C + 1)
    deltas: Tensor            # (N, C, 4)
    aux_logits: list          # always empty
    labels: Tensor            # (N,) 0 = background, 1..C
    targets: Tensor           # (N, 4) BoxCoder targets (zero on background)
    proposal_losses: dict     # name -> scalar tensor (averaged over the images)


class RegionSampling(NamedTuple):
    """How :meth:`FastRCNN.one_pass` draws its training regions (``train.*``)."""

    rois_per_image: int
    fg_fraction: float
    fg_iou: float
    bg_iou_low: float
    max_proposals: int        # the proposal head's boxes per image kept after NMS
    nms_iou: float = 0.7      # the NMS of those (1: none)


class Affine(nn.Module):
    """Per-channel scale and shift (``norm="none"``): what a batch norm becomes when its
    statistics are frozen. Loading batch-norm weights folds their running statistics in."""

    def __init__(self, num_features: int):
        super().__init__()
        self.weight = nn.Parameter(torch.ones(num_features))
        self.bias = nn.Parameter(torch.zeros(num_features))

    def forward(self, x: Tensor) -> Tensor:
        return x * self.weight.view(1, -1, 1, 1) + self.bias.view(1, -1, 1, 1)


def group_count(channels: int, groups: int = 32) -> int:
    """GroupNorm groups for ``channels``: gcd with ``groups`` (32), halved while a group would
    hold a single channel (the 16-channel branches of inception 3a / 4a)."""
    g = math.gcd(channels, groups)
    while g > 1 and channels // g < 2:
        g //= 2
    return g


def make_norm(kind: str, channels: int) -> nn.Module:
    if kind == "bn":
        return nn.BatchNorm2d(channels, eps=0.001)
    if kind == "gn":
        return nn.GroupNorm(group_count(channels), channels)
    if kind == "none":
        return Affine(channels)
    raise ValueError(f"unknown norm {kind!r}: choose one of {', '.join(NORMS)}")


def replace_batchnorm(module: nn.Module, kind: str) -> None:
    """Replace every ``BatchNorm2d`` in ``module`` by ``make_norm(kind)`` under the same name
    (so that the affine keys stay ``....bn.weight`` / ``....bn.bias``)."""
    if kind == "bn":
        return
    for name, child in list(module.named_children()):
        if isinstance(child, nn.BatchNorm2d):
            setattr(module, name, make_norm(kind, child.num_features))
        else:
            replace_batchnorm(child, kind)


class BoxHead(nn.Module):
    """Flattened pooled features -> ``num_fc`` FC layers of ``fc_dim`` with ReLU.

    ``fc_rank`` > 0 factorises the first FC as ``in -> rank -> fc_dim`` with no non-linearity
    in between: Fast R-CNN's truncated SVD, learnt directly. It keeps the head light: the full
    7 x 7 x 128 -> 1024 layer has 6.4 M weights, rank 256 has 1.9 M."""

    def __init__(self, in_features: int, fc_dim: int, num_fc: int = 1, fc_rank: int = 256, dropout: float = 0.0):
        super().__init__()
        layers: list[nn.Module] = []
        if fc_rank and fc_rank < min(in_features, fc_dim):
            layers += [nn.Linear(in_features, fc_rank, bias=False), nn.Linear(fc_rank, fc_dim)]
        else:
            layers += [nn.Linear(in_features, fc_dim)]
        layers.append(nn.ReLU(inplace=True))
        if dropout:
            layers.append(nn.Dropout(dropout))
        for _ in range(num_fc - 1):
            layers += [nn.Linear(fc_dim, fc_dim), nn.ReLU(inplace=True)]
            if dropout:
                layers.append(nn.Dropout(dropout))
        self.layers = nn.Sequential(*layers)

    def forward(self, x: Tensor) -> Tensor:
        return self.layers(torch.flatten(x, 1))


class Predictor(nn.Module):
    """torchvision's FastRCNNPredictor without the background box: C + 1 scores, 4 C deltas."""

    def __init__(self, in_features: int, num_classes: int):
        super().__init__()
        self.num_classes = num_classes
        self.cls_score = nn.Linear(in_features, num_classes + 1)
        self.bbox_pred = nn.Linear(in_features, 4 * num_classes)
        nn.init.normal_(self.cls_score.weight, 0.0, 0.01)
        nn.init.normal_(self.bbox_pred.weight, 0.0, 0.001)
        nn.init.zeros_(self.cls_score.bias)
        nn.init.zeros_(self.bbox_pred.bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        return self.cls_score(x), self.bbox_pred(x).view(-1, self.num_classes, 4)


class FastRCNN(nn.Module):
    """Fast R-CNN member: ``forward(images, boxes) -> FastOutputs``.

    arch: a :data:`backbone.NETWORKS` name; num_classes: object classes C (outputs C + 1).
    tap: trunk stage read by the head (``inception4e``: stride 16, ``inception3b``: stride 8),
        or a list of stages for a feature pyramid (torchvision ``FeaturePyramidNetwork``, each
        box pooled from one level: ``floor(canonical_level + log2(sqrt(area) / canonical_scale))``
        with level = log2(stride), clamped to the pyramid, as FPN does).
    roi_size: R of the R x R roi_align output; sampling_ratio: its samples per bin side.
    reduce_channels: channels after the 1x1 reduction (or the FPN's width).
    fc_dim, num_fc, fc_rank, dropout: the box head (:class:`BoxHead`).
    norm: the trunk's normalisation (and the reduction's): ``bn`` (batch statistics over the
        full images in training, torchvision's googlenet_bn as is), ``gn`` (GroupNorm, 32
        groups, see :func:`group_count`), ``none`` (a learnt per-channel affine; folds the
        statistics of batch-norm weights it is initialised from). The paper's ``googlenet``
        has no norm layers; there ``norm`` only sets the head's reduction.
    transform_input: torchvision's input re-normalisation (googlenet_bn, inception_v3).
    weights: a state dict (or a plain state-dict file) of the whole ``arch`` network, e.g.
        torchvision ImageNet weights or an exported classifier; see :meth:`load_trunk`.

    The trunk is a :func:`backbone.build_backbone` network with the stages after the last tap
    and the class / aux heads removed, so its state dict is a subset of the full network's
    with the same key names (:meth:`trunk_state_keys`).
    """

    def __init__(self, arch: str, num_classes: int, *, tap: "str | Sequence[str]" = "inception4e",
                 roi_size: int = 7, reduce_channels: int = 128, fc_dim: int = 1024, num_fc: int = 1,
                 fc_rank: int = 256, norm: str = "bn", sampling_ratio: int = 2, transform_input: bool = False,
                 weights: "str | dict | None" = None, canonical_scale: float = 224.0, canonical_level: int = 4,
                 dropout: float = 0.0, proposer: dict | None = None):
        super().__init__()
        if norm not in NORMS:
            raise UserError(f"unknown norm {norm!r}: choose one of {', '.join(NORMS)}")
        self.arch, self.num_classes, self.norm = arch, num_classes, norm
        self.taps = [tap] if isinstance(tap, str) else list(tap)
        if not self.taps:
            raise UserError("model.tap: give at least one trunk stage")
        # shape-only copy of the trunk (meta tensors): the feature sizes of an image alone,
        # without computing them; built first, so that a wrong tap fails before any weights exist
        with torch.device("meta"):
            probe = _build_trunk(arch, self.taps, norm, transform_input)
        object.__setattr__(self, "_probe", probe.eval())
        self.taps.sort(key=stage_names(probe).index)  # finest first
        self.trunk = _build_trunk(arch, self.taps, norm, transform_input)
        self.min_input = MIN_INPUT.get(arch, 31)
        self.roi_size, self.sampling_ratio = int(roi_size), int(sampling_ratio)
        self.canonical_scale, self.canonical_level = float(canonical_scale), int(canonical_level)
        self._sizes: dict = {}
        probe = self._probe_sizes(224, 224)
        self.strides = {t: 2 ** round(math.log2(224 / probe[t][0])) for t in self.taps}
        channels = [self._probe_channels[t] for t in self.taps]
        if len(self.taps) == 1:
            self.reduce = nn.Sequential(nn.Conv2d(channels[0], reduce_channels, 1, bias=norm == "none"),
                                        make_norm(norm, reduce_channels) if norm != "none" else nn.Identity(),
                                        nn.ReLU(inplace=True))
            nn.init.kaiming_normal_(self.reduce[0].weight, mode="fan_out", nonlinearity="relu")
            self.fpn = None
        else:
            self.reduce = None
            norm_layer = None if norm == "none" else (nn.BatchNorm2d if norm == "bn" else
                                                      (lambda c: nn.GroupNorm(group_count(c), c)))
            self.fpn = FeaturePyramidNetwork(channels, reduce_channels, norm_layer=norm_layer)
        self.box_head = BoxHead(reduce_channels * self.roi_size ** 2, fc_dim, num_fc, fc_rank, dropout)
        self.predictor = Predictor(fc_dim, num_classes)
        # the trunk proposal head (proposals.method trunk), on the finest level; built last, so
        # that the other parameters draw what they draw without it
        self.proposer = (TrunkProposer(reduce_channels, self.strides[self.taps[0]], **proposer)
                         if proposer is not None else None)
        if weights is not None:
            self.load_trunk(weights)

    # -- weights ------------------------------------------------------------------------------
    def trunk_state_keys(self) -> list[str]:
        """The trunk's state-dict keys, named as in the full ``arch`` network (no prefix)."""
        return list(self.trunk.state_dict())

    def head_parameters(self) -> int:
        """Number of parameters outside the trunk (reduction / FPN, box head, predictor)."""
        return sum(p.numel() for n, p in self.named_parameters() if not n.startswith("trunk."))

    def load_trunk(self, weights: "str | dict", source: str | None = None) -> None:
        """Load a whole-network state dict of ``arch`` into the trunk.

        ``weights``: a state dict (e.g. a ``train-classifier`` checkpoint's, read by the
        caller) or a plain state-dict file (torchvision ImageNet weights). Keys of later stages
        and of the class / aux heads are ignored. A file of another network (a trunk key
        missing, mis-shaped, or a key no ``arch`` network has) is one :class:`UserError`.
        With ``norm="gn"`` the batch-norm affine weights initialise the GroupNorms (their
        running statistics are dropped); with ``norm="none"`` the statistics are folded into
        the affine layers, so the trunk computes what the eval-mode network did.
        """
        if not isinstance(weights, dict):
            source = source or str(weights)
            weights = read_state_dict(weights)
        source = source or "state dict"
        full = _full_network_keys(self.arch)
        unexpected = [k for k in weights if k not in full and not k.startswith(HEAD_PREFIXES + AUX_PREFIXES)]
        own = self.trunk.state_dict()
        missing = [k for k in own if k not in weights]
        if unexpected or missing:
            parts = []
            if missing:
                parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
            if unexpected:
                parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
            raise UserError(f"weights {source}: does not match network {self.arch!r}: " + "; ".join(parts))
        bad = [f"{k} {tuple(weights[k].shape)} vs {tuple(v.shape)}" for k, v in own.items() if weights[k].shape != v.shape]
        if bad:
            raise UserError(f"weights {source}: shape mismatch for network {self.arch!r} (file vs model): {'; '.join(bad[:3])}")
        state = {k: weights[k] for k in own}
        if self.norm == "none":  # fold batch-norm statistics: y = (x - m) / sqrt(v + eps) * w + b
            for name, mod in self.trunk.named_modules():
                if isinstance(mod, Affine) and f"{name}.running_var" in weights:
                    std = (weights[f"{name}.running_var"].float() + 0.001).sqrt()
                    w = weights[f"{name}.weight"].float() / std
                    state[f"{name}.weight"] = w
                    state[f"{name}.bias"] = weights[f"{name}.bias"].float() - weights[f"{name}.running_mean"].float() * w
        self.trunk.load_state_dict(state)

    # -- shapes -------------------------------------------------------------------------------
    def _probe_sizes(self, h: int, w: int) -> dict:
        """{tap: (h, w)} of the trunk's maps for an (h, w) input (meta tensors: shapes only)."""
        key = (h, w)
        if key not in self._sizes:
            with torch.no_grad():
                out = extract_features(self._probe, torch.empty(1, 3, h, w, device="meta"), self.taps)
            self._sizes[key] = {t: tuple(v.shape[-2:]) for t, v in out.items()}
            if not hasattr(self, "_probe_channels"):
                object.__setattr__(self, "_probe_channels", {t: v.shape[1] for t, v in out.items()})
        return self._sizes[key]

    def _resize_small(self, image: Tensor) -> tuple[Tensor, tuple[float, float]]:
        return upsample_to_min_input(image, self.min_input)

    # -- the two halves -----------------------------------------------------------------------
    def _run_trunk(self, x: Tensor) -> "OrderedDict[str, Tensor]":
        feats = extract_features(self.trunk, to_device_format(x, x.device), self.taps)
        if self.fpn is not None:
            return self.fpn(feats)
        return OrderedDict([(self.taps[0], self.reduce(feats[self.taps[0]]))])

    def features(self, images: "Tensor | Sequence[Tensor]", image_sizes: "Sequence[tuple[int, int]] | None" = None) -> FeatureMaps:
        """Trunk (and reduction / FPN) of every image.

        images: (B, 3, H, W) normalised, or a list of (3, H_i, W_i); with a padded batch
        tensor, ``image_sizes`` gives each image's (h, w) (top-left aligned)."""
        if isinstance(images, Tensor) and images.dim() == 4:
            sizes = list(image_sizes) if image_sizes is not None else [tuple(images.shape[-2:])] * len(images)
            imgs = [images[i, :, :h, :w] for i, (h, w) in enumerate(sizes)]
        else:
            imgs = list(images)
        prepared = [self._resize_small(im) for im in imgs]
        imgs = [p[0] for p in prepared]
        scales = [p[1] for p in prepared]
        maps: list = [None] * len(imgs)
        sizes = [tuple(im.shape[-2:]) for im in imgs]
        if self.training and len(set(sizes)) > 1:
            # one padded batch (batch norm statistics over all of it), cropped back per image
            H, W = max(s[0] for s in sizes), max(s[1] for s in sizes)
            batch = imgs[0].new_zeros((len(imgs), 3, H, W))
            for i, im in enumerate(imgs):
                batch[i, :, : im.shape[1], : im.shape[2]] = im
            out = self._run_trunk(batch)
            for i, (h, w) in enumerate(sizes):
                hw = self._probe_sizes(h, w)
                maps[i] = OrderedDict((k, v[i:i + 1, :, : hw[k][0], : hw[k][1]]) for k, v in out.items())
        else:
            groups: dict = {}
            for i, s in enumerate(sizes):
                groups.setdefault(s, []).append(i)
            for idx in groups.values():
                out = self._run_trunk(torch.stack([imgs[i] for i in idx]))
                for j, i in enumerate(idx):
                    maps[i] = OrderedDict((k, v[j:j + 1]) for k, v in out.items())
        return FeatureMaps(maps, scales, sizes)

    def _levels(self, boxes: Tensor) -> Tensor:
        """Pyramid level index (into ``self.taps``) of each box, as FPN's eq. (1)."""
        lo, hi = (int(round(math.log2(self.strides[t]))) for t in (self.taps[0], self.taps[-1]))
        area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).clamp(min=1e-6)
        k = torch.floor(self.canonical_level + torch.log2(area.sqrt() / self.canonical_scale + 1e-6))
        return (k.clamp(lo, hi) - lo).to(torch.int64)

    def _pool(self, maps: "OrderedDict[str, Tensor]", boxes: Tensor) -> Tensor:
        """roi_align of (n, 4) boxes (trunk-input pixels) from one image's maps."""
        size = (self.roi_size, self.roi_size)
        first = next(iter(maps.values()))
        if len(maps) == 1:
            return roi_align(first, [boxes], size, 1.0 / self.strides[self.taps[0]], self.sampling_ratio, aligned=True)
        levels = self._levels(boxes)
        out = first.new_zeros((len(boxes), first.shape[1]) + size)
        for li, (name, fmap) in enumerate(maps.items()):
            idx = torch.nonzero(levels == li).flatten()
            if len(idx):
                out[idx] = roi_align(fmap, [boxes[idx]], size, 1.0 / self.strides[name], self.sampling_ratio,
                                     aligned=True).to(out.dtype)
            elif self.training:  # a level without boxes still joins the graph (DDP needs every gradient)
                out = out + 0.0 * fmap.sum()
        return out

    def head(self, feats: FeatureMaps, boxes: Sequence[Tensor], scale: "float | Sequence[float]" = 1.0,
             chunk: int | None = None) -> FastOutputs:
        """Score every image's boxes from its maps.

        boxes: per image (N_i, 4) xyxy in the pixels of the images given to :meth:`features`
        times ``scale`` (one number, or one per image: e.g. the inference resize factor, so
        that boxes can stay in original-image pixels). ``chunk``: pool and score at most that
        many boxes at a time (bounded memory at inference). Returns outputs for all boxes of
        all images in order."""
        scales = list(scale) if isinstance(scale, (list, tuple)) else [scale] * len(boxes)
        logits, deltas = [], []
        pooled = []
        for i, b in enumerate(boxes):
            if len(b) == 0:
                continue
            sx, sy = feats.scales[i]
            first = next(iter(feats.maps[i].values()))
            f = torch.tensor([sx, sy, sx, sy], dtype=first.dtype, device=first.device) * scales[i]
            b = b.to(first.device, first.dtype) * f
            step = chunk or len(b)
            for s in range(0, len(b), step):
                p = self._pool(feats.maps[i], b[s:s + step])
                if chunk:
                    lg, dl = self.predictor(self.box_head(p))
                    logits.append(lg)
                    deltas.append(dl)
                else:
                    pooled.append(p)
        if pooled:
            lg, dl = self.predictor(self.box_head(torch.cat(pooled)))
            return FastOutputs(lg, dl, [])
        if logits:
            return FastOutputs(torch.cat(logits), torch.cat(deltas), [])
        p = self.predictor.cls_score.weight
        empty = self.box_head(p.new_zeros((0, self.box_head.layers[0].in_features)))
        lg, dl = self.predictor(empty)
        return FastOutputs(lg, dl, [])

    # -- the proposal head ---------------------------------------------------------------------
    def propose(self, feats: FeatureMaps, post_nms: int | None = None) -> list[tuple[Tensor, Tensor]]:
        """Each image's proposals from its maps (:meth:`features`): ``(boxes (n, 4) in the pixels
        of the image given to features, objectness (n,))``, best first."""
        if self.proposer is None:
            raise UserError("this model has no proposal head (proposals.method is not trunk)")
        out = []
        for maps, (sx, sy), size in zip(feats.maps, feats.scales, feats.sizes):
            boxes, scores, _ = self.proposer(next(iter(maps.values())), size, post_nms=post_nms)
            out.append((boxes / boxes.new_tensor([sx, sy, sx, sy]), scores))
        return out

    def one_pass(self, images: "Tensor | Sequence[Tensor]", image_sizes, targets: Sequence[tuple],
                 sampling: RegionSampling) -> OnePassOutputs:
        """Training of the proposal head and the detection head in one pass (Faster R-CNN's
        approximate joint training): the trunk once; per image the head's proposals (and its
        loss against ``targets``' boxes), labelled with the ground truth prepended
        (:func:`detector.sampling.label_regions`), ``sampling.rois_per_image`` of them drawn
        (:func:`detector.sampling.sample_regions`, a generator seeded from the global one: the
        step's seed), then the region head on those. ``targets``: per image (boxes (G, 4) in
        its pixels, labels (G,) 1..C[, more candidate boxes (K, 4), e.g. selective search's])."""
        feats = self.features(images, image_sizes)
        g = torch.Generator().manual_seed(int(torch.randint(0, 2 ** 62, (1,))))
        rois, labels, regs, losses = [], [], [], {}
        for i, (gt, gl, *more) in enumerate(targets):
            sx, sy = feats.scales[i]
            f = gt.new_tensor([sx, sy, sx, sy])
            props, _, parts = self.proposer(next(iter(feats.maps[i].values())), feats.sizes[i], gt * f,
                                            post_nms=sampling.max_proposals, nms_iou=sampling.nms_iou)
            for k, v in parts.items():
                losses[k] = losses.get(k, 0.0) + v / len(targets)
            props = props / f.to(props)
            if more:
                props = torch.cat([props, more[0].to(props)])
            cand, lab, idx, _ = label_regions(props, gt.to(props), gl.to(props.device),
                                              sampling.fg_iou, sampling.bg_iou_low)
            pick = sample_regions(lab, sampling.rois_per_image, sampling.fg_fraction, g).to(lab.device)
            roi, y = cand[pick], lab[pick].long()
            reg = torch.zeros_like(roi)
            fg = y > 0
            if fg.any():
                reg[fg] = encode_boxes(gt.to(roi)[idx[pick][fg]], roi[fg])
            rois.append(roi)
            labels.append(y)
            regs.append(reg)
        out = self.head(feats, rois)
        return OnePassOutputs(out.logits, out.deltas, [], torch.cat(labels), torch.cat(regs), losses)

    def forward(self, images: "Tensor | Sequence[Tensor]", boxes: Sequence[Tensor] | None,
                image_sizes: "Sequence[tuple[int, int]] | None" = None, chunk: int | None = None,
                targets: Sequence[tuple[Tensor, Tensor]] | None = None,
                sampling: RegionSampling | None = None) -> "FastOutputs | OnePassOutputs":
        """images: (B, 3, H, W) normalised (padded; ``image_sizes`` = each image's (h, w)) or a
        list of (3, H_i, W_i); boxes: per image (N_i, 4) in its pixels.
        Returns :class:`FastOutputs` with sum N_i rows. With ``targets`` and ``sampling`` (and
        no boxes): :meth:`one_pass` (DDP wraps ``forward``: training goes through here)."""
        if targets is not None:
            return self.one_pass(images, image_sizes, targets, sampling)
        if len(boxes) != len(images):
            raise ValueError(f"{len(images)} images but {len(boxes)} box tensors")
        return self.head(self.features(images, image_sizes), boxes, chunk=chunk)


def upsample_to_min_input(image: Tensor, min_input: int) -> tuple[Tensor, tuple[float, float]]:
    """(3, h, w) image enlarged (bilinear) so that its shorter side is at least ``min_input``,
    the smallest input the trunk takes, and the (x, y) factors; unchanged when it is large enough."""
    h, w = image.shape[-2:]
    if min(h, w) >= min_input:
        return image, (1.0, 1.0)
    s = min_input / min(h, w)
    # the aspect is kept up to 4:1; the longer side of a thinner image is stretched no
    # further than its own length: a 1 x 1000 image stretched to 31 x 31000 asked for
    # gigabytes (23 GB for two, one tall one wide, padded together in training)
    cap = max(h, w, 4 * min_input)
    nh, nw = (min(cap, max(min_input, math.ceil(side * s))) for side in (h, w))
    up = F.interpolate(image[None], size=(nh, nw), mode="bilinear", align_corners=False)[0]
    return up, (nw / w, nh / h)


def _build_trunk(arch: str, taps: Sequence[str], norm: str, transform_input: bool) -> nn.Module:
    """``build_backbone(arch)`` without the stages after the last tap and the class / aux
    heads, its batch norms replaced by ``norm``."""
    trunk = build_backbone(arch, 2, aux_logits=False, transform_input=bool(transform_input) and arch != "googlenet")
    names = stage_names(trunk)
    bad = [t for t in taps if t not in names]
    if bad:
        raise UserError(f"model.tap {bad}: not a stage of {arch}; stages are {', '.join(names)}")
    last = max(names.index(t) for t in taps)
    for name in list(names[last + 1:]) + list(_HEAD_MODULES):
        if name in trunk._modules or hasattr(trunk, name):
            delattr(trunk, name)
    replace_batchnorm(trunk, norm)
    return trunk


def _full_network_keys(arch: str) -> set:
    """Every state-dict key any ``arch`` network has (aux heads included), by name only."""
    if arch not in _FULL_KEYS:
        with torch.device("meta"):
            _FULL_KEYS[arch] = set(build_backbone(arch, 2, aux_logits=True).state_dict())
    return _FULL_KEYS[arch]


_FULL_KEYS: dict = {}


def count_head_macs(model: FastRCNN) -> int:
    """Multiply-adds per proposal of the box head and predictor (roi_align not counted)."""
    total = 0
    for m in list(model.box_head.modules()) + list(model.predictor.modules()):
        if isinstance(m, nn.Linear):
            total += m.in_features * m.out_features
    return total


def count_trunk_macs(model: FastRCNN, height: int, width: int) -> int:
    """Multiply-adds of one image's trunk (and reduction / FPN) at (height, width)."""
    total = 0

    def conv_hook(m, inp, out):
        nonlocal total
        kh, kw = m.kernel_size
        total += out.numel() * (m.in_channels // m.groups) * kh * kw

    handles = [m.register_forward_hook(conv_hook) for m in model.modules() if isinstance(m, nn.Conv2d)]
    was = model.training
    model.eval()
    try:
        with torch.no_grad():
            model.features(torch.zeros(1, 3, height, width, device=next(model.parameters()).device))
    finally:
        for h in handles:
            h.remove()
        model.train(was)
    return total
