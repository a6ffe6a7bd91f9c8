"""Checkpoint formats: the detector (``model.pt`` of train-detector, what ``detect --model X``
needs) and the classifier (``model.pt`` of train-classifier). Loaded with
:func:`backbone.io.safe_torch_load` (weights_only, zip CRCs checked).

The detector checkpoint:

Contents (a plain dict, loadable with ``torch.load(..., weights_only=True)``)::

    format_version  int, FORMAT_VERSION (2; version-1 files, from before the fast kind, load as R-CNN)
    kind            "detector"
    detector_kind   "rcnn" | "fast" (the config's model.kind)
    config          the whole resolved DetectorConfig as a dict
    classes         list of class names (label i is classes[i - 1])
    members         list of member state dicts (aux heads stripped: inference only)
    multibox        the MultiBox checkpoint dict, embedded, or None

Written atomically (temp file + rename), optionally in half precision (``compact``); loaded
back to float32.
"""

from __future__ import annotations

import math
import os
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from backbone import NETWORKS, build_backbone
from backbone.config import MAX_INPUT_SIZE, MAX_NUM_CLASSES, to_dict
from backbone.errors import UserError
from backbone.io import atomic_save, safe_torch_load
from backbone.multicrop import IMAGENET_MEAN, IMAGENET_STD
from detector.config import check_class_names

FORMAT_VERSION = 2
READABLE_VERSIONS = (1, 2)
CLASSIFIER_FORMAT_VERSION = 2
CLASSIFIER_KIND = "classifier"
CLASSIFIER_KEYS = ("format_version", "kind", "arch", "num_classes", "classes", "input_size", "state_dict")
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
    atomic_save({
        "format_version": FORMAT_VERSION,
        "kind": "detector",
        "detector_kind": (config.get("model") or {}).get("kind", "rcnn"),
        "config": config,
        "classes": list(classes),
        "members": [inference_state(m, compact) for m in members],
        "multibox": multibox,
    }, path)


# ---------------------------------------------------------------------------------------------
# field checks: a checkpoint is a file from anywhere, so every field's type is checked before use
# (a tensor where a string belongs would raise "ambiguous truth value" at the first comparison)


def _is_int(v) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_str_list(v) -> bool:
    return isinstance(v, list) and all(isinstance(x, str) for x in v)


def _is_state_dict(v) -> bool:
    return isinstance(v, dict) and all(isinstance(k, str) and isinstance(t, torch.Tensor) for k, t in v.items())


def _is_channel_stats(v) -> bool:
    return (isinstance(v, (list, tuple)) and len(v) == 3
            and all(isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x) for x in v))


def _describe(v) -> str:
    """A wrong value, short: its type, and the value itself when that is short."""
    if isinstance(v, (bool, int, float, str)) and len(repr(v)) <= 40:
        return f"{type(v).__name__} {v!r}"
    return "None" if v is None else f"a {type(v).__name__}"


Check = tuple[Callable[[Any], bool], str]


def _check_fields(ck: dict, fields: dict[str, Check], where: str) -> None:
    """One :class:`UserError` (``where: field 'x' must be ..., got ...``) for the first field
    of ``ck`` present with a value its check refuses."""
    for key, (ok, expected) in fields.items():
        if key in ck and not ok(ck[key]):
            raise UserError(f"{where}: field {key!r} must be {expected}, got {_describe(ck[key])}")


_DETECTOR_FIELDS: dict[str, Check] = {
    "detector_kind": (lambda v: isinstance(v, str), "a string (the detector kind)"),
    "config": (lambda v: isinstance(v, dict), "a dict (the detector config)"),
    "classes": (_is_str_list, "a list of class names"),
    "members": (lambda v: isinstance(v, list), "a list of state dicts"),
    "multibox": (lambda v: v is None or isinstance(v, dict), "None or a dict (the MultiBox checkpoint)"),
}


def load_detector(path: str) -> dict:
    """Read and check a detector checkpoint; tensors come back as float32."""
    ck = safe_torch_load(path, "model")
    kind = ck.get("kind") if isinstance(ck, dict) else None
    if not isinstance(kind, str) or kind != "detector":
        hint = f" (it is a {kind!r} checkpoint)" if isinstance(kind, str) and kind else ""
        raise UserError(f"model {path}: not a detector checkpoint{hint}")
    version = ck.get("format_version")
    if not _is_int(version) or version not in READABLE_VERSIONS:
        shown = repr(version) if _is_int(version) else _describe(version)
        raise UserError(f"model {path}: checkpoint format {shown} is not supported "
                        f"(this program reads {', '.join(map(str, READABLE_VERSIONS))})")
    for key in ("config", "classes", "members"):
        if key not in ck:
            raise UserError(f"model {path}: checkpoint lacks {key!r}")
    _check_fields(ck, _DETECTOR_FIELDS, f"model {path}")
    check_class_names(ck["classes"], f"model {path}: field 'classes'")
    if not ck["members"]:
        raise UserError(f"model {path}: checkpoint has no trained members")
    kind = ck.get("detector_kind", "rcnn")  # version 1: R-CNN, the only kind then
    model = ck["config"].get("model")
    if isinstance(model, dict):
        model_kind = model.get("kind", "rcnn")
        if not isinstance(model_kind, str) or model_kind != kind:
            shown = repr(model_kind) if isinstance(model_kind, str) else _describe(model_kind)
            raise UserError(f"model {path}: detector_kind {kind!r} but its config's model.kind is {shown}")
    members = []
    for i, m in enumerate(ck["members"]):
        if not _is_state_dict(m):
            raise UserError(f"model {path}: member {i} is not a state dict (names -> tensors)")
        members.append({k: (v.float() if v.is_floating_point() else v) for k, v in m.items()})
    ck["members"] = members
    ck["detector_kind"] = kind
    return ck


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
# ``train_state``           optional: raw weights, optimizer, scheduler, Polyak state, RNG
#                           (``backbone.engine.training_state``); train-classifier keeps
#                           these in its run folder's ``train_state.pt`` instead
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
    ckpt: dict[str, Any] = {
        "format_version": CLASSIFIER_FORMAT_VERSION,
        "kind": CLASSIFIER_KIND,
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


_CLASSIFIER_FIELDS: dict[str, Check] = {
    "arch": (lambda v: isinstance(v, str), "a network name"),
    "num_classes": (lambda v: _is_int(v) and 1 <= v <= MAX_NUM_CLASSES, f"an integer in [1, {MAX_NUM_CLASSES}]"),
    "classes": (_is_str_list, "a list of class names"),
    "input_size": (lambda v: _is_int(v) and 1 <= v <= MAX_INPUT_SIZE, f"an integer in [1, {MAX_INPUT_SIZE}] (pixels)"),
    "aux_logits": (lambda v: isinstance(v, bool), "true or false"),
    "transform_input": (lambda v: isinstance(v, bool), "true or false"),
    "mean": (_is_channel_stats, "3 finite numbers"),
    "std": (lambda v: _is_channel_stats(v) and all(x > 0 for x in v), "3 finite numbers > 0"),
    "config": (_is_classifier_config, "a dict (the classifier config: model a dict, model.dropout in [0, 1])"),
    "state_dict": (_is_state_dict, "a state dict (names -> tensors)"),
    "epoch": (lambda v: _is_int(v) and v >= 0, "an integer >= 0"),
    "metrics": (lambda v: isinstance(v, dict), "a dict"),
    "train_state": (lambda v: isinstance(v, dict), "a dict"),
}


def read_classifier(path: str | os.PathLike) -> dict[str, Any]:
    """Read and check a classifier checkpoint's dict (weights stay on the CPU): every field
    of the format above, when present, has its documented type."""
    path = os.fspath(path)
    ckpt = safe_torch_load(path, "checkpoint")
    if not isinstance(ckpt, dict) or "kind" not in ckpt:
        hint = ""
        if isinstance(ckpt, dict) and ckpt and all(isinstance(v, torch.Tensor) for v in ckpt.values()):
            hint = " (it is a bare state dict: use --arch NAME --weights FILE for those)"
        raise UserError(f"checkpoint {path}: not a classifier checkpoint{hint}")
    kind = ckpt["kind"]
    if not isinstance(kind, str):
        raise UserError(f"checkpoint {path}: not a classifier checkpoint (field 'kind' is {_describe(kind)})")
    if kind != CLASSIFIER_KIND:
        raise UserError(f"checkpoint {path}: is a {kind!r} checkpoint, expected a {CLASSIFIER_KIND!r} one")
    missing = [k for k in CLASSIFIER_KEYS if k not in ckpt]
    if missing:
        raise UserError(f"checkpoint {path}: incomplete, missing {', '.join(missing)}")
    version = ckpt["format_version"]
    if not _is_int(version) or version < 1:
        raise UserError(f"checkpoint {path}: field 'format_version' must be an integer >= 1, got {_describe(version)}")
    if version > CLASSIFIER_FORMAT_VERSION:
        raise UserError(
            f"checkpoint {path}: format version {version} is newer than this program's "
            f"({CLASSIFIER_FORMAT_VERSION}); update googlenet-det"
        )
    _check_fields(ckpt, _CLASSIFIER_FIELDS, f"checkpoint {path}")
    check_class_names(ckpt["classes"], f"checkpoint {path}: field 'classes'")
    if ckpt["arch"] not in NETWORKS:
        raise UserError(f"checkpoint {path}: unknown network {ckpt['arch']!r}")
    if len(ckpt["classes"]) != ckpt["num_classes"]:
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
