"""Loading state dicts from local files (torchvision ImageNet weights, our own exports), with
one clear error for every way a file can be wrong."""

from __future__ import annotations

import hashlib
import os
import socket
import urllib.parse
from dataclasses import dataclass

import torch
import torchvision
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


# ---------------------------------------------------------------------------------------------
# ImageNet weights published by torchvision (``--init imagenet``)

#: archs with published ImageNet weights -> torchvision's weights enum entry. The paper's
#: ``googlenet`` (LRN, 5x5 branches) was never released: torchvision's GoogLeNet weights are
#: for its BN variant, our ``googlenet_bn``.
IMAGENET_WEIGHTS = {"googlenet_bn": "GoogLeNet_Weights.IMAGENET1K_V1",
                    "inception_v3": "Inception_V3_Weights.IMAGENET1K_V1"}
#: seconds a download may wait on the network before it is one error line (offline machines)
DOWNLOAD_TIMEOUT = 30.0


@dataclass(frozen=True)
class PublishedWeights:
    """torchvision's ImageNet weights of one arch: where torch.hub keeps them and where they come from."""

    arch: str
    name: str        # the enum entry, e.g. GoogLeNet_Weights.IMAGENET1K_V1
    url: str
    folder: str      # $TORCH_HOME/hub/checkpoints (torch's rule: torch.hub.get_dir())

    @property
    def file_name(self) -> str:
        return os.path.basename(urllib.parse.urlparse(self.url).path)

    @property
    def path(self) -> str:
        return os.path.join(self.folder, self.file_name)

    @property
    def cached(self) -> bool:
        return os.path.isfile(self.path)

    def how_to_get(self) -> str:
        return f"download {self.url} into {self.folder}/ (as {self.file_name})"


def published_weights(arch: str) -> PublishedWeights:
    """The ImageNet weights torchvision publishes for ``arch``, resolved through torchvision's
    weights API (``torchvision.models.get_weight``); one line for an arch without any."""
    if arch not in IMAGENET_WEIGHTS:
        have = ", ".join(f"{a} ({w})" for a, w in IMAGENET_WEIGHTS.items())
        raise UserError(f"--init imagenet: model.arch {arch!r} has no published ImageNet weights (the paper's "
                        f"LRN GoogLeNet was never released); the archs that have them: {have}")
    w = torchvision.models.get_weight(IMAGENET_WEIGHTS[arch])
    return PublishedWeights(arch, IMAGENET_WEIGHTS[arch], w.url, os.path.join(torch.hub.get_dir(), "checkpoints"))


def fetch_published(arch: str) -> PublishedWeights:
    """Make sure ``arch``'s published ImageNet weights are in the torch hub cache: a cached file
    is used as it is (torch.hub's rule: the hash is checked at download only); otherwise it is
    downloaded by torch.hub (``download_url_to_file`` with the hash prefix of the file name,
    what ``load_state_dict_from_url(check_hash=True)`` does), waiting at most
    :data:`DOWNLOAD_TIMEOUT` seconds on the network. Offline: one line naming the file, the
    URL and the folder to put it in."""
    pw = published_weights(arch)
    if pw.cached:
        return pw
    m = torch.hub.HASH_REGEX.search(pw.file_name)
    old = socket.getdefaulttimeout()
    try:
        os.makedirs(pw.folder, exist_ok=True)
        socket.setdefaulttimeout(DOWNLOAD_TIMEOUT)
        torch.hub.download_url_to_file(pw.url, pw.path, hash_prefix=m.group(1) if m else None, progress=True)
    except (OSError, RuntimeError, ValueError) as e:  # URLError and timeouts are OSErrors; a bad hash RuntimeError
        reason = getattr(e, "reason", None) or e
        raise UserError(f"--init imagenet: {pw.name} ({pw.file_name}) is not in the torch hub cache and could not "
                        f"be downloaded ({str(reason).splitlines()[0] if str(reason) else type(e).__name__}): "
                        f"{pw.how_to_get()}, or train from scratch with --init none") from None
    finally:
        socket.setdefaulttimeout(old)
    return pw


def file_sha256(path: str) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()
