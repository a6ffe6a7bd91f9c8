import json
import os

import numpy as np
import pytest
import torch

from backbone.errors import UserError
from detector.checkpoint import load_detector
from detector.datasets import load_dataset
from detector import Detector  # the documented API
from detector.train import train_detector

from .helpers import jittered_proposals, tiny_config


@pytest.fixture
def mini(test_data):
    return test_data / "voc-mini"


def _props(cfg):
    return jittered_proposals(load_dataset(cfg.data, "train"))


def test_train_two_members_and_detect(mini, tmp_path):
    cfg = tiny_config(mini, **{"model.members": 2, "model.bbox_reg": "true", "train.epochs": 2})
    path = train_detector(cfg, str(tmp_path / "run"), torch.device("cpu"), train_proposals=_props(cfg), progress=False)
    ck = load_detector(path)
    assert len(ck["members"]) == 2 and ck["classes"] == ["Platelets", "RBC", "WBC"]
    assert not any(k.startswith("net.aux") for k in ck["members"][0])  # inference-only state
    # members differ (seeds)
    k = "net.fc.weight"
    assert not torch.equal(ck["members"][0][k], ck["members"][1][k])
    rows = [json.loads(l) for l in open(tmp_path / "run" / "metrics.jsonl")]
    assert [(r["member"], r["epoch"]) for r in rows] == [(0, 0), (0, 1), (1, 0), (1, 1)]
    assert (tmp_path / "run" / "curves.png").stat().st_size > 1000
    assert (tmp_path / "run" / "config.yaml").exists()
    det = Detector.from_checkpoint(path)
    ds = load_dataset(cfg.data, "test")
    d = det(ds.records[0].path, proposals=jittered_proposals(ds)[0])
    assert d.boxes.shape[1] == 4 and len(d.boxes) == len(d.scores) == len(d.labels)
    assert np.all(d.scores[:-1] >= d.scores[1:] - 1e-6)  # best first
    # no proposals: empty output, not a crash
    d0 = det(ds.records[0].path, proposals=np.zeros((0, 4), np.float32))
    assert len(d0.boxes) == 0


def test_resume_ends_where_unbroken_run_ends(mini, tmp_path):
    cfg = tiny_config(mini, **{"train.epochs": 2})
    props = _props(cfg)
    a = train_detector(cfg, str(tmp_path / "a"), torch.device("cpu"), train_proposals=props, progress=False)
    with pytest.raises(KeyboardInterrupt):  # killed in epoch 2 (1 step per epoch here: 3 images / 2)
        train_detector(cfg, str(tmp_path / "b"), torch.device("cpu"), train_proposals=props, progress=False, _stop_after_steps=2)
    b = train_detector(cfg, str(tmp_path / "b"), torch.device("cpu"), train_proposals=props, progress=False)
    sa, sb = load_detector(a)["members"][0], load_detector(b)["members"][0]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_refuses_to_overwrite_and_config_change(mini, tmp_path):
    cfg = tiny_config(mini)
    props = _props(cfg)
    train_detector(cfg, str(tmp_path / "r"), torch.device("cpu"), train_proposals=props, progress=False)
    with pytest.raises(UserError, match="already holds a training run"):
        train_detector(cfg, str(tmp_path / "r"), torch.device("cpu"), train_proposals=props, resume=False)
    cfg2 = tiny_config(mini, **{"train.lr": 0.5})
    with pytest.raises(UserError, match="another config"):
        train_detector(cfg2, str(tmp_path / "r"), torch.device("cpu"), train_proposals=props)
    # test settings do not change training: a resume may change them, the model carries the new ones
    cfg3 = tiny_config(mini, **{"test.nms_iou": 0.45})
    path = train_detector(cfg3, str(tmp_path / "r"), torch.device("cpu"), train_proposals=props, progress=False)
    assert load_detector(path)["config"]["test"]["nms_iou"] == 0.45


MULTIBOX_TINY = {"proposals.multibox.input_size": 64, "proposals.multibox.num_priors": 16,
                 "proposals.multibox.epochs": 1, "proposals.multibox.batch_size": 2}


def test_stage_multibox_trains_multibox_only_whatever_the_proposals(mini, tmp_path, capsys):
    cfg = tiny_config(mini, **{"proposals.method": "ss"}, **MULTIBOX_TINY)  # proposals without MultiBox
    path = train_detector(cfg, str(tmp_path / "run"), torch.device("cpu"), stage="multibox", progress=False)
    assert path == str(tmp_path / "run" / "multibox" / "multibox.pt")
    from proposals.multibox import load_multibox
    assert load_multibox(path).num_priors == 16
    assert not (tmp_path / "run" / "model.pt").exists() and not (tmp_path / "run" / "train_state.pt").exists()
    err = capsys.readouterr().err
    assert "do not use this MultiBox yet" in err
    assert "proposals.method=ss+multibox" in err and f"proposals.multibox_checkpoint={path}" in err


def test_lr_schedule_warmup_then_steps(mini):
    from detector.train import lr_at

    cfg = tiny_config(mini, **{"train.lr": 0.1, "train.warmup_steps": 4, "train.lr_steps": "[2,5]", "train.lr_gamma": 0.5})
    assert [lr_at(cfg, 0, s) for s in range(5)] == pytest.approx([0.025, 0.05, 0.075, 0.1, 0.1])
    assert lr_at(cfg, 1, 10) == pytest.approx(0.1)
    assert lr_at(cfg, 2, 20) == pytest.approx(0.05)   # first step
    assert lr_at(cfg, 4, 40) == pytest.approx(0.05)
    assert lr_at(cfg, 5, 50) == pytest.approx(0.025)  # second step
    assert lr_at(cfg, 2, 1) == pytest.approx(0.05 * 2 / 4)  # warm-up scales the stepped rate
    assert lr_at(tiny_config(mini, **{"train.lr": 0.1}), 0, 0) == pytest.approx(0.1)  # no warm-up


def test_step_without_regions_is_skipped(mini, tmp_path, monkeypatch, capsys):
    """A batch that yields no regions is no step (and an epoch of only such batches logs no loss)."""
    from detector.train import RegionBatcher

    monkeypatch.setattr(RegionBatcher, "batch", lambda self, indices, gen: None)
    cfg = tiny_config(mini)
    path = train_detector(cfg, str(tmp_path / "run"), torch.device("cpu"), train_proposals=_props(cfg), progress=False)
    assert len(load_detector(path)["members"]) == 1
    rows = [json.loads(l) for l in open(tmp_path / "run" / "metrics.jsonl")]
    assert rows[0]["loss"] is None
    assert "loss n/a (no step)" in capsys.readouterr().err


def _ddp_worker(rank, world, init_file, out_dir):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from detector.region_classifier import RegionClassifier
    from detector.train import _all_ranks_agree, region_loss

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    cfg = tiny_config("unused", **{"model.bbox_reg": "true"})
    torch.manual_seed(0)
    model = RegionClassifier("googlenet", 3, aux_logits=True, bbox_reg=True)
    net = DDP(model)
    agree = _all_ranks_agree(rank == 0, world, torch.device("cpu"))  # rank 1 has no batch: both skip
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(rank))
    # rank 1's regions are all background: its box head is in the graph all the same
    y = torch.tensor([1, 0, 2, 0]) if rank == 0 else torch.zeros(4, dtype=torch.long)
    for _ in range(2):  # DDP reports parameters left without a gradient at the next step
        loss, _ = region_loss(net(x), y, torch.zeros(4, 4), cfg)
        loss.backward()
    torch.save({"agree": agree, "grad": model.bbox_head.weight.grad}, os.path.join(out_dir, f"rank{rank}.pt"))
    dist.destroy_process_group()


def test_ddp_two_ranks_skip_together_and_box_head_without_foreground(tmp_path):
    import multiprocessing

    ctx = multiprocessing.get_context("fork")  # the modules are imported already: ~2 s, not ~15
    procs = [ctx.Process(target=_ddp_worker, args=(r, 2, str(tmp_path / "init"), str(tmp_path))) for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    for p in procs:
        if p.is_alive():  # a hang is the failure this test looks for
            p.kill()
    assert [p.exitcode for p in procs] == [0, 0]
    r0, r1 = (torch.load(tmp_path / f"rank{r}.pt", weights_only=True) for r in range(2))
    assert r0["agree"] is False and r1["agree"] is False
    assert torch.equal(r0["grad"], r1["grad"]) and r0["grad"].abs().sum() > 0  # all-reduced
