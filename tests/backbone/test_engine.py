"""backbone.engine: the loss with aux heads, the 0.96-every-8-epochs schedule, Polyak
averaging, the training loop, resume and atomic checkpoint writes."""


import pytest
import torch
import torch.nn.functional as F
from torch import nn

from backbone import build_backbone
from backbone.io import atomic_save
from backbone.engine import (
    averaged_module, classification_loss, evaluate, make_averaged_model, make_optimizer,
    make_scheduler, restore_training_state, train_one_epoch, training_state,
)


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
        stats = train_one_epoch(net, _loader(ds, e), opt, averaged=avg, progress=False)
    after = evaluate(averaged_module(avg), _loader(ds, 0))
    assert stats["steps"] == 6 and stats["samples"] == 48
    assert after["loss"] < before["loss"] and after["top1"] > 0.8
    assert after["top5"] == 1.0  # 3 classes: always in the top 5
    assert train_one_epoch(net, _loader(ds, 0), opt, max_steps=2, progress=False)["steps"] == 2


def test_divergence_is_reported():
    ds = _data()
    net = _Tiny()
    with torch.no_grad():
        net.fc.weight.fill_(float("nan"))
    with pytest.raises(FloatingPointError, match="diverged"):
        train_one_epoch(net, _loader(ds, 0), make_optimizer(net, 0.1), progress=False)


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
        train_one_epoch(net, _loader(ds, e), opt, scheduler=sch, averaged=avg, progress=False)
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
