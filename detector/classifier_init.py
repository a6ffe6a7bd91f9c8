"""Where the region classifier starts: a ``train-classifier`` checkpoint or a torchvision
ImageNet state dict (R-CNN initialised from its classification network)."""

from __future__ import annotations

from backbone import read_state_dict
from backbone.errors import UserError

from .checkpoint import safe_torch_load


def init_weights_file(path: str, arch: str):
    """The backbone state dict to start from (class layers are re-initialised by the caller).

    Accepts our classifier checkpoints (``kind: classifier``, whose ``arch`` must match) and
    plain state dicts (torchvision files)."""
    obj = safe_torch_load(path, "--init weights")
    if isinstance(obj, dict) and obj.get("kind") == "classifier":
        if obj.get("arch") != arch:
            raise UserError(f"--init {path}: a {obj.get('arch')!r} classifier, but model.arch is {arch!r}")
        return obj["state_dict"]
    if isinstance(obj, dict) and obj.get("kind") is not None:
        raise UserError(f"--init {path}: a {obj.get('kind')!r} checkpoint, expected a classifier or a state dict")
    return read_state_dict(path)
