"""detector.engine.loop: the one step loop's schedule, divergence rule, clipping and hooks."""

import pytest
import torch
from torch import nn

from backbone.errors import UserError
from detector.engine import loop
from detector.engine.loop import StepLoop, lr_at, seed, stop_after

CPU = torch.device("cpu")


def _net():
    torch.manual_seed(0)
    return nn.Linear(3, 1)


def test_lr_at_steps_warm_up_and_scale():
    assert lr_at(0.1, 0, warmup_steps=4) == pytest.approx(0.025)
    assert lr_at(0.1, 3, warmup_steps=4) == pytest.approx(0.1)
    assert lr_at(0.1, 10, decays=2, gamma=0.5, scale=4) == pytest.approx(0.1)
    assert lr_at(0.1, 1, decays=1, gamma=0.5, warmup_steps=4) == pytest.approx(0.05 * 2 / 4)
    assert loop.lr_scale(4, 2) == 2


def test_seed_is_one_function_of_its_parts():
    assert seed(1, 2, 3) == seed(1, 2, 3) != seed(1, 2, 4)
    assert 0 <= seed(7) < 2 ** 32


def test_a_step_sets_the_rate_and_steps():
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=1.0)
    lp = StepLoop(opt, net.parameters(), CPU)
    before = net.weight.detach().clone()
    out = lp.step(lambda: ("out", net(torch.ones(2, 3)).sum()), lr=0.01)
    assert out == "out" and lp.steps == 1 and opt.param_groups[0]["lr"] == 0.01
    torch.testing.assert_close(net.weight.detach(), before - 0.01 * 2 * torch.ones(1, 3))


def test_divergence_is_one_error_before_the_optimizer_step():
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.1)
    lp = StepLoop(opt, net.parameters(), CPU, hint="lower train.lr")
    before = [p.detach().clone() for p in net.parameters()]
    with pytest.raises(UserError, match=r"^training diverged \(loss nan\) at member 1 epoch 2: lower train.lr$"):
        lp.step(lambda: (None, net(torch.ones(2, 3)).sum() * float("nan")), where="member 1 epoch 2")
    assert all(torch.equal(a, b) for a, b in zip(before, net.parameters()))  # never stepped
    assert lp.steps == 0


def test_clipping_bounds_the_gradient_norm():
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.0)
    lp = StepLoop(opt, net.parameters(), CPU, clip=0.5)
    lp.step(lambda: (None, 1000 * net(torch.ones(2, 3)).sum()))
    norm = torch.sqrt(sum((p.grad ** 2).sum() for p in net.parameters()))
    assert norm == pytest.approx(0.5, rel=1e-4)


def test_stop_after_and_the_loops_own_hooks():
    net = _net()
    opt = torch.optim.SGD(net.parameters(), lr=0.01)
    seen = []

    class Spy:
        def after_step(self, lp):
            seen.append(lp.steps)

    lp = StepLoop(opt, net.parameters(), CPU, hooks=[Spy()])
    step = lambda: lp.step(lambda: (None, net(torch.ones(1, 3)).sum()))
    with stop_after(2):
        step()
        step()
        with pytest.raises(KeyboardInterrupt):
            step()
    assert seen == [1, 2] and not loop.HOOKS  # the block's hook is gone after it
    step()
    assert seen == [1, 2, 3]
