"""The detector checkpoint: one ``.pt`` file that carries everything ``detect --model X`` needs.

Contents (a plain dict, loadable with ``torch.load(..., weights_only=True)``)::

    format_version  int, FORMAT_VERSION
    kind            "detector"
    config          the whole resolved DetectorConfig as a dict
    classes         list of class names (label i is classes[i - 1])
    members         list of region-classifier state dicts (aux heads stripped: inference only)
    multibox        the MultiBox checkpoint dict, embedded, or None

Written atomically (temp file + rename), optionally in half precision (``compact``); loaded
back to float32.
"""

from __future__ import annotations

import os
import pickle
import zipfile

import torch

from backbone.errors import UserError

FORMAT_VERSION = 1
_AUX_PREFIXES = ("net.aux1.", "net.aux2.", "net.AuxLogits.")


def atomic_save(obj, path: str) -> None:
    """torch.save to a temp file in the same folder, then rename over ``path``."""
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    tmp = f"{path}.tmp{os.getpid()}"
    torch.save(obj, tmp)
    os.replace(tmp, path)


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
        "config": config,
        "classes": list(classes),
        "members": [inference_state(m, compact) for m in members],
        "multibox": multibox,
    }, path)


def safe_torch_load(path: str, what: str = "checkpoint"):
    """torch.load(weights_only=True) with one clear error for missing or corrupt files."""
    path = os.fspath(path)
    if not os.path.isfile(path):
        raise UserError(f"{what} {path}: no such file")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except (RuntimeError, pickle.UnpicklingError, EOFError, zipfile.BadZipFile, ValueError, OSError) as e:
        first = str(e).strip().splitlines()[0] if str(e).strip() else type(e).__name__
        raise UserError(f"{what} {path}: not a readable checkpoint ({first[:200]})") from None


def load_detector(path: str) -> dict:
    """Read and check a detector checkpoint; tensors come back as float32."""
    ck = safe_torch_load(path, "model")
    if not isinstance(ck, dict) or ck.get("kind") != "detector":
        kind = ck.get("kind") if isinstance(ck, dict) else None
        hint = f" (it is a {kind!r} checkpoint)" if kind else ""
        raise UserError(f"model {path}: not a detector checkpoint{hint}")
    if ck.get("format_version") != FORMAT_VERSION:
        raise UserError(f"model {path}: checkpoint format {ck.get('format_version')} is not supported (expected {FORMAT_VERSION})")
    for key in ("config", "classes", "members"):
        if key not in ck:
            raise UserError(f"model {path}: checkpoint lacks {key!r}")
    if not ck["members"]:
        raise UserError(f"model {path}: checkpoint has no trained members")
    ck["members"] = [{k: (v.float() if v.is_floating_point() else v) for k, v in m.items()} for m in ck["members"]]
    return ck
