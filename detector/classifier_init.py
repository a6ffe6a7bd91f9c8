"""Where the region classifier starts: a ``train-classifier`` checkpoint or a torchvision
ImageNet state dict (R-CNN initialised from its classification network)."""

from __future__ import annotations

import torch

from backbone import NETWORKS, build_backbone, load_weights, read_state_dict
from backbone.errors import UserError
from backbone.weights import AUX_PREFIXES, HEAD_PREFIXES

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


def init_transform_input(path: str, arch: str) -> bool:
    """Whether a network initialised from ``path`` needs torchvision's input re-normalisation:
    a classifier checkpoint says so itself; a plain state dict needs it when it is torchvision's
    ImageNet weights (1000 classes) of googlenet_bn / inception_v3."""
    if arch == "googlenet":
        return False
    obj = safe_torch_load(path, "--init weights")
    if isinstance(obj, dict) and obj.get("kind") == "classifier":
        return bool(obj.get("transform_input", False))
    from backbone import _is_imagenet_state_dict

    return bool(_is_imagenet_state_dict(init_weights_file(path, arch)))


def _guess_arch(state: dict) -> str | None:
    """The network whose parameter names (class and aux layers aside) ``state`` has, if any."""
    def body(keys):
        return {k for k in keys if not k.startswith(AUX_PREFIXES + HEAD_PREFIXES)}
    want = body(state)
    for name in NETWORKS:
        with torch.device("meta"):  # names only: no memory, no slow initialisation
            keys = build_backbone(name, 2, aux_logits=False).state_dict()
        if body(keys) == want:
            return name
    return None


def apply_init(model, path: str) -> None:
    """Load the backbone weights in ``path`` into ``model`` (a :class:`RegionClassifier`),
    keeping its fresh class layers, box head and, when the file has none, its aux heads.

    A file of another network raises one :class:`UserError` naming the file, the network it
    holds (when recognisable) and ``model.arch``."""
    state = dict(init_weights_file(path, model.arch))
    own = model.net.state_dict()
    if not any(k.startswith(AUX_PREFIXES) for k in state):
        # e.g. torchvision googlenet(aux_logits=False): the aux heads (training only) start fresh
        state.update({k: v for k, v in own.items() if k.startswith(AUX_PREFIXES)})
    try:
        load_weights(model.net, state, ignore_head=True, arch=model.arch, source=path)
    except UserError as e:
        other = _guess_arch(state)
        hint = (f"it holds {other!r} weights: set model.arch={other}" if other and other != model.arch
                else "not weights of this network")
        raise UserError(f"--init {path}: {hint} (model.arch is {model.arch!r}; {str(e).split(': ', 1)[-1]})") from None
