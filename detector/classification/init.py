"""Where a network starts: a ``train-classifier`` checkpoint, a torchvision ImageNet state dict
file, or ``imagenet`` (the arch's published torchvision weights, from the torch hub cache or
downloaded by torch.hub: :func:`backbone.weights.fetch_published`), as R-CNN started from its
classification network; or, from scratch (``none``), the convolutions' initialisation scheme
(``model.conv_init``)."""

from __future__ import annotations

import warnings

import torch

from backbone import (
    NETWORKS,
    build_backbone,
    is_imagenet_state_dict,
    load_weights,
    read_state_dict,
)
from backbone.errors import UserError
from backbone.io import safe_torch_load
from backbone.weights import AUX_PREFIXES, HEAD_PREFIXES, fetch_published, file_sha256

#: ``model.init`` words that are not file names (a file of that name: ``./imagenet``)
IMAGENET, SCRATCH = "imagenet", "none"


def init_path(init: str, arch: str) -> str:
    """The file ``model.init`` names: the cached published weights for ``imagenet`` (fetched
    when missing), else ``init`` itself."""
    return fetch_published(arch).path if init == IMAGENET else init


def prepare_init(model_cfg) -> str | None:
    """Settle ``model.init`` (a detector or classifier config's ``model``) before a run writes
    its config: ``none`` becomes None (from scratch); ``imagenet`` is fetched now (an offline
    machine without the file stops here, before any work) and ``model.init_weights`` records
    which file started the run (name and SHA-256), as the run's ``config.yaml`` then says.
    Returns the line to print, or None."""
    m = model_cfg
    if m.init == SCRATCH:
        m.init = None
    if m.init != IMAGENET:
        return None
    pw = fetch_published(m.arch)
    m.init_weights = f"{pw.file_name} sha256:{file_sha256(pw.path)}"
    fast = getattr(m, "fast", None)
    if getattr(m, "kind", None) == "fast" and fast is not None and fast.norm == "bn":
        warnings.warn("model.fast.norm bn re-estimates the trunk's batch statistics over the few images of a "
                      "step and loses ImageNet's: fine-tune with model.fast.norm=none (the statistics folded "
                      "into a fixed affine, as Fast R-CNN and detectron2's FrozenBatchNorm do; "
                      "detector/configs/default_imagenet.yaml)", UserWarning, stacklevel=2)
    return f"starting from ImageNet weights: {pw.name}, {pw.path} (sha256 {m.init_weights.split(':')[1][:12]}...)"


def init_weights_file(path: str, arch: str):
    """The backbone state dict to start from (class layers are re-initialised by the caller).

    Accepts our classifier checkpoints (``kind: classifier``, whose ``arch`` must match) and
    plain state dicts (torchvision files)."""
    path = init_path(path, arch)
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
    if path == IMAGENET:
        return True  # torchvision's ports of the Google weights expect their input re-normalisation
    obj = safe_torch_load(path, "--init weights")
    if isinstance(obj, dict) and obj.get("kind") == "classifier":
        return bool(obj.get("transform_input", False))
    return bool(is_imagenet_state_dict(init_weights_file(path, arch)))


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


def resolve_transform_input(model_cfg) -> None:
    """Settle ``model.transform_input`` (a detector config's ``model`` section) when left as
    None: on when ``model.init`` is torchvision ImageNet weights (or a classifier trained with
    them), else off."""
    m = model_cfg
    if m.transform_input is None:
        m.transform_input = init_transform_input(m.init, m.arch) if m.init else False


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


def reinit_convs(model: torch.nn.Module, scheme: str) -> None:
    """Re-initialise the convolutions of a network trained from scratch (``model.conv_init``).

    The paper's GoogLeNet has no batch norm, so the scale of the initial weights decides
    whether the first steps are stable: Kaiming fan-in (the backbone's own init) keeps the
    activations O(1), Kaiming fan-out multiplied them through the 57 conv layers (logits of
    about 36 at 64 px; the loss diverged at lr 0.01), Xavier (the reference Caffe model's)
    shrinks them (logits about 0.003)."""
    if scheme == "default":
        return
    for mod in model.modules():
        if isinstance(mod, torch.nn.Conv2d):
            if scheme == "xavier":
                torch.nn.init.xavier_uniform_(mod.weight)
            else:
                torch.nn.init.kaiming_normal_(mod.weight, mode="fan_in", nonlinearity="relu")
            if mod.bias is not None:
                torch.nn.init.zeros_(mod.bias)
