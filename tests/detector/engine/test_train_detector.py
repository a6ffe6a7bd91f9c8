"""train-detector's run folder: the resume rule, refusals before any write, best.pt, the log
trimmed after a kill, a larger train.epochs continued exactly. Tiny: 32 px, 1 step per epoch."""

import importlib
import json
import os

import numpy as np
import pytest
import torch

from backbone.errors import UserError
from detector import Detector  # the documented API
from detector.cli.train_detector import main as train_main
from detector.engine.run import RunFolder
from detector.engine.train_detector import train_detector
from detector.io.checkpoints import load_detector
from detector.io.datasets import load_dataset

from ..helpers import jittered_proposals, same_weights, tiny_config, train_given
from .test_run import ROOT_SKIP, snapshot

td = importlib.import_module("detector.engine.train_detector")  # the module (not the function of that name)
CPU = torch.device("cpu")


@pytest.fixture(scope="module")
def mini(test_data):
    return test_data / "voc-mini"


@pytest.fixture(scope="module")
def props(mini):
    cfg = tiny_config(mini)
    return jittered_proposals(load_dataset(cfg.data, "train")), jittered_proposals(load_dataset(cfg.data, "test"))


def _train(cfg, out, props, **kw):
    return train_given(cfg, str(out), CPU, train_proposals=props[0], val_proposals=props[1], progress=False, **kw)


def _rows(out):
    return [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]


def _weights(path, key="members"):
    return load_detector(str(path))[key][0]


_same = same_weights  # bitwise, same names, never true of two empty dicts


@pytest.fixture
def fake_map(monkeypatch):
    """Validation mAPs 0.9, 0.1, 0.5, ... per call (validation itself is tested elsewhere)."""
    values = iter([0.9, 0.1, 0.5, 0.2, 0.3])
    monkeypatch.setattr(td, "validate", lambda *a, **k: {"val_mAP": next(values), "val_AP": [None, None, None]})


def test_run_folder_best_pt_and_a_larger_epoch_count(mini, props, tmp_path, fake_map):
    """1 epoch, then resumed with train.epochs=2 (accepted): ends where an unbroken 2-epoch run
    ends; best.pt keeps epoch 1 (mAP 0.9 > 0.1), model.pt is epoch 2."""
    one = tiny_config(mini, **{"train.val_every": 1})
    run = tmp_path / "run"
    path = _train(one, run, props)
    assert {p.name for p in run.iterdir()} == {"run.json", "config.yaml", "metrics.jsonl", "curves.png",
                                                "train_state.pt", "model.pt", "best.pt"}
    rec = json.loads((run / "run.json").read_text())
    assert (rec["command"], rec["kind"]) == ("train-detector", "rcnn")
    epoch1 = _weights(path)
    assert _same(_weights(run / "best.pt"), epoch1)
    two = tiny_config(mini, **{"train.val_every": 1, "train.epochs": 2})
    assert _train(two, run, props) == path
    assert [(r["member"], r["epoch"], r["val_mAP"]) for r in _rows(run)] == [(1, 1, 0.9), (1, 2, 0.1)]
    assert not _same(_weights(path), epoch1)
    assert _same(_weights(run / "best.pt"), epoch1)  # the best validation, not the last epoch
    assert load_detector(str(path))["config"]["train"]["epochs"] == 2
    unbroken = _train(two, tmp_path / "unbroken", props)
    assert _same(_weights(path), _weights(unbroken))


def test_no_best_pt_without_validation(mini, props, tmp_path):
    _train(tiny_config(mini), tmp_path / "run", props)
    assert (tmp_path / "run" / "model.pt").exists() and not (tmp_path / "run" / "best.pt").exists()


def test_kill_between_log_and_state_leaves_no_duplicate_row(mini, props, tmp_path, monkeypatch):
    cfg = tiny_config(mini, **{"train.epochs": 2})
    unbroken = _train(cfg, tmp_path / "a", props)
    real, calls = RunFolder.save_state, []

    def killed_at_second(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:  # epoch 2's row is written, its state is not
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(RunFolder, "save_state", killed_at_second)
    with pytest.raises(KeyboardInterrupt):
        _train(cfg, tmp_path / "b", props)
    assert [r["epoch"] for r in _rows(tmp_path / "b")] == [1, 2]
    monkeypatch.setattr(RunFolder, "save_state", real)
    path = _train(cfg, tmp_path / "b", props)
    assert [r["epoch"] for r in _rows(tmp_path / "b")] == [1, 2]  # not [1, 2, 2]
    assert _same(_weights(path), _weights(unbroken))


def test_resume_rule_and_refusals_write_nothing(mini, props, tmp_path, capsys):
    cfg = tiny_config(mini)
    run = tmp_path / "run"
    _train(cfg, run, props)
    before = snapshot(run)
    # the same config again: nothing to do, nothing written
    _train(cfg, run, props)
    assert snapshot(run) == before and "is already trained" in capsys.readouterr().err
    with pytest.raises(UserError, match="already holds a training run"):
        _train(cfg, run, props, resume=False)
    with pytest.raises(UserError, match=r"another config \(train.lr 0.01 -> 0.5\)"):
        _train(tiny_config(mini, **{"train.lr": 0.5}), run, props)
    with pytest.raises(UserError, match=r"another config \(model.members 1 -> 2\)"):
        _train(tiny_config(mini, **{"model.members": 2}), run, props)
    assert snapshot(run) == before  # config.yaml included
    # another command's run, and files of unknown origin
    other = tmp_path / "cls"
    other.mkdir()
    (other / "run.json").write_text(json.dumps({"format": 1, "command": "train-classifier", "kind": "classifier",
                                                "config": {}}))
    with pytest.raises(UserError, match="holds a train-classifier run"):
        _train(cfg, other, props)
    with pytest.raises(UserError, match="holds a train-classifier run"):
        _train(cfg, other, props, stage="multibox")
    unknown = tmp_path / "unknown"
    unknown.mkdir()
    (unknown / "model.pt").write_bytes(b"whose?")
    with pytest.raises(UserError, match="holds model.pt but no run.json"):
        _train(cfg, unknown, props)
    assert sorted(os.listdir(unknown)) == ["model.pt"] and sorted(os.listdir(other)) == ["run.json"]


def _cli_common(mini, tmp_path):
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data:\n  root: {mini}\n  classes: [Platelets, RBC, WBC]\nproposals:\n  method: ss\n")
    return ["--config", str(cfg), "--cache-dir", str(tmp_path / "cache"), "--stage", "classifier"]


def test_cli_out_a_file(mini, tmp_path, capsys):
    common = _cli_common(mini, tmp_path)
    f = tmp_path / "file"
    f.write_text("x")
    assert train_main(common + ["--out", str(f)]) == 2
    err = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert len(err) == 1 and err[0].startswith("train-detector: error: --out") and "is a file" in err[0]
    assert train_main(common + ["--out", str(tmp_path / "run"), "--half", str(f / "half.pt")]) == 2
    assert "--half" in capsys.readouterr().err
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run").exists()  # before any work


@ROOT_SKIP
def test_cli_out_a_read_only_folder(mini, tmp_path, capsys):
    common = _cli_common(mini, tmp_path)
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert train_main(common + ["--out", str(ro / "run")]) == 2
        assert "is not writable" in capsys.readouterr().err and not (tmp_path / "cache").exists()
    finally:
        ro.chmod(0o700)


# --- training itself: two members, resume, refusals, the schedule, DDP ------------------------

def _props(cfg):
    return jittered_proposals(load_dataset(cfg.data, "train"))


def test_train_two_members_and_detect(mini, tmp_path):
    cfg = tiny_config(mini, **{"model.members": 2, "model.bbox_reg": "true", "train.epochs": 2})
    path = train_given(cfg, str(tmp_path / "run"), torch.device("cpu"), train_proposals=_props(cfg), progress=False)
    ck = load_detector(path)
    assert len(ck["members"]) == 2 and ck["classes"] == ["Platelets", "RBC", "WBC"]
    assert not any(k.startswith("net.aux") for k in ck["members"][0])  # inference-only state
    # members differ (seeds)
    k = "net.fc.weight"
    assert not torch.equal(ck["members"][0][k], ck["members"][1][k])
    rows = [json.loads(l) for l in open(tmp_path / "run" / "metrics.jsonl")]
    assert [(r["member"], r["epoch"]) for r in rows] == [(1, 1), (1, 2), (2, 1), (2, 2)]  # counted from 1
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
    a = train_given(cfg, str(tmp_path / "a"), torch.device("cpu"), train_proposals=props, progress=False)
    with pytest.raises(KeyboardInterrupt):  # killed in epoch 2 (1 step per epoch here: 3 images / 2)
        train_given(cfg, str(tmp_path / "b"), torch.device("cpu"), train_proposals=props, progress=False, stop_after=1)
    b = train_given(cfg, str(tmp_path / "b"), torch.device("cpu"), train_proposals=props, progress=False)
    sa, sb = load_detector(a)["members"][0], load_detector(b)["members"][0]
    assert all(torch.equal(sa[k], sb[k]) for k in sa)


def test_refuses_to_overwrite_and_config_change(mini, tmp_path):
    cfg = tiny_config(mini)
    props = _props(cfg)
    train_given(cfg, str(tmp_path / "r"), torch.device("cpu"), train_proposals=props, progress=False)
    with pytest.raises(UserError, match="already holds a training run"):
        train_given(cfg, str(tmp_path / "r"), torch.device("cpu"), train_proposals=props, resume=False)
    cfg2 = tiny_config(mini, **{"train.lr": 0.5})
    with pytest.raises(UserError, match="another config"):
        train_given(cfg2, str(tmp_path / "r"), torch.device("cpu"), train_proposals=props)
    # test settings do not change training: a resume may change them, the model carries the new ones
    cfg3 = tiny_config(mini, **{"test.nms_iou": 0.45})
    path = train_given(cfg3, str(tmp_path / "r"), torch.device("cpu"), train_proposals=props, progress=False)
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
    from detector.engine.train_detector import lr_at

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
    from detector.rcnn import RegionBatcher

    monkeypatch.setattr(RegionBatcher, "batch", lambda self, indices, gen: None)
    cfg = tiny_config(mini)
    path = train_given(cfg, str(tmp_path / "run"), torch.device("cpu"), train_proposals=_props(cfg), progress=False)
    assert len(load_detector(path)["members"]) == 1
    rows = [json.loads(l) for l in open(tmp_path / "run" / "metrics.jsonl")]
    assert rows[0]["loss"] is None
    assert "loss n/a (no step)" in capsys.readouterr().err


def _ddp_worker(rank, world, init_file, out_dir):
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel as DDP

    from detector.engine.loop import all_ranks_agree
    from detector.rcnn import RegionBatch, RegionClassifier, region_loss

    torch.set_num_threads(1)
    dist.init_process_group("gloo", init_method=f"file://{init_file}", rank=rank, world_size=world)
    cfg = tiny_config("unused", **{"model.bbox_reg": "true"})
    torch.manual_seed(0)
    model = RegionClassifier("googlenet", 3, aux_logits=True, bbox_reg=True)
    net = DDP(model)
    agree = all_ranks_agree(rank == 0, world, torch.device("cpu"))  # rank 1 has no batch: both skip
    x = torch.randn(4, 3, 32, 32, generator=torch.Generator().manual_seed(rank))
    # rank 1's regions are all background: its box head is in the graph all the same
    y = torch.tensor([1, 0, 2, 0]) if rank == 0 else torch.zeros(4, dtype=torch.long)
    for _ in range(2):  # DDP reports parameters left without a gradient at the next step
        loss, _ = region_loss(net(x), RegionBatch(x, y, torch.zeros(4, 4)), cfg)
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


@pytest.mark.parametrize("stage", ["classifier", "all", "multibox"])
def test_empty_training_split_is_one_error_before_any_work(mini, tmp_path, capsys, monkeypatch, stage):
    """An empty train.txt trained nothing, printed 'loss n/a (no step)', exited 0 and wrote an
    untrained model.pt and best.pt (issue 20): one error line, exit 2, nothing written."""
    import shutil

    monkeypatch.setenv("GOOGLENET_DET_CACHE", str(tmp_path / "cache"))
    voc = tmp_path / "voc"
    shutil.copytree(mini, voc)
    (voc / "ImageSets" / "Main" / "train.txt").write_text("\n")
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data:\n  format: voc\n  root: {voc}\n  classes: [Platelets, RBC, WBC]\n")
    over = ["--set", "proposals.method=" + ("ss+multibox" if stage == "all" else "ss")]
    rc = train_main(["--config", str(cfg), "--out", str(tmp_path / "run"), "--stage", stage, *over])
    err = [ln for ln in capsys.readouterr().err.splitlines() if ln.strip()]
    what = "MultiBox training" if stage == "multibox" else "training"
    assert rc == 2 and err == [f"train-detector: error: {what} split 'train' of {voc}: no images, nothing to train on "
                               "(an empty split file or folder? see data.root and data.train_split)"], err
    assert not (tmp_path / "run").exists() or snapshot(tmp_path / "run") == {}


def test_empty_validation_split_is_no_validation(mini, props, tmp_path, capsys, monkeypatch):
    """An empty val split scored nothing: 'val mAP nan' and a best.pt chosen on nan."""
    import shutil

    monkeypatch.setenv("GOOGLENET_DET_CACHE", str(tmp_path / "cache"))
    voc = tmp_path / "voc"
    shutil.copytree(mini, voc)
    (voc / "ImageSets" / "Main" / "val.txt").write_text("")
    cfg = tiny_config(voc, **{"data.val_split": "val", "train.val_every": 1})
    _train(cfg, tmp_path / "run", (props[0], None))
    err = capsys.readouterr().err
    assert f"no validation (split 'val' of {voc}: no images)" in err and "nan" not in err, err
    assert not (tmp_path / "run" / "best.pt").exists()


def test_the_weights_comparison_cannot_pass_on_nothing():
    """The bitwise comparison the resume tests use: never true of two empty state dicts, nor of
    dicts with other names (the old helper was true for an empty one)."""
    t = torch.zeros(2)
    assert same_weights({"a": t}, {"a": t.clone()})
    assert not same_weights({}, {})
    assert not same_weights({"a": t}, {"a": t, "b": t})
    assert not same_weights({"a": t}, {"a": t + 1})
