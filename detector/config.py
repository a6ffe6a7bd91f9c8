"""Every config schema of ``detector/``: ``configs/*.yaml`` load into these dataclasses.

- :class:`DetectorConfig` (``train-detector``, ``detect``, ``eval-map --split``): sections
  ``data`` (where and what), ``proposals`` (see :mod:`proposals.config`), ``model`` (region
  classifier), ``train``, ``test``. Load with :func:`load_detector_config`.
- :class:`ClassifierConfig` (``train-classifier``, ``eval-classifier``): ``data``, ``crops``,
  ``model``, ``train``, ``test``. Load with :func:`load_classifier_config`.

Each field is declared with its type and range (:func:`backbone.config.setting`; rules over
several fields in the classes' ``cross_check``), checked whenever a config is loaded (YAML,
``--set``, a checkpoint's config): one line names the bad key before any work. The zero
sentinels stay valid (``test.members: 0`` all members, ``train.val_every: 0`` never, ...).
The machinery is :mod:`backbone.config`.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from backbone import NETWORKS
from backbone.config import MAX_INPUT_SIZE, check_config, check_input_size, load_config, setting
from backbone.errors import UserError
from eval import PROTOCOLS
from proposals.config import MAX_BOXES, ProposalConfig

#: dataset layouts ``data.format`` names (readers in :mod:`detector.io.datasets`); ``auto``: the
#: layout recognised from the folder's content (:mod:`detector.io.datasets.layout`)
FORMATS = ("auto", "voc", "ilsvrc", "voc_xml", "yolo", "coco", "folder")
#: ``data.format`` of a classifier config: a detection format, or class folders
CLASSIFIER_FORMATS = (*FORMATS, "imagefolder")
#: ``model.conv_init`` of a classifier trained from scratch
CONV_INITS = ("default", "xavier", "kaiming_fan_in")
#: context padding (at the 224 scale) must leave room inside a warp: 2 * pad < 224
MAX_CONTEXT_PAD = 112.0
#: the longest image side the detector works at (``detect``, ``eval-map --split``, training):
#: a longer image is scaled down to it (:func:`detector.model.working_copy`), and no resize
#: (``model.fast.min_side`` / ``max_side``, ``test.scales``, the fast kind's stretch of a thin
#: image to its network's minimum) makes a side longer. BCCD's 640 px, VOC's 500 px and COCO's
#: 640 px images are unchanged; a 2000 x 2000 copy is 12 MB (48 MB as the float tensor the
#: networks read), while a camera's 50 megapixels would be 600 MB as that tensor.
WORKING_MAX_SIDE = 2000
#: bounds of the other sizes a config or a checkpoint controls (each a generous multiple of
#: what the paper or any config here uses), so that a typo is one line, not a 200 GB allocation
MAX_MEMBERS = 100
MAX_BATCH = 4096  # regions or crops per forward pass / per training batch


def check_class_names(names: list[str], key: str) -> None:
    """Raise :class:`UserError` (``{key} must ...``) unless ``names`` is a non-empty list of
    distinct, non-empty class names: a name given twice would relabel every box of the later
    class silently (label i is names[i - 1]). For configs and checkpoints alike."""
    if not names:
        raise UserError(f"{key} must not be empty")
    stripped = [c.strip() for c in names]
    if "" in stripped:
        raise UserError(f"{key} must not hold an empty name, got {list(names)}")
    dup = next((c for i, c in enumerate(stripped) if c in stripped[:i]), None)
    if dup is not None:
        raise UserError(f"{key} must name each class once, got {dup!r} twice")


@dataclass
class DataConfig:
    format: str = setting("auto", choices=CLASSIFIER_FORMATS)  # auto | voc | ilsvrc | voc_xml | yolo | coco | folder
                                              # (classifier: also imagefolder); auto: recognised from the content
    root: str = setting("")                   # dataset root, or a YOLO data.yaml (CLI --data-root / --data override)
    images: str | None = setting(None)        # voc_xml: one more image folder name looked for beside the XML's folder
    classes: list[str] | None = setting(None, min_len=1)  # class names, label i is classes[i-1]; None: found in the data
    classes_file: str | None = setting(None)  # or a file: one name per line, or ILSVRC map_det.txt
    train_split: str = setting("train")
    val_split: str = setting("val")
    test_split: str = setting("test")
    blacklist: str | None = setting(None)     # ILSVRC: blacklist file (lines `image_index WNID`)
    coco_annotations: str = setting("annotations/instances_{split}.json")
    coco_images: str = setting("{split}")

    def cross_check(self, prefix: str) -> None:
        if self.classes is not None:
            check_class_names(self.classes, f"{prefix}classes")


#: detector kinds (``model.kind``): R-CNN (the paper's) and the shared-feature Fast R-CNN
KINDS = ("rcnn", "fast")
#: the fast kind's pooling taps (googlenet / googlenet_bn stages; strides 8 and 16)
FAST_TAPS = ("inception3a", "inception3b", "inception4a", "inception4b", "inception4c", "inception4d",
             "inception4e", "inception5a", "inception5b", "Mixed_5b", "Mixed_5c", "Mixed_5d", "Mixed_6a",
             "Mixed_6b", "Mixed_6c", "Mixed_6d", "Mixed_6e", "Mixed_7a", "Mixed_7b", "Mixed_7c")


@dataclass
class RcnnConfig:
    """``model.rcnn``: settings only R-CNN uses."""

    input_size: int = setting(224, ge=1, le=MAX_INPUT_SIZE)  # warp size S (at least the network's minimum)
    context_pad: float = setting(16.0, ge=0, lt=MAX_CONTEXT_PAD)  # context at the paper's 224 scale; scaled by S/224


@dataclass
class FastConfig:
    """``model.fast``: settings only the shared-feature kind uses (see :mod:`detector.fast`)."""

    tap: list[str] = setting(["inception4e"], min_len=1, choices=FAST_TAPS)  # trunk stage(s) pooled from; several: an FPN
    roi_size: int = setting(7, ge=1, le=64)          # roi_align output, roi_size x roi_size
    reduce_channels: int = setting(128, ge=1, le=4096)  # 1x1 reduction of the tap before pooling
    fc_dim: int = setting(1024, ge=1, le=16384)         # the head's fully connected width
    num_fc: int = setting(1, ge=1, le=2)      # fully connected layers in the head
    fc_rank: int = setting(256, ge=0, le=4096)         # first FC factorised through this rank (0: a full FC)
    norm: str = setting("bn", choices=("bn", "gn", "none"))  # trunk normalisation (bn: batch statistics)
    sampling_ratio: int = setting(2, ge=0, le=16)    # roi_align samples per bin side (0: adaptive)
    dropout: float = setting(0.0, ge=0, lt=1)  # in the head
    min_side: int = setting(600, ge=1, le=WORKING_MAX_SIDE)        # images resized to this shorter side (Fast R-CNN: 600) ...
    max_side: int = setting(1000, ge=1, le=WORKING_MAX_SIDE)       # ... and at most this longer side
    chunk: int = setting(512, ge=1, le=16384)           # proposals per head pass at test time (bounds memory)
    train_crop: int = setting(0, ge=0, le=WORKING_MAX_SIDE)        # train on random crop x crop windows of the resized image (0: whole images)

    @staticmethod
    def upgrade(data: dict) -> dict:
        """Early fast checkpoints had the test pyramid here; it is ``test.scales`` now."""
        if data.get("test_scales", "absent") is None:
            data.pop("test_scales")
        elif "test_scales" in data:
            raise UserError("model.fast.test_scales is a test setting now: write it as test.scales")
        return data


@dataclass
class ModelConfig:
    kind: str = setting("rcnn", choices=KINDS)  # rcnn (the paper's: warp every proposal) | fast (shared features)
    arch: str = setting("googlenet", choices=NETWORKS)  # a backbone network name
    rcnn: RcnnConfig | None = setting(None)   # model.kind rcnn only (filled with defaults when absent)
    fast: FastConfig | None = setting(None)   # model.kind fast only (filled with defaults when absent)
    members: int = setting(6, ge=1, le=MAX_MEMBERS)           # ensemble size (paper: 6)
    aux_logits: bool = setting(True)          # aux heads (training only), loss weight train.aux_weight
    init: str | None = setting(None)          # train-classifier checkpoint, torchvision state dict, imagenet
                                              # (the arch's published weights) or none (from scratch)
    init_weights: str | None = setting(None)  # written by the run: which file model.init imagenet was (name, sha256)
    bbox_reg: bool = setting(False)           # R-CNN box regression (off in the paper)
    # torchvision's input re-normalisation (googlenet_bn, inception_v3), which its ImageNet weights
    # expect; None: train-detector turns it on when model.init is such a file (or a classifier
    # trained with it) and saves the resolved value
    transform_input: bool | None = setting(None)

    def __post_init__(self):  # the chosen kind's settings exist, with their defaults
        if self.kind == "rcnn" and self.rcnn is None:
            self.rcnn = RcnnConfig()
        elif self.kind == "fast" and self.fast is None:
            self.fast = FastConfig()

    @staticmethod
    def upgrade(data: dict) -> dict:
        """Configs before model.kind: a flat ``input_size`` / ``context_pad`` is R-CNN's; the
        chosen kind's sub-section is filled with its defaults when absent."""
        flat = {k: data.pop(k) for k in ("input_size", "context_pad") if k in data}
        if flat:
            if data.get("kind", "rcnn") != "rcnn" or isinstance(data.get("rcnn"), dict) and set(flat) & set(data["rcnn"]):
                raise UserError(f"model.{next(iter(flat))} is R-CNN's setting: write it as model.rcnn.{next(iter(flat))}")
            data["rcnn"] = {**flat, **(data.get("rcnn") or {})}
        kind = data.get("kind", "rcnn")
        if kind in KINDS and data.get(kind) is None:
            data[kind] = {}
        return data

    def cross_check(self, prefix: str) -> None:
        other = "fast" if self.kind == "rcnn" else "rcnn"
        if getattr(self, other) is not None:
            raise UserError(f"{prefix}{other} is set but {prefix}kind is {self.kind}: {prefix}{other} holds settings "
                            f"of the other kind (remove it, or --set {prefix}{other}=null)")
        self.__post_init__()
        if self.kind == "rcnn":
            try:
                check_input_size(self.arch, self.rcnn.input_size, self.aux_logits, prefix)
            except UserError as e:
                raise UserError(str(e).replace(f"{prefix}input_size", f"{prefix}rcnn.input_size", 1)) from None
        else:
            if self.arch not in ("googlenet", "googlenet_bn") and any(t.startswith("inception") for t in self.fast.tap) \
                    or self.arch == "inception_v3" and not all(t.startswith("Mixed") for t in self.fast.tap):
                raise UserError(f"{prefix}fast.tap {self.fast.tap}: not stages of {prefix}arch {self.arch}")
            if self.fast.max_side < self.fast.min_side:
                raise UserError(f"{prefix}fast.max_side must be >= {prefix}fast.min_side ({self.fast.min_side}), "
                                f"got {self.fast.max_side}")


@dataclass
class TrainConfig:
    epochs: int = setting(10, ge=1)
    batch_size: int = setting(128, ge=1, le=MAX_BATCH)  # regions per batch
    fg_fraction: float = setting(0.25, gt=0, le=1)  # 32 foreground of 128
    fg_iou: float = setting(0.5, gt=0, le=1)  # IoU >= fg_iou with a gt box: foreground
    bg_iou_low: float = setting(0.0, ge=0, lt=1)  # background: bg_iou_low <= IoU < fg_iou
    images_per_batch: int = setting(2, ge=1, le=256)
    max_proposals: int = setting(2000, ge=1, le=MAX_BOXES)  # per image considered for sampling
    lr: float = setting(0.01, gt=0)
    momentum: float = setting(0.9, ge=0, lt=1)
    weight_decay: float = setting(0.0005, ge=0)
    lr_steps: list[int] = setting([7], ge=1)  # epochs at which lr *= lr_gamma (increasing)
    lr_gamma: float = setting(0.1, gt=0, le=1)
    warmup_steps: int = setting(100, ge=0)    # linear learning-rate warm-up (from scratch, no BN; 0: none)
    clip_grad_norm: float = setting(10.0, ge=0)  # 0: no clipping
    aux_weight: float = setting(0.3, ge=0)
    bbox_weight: float = setting(1.0, ge=0)   # box-regression loss weight (model.bbox_reg)
    flip: bool = setting(True)
    seed: int = setting(0, ge=0)
    val_every: int = setting(2, ge=0)         # epochs between validation mAPs (0: never)
    val_images: int = setting(0, ge=0)        # validate on the first N val images (0: all)
    cache_images: int = setting(3000, ge=0)   # keep decoded images in memory for datasets up to this size (per
                                              # loader worker: each keeps the images it decoded)
    workers: int = setting(0, ge=0)           # DataLoader worker processes building the batches (decode, sampling,
                                              # flips, R-CNN's warps); 0: in the main process. 0 by default (tests,
                                              # small machines): measured on 2 CPU cores, 2 workers hurt the fast kind
                                              # (58 -> 49 regions/s: they contend with the trunk's threads) and help
                                              # R-CNN (14 -> 35: its warps leave the main process); a GPU wants 2-8.
                                              # Results do not depend on it (per-step seeds), so a resume may change it
    max_steps: int = setting(0, ge=0)         # stop after this many optimizer steps in all (members in order), writing
                                              # model.pt; a resume with a larger value (or 0: off) trains on
    checkpoint_every: int = setting(0, ge=0)  # also save a resumable state every N steps inside an epoch (0: epoch ends)
    reference_world_size: int = setting(1, ge=1)  # the process count train.lr is meant for: under torchrun with W
                                              # processes the rate is lr x W / reference_world_size (the linear
                                              # scaling rule: W times the images per step), warm-up as set

    def cross_check(self, prefix: str) -> None:
        if not self.bg_iou_low < self.fg_iou:
            raise UserError(f"{prefix}bg_iou_low must be below {prefix}fg_iou ({self.fg_iou}), got {self.bg_iou_low}")
        if list(self.lr_steps) != sorted(self.lr_steps):
            raise UserError(f"{prefix}lr_steps must be in increasing order, got {list(self.lr_steps)}")


@dataclass
class TestConfig:
    protocol: str = setting("voc", choices=PROTOCOLS)  # ilsvrc | voc07 | voc | coco
    nms_iou: float = setting(0.3, ge=0, le=1)
    score_thr: float = setting(0.05, ge=0, le=1)
    max_per_image: int = setting(100, ge=1, le=MAX_BOXES)
    max_proposals: int | None = setting(None, ge=1, le=MAX_BOXES)  # per image at inference; None: 2000, or 300 with
                                              # proposals.method trunk (DetectorConfig.proposal_limit)
    batch_size: int = setting(128, ge=1, le=MAX_BATCH)  # regions per forward pass (bounds memory)
    members: int = setting(0, ge=0, le=MAX_MEMBERS)  # score with the first N ensemble members only (0: all)
    bbox_reg: bool = setting(True)            # apply the model's box regression when it has one
    scales: list[int] | None = setting(None, min_len=1, ge=1, le=WORKING_MAX_SIDE)  # fast kind: test-time image pyramid (shorter
                                              # sides; each proposal scored at the scale nearest 224^2); None: model.fast.min_side


@dataclass
class DetectorConfig:
    data: DataConfig = field(default_factory=DataConfig)
    proposals: ProposalConfig = field(default_factory=ProposalConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    test: TestConfig = field(default_factory=TestConfig)

    @property
    def proposal_limit(self) -> int:
        """The proposals scored per image: ``test.max_proposals``, or when None 300 for the members'
        own proposals (``proposals.method: trunk``) and 2000 for the others."""
        if self.test.max_proposals is not None:
            return self.test.max_proposals
        return 300 if self.proposals.uses_trunk else 2000

    def cross_check(self, prefix: str) -> None:
        if self.proposals.uses_trunk and self.model.kind != "fast":
            raise UserError(f"{prefix}proposals.method trunk: the proposals come from the members' own trunk, which "
                            f"only model.kind fast shares; model.kind is {self.model.kind} (use fast, or another method)")
        if self.data.format not in FORMATS:
            raise UserError(f"{prefix}data.format must be one of {', '.join(FORMATS)} for a detector, got "
                            f"{self.data.format!r} ({self.data.format} is for train-classifier)")


def load_detector_config(path=None, overrides=(), data_root: str | None = None) -> DetectorConfig:
    """Load a detector config; ``data_root`` (the CLI's --data-root) replaces ``data.root``."""
    cfg = load_config(DetectorConfig, path, overrides)
    if data_root is not None:
        cfg.data.root = data_root
    return cfg


@dataclass
class CropConfig:
    """How ground-truth boxes of a detection dataset become classification images."""

    margin: float = setting(0.1, ge=0)        # context added on each side, as a fraction of the box's width / height
    skip_difficult: bool = setting(True)      # leave out boxes marked difficult
    min_size: float = setting(2.0, ge=0)      # boxes narrower or shorter than this (pixels) are skipped


@dataclass
class ClassifierModelConfig:
    arch: str = setting("googlenet", choices=NETWORKS)  # a backbone network name
    input_size: int = setting(224, ge=1, le=MAX_INPUT_SIZE)  # S: training crops are S x S; test crops scale by S/224
    aux_logits: bool = setting(True)          # auxiliary heads during training (loss weight train.aux_weight)
    dropout: float | None = setting(None, ge=0, lt=1)  # main-head dropout (None: the network's default, 40% for googlenet)
    init: str | None = setting(None)          # torchvision state dict to start from (class layers kept fresh),
                                              # imagenet (the arch's published weights) or none (from scratch)
    init_weights: str | None = setting(None)  # written by the run: which file model.init imagenet was (name, sha256)
    conv_init: str = setting("default", choices=CONV_INITS)  # from scratch: default (the backbone's own), xavier
                                              # (the reference Caffe model's), kaiming_fan_in

    def cross_check(self, prefix: str) -> None:
        check_input_size(self.arch, self.input_size, self.aux_logits, prefix)


@dataclass
class ClassifierTrainConfig:
    epochs: int = setting(8, ge=1)
    batch_size: int = setting(64, ge=1, le=MAX_BATCH)
    lr: float = setting(0.01, gt=0)
    momentum: float = setting(0.9, ge=0, lt=1)   # paper: 0.9
    weight_decay: float = setting(0.0002, ge=0)
    lr_gamma: float = setting(0.96, gt=0, le=1)  # paper: lr x 0.96 ...
    lr_step_epochs: float = setting(8, gt=0)     # ... every 8 epochs (applied per step)
    warmup_epochs: float = setting(0.0, ge=0)    # linear warm-up (not in the paper; helps from scratch without BN)
    aux_weight: float = setting(0.3, ge=0)       # paper: 0.3
    polyak_decay: float = setting(0.999, ge=0, lt=1)  # Polyak (EMA) averaging of the weights used for evaluation, per step
    min_area: float = setting(0.08, gt=0, le=1)  # random crops cover 8% ...
    max_area: float = setting(1.0, gt=0, le=1)   # ... to 100% of the image area
    min_aspect: float = setting(0.75, gt=0)      # aspect ratio 3/4 ...
    max_aspect: float = setting(1.3333333333333333, gt=0)  # ... to 4/3
    brightness: float = setting(0.4, ge=0)       # photometric distortions (albumentations ColorJitter)
    contrast: float = setting(0.4, ge=0)
    saturation: float = setting(0.4, ge=0)
    hue: float = setting(0.05, ge=0, le=0.5)
    photometric_p: float = setting(0.8, ge=0, le=1)  # probability of applying the colour jitter
    flip: bool = setting(True)                   # random horizontal mirror
    vflip: bool = setting(False)                 # random vertical mirror (not in the paper; fine for microscopy)
    seed: int = setting(0, ge=0)
    workers: int = setting(0, ge=0)              # DataLoader worker processes
    val_every: int = setting(1, ge=0)            # epochs between validation passes (0: never)
    max_steps_per_epoch: int | None = setting(None, ge=1)  # cap (for quick tests)
    max_steps: int = setting(0, ge=0)            # stop after this many optimizer steps in all (0: off); a resume trains on
    checkpoint_every: int = setting(0, ge=0)     # also save a resumable state every N steps inside an epoch (0: epoch ends)

    def cross_check(self, prefix: str) -> None:
        if not self.min_area <= self.max_area:
            raise UserError(f"{prefix}min_area must be <= {prefix}max_area ({self.max_area}), got {self.min_area}")
        if not self.min_aspect <= self.max_aspect:
            raise UserError(f"{prefix}min_aspect must be <= {prefix}max_aspect ({self.max_aspect}), got {self.min_aspect}")


@dataclass
class ClassifierTestConfig:
    crops: list[int] = setting([1, 10, 144], choices=(1, 10, 144), min_len=1)
    batch_size: int = setting(256, ge=1, le=MAX_BATCH)  # crops per forward pass


@dataclass
class ClassifierConfig:
    """``data.format``: ``imagefolder`` (root/<class>/*.jpg, or root/<split>/<class>/*.jpg) or a
    detection format (``voc`` ...) whose ground-truth boxes, cropped, become the classes."""

    data: DataConfig = field(default_factory=lambda: DataConfig(train_split="trainval", val_split="test"))
    crops: CropConfig = field(default_factory=CropConfig)
    model: ClassifierModelConfig = field(default_factory=ClassifierModelConfig)
    train: ClassifierTrainConfig = field(default_factory=ClassifierTrainConfig)
    test: ClassifierTestConfig = field(default_factory=ClassifierTestConfig)


def load_classifier_config(path=None, overrides=(), data_root: str | None = None) -> ClassifierConfig:
    """Load a classifier config (YAML + ``--set`` overrides; ``data_root`` replaces data.root)."""
    cfg = load_config(ClassifierConfig, path, overrides)
    if data_root is not None:
        cfg.data.root = data_root
    return cfg


def validate_config(cfg: ClassifierConfig) -> None:
    """Check a classifier config built or changed in code (loading already checks): one clear
    error for a setting that cannot work, as declared above."""
    check_config(cfg)
