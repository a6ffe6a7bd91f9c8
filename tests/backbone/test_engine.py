"""backbone.engine: the loss with aux heads, the optimizer, Polyak averaging (the schedule, the
training step and resume: tests/detector/engine/test_classifier_step.py)."""


import pytest
import torch
import torch.nn.functional as F
from torch import nn

from backbone import build_backbone
from backbone.engine import averaged_module, classification_loss, make_averaged_model, make_optimizer


def test_loss_weights_aux_heads():
    g = torch.Generator().manual_seed(0)
    main, aux2, aux1 = (torch.randn(4, 3, generator=g) for _ in range(3))
    y = torch.tensor([0, 1, 2, 1])
    loss, logits = classification_loss((main, aux2, aux1), y, aux_weight=0.3)
    expect = F.cross_entropy(main, y) + 0.3 * (F.cross_entropy(aux2, y) + F.cross_entropy(aux1, y))
    torch.testing.assert_close(loss, expect)
    assert logits is main
    plain, _ = classification_loss(main, y)
    torch.testing.assert_close(plain, F.cross_entropy(main, y))


def test_loss_with_real_googlenet_training_output():
    net = build_backbone("googlenet", 3, aux_logits=True).train()
    out = net(torch.randn(2, 3, 32, 32))
    loss, logits = classification_loss(out, torch.tensor([0, 2]))
    assert logits.shape == (2, 3) and loss.ndim == 0 and torch.isfinite(loss)


def test_optimizer_momentum_and_no_decay_on_biases():
    net = nn.Sequential(nn.Conv2d(3, 4, 3), nn.Flatten(), nn.LazyLinear(2))
    net(torch.zeros(1, 3, 5, 5))
    opt = make_optimizer(net, 0.01, momentum=0.9, weight_decay=1e-3)
    assert opt.defaults["momentum"] == 0.9
    decay, no_decay = opt.param_groups
    assert all(p.ndim > 1 for p in decay["params"]) and decay["weight_decay"] == 1e-3
    assert all(p.ndim == 1 for p in no_decay["params"]) and no_decay["weight_decay"] == 0.0


def test_polyak_average_is_an_ema():
    lin = nn.Linear(1, 1, bias=False)
    avg = make_averaged_model(lin, decay=0.5)
    values = [1.0, 3.0, 7.0]
    for v in values:
        with torch.no_grad():
            lin.weight.fill_(v)
        avg.update_parameters(lin)
    # first update copies, then ema = 0.5 * ema + 0.5 * new
    expect = ((1.0 * 0.5 + 3.0 * 0.5) * 0.5) + 7.0 * 0.5
    assert averaged_module(avg).weight.item() == pytest.approx(expect)
    with pytest.raises(ValueError):
        make_averaged_model(lin, decay=1.0)
