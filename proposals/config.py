"""Proposal settings (the ``proposals:`` section of a detector config), each field declared with
its type and range (:func:`backbone.config.setting`), checked when a config is loaded."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from backbone import NETWORKS
from backbone.config import MAX_INPUT_SIZE, check_input_size, setting
from backbone.errors import UserError

from .selective_search import BACKENDS, PRESETS

#: bounds of the sizes a config or a checkpoint controls (generous multiples of the paper's):
#: a working width above the detector's 2000 px working side only upsamples (100000 asked
#: for 22 GB), and each prior is 5 outputs of the network's last layer
MAX_WORKING_WIDTH = 2000
MAX_PRIORS = 10_000
MAX_BOXES = 100_000

#: the proposal methods (``proposals.method``)
METHODS = ("ss", "multibox", "ss+multibox", "trunk")


@dataclass
class MultiBoxConfig:
    arch: str = setting("googlenet_bn", choices=NETWORKS)  # backbone trunk (BN: trains from scratch in the few epochs a CPU allows)
    input_size: int = setting(160, ge=1, le=MAX_INPUT_SIZE)   # network input (image resized to SxS; 160 keeps CPU training short)
    num_priors: int = setting(400, ge=1, le=MAX_PRIORS)   # K boxes regressed, priors by k-means on training boxes
    alpha: float = setting(0.3, ge=0)      # weight of the location loss (alpha/2 * squared error)
    matching: str = setting("bipartite", choices=("bipartite", "greedy"))  # bipartite (Hungarian) | greedy
    epochs: int = setting(8, ge=1)
    batch_size: int = setting(32, ge=1, le=4096)
    optimizer: str = setting("adam", choices=("adam", "sgd"))  # adam | sgd (from scratch, Adam converges in the few epochs a CPU allows)
    lr: float = setting(0.001, gt=0)
    momentum: float = setting(0.9, ge=0, lt=1)
    weight_decay: float = setting(0.0005, ge=0)
    flip: bool = setting(True)             # training augmentation: random horizontal mirror (p 0.5)
    vflip: bool = setting(False)           # random vertical mirror (p 0.5): for images without up or down (cells)
    seed: int = setting(0, ge=0)

    def cross_check(self, prefix: str) -> None:
        check_input_size(self.arch, self.input_size, prefix=prefix)


@dataclass
class TrunkConfig:
    """``proposals.trunk``: the proposal head on each fast member's own trunk (``proposals.method:
    trunk``, :mod:`detector.fast.proposer`): at every cell of the member's tap, ``num_priors``
    prior shapes, each predicting 4 offsets and 1 objectness logit, trained jointly with the
    detection head (Faster R-CNN's approximate joint training)."""

    num_priors: int = setting(9, ge=1, le=64)        # prior shapes per cell (k-means over the training boxes' w, h)
    priors: list[list[float]] | None = setting(None)  # (w, h) in trunk-input pixels, smallest first; None:
                                                     # written by train-detector (k-means, IoU distance, YOLOv2)
    matching: str = setting("iou", choices=("iou", "bipartite"))  # iou: Faster R-CNN's (torchvision Matcher,
                                                     # sampler, BoxCoder) | bipartite: MultiBox's match and loss
    fg_iou: float = setting(0.7, gt=0, le=1)         # iou matching: a prior with IoU >= this is positive ...
    bg_iou: float = setting(0.3, ge=0, lt=1)         # ... below this negative (the best prior of each object positive too)
    batch_size: int = setting(256, ge=1, le=100_000)  # iou matching: priors sampled per image for the loss
    positive_fraction: float = setting(0.5, gt=0, le=1)  # ... at most this fraction positive
    alpha: float = setting(0.3, ge=0)                # bipartite matching: location loss weight (as proposals.multibox.alpha)
    pre_nms: int = setting(6000, ge=1, le=MAX_BOXES)  # best priors by objectness before NMS (per image and member;
                                                     # py-faster-rcnn: 6000; 2000 left BCCD platelets out: RBCs filled it)
    nms_iou: float = setting(0.7, gt=0, le=1)        # NMS among the proposals; then the first train.max_proposals
                                                     # (training) / test.max_proposals (inference) are kept
    train_nms_iou: float = setting(0.7, gt=0, le=1)  # NMS of the proposals the training regions are drawn from (1: none,
                                                     # every one of the best pre_nms: more, and more varied, candidates)
    mix_ss: bool = setting(False)                    # training regions also drawn from cached selective search boxes
                                                     # (this section's ss settings); inference never runs it
    loss_weight: float = setting(1.0, ge=0)          # weight of the proposal loss beside the region loss
    ensemble: str = setting("union", choices=("union", "first"))  # M members: the union of their proposals
                                                     # (NMS nms_iou, best first) or the first member's only

    def cross_check(self, prefix: str) -> None:
        if not self.bg_iou < self.fg_iou:
            raise UserError(f"{prefix}bg_iou must be below {prefix}fg_iou ({self.fg_iou}), got {self.bg_iou}")
        if self.priors is not None:
            ok = bool(self.priors) and all(len(p) == 2 and all(math.isfinite(v) and v > 0 for v in p) for p in self.priors)
            if not ok:
                raise UserError(f"{prefix}priors must be a list of [w, h] pairs of sizes > 0, got {self.priors}")


@dataclass
class ProposalConfig:
    method: str = setting("ss+multibox", choices=METHODS)  # ss | multibox | ss+multibox | trunk (the fast model's own head)
    backend: str = setting("ours", choices=BACKENDS)       # ours | selectivesearch (the PyPI package)
    preset: str = setting("fast", choices=PRESETS)         # single | fast | quality | opencv_fast
    superpixel_scale: float = setting(2.0, gt=0)   # multiplies Felzenszwalb k and min size (paper: 2)
    working_width: int = setting(500, ge=0, le=MAX_WORKING_WIDTH)        # image resized to this width before segmentation (0: kept)
    min_box_width: float = setting(20.0, ge=0)     # at the working width (0: keep every box)
    max_boxes: int | None = setting(None, ge=1, le=MAX_BOXES)    # cap on selective search boxes per image (after ranking)
    multibox_top_k: int = setting(200, ge=1, le=MAX_PRIORS)       # paper: top 200 MultiBox boxes
    multibox_checkpoint: str | None = setting(None)
    merge_iou: float = setting(0.95, ge=0, le=1)   # near-duplicates between SS and MultiBox removed above this IoU
    max_total: int | None = setting(None, ge=1, le=MAX_BOXES)    # cap on the final proposals per image (after merging); None: no cap
    multibox: MultiBoxConfig = field(default_factory=MultiBoxConfig)
    trunk: TrunkConfig = field(default_factory=TrunkConfig)

    # the method, parsed: callers ask these instead of testing the string
    @property
    def uses_ss(self) -> bool:
        """Whether the method runs selective search (``ss``, ``ss+multibox``)."""
        return "ss" in self.method.split("+")

    @property
    def uses_multibox(self) -> bool:
        """Whether the method runs the MultiBox network (``multibox``, ``ss+multibox``)."""
        return "multibox" in self.method.split("+")

    @property
    def uses_trunk(self) -> bool:
        """Whether the detector's own members propose (``trunk``): no proposal stage outside the model."""
        return self.method == "trunk"
