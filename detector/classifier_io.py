"""The classification model's config (``configs/*classifier*.yaml``) and checkpoint format.

A classifier checkpoint is one ``.pt`` file readable with ``torch.load(weights_only=True)``:

========================  =========================================================
``format_version``        int, :data:`FORMAT_VERSION`
``kind``                  ``"classifier"``
``arch``                  backbone network name (``backbone.NETWORKS``)
``num_classes``           int C
``classes``               list of C class names (index i = class i of the logits)
``input_size``            int S, the side of the square crops the network was trained on
``aux_logits``            bool: whether ``state_dict`` holds the auxiliary heads' weights
``transform_input``       bool: torchvision's input re-normalisation (True only when
                          started from torchvision ImageNet weights)
``mean``, ``std``         per-channel normalisation of 0..1 RGB input
``config``                the resolved :class:`ClassifierConfig` as a dict
``state_dict``            the Polyak-averaged weights, loadable into
                          ``backbone.build_backbone(arch, num_classes, aux_logits=aux_logits)``
                          (aux heads included when ``aux_logits``; pass
                          ``aux_logits=False`` and drop keys starting with ``aux`` otherwise)
``epoch``                 epochs trained
``metrics``               dict, the last epoch's log row
``train_state``           only in ``last.pt`` (resume): raw weights, optimizer,
                          scheduler, Polyak state, RNG (see ``backbone.engine``)
========================  =========================================================
"""

from __future__ import annotations

import os
import pickle
import zipfile
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from backbone import NETWORKS, build_backbone
from backbone.engine import atomic_save
from backbone.errors import UserError
from backbone.multicrop import IMAGENET_MEAN, IMAGENET_STD

from .config import load_config, to_dict
from .schema import DataConfig

FORMAT_VERSION = 1
KIND = "classifier"
CONV_INITS = ("default", "xavier", "kaiming_fan_in")
REQUIRED_KEYS = ("format_version", "kind", "arch", "num_classes", "classes", "input_size", "state_dict")


@dataclass
class CropConfig:
    """How ground-truth boxes of a detection dataset become classification images."""

    margin: float = 0.1               # context added on each side, as a fraction of the box's width / height
    skip_difficult: bool = True       # leave out boxes marked difficult
    min_size: float = 2.0             # boxes narrower or shorter than this (pixels) are skipped


@dataclass
class ClassifierModelConfig:
    arch: str = "googlenet"           # a backbone network name
    input_size: int = 224             # S: training crops are S x S; test crops scale by S/224
    aux_logits: bool = True           # auxiliary heads during training (loss weight train.aux_weight)
    dropout: float | None = None      # main-head dropout (None: the network's default, 40% for googlenet)
    init: str | None = None           # optional torchvision state dict to start from (class layers kept fresh)
    conv_init: str = "default"        # from scratch: default (the backbone's own), xavier (the reference Caffe
                                      # model's), kaiming_fan_in


@dataclass
class ClassifierTrainConfig:
    epochs: int = 8
    batch_size: int = 64
    lr: float = 0.01
    momentum: float = 0.9             # paper: 0.9
    weight_decay: float = 0.0002
    lr_gamma: float = 0.96            # paper: lr x 0.96 ...
    lr_step_epochs: float = 8         # ... every 8 epochs (applied per step)
    warmup_epochs: float = 0.0        # linear warm-up (not in the paper; helps from scratch without BN)
    aux_weight: float = 0.3           # paper: 0.3
    polyak_decay: float = 0.999       # Polyak (EMA) averaging of the weights used for evaluation, per step
    min_area: float = 0.08            # random crops cover 8% ...
    max_area: float = 1.0             # ... to 100% of the image area
    min_aspect: float = 0.75          # aspect ratio 3/4 ...
    max_aspect: float = 1.3333333333333333  # ... to 4/3
    brightness: float = 0.4           # photometric distortions (albumentations ColorJitter)
    contrast: float = 0.4
    saturation: float = 0.4
    hue: float = 0.05
    photometric_p: float = 0.8        # probability of applying the colour jitter
    flip: bool = True                 # random horizontal mirror
    vflip: bool = False               # random vertical mirror (not in the paper; fine for microscopy)
    seed: int = 0
    workers: int = 0                  # DataLoader worker processes
    val_every: int = 1                # epochs between validation passes (0: never)
    max_steps_per_epoch: int | None = None  # cap (for quick tests)


@dataclass
class ClassifierTestConfig:
    crops: list[int] = field(default_factory=lambda: [1, 10, 144])
    batch_size: int = 256             # crops per forward pass


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
    validate_config(cfg)
    return cfg


def validate_config(cfg: ClassifierConfig) -> None:
    """One clear error for settings that cannot work."""
    m, t = cfg.model, cfg.train
    if m.arch not in NETWORKS:
        raise UserError(f"model.arch {m.arch!r}: unknown network (choose {', '.join(NETWORKS)})")
    min_size = 75 if m.arch == "inception_v3" else 32
    if m.input_size < min_size:
        raise UserError(f"model.input_size {m.input_size}: {m.arch} needs at least {min_size} px")
    if not 0 < t.min_area <= t.max_area <= 1:
        raise UserError(f"train.min_area/max_area {t.min_area}/{t.max_area}: need 0 < min <= max <= 1")
    if not 0 < t.min_aspect <= t.max_aspect:
        raise UserError(f"train.min_aspect/max_aspect {t.min_aspect}/{t.max_aspect}: need 0 < min <= max")
    if t.epochs < 1 or t.batch_size < 1 or t.lr <= 0:
        raise UserError("train.epochs, train.batch_size and train.lr must be positive")
    if not 0 <= t.polyak_decay < 1:
        raise UserError(f"train.polyak_decay {t.polyak_decay}: must be in [0, 1)")
    if m.conv_init not in CONV_INITS:
        raise UserError(f"model.conv_init {m.conv_init!r}: choose one of {', '.join(CONV_INITS)}")
    bad = [c for c in cfg.test.crops if c not in (1, 10, 144)]
    if bad:
        raise UserError(f"test.crops {cfg.test.crops}: each must be 1, 10 or 144")
    if cfg.crops.margin < 0:
        raise UserError(f"crops.margin {cfg.crops.margin}: must be >= 0")


def save_classifier(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    arch: str,
    classes: list[str],
    input_size: int,
    config: ClassifierConfig | dict | None = None,
    mean=IMAGENET_MEAN,
    std=IMAGENET_STD,
    epoch: int = 0,
    metrics: dict | None = None,
    train_state: dict | None = None,
    transform_input: bool = False,
) -> None:
    """Write a classifier checkpoint (atomically: temp file + rename). ``model``: the network
    whose weights to store (the Polyak-averaged one), unwrapped."""
    state = {k: v.detach().cpu() for k, v in model.state_dict().items()}
    aux = any(k.startswith("aux") or k.startswith("AuxLogits") for k in state)
    cfg = to_dict(config) if config is not None and not isinstance(config, dict) else (config or {})
    ckpt: dict[str, Any] = {
        "format_version": FORMAT_VERSION,
        "kind": KIND,
        "arch": arch,
        "num_classes": len(classes),
        "classes": list(classes),
        "input_size": int(input_size),
        "aux_logits": aux,
        "transform_input": bool(transform_input),
        "mean": [float(x) for x in mean],
        "std": [float(x) for x in std],
        "config": cfg,
        "state_dict": state,
        "epoch": int(epoch),
        "metrics": dict(metrics or {}),
    }
    if train_state is not None:
        ckpt["train_state"] = train_state
    atomic_save(ckpt, path)


def read_classifier(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a classifier checkpoint's dict (weights stay on the CPU)."""
    path = os.fspath(path)
    if not os.path.exists(path):
        raise UserError(f"checkpoint {path}: no such file")
    if os.path.isdir(path):
        raise UserError(f"checkpoint {path}: is a folder, expected a .pt file")
    try:
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"checkpoint {path}: not a readable PyTorch file ({first})") from None
    if not isinstance(ckpt, dict) or "kind" not in ckpt:
        hint = ""
        if isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            hint = " (it is a bare state dict: use --arch NAME --weights FILE for those)"
        raise UserError(f"checkpoint {path}: not a classifier checkpoint{hint}")
    if ckpt["kind"] != KIND:
        raise UserError(f"checkpoint {path}: is a {ckpt['kind']!r} checkpoint, expected a {KIND!r} one")
    missing = [k for k in REQUIRED_KEYS if k not in ckpt]
    if missing:
        raise UserError(f"checkpoint {path}: incomplete, missing {', '.join(missing)}")
    if int(ckpt["format_version"]) > FORMAT_VERSION:
        raise UserError(
            f"checkpoint {path}: format version {ckpt['format_version']} is newer than this program's "
            f"({FORMAT_VERSION}); update googlenet-det"
        )
    if ckpt["arch"] not in NETWORKS:
        raise UserError(f"checkpoint {path}: unknown network {ckpt['arch']!r}")
    if len(ckpt["classes"]) != int(ckpt["num_classes"]):
        raise UserError(f"checkpoint {path}: {len(ckpt['classes'])} class names for {ckpt['num_classes']} classes")
    return ckpt


def load_classifier(path: str | os.PathLike, device: torch.device | str = "cpu", *, aux_logits: bool | None = None
                    ) -> tuple[nn.Module, dict[str, Any]]:
    """Build the network of checkpoint ``path`` with its Polyak-averaged weights, in eval mode
    on ``device``. Returns ``(model, meta)``; ``meta`` is the checkpoint dict without the
    weights (keys ``arch``, ``classes``, ``input_size``, ``mean``, ``std``, ``config``, ...).
    ``aux_logits``: build with / without the aux heads (default: as stored)."""
    path = os.fspath(path)
    ckpt = read_classifier(path)
    stored_aux = bool(ckpt.get("aux_logits", False))
    want_aux = stored_aux if aux_logits is None else aux_logits
    if want_aux and not stored_aux:
        raise UserError(f"checkpoint {path}: has no auxiliary-head weights")
    state = ckpt["state_dict"]
    if not want_aux:
        state = {k: v for k, v in state.items() if not (k.startswith("aux") or k.startswith("AuxLogits"))}
    cfg_model = (ckpt.get("config") or {}).get("model") or {}
    kwargs = {"transform_input": bool(ckpt.get("transform_input", False))} if ckpt["arch"] != "googlenet" else {}
    model = build_backbone(ckpt["arch"], int(ckpt["num_classes"]), aux_logits=want_aux,
                           dropout=cfg_model.get("dropout"), **kwargs)
    try:
        model.load_state_dict(state)
    except RuntimeError as e:
        first = str(e).strip().splitlines()[0]
        raise UserError(f"checkpoint {path}: weights do not fit network {ckpt['arch']!r} ({first})") from None
    model.to(device).eval()
    meta = {k: v for k, v in ckpt.items() if k not in ("state_dict", "train_state")}
    meta.setdefault("mean", list(IMAGENET_MEAN))
    meta.setdefault("std", list(IMAGENET_STD))
    meta["path"] = path
    return model, meta


__all__ = [
    "FORMAT_VERSION", "KIND", "CropConfig", "ClassifierModelConfig", "ClassifierTrainConfig",
    "ClassifierTestConfig", "ClassifierConfig", "load_classifier_config", "validate_config",
    "save_classifier", "read_classifier", "load_classifier",
]
