"""Proposal settings (the ``proposals:`` section of a detector config)."""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class MultiBoxConfig:
    arch: str = "googlenet_bn"       # backbone trunk (BN: trains from scratch in the few epochs a CPU allows)
    input_size: int = 160            # network input (image resized to SxS; 160 keeps CPU training short)
    num_priors: int = 400            # K boxes regressed, priors by k-means on training boxes
    alpha: float = 0.3               # weight of the location loss (alpha/2 * squared error)
    matching: str = "bipartite"      # bipartite (Hungarian) | greedy
    epochs: int = 8
    batch_size: int = 32
    optimizer: str = "adam"          # adam | sgd (from scratch, Adam converges in the few epochs a CPU allows)
    lr: float = 0.001
    momentum: float = 0.9
    weight_decay: float = 0.0005
    seed: int = 0


@dataclass
class ProposalConfig:
    method: str = "ss+multibox"      # ss | multibox | ss+multibox
    backend: str = "ours"            # ours | selectivesearch (the PyPI package)
    preset: str = "fast"             # single | fast | quality
    superpixel_scale: float = 2.0    # multiplies Felzenszwalb k and min size (paper: 2)
    working_width: int = 500         # image resized to this width before segmentation
    min_box_width: float = 20.0      # at the working width
    max_boxes: int | None = None     # cap on selective search boxes per image (after ranking)
    multibox_top_k: int = 200        # paper: top 200 MultiBox boxes
    multibox_checkpoint: str | None = None
    merge_iou: float = 0.95          # near-duplicates between SS and MultiBox removed above this IoU
    max_total: int | None = None     # cap on the final proposals per image (after merging); None: no cap
    multibox: MultiBoxConfig = field(default_factory=MultiBoxConfig)
