"""The classifier's training step in the one step loop: the 0.96-every-8-epochs schedule
(:func:`detector.engine.train_classifier.make_scheduler`), an epoch of steps with Polyak
averaging, the divergence check and an exact resume (moved here from tests/backbone/test_engine.py
with the step)."""

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from backbone.engine import (
    averaged_module,
    evaluate,
    make_averaged_model,
    make_optimizer,
    restore_training_state,
    training_state,
)
from backbone.errors import UserError
from backbone.io import atomic_save
from detector.engine.loop import StepLoop
from detector.engine.train_classifier import make_scheduler, train_one_epoch


def _loop(opt, **kw):
    return StepLoop(opt, [p for g in opt.param_groups for p in g["params"]], torch.device("cpu"), **kw)


def test_schedule_096_every_8_epochs_with_warmup():
    p = nn.Parameter(torch.zeros(1))
    opt = torch.optim.SGD([p], lr=0.1)
    sch = make_scheduler(opt, steps_per_epoch=10, gamma=0.96, every_epochs=8, warmup_steps=4)
    lrs = []
    for _ in range(170):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sch.step()
    assert lrs[0] == pytest.approx(0.1 / 4) and lrs[3] == pytest.approx(0.1)
    assert lrs[79] == pytest.approx(0.1) and lrs[80] == pytest.approx(0.096)
    assert lrs[160] == pytest.approx(0.1 * 0.96 ** 2)



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


def test_training_learns_and_polyak_tracks():
    torch.manual_seed(0)
    ds = _data()
    net = _Tiny()
    opt = make_optimizer(net, 0.1)
    avg = make_averaged_model(net, 0.9)
    before = evaluate(net, _loader(ds, 0))
    for e in range(8):
        stats = train_one_epoch(net, _loader(ds, e), _loop(opt), averaged=avg, progress=False)
    after = evaluate(averaged_module(avg), _loader(ds, 0))
    assert stats["steps"] == 6 and stats["samples"] == 48
    assert after["loss"] < before["loss"] and after["top1"] > 0.8
    assert after["top5"] == 1.0  # 3 classes: always in the top 5
    assert train_one_epoch(net, _loader(ds, 0), _loop(opt), max_steps=2, progress=False)["steps"] == 2


def test_divergence_is_reported():
    ds = _data()
    net = _Tiny()
    with torch.no_grad():
        net.fc.weight.fill_(float("nan"))
    opt = make_optimizer(net, 0.1)
    before = [p.detach().clone() for p in net.parameters()]
    with pytest.raises(UserError, match=r"^training diverged \(loss nan\) at step 1: lower the rate$"):
        train_one_epoch(net, _loader(ds, 0), _loop(opt, hint="lower the rate"), progress=False)
    # checked before the optimizer's step: the weights are those before it
    for a, b in zip(before, net.parameters()):
        torch.testing.assert_close(b, a, rtol=0, atol=0, equal_nan=True)


def _run(epochs_a, resume_at=None, tmp=None):
    torch.manual_seed(0)
    ds = _data()
    net = _Tiny()
    opt = make_optimizer(net, 0.05)
    sch = make_scheduler(opt, 6, gamma=0.5, every_epochs=1)
    avg = make_averaged_model(net, 0.8)
    start = 0
    if resume_at is not None:
        state = torch.load(tmp, weights_only=True)
        net2 = _Tiny()
        opt2 = make_optimizer(net2, 0.05)
        sch2 = make_scheduler(opt2, 6, gamma=0.5, every_epochs=1)
        avg2 = make_averaged_model(net2, 0.8)
        start = restore_training_state(state, net2, opt2, sch2, avg2)
        net, opt, sch, avg = net2, opt2, sch2, avg2
    for e in range(start, epochs_a):
        train_one_epoch(net, _loader(ds, e), _loop(opt), scheduler=sch, averaged=avg, progress=False)
        if tmp is not None and resume_at is None and e + 1 == 1:
            atomic_save(training_state(e + 1, net, opt, sch, avg), tmp)
    return averaged_module(avg).state_dict(), opt.param_groups[0]["lr"]


def test_resume_continues_exactly(tmp_path):
    ck = tmp_path / "state.pt"
    full, lr_full = _run(3, tmp=ck)
    resumed, lr_res = _run(3, resume_at=1, tmp=ck)
    assert lr_full == lr_res == pytest.approx(0.05 * 0.5 ** 3)
    for k in full:
        torch.testing.assert_close(full[k], resumed[k])
