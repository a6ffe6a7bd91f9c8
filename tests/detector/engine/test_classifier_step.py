"""The classifier's pieces in the one run loop: the 0.96-every-8-epochs schedule and MultiBox's
cosine (:class:`detector.engine.trainer.Schedule`), the Polyak average as a step hook
(the divergence check and exact resumes: tests/detector/engine/test_loop.py and
test_train_classifier.py)."""

import math

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from backbone.engine import averaged_module, evaluate, make_averaged_model, make_optimizer
from detector.engine.loop import StepLoop
from detector.engine.train_classifier import _Polyak
from detector.engine.trainer import Schedule


def _loop(opt, **kw):
    return StepLoop(opt, [p for g in opt.param_groups for p in g["params"]], torch.device("cpu"), **kw)


def test_schedule_096_every_8_epochs_with_warmup():
    sch = Schedule(0.1, gamma=0.96, every_epochs=8, warmup_steps=4)
    lrs = [sch.at(g // 10, g % 10, 10) for g in range(170)]
    assert lrs[0] == pytest.approx(0.1 / 4) and lrs[3] == pytest.approx(0.1)
    assert lrs[79] == pytest.approx(0.1) and lrs[80] == pytest.approx(0.096)
    assert lrs[160] == pytest.approx(0.1 * 0.96 ** 2)


def test_schedule_steps_at_epochs_and_cosine():
    steps = Schedule(0.1, gamma=0.1, decay_epochs=(2,), scale=2.0)
    assert steps.at(1, 9, 10) == pytest.approx(0.2) and steps.at(2, 0, 10) == pytest.approx(0.02)
    cos = Schedule(0.1, cosine=True, epochs=4)
    assert cos.at(0, 0, 10) == pytest.approx(0.1) and cos.at(2, 0, 10) == pytest.approx(0.05)
    assert cos.at(3, 5, 10) == pytest.approx(0.05 * (1 + math.cos(math.pi * 35 / 40)))


class _Tiny(nn.Module):
    def __init__(self, c=3):
        super().__init__()
        self.conv = nn.Conv2d(3, 8, 3, padding=1)
        self.fc = nn.Linear(8, c)

    def forward(self, x):
        return self.fc(F.relu(self.conv(x)).mean((2, 3)))


def _data(n=48, c=3, seed=0):
    g = torch.Generator().manual_seed(seed)
    y = torch.arange(n) % c
    x = torch.randn(n, 3, 8, 8, generator=g) * 0.3
    x[torch.arange(n), y] += 1.0  # class = the brightest channel: learnable
    return torch.utils.data.TensorDataset(x, y)


def _loader(ds, seed):
    return torch.utils.data.DataLoader(ds, batch_size=8, shuffle=True, generator=torch.Generator().manual_seed(seed))


def test_training_learns_and_the_polyak_hook_tracks():
    torch.manual_seed(0)
    ds = _data()
    net = _Tiny()
    opt = make_optimizer(net, 0.1)
    avg = make_averaged_model(net, 0.9)
    loop = _loop(opt, hooks=[_Polyak(avg, net)])
    before = evaluate(net, _loader(ds, 0))
    for e in range(8):
        net.train()
        for x, y in _loader(ds, e):
            loop.step(lambda x=x, y=y: (None, F.cross_entropy(net(x), y)))
    after = evaluate(averaged_module(avg), _loader(ds, 0))
    assert int(avg.n_averaged) == loop.steps == 48  # one update per optimizer step
    assert after["loss"] < before["loss"] and after["top1"] > 0.8
    assert after["top5"] == 1.0  # 3 classes: always in the top 5
