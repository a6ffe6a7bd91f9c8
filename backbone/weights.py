"""Loading state dicts from local files (torchvision ImageNet weights, our own exports), with
one clear error for every way a file can be wrong."""

from __future__ import annotations

import os

import torch
from torch import nn

from .errors import UserError
from .io import safe_torch_load

# Parameters of the class-specific layers: skipped with ``ignore_head=True`` so that a
# network with another class count can start from ImageNet weights (as R-CNN did).
HEAD_PREFIXES = ("fc.", "aux1.fc2.", "aux2.fc2.", "AuxLogits.fc.")
AUX_PREFIXES = ("aux1.", "aux2.", "AuxLogits.")


def read_state_dict(path: str | os.PathLike) -> dict[str, torch.Tensor]:
    """Read a state dict from ``path`` (plain, or wrapped as ``{"state_dict": ...}`` /
    ``{"model": ...}``) with :func:`backbone.io.safe_torch_load` (``weights_only=True``, zip
    CRCs checked first); ``~`` is expanded. Raises :class:`UserError` naming the file, with a
    one-line message."""
    path = os.path.expanduser(os.fspath(path))
    obj = safe_torch_load(path, "weights file")
    if isinstance(obj, dict):
        for key in ("state_dict", "model"):
            if key in obj and isinstance(obj[key], dict) and len(obj) <= 3:
                obj = obj[key]
                break
    if not isinstance(obj, dict) or not obj or not all(isinstance(v, torch.Tensor) for v in obj.values()):
        raise UserError(f"weights file {path}: not a state dict (expected a mapping of parameter names to tensors)")
    return obj


def load_weights(model: nn.Module, path: "str | os.PathLike | dict", *, ignore_head: bool = False, arch: str = "",
                 source: str | None = None) -> None:
    """Load the state dict in ``path`` (a file, or an already loaded state dict named by
    ``source`` in messages) into ``model`` strictly.

    Auxiliary-head weights in the file are dropped when the model has no aux heads (as
    torchvision does for ``aux_logits=False``). With ``ignore_head`` the class-specific layers
    (``HEAD_PREFIXES``) keep their fresh initialisation. Any other missing or unexpected key,
    or a shape mismatch, raises :class:`UserError` naming the file and the keys.
    """
    if isinstance(path, dict):
        state, path = path, source or "state dict"
    else:
        state = read_state_dict(path)
    own = model.state_dict()
    has_aux = any(k.startswith(AUX_PREFIXES) for k in own)
    if not has_aux:
        state = {k: v for k, v in state.items() if not k.startswith(AUX_PREFIXES)}
    if ignore_head:
        state = {k: v for k, v in state.items() if not k.startswith(HEAD_PREFIXES)}
    missing = [k for k in own if k not in state and not (ignore_head and k.startswith(HEAD_PREFIXES))]
    unexpected = [k for k in state if k not in own]
    what = f" for network {arch!r}" if arch else ""
    if missing or unexpected:
        parts = []
        if missing:
            parts.append(f"{len(missing)} missing keys (e.g. {', '.join(missing[:3])})")
        if unexpected:
            parts.append(f"{len(unexpected)} unexpected keys (e.g. {', '.join(unexpected[:3])})")
        raise UserError(f"weights file {os.fspath(path)}: does not match{what}: " + "; ".join(parts))
    bad = [f"{k} {tuple(v.shape)} vs {tuple(own[k].shape)}" for k, v in state.items() if v.shape != own[k].shape]
    if bad:
        raise UserError(
            f"weights file {os.fspath(path)}: shape mismatch{what} (file vs model): {'; '.join(bad[:3])}"
            + (f" and {len(bad) - 3} more" if len(bad) > 3 else "")
        )
    model.load_state_dict(state, strict=not ignore_head)
