"""The device and precision policy (backbone/devices.py)."""

import pytest
import torch
from torch import nn

from backbone.devices import autocast, to_device_format


def test_autocast_is_float32_on_the_cpu():
    a, b = torch.randn(4, 4), torch.randn(4, 4)
    with autocast("cpu"):
        assert not torch.is_autocast_enabled("cpu")
        assert (a @ b).dtype == torch.float32


@pytest.mark.filterwarnings("ignore:CUDA is not available")
def test_autocast_is_bfloat16_on_cuda():
    ctx = autocast(torch.device("cuda:0"))  # made without a GPU; entered only where there is one
    assert isinstance(ctx, torch.autocast) and ctx.fast_dtype == torch.bfloat16 and ctx.device == "cuda"


def test_channels_last_on_the_cpu_only_and_4d_only():
    x = torch.randn(2, 3, 5, 7)
    y = to_device_format(x, "cpu")
    assert y.is_contiguous(memory_format=torch.channels_last) and torch.equal(x, y)
    v = torch.randn(3, 5, 7)
    assert to_device_format(v, "cpu") is v
    m = torch.empty(2, 3, 5, 7, device="meta")
    assert to_device_format(m, m.device) is m


def test_modules_get_channels_last_weights_on_the_cpu():
    conv = nn.Conv2d(3, 4, 3)
    assert to_device_format(conv, torch.device("cpu")) is conv
    assert conv.weight.is_contiguous(memory_format=torch.channels_last)
    other = nn.Conv2d(3, 4, 3, device="meta")
    assert to_device_format(other, "meta").weight.is_contiguous()
