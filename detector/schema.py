"""The detector config: ``configs/*.yaml`` load into :class:`DetectorConfig`.

Sections: ``data`` (where and what), ``proposals`` (see :mod:`proposals.config`), ``model``
(region classifier), ``train``, ``test``. Load with :func:`load_detector_config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from proposals.config import ProposalConfig

from .config import load_config


@dataclass
class DataConfig:
    format: str = "voc"              # voc | ilsvrc | coco | folder
    root: str = ""                   # dataset root (CLI --data-root overrides)
    classes: list[str] | None = None # class names, label i is classes[i-1]; None: found in the data
    classes_file: str | None = None  # or a file: one name per line, or ILSVRC map_det.txt
    train_split: str = "train"
    val_split: str = "val"
    test_split: str = "test"
    blacklist: str | None = None     # ILSVRC: blacklist file (lines `image_index WNID`)
    coco_annotations: str = "annotations/instances_{split}.json"
    coco_images: str = "{split}"


@dataclass
class ModelConfig:
    arch: str = "googlenet"          # a backbone network name
    input_size: int = 224            # warp size S
    context_pad: float = 16.0        # context at the paper's 224 scale; scaled by S/224
    members: int = 6                 # ensemble size (paper: 6)
    aux_logits: bool = True          # aux heads (training only), loss weight train.aux_weight
    init: str | None = None          # train-classifier checkpoint or torchvision state dict
    bbox_reg: bool = False           # R-CNN box regression (off in the paper)
    # torchvision's input re-normalisation (googlenet_bn, inception_v3), which its ImageNet weights
    # expect; None: train-detector turns it on when model.init is such a file (or a classifier
    # trained with it) and saves the resolved value
    transform_input: bool | None = None


@dataclass
class TrainConfig:
    epochs: int = 10
    batch_size: int = 128            # regions per batch
    fg_fraction: float = 0.25        # 32 foreground of 128
    fg_iou: float = 0.5              # IoU >= fg_iou with a gt box: foreground
    bg_iou_low: float = 0.0          # background: bg_iou_low <= IoU < fg_iou
    images_per_batch: int = 2
    max_proposals: int = 2000        # per image considered for sampling
    lr: float = 0.01
    momentum: float = 0.9
    weight_decay: float = 0.0005
    lr_steps: list[int] = field(default_factory=lambda: [7])  # epochs at which lr *= lr_gamma
    lr_gamma: float = 0.1
    warmup_steps: int = 100          # linear learning-rate warm-up (from scratch, no BN)
    clip_grad_norm: float = 10.0     # 0: no clipping
    aux_weight: float = 0.3
    bbox_weight: float = 1.0         # box-regression loss weight (model.bbox_reg)
    flip: bool = True
    seed: int = 0
    val_every: int = 2               # epochs between validation mAPs (0: never)
    val_images: int = 0              # validate on the first N val images (0: all)
    cache_images: int = 3000         # keep decoded images in memory for datasets up to this size


@dataclass
class TestConfig:
    protocol: str = "voc"            # ilsvrc | voc07 | voc | coco
    nms_iou: float = 0.3
    score_thr: float = 0.05
    max_per_image: int = 100
    max_proposals: int = 2000        # per image at inference
    batch_size: int = 128            # regions per forward pass (bounds memory)
    members: int = 0                 # score with the first N ensemble members only (0: all)
    bbox_reg: bool = True            # apply the model's box regression when it has one


@dataclass
class DetectorConfig:
    data: DataConfig = field(default_factory=DataConfig)
    proposals: ProposalConfig = field(default_factory=ProposalConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)


def load_detector_config(path=None, overrides=(), data_root: str | None = None) -> DetectorConfig:
    """Load a detector config; ``data_root`` (the CLI's --data-root) replaces ``data.root``."""
    cfg = load_config(DetectorConfig, path, overrides)
    if data_root is not None:
        cfg.data.root = data_root
    return cfg
