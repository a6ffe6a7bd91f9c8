"""Checkpoint formats: the detector (``model.pt`` of train-detector, what ``detect --model X``
needs) and the classifier (``model.pt`` of train-classifier). Loaded with
:func:`backbone.io.safe_torch_load` (weights_only, zip CRCs checked).

The detector checkpoint:

Contents (a plain dict, loadable with ``torch.load(..., weights_only=True)``)::

    format_version  int, FORMAT_VERSION (3 with a proposal head, else 2; version-1 files, from before the fast kind, load as R-CNN)
    kind            "detector"
    detector_kind   "rcnn" | "fast" (the config's model.kind)
    config          the whole resolved DetectorConfig as a dict
    classes         list of class names (label i is classes[i - 1])
    members         list of member state dicts (aux heads stripped: inference only)
    multibox        the MultiBox checkpoint dict, embedded, or None
    proposal_head   version 3: True (members carry the trunk proposal head, proposals.method trunk)

Written atomically (temp file + rename), optionally in half precision (``compact``); loaded
back to float32.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from backbone import NETWORKS, build_backbone
from backbone.config import MAX_INPUT_SIZE, MAX_NUM_CLASSES, setting, to_dict
from backbone.errors import UserError
from backbone.formats import STATE_DICT, SavedFormat, is_dict, is_state_dict, read_format, record
from backbone.io import atomic_save, safe_torch_load
from backbone.multicrop import IMAGENET_MEAN, IMAGENET_STD
from detector.config import check_class_names

FORMAT_VERSION = 2
CLASSIFIER_FORMAT_VERSION = 2
CLASSIFIER_KIND = "classifier"
_AUX_PREFIXES = ("net.aux1.", "net.aux2.", "net.AuxLogits.")


def inference_state(state: dict, compact: bool = False) -> dict:
    """A member's state dict without aux heads (unused at inference), optionally float16."""
    out = {}
    for k, v in state.items():
        if k.startswith(_AUX_PREFIXES):
            continue
        v = v.detach().cpu()
        out[k] = v.half() if compact and v.is_floating_point() else v.clone()
    return out


def save_detector(path: str, config: dict, classes: list[str], members: list[dict], multibox: dict | None = None,
                  compact: bool = False) -> None:
    head = _proposes(config)
    ck = record(DetectorCheckpoint(
        format_version=3 if head else 2, proposal_head=head,
        detector_kind=(config.get("model") or {}).get("kind", "rcnn"),
        config=config,
        classes=list(classes),
        members=[inference_state(m, compact) for m in members],
        multibox=multibox,
    ))
    if not head:  # version 2's layout, which older programs read
        del ck["proposal_head"]
    atomic_save(ck, path)


# ---------------------------------------------------------------------------------------------
# the saved formats, declared (backbone.formats): a checkpoint is a file from anywhere, so every
# field's type is checked before use (a tensor where a string belongs would raise "ambiguous
# truth value" at the first comparison)


def is_str_list(v) -> bool:
    return all(isinstance(x, str) for x in v)


def _v1_to_v2(data: dict) -> dict:
    """Version 1, from before the fast kind: R-CNN, the only kind then (no ``detector_kind``)."""
    data.setdefault("detector_kind", "rcnn")
    return data


def _v2_to_v3(data: dict) -> dict:
    """Version 2, from before the trunk proposal head: no member proposes."""
    data.setdefault("proposal_head", False)
    return data


def _proposes(config: dict) -> bool:
    """Whether a config's members carry the trunk proposal head (``proposals.method: trunk``)."""
    return isinstance(config.get("proposals"), dict) and config["proposals"].get("method") == "trunk"


@dataclass(kw_only=True)
class DetectorCheckpoint(SavedFormat):
    """A detector checkpoint (the module docstring). Versions: 1, R-CNN only; 2 adds
    ``detector_kind`` (the config's model.kind); 3 adds ``proposal_head`` (True: every member
    carries the trunk proposal head, ``proposer.*`` keys, ``proposals.method: trunk``). A
    checkpoint without the head is still written as version 2, so that older programs read it."""

    VERSION: ClassVar[int] = 3
    UPGRADES: ClassVar[dict] = {1: _v1_to_v2, 2: _v2_to_v3}

    format_version: int = setting(FORMAT_VERSION, ge=1)
    kind: str = setting("detector", choices=("detector",))
    detector_kind: str = setting("rcnn")
    config: dict = setting(check=is_dict, expect="a dict (the detector config)")
    classes: list[str] = setting(check=is_str_list, expect="a list of class names")
    members: list = setting()
    multibox: dict | None = setting(None, check=is_dict, expect="None or a dict (the MultiBox checkpoint)")
    proposal_head: bool = setting(False)

    def cross_check(self, prefix: str) -> None:
        check_class_names(self.classes, "field 'classes'")
        if self.proposal_head != _proposes(self.config):
            raise UserError(f"proposal_head is {self.proposal_head} but its config's proposals.method is "
                            f"{(self.config.get('proposals') or {}).get('method')!r}")
        if not self.members:
            raise UserError("checkpoint has no trained members")
        for i, m in enumerate(self.members):
            if not is_state_dict(m):
                raise UserError(f"member {i} is not a state dict (names -> tensors)")
        model = self.config.get("model")
        if isinstance(model, dict):
            model_kind = model.get("kind", "rcnn")
            if not isinstance(model_kind, str) or model_kind != self.detector_kind:
                shown = repr(model_kind) if isinstance(model_kind, str) else f"a {type(model_kind).__name__}"
                raise UserError(f"detector_kind {self.detector_kind!r} but its config's model.kind is {shown}")


def load_detector(path: str) -> dict:
    """Read and check a detector checkpoint (:class:`DetectorCheckpoint`, any readable
    version, upgraded to today's); tensors come back as float32."""
    ck = safe_torch_load(path, "model")
    kind = ck.get("kind") if isinstance(ck, dict) else None
    if not isinstance(kind, str) or kind != "detector":
        hint = f" (it is a {kind!r} checkpoint)" if isinstance(kind, str) and kind else ""
        raise UserError(f"model {path}: not a detector checkpoint{hint}")
    obj, extra = read_format(DetectorCheckpoint, ck, source=f"model {path}")
    obj.members = [{k: (v.float() if v.is_floating_point() else v) for k, v in m.items()} for m in obj.members]
    return record(obj, extra)


# ---------------------------------------------------------------------------------------------
# the classifier checkpoint (train-classifier)
#
# A classifier checkpoint is one ``.pt`` file readable with ``torch.load(weights_only=True)``:
#
# ========================  =========================================================
# ``format_version``        int, :data:`CLASSIFIER_FORMAT_VERSION`
# ``kind``                  ``"classifier"``
# ``arch``                  backbone network name (``backbone.NETWORKS``)
# ``num_classes``           int C
# ``classes``               list of C class names (index i = class i of the logits)
# ``input_size``            int S, the side of the square crops the network was trained on
# ``aux_logits``            bool: whether ``state_dict`` holds the auxiliary heads' weights
# ``transform_input``       bool: torchvision's input re-normalisation (True only when
#                           started from torchvision ImageNet weights)
# ``mean``, ``std``         per-channel normalisation of 0..1 RGB input
# ``config``                the resolved :class:`ClassifierConfig` as a dict
# ``state_dict``            the Polyak-averaged weights, loadable into
#                           ``backbone.build_backbone(arch, num_classes, aux_logits=aux_logits)``
#                           (aux heads included when ``aux_logits``; pass
#                           ``aux_logits=False`` and drop keys starting with ``aux`` otherwise)
# ``epoch``                 epochs trained
# ``metrics``               dict, the last epoch's log row
# ``train_state``           optional (older files): raw weights, optimizer, scheduler, Polyak
#                           state, RNG; train-classifier keeps its state in the run folder's
#                           ``train_state.pt`` (``detector.engine.trainer``) instead
# ========================  =========================================================


def save_classifier(
    path: str | os.PathLike,
    model: nn.Module,
    *,
    arch: str,
    classes: list[str],
    input_size: int,
    config: Any = None,
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
    ckpt = record(ClassifierCheckpoint(
        arch=arch,
        num_classes=len(classes),
        classes=list(classes),
        input_size=int(input_size),
        state_dict=state,
        aux_logits=aux,
        transform_input=bool(transform_input),
        mean=[float(x) for x in mean],
        std=[float(x) for x in std],
        config=cfg,
        epoch=int(epoch),
        metrics=dict(metrics or {}),
        train_state=train_state,
    ))
    if train_state is None:
        del ckpt["train_state"]
    atomic_save(ckpt, path)


def _is_classifier_config(v) -> bool:
    """A dict whose ``model`` (what :func:`load_classifier` reads of it), if there, is a dict
    with a ``dropout`` of None or a number in [0, 1]."""
    if not isinstance(v, dict):
        return False
    model = v.get("model")
    if model is None:
        return True
    if not isinstance(model, dict):
        return False
    p = model.get("dropout")
    return p is None or (isinstance(p, (int, float)) and not isinstance(p, bool) and 0 <= p <= 1)


@dataclass(kw_only=True)
class ClassifierCheckpoint(SavedFormat):
    """A classifier checkpoint (the table above). Versions: 1 and 2 have the same fields (those
    after ``input_size`` optional: version-1 files without them load with the defaults)."""

    VERSION: ClassVar[int] = CLASSIFIER_FORMAT_VERSION

    format_version: int = setting(CLASSIFIER_FORMAT_VERSION, ge=1)
    kind: str = setting(CLASSIFIER_KIND, choices=(CLASSIFIER_KIND,))
    arch: str = setting(choices=NETWORKS)
    num_classes: int = setting(ge=1, le=MAX_NUM_CLASSES)
    classes: list[str] = setting(check=is_str_list, expect="a list of class names")
    input_size: int = setting(ge=1, le=MAX_INPUT_SIZE, doc="pixels")
    state_dict: dict = setting(check=is_state_dict, expect=STATE_DICT)
    aux_logits: bool = setting(False)
    transform_input: bool = setting(False)
    mean: list[float] = setting(list(IMAGENET_MEAN), check=lambda v: len(v) == 3, expect="3 numbers")
    std: list[float] = setting(list(IMAGENET_STD), gt=0, check=lambda v: len(v) == 3, expect="3 numbers")
    config: dict = setting(default_factory=dict, check=_is_classifier_config,
                           expect="a dict (the classifier config: model a dict, model.dropout in [0, 1])")
    epoch: int = setting(0, ge=0)
    metrics: dict = setting(default_factory=dict, check=is_dict, expect="a dict")
    train_state: dict | None = setting(None, check=is_dict, expect="a dict")

    def cross_check(self, prefix: str) -> None:
        check_class_names(self.classes, "field 'classes'")
        if len(self.classes) != self.num_classes:
            raise UserError(f"{len(self.classes)} class names for {self.num_classes} classes")


def read_classifier(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a classifier checkpoint's dict (:class:`ClassifierCheckpoint`; weights
    stay on the CPU): every field of the format above has its documented type (absent optional
    fields: their defaults)."""
    path = os.fspath(path)
    ckpt = safe_torch_load(path, "checkpoint")
    if not isinstance(ckpt, dict) or "kind" not in ckpt:
        hint = ""
        if isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            hint = " (it is a bare state dict: use --arch NAME --weights FILE for those)"
        raise UserError(f"checkpoint {path}: not a classifier checkpoint{hint}")
    kind = ckpt["kind"]
    if not isinstance(kind, str):
        raise UserError(f"checkpoint {path}: not a classifier checkpoint (field 'kind' is a {type(kind).__name__})")
    if kind != CLASSIFIER_KIND:
        raise UserError(f"checkpoint {path}: is a {kind!r} checkpoint, expected a {CLASSIFIER_KIND!r} one")
    obj, extra = read_format(ClassifierCheckpoint, ckpt, source=f"checkpoint {path}")
    out = record(obj, extra)
    if out["train_state"] is None:
        del out["train_state"]
    return out


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
