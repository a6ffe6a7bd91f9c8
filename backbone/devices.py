"""The device and precision policy, stated once: what runs in which precision and memory format.

- :func:`autocast`: bfloat16 autocast on CUDA; float32 on the CPU and every other device
  (bfloat16 is several times slower on CPUs, and CPU results stay bitwise those of float32).
  Training and inference use the same context.
- :func:`to_device_format`: ``channels_last`` on the CPU (measured faster convolutions there),
  the default contiguous layout elsewhere. It takes a module (its 4-D parameters) or a tensor
  (4-D only: other ranks have no channels_last layout) and never moves it to the device.

Why here, in ``backbone/``: the policy is used by every layer that runs a network: ``backbone``
itself (multi-crop scoring, the classifier step), ``proposals/multibox.py`` and ``detector/``
(both kinds, ``Detector``, the trainers). ``backbone/`` is the one layer all of them may import
(docs/DESIGN.md, "Layers"); ``detector/engine/devices.py`` keeps ``--device`` and
torch.distributed, which only the detector side needs.
"""

from __future__ import annotations

import contextlib
from typing import TypeVar

import torch
from torch import Tensor, nn

T = TypeVar("T", Tensor, nn.Module)


def autocast(device: "str | torch.device") -> contextlib.AbstractContextManager:
    """The precision context for forward passes on ``device``: ``torch.autocast`` to bfloat16 on
    CUDA, a no-op (float32) anywhere else."""
    if torch.device(device).type == "cuda":
        return torch.autocast("cuda", dtype=torch.bfloat16)
    return contextlib.nullcontext()


def to_device_format(x: T, device: "str | torch.device") -> T:
    """``x`` (a module or a tensor already on ``device``) in the memory format for ``device``:
    ``channels_last`` on the CPU, unchanged elsewhere (and for tensors that are not 4-D)."""
    if torch.device(device).type != "cpu":
        return x
    if isinstance(x, nn.Module):
        return x.to(memory_format=torch.channels_last)
    if x.ndim == 4:
        return x.contiguous(memory_format=torch.channels_last)
    return x


__all__ = ["autocast", "to_device_format"]
