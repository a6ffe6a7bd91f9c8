"""train-detector fed by a DataLoader: results independent of train.workers, a resumable state
every train.checkpoint_every steps (a run killed mid-epoch ends where an unbroken one ends),
train.max_steps, the linear learning-rate scaling, validation sharded over 2 gloo ranks.
Tiny: voc-mini's 2 training images at 32 px, 1 image per step (2 steps per epoch)."""

import json
import multiprocessing
import os
import socket
import sys

import pytest
import torch

import detector.engine.train_detector as td
from backbone.devices import autocast
from detector import Detector
from detector.engine.run import RunFolder
from detector.io.checkpoints import load_detector
from detector.io.datasets import load_dataset

from ..helpers import jittered_proposals, same_weights, tiny_config, train_given

CPU = torch.device("cpu")
STEPS = {"train.images_per_batch": 1, "train.batch_size": 8, "train.epochs": 2, "model.bbox_reg": "true"}


@pytest.fixture(scope="module")
def mini(test_data):
    return test_data / "voc-mini"


@pytest.fixture(scope="module")
def props(mini):
    cfg = tiny_config(mini)
    return jittered_proposals(load_dataset(cfg.data, "train")), jittered_proposals(load_dataset(cfg.data, "test"))


@pytest.fixture(scope="module")
def unbroken(mini, props, tmp_path_factory):
    """2 epochs x 2 steps in the main process (train.workers 0), never stopped."""
    out = tmp_path_factory.mktemp("unbroken")
    path = train_given(tiny_config(mini, **STEPS), str(out), CPU, train_proposals=props[0], progress=False)
    return load_detector(path)["members"][0], _rows(out)


def _rows(out):
    return [json.loads(line) for line in open(os.path.join(out, "metrics.jsonl"))]


_same = same_weights  # bitwise, same names, never true of two empty dicts


def test_killed_mid_epoch_with_workers_resumes_where_unbroken_run_ends(mini, props, unbroken, tmp_path):
    """Killed after step 1 of epoch 2 with 2 workers and a state every step; resumed in the main
    process (train.workers and checkpoint_every may change): the same weights and the same
    epoch-2 row (the partial epoch's metrics are in the state)."""
    out = tmp_path / "run"
    cfg = tiny_config(mini, **STEPS, **{"train.workers": 2, "train.checkpoint_every": 1})
    with pytest.raises(KeyboardInterrupt):
        train_given(cfg, str(out), CPU, train_proposals=props[0], progress=False, stop_after=3)
    st = torch.load(out / "train_state.pt", weights_only=False)
    assert (st["members"][0]["epochs"], st["members"][0]["step"], st["log_rows"]) == (1, 1, 1)
    path = train_given(tiny_config(mini, **STEPS), str(out), CPU, train_proposals=props[0], progress=False)
    assert _same(load_detector(path)["members"][0], unbroken[0])
    rows = _rows(out)
    assert [r["epoch"] for r in rows] == [1, 2]
    assert [(r["loss"], r["acc"], r["fg_acc"]) for r in rows] == [(r["loss"], r["acc"], r["fg_acc"]) for r in unbroken[1]]


def test_max_steps_stops_writes_the_model_and_a_larger_value_trains_on(mini, props, unbroken, tmp_path, capsys):
    out = tmp_path / "run"
    cfg = tiny_config(mini, **STEPS, **{"train.max_steps": 3})
    path = train_given(cfg, str(out), CPU, train_proposals=props[0], progress=False)
    assert os.path.isfile(path) and [r["epoch"] for r in _rows(out)] == [1]  # epoch 2 is not over
    assert "stopped at train.max_steps 3" in capsys.readouterr().err
    before = load_detector(path)["members"][0]
    assert not _same(before, unbroken[0])
    train_given(cfg, str(out), CPU, train_proposals=props[0], progress=False)  # the same: nothing to do
    assert "already trained (train.max_steps 3)" in capsys.readouterr().err
    assert _same(load_detector(path)["members"][0], before)
    path = train_given(tiny_config(mini, **STEPS, **{"train.max_steps": 0}), str(out), CPU,
                          train_proposals=props[0], progress=False)
    assert _same(load_detector(path)["members"][0], unbroken[0])
    assert [r["epoch"] for r in _rows(out)] == [1, 2]


def test_a_kill_right_after_a_mid_epoch_state_keeps_the_log_to_the_state(mini, props, unbroken, tmp_path, monkeypatch):
    """A kill at the epoch-end save after mid-epoch states: the row written then is trimmed."""
    out = tmp_path / "run"
    cfg = tiny_config(mini, **STEPS, **{"train.checkpoint_every": 1})
    real, calls = RunFolder.save_state, []

    def killed(self, *a, **k):
        calls.append(1)
        if len(calls) == 4:  # epoch 1: step 1, end; epoch 2: step 1, end (its row is written, not its state)
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(RunFolder, "save_state", killed)
    with pytest.raises(KeyboardInterrupt):
        train_given(cfg, str(out), CPU, train_proposals=props[0], progress=False)
    assert [r["epoch"] for r in _rows(out)] == [1, 2]
    monkeypatch.setattr(RunFolder, "save_state", real)
    path = train_given(cfg, str(out), CPU, train_proposals=props[0], progress=False)
    assert [r["epoch"] for r in _rows(out)] == [1, 2]
    assert _same(load_detector(path)["members"][0], unbroken[0])


def test_linear_lr_scaling(mini):
    cfg = tiny_config(mini, **{"train.lr": 0.01, "train.warmup_steps": 4})
    assert td.lr_scale(cfg, 1) == 1 and td.lr_scale(cfg, 4) == 4
    assert td.lr_scale(tiny_config(mini, **{"train.reference_world_size": 2}), 8) == 4
    assert td.lr_at(cfg, 0, 10, td.lr_scale(cfg, 4)) == pytest.approx(0.04)
    assert td.lr_at(cfg, 0, 1, 4) == pytest.approx(0.04 * 2 / 4)  # warm-up as before, of the scaled rate


def _free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


#: validation on the 2 training images (voc-mini's test split has 1): 1 image per rank
VAL_ON_TRAIN = {"train.val_every": 1, "train.batch_size": 8, "train.images_per_batch": 1, "data.val_split": "train"}


def _rank(rank, port, root, out, props, err):
    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    cfg = tiny_config(root, **VAL_ON_TRAIN)
    sys.stderr = open(err, "w")  # noqa: SIM115 (closed when the process ends)
    seen, load = [], td.ImageReads.load  # validation's image reads: this rank's share

    def counting(self, path):
        seen.append(os.path.basename(path))
        return load(self, path)

    td.ImageReads.load = counting  # in this rank's process only
    train_given(cfg, out, CPU, train_proposals=props[0], val_proposals=props[0], progress=False)
    sys.stderr.flush()
    torch.distributed.destroy_process_group()
    with open(f"{err}.seen", "w") as f:
        json.dump(seen, f)


def test_two_gloo_ranks_validate_their_shares_and_scale_the_rate(mini, props, tmp_path, monkeypatch):
    """2 ranks train with validation: each detects its half of the val images, rank 0 logs the
    mAP of all of them (the same as one process's), and the scaled rate is printed once."""
    port, out = _free_port(), str(tmp_path / "run")
    ctx = multiprocessing.get_context("fork")  # the modules are imported already
    procs = [ctx.Process(target=_rank, args=(r, port, str(mini), out, props, str(tmp_path / f"err{r}")))
             for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    for p in procs:
        if p.is_alive():
            p.kill()
    assert [p.exitcode for p in procs] == [0, 0], (tmp_path / "err0").read_text()[-2000:]
    err0, err1 = (tmp_path / "err0").read_text(), (tmp_path / "err1").read_text()
    assert "learning rate x 2 for 2 processes" in err0 and "learning rate" not in err1
    seen = [json.loads((tmp_path / f"err{r}.seen").read_text()) for r in range(2)]
    val_names = [os.path.basename(r.path) for r in load_dataset(tiny_config(mini).data, "train").records]
    assert sorted(seen[0] + seen[1]) == sorted(val_names) and seen[0] and seen[1]  # each image once
    row, = _rows(out)
    cfg = tiny_config(mini, **VAL_ON_TRAIN)
    det = Detector.from_checkpoint(os.path.join(out, "model.pt"))
    val_set = load_dataset(cfg.data, "train")
    one = td.validate(cfg, val_set.classes, list(det.ensemble.members), val_set, props[0], CPU)
    assert row["loss"] is not None  # a step was taken
    assert row["lr"] == pytest.approx(2 * cfg.train.lr)
    assert row["val_mAP"] == pytest.approx(one["val_mAP"]) and row["val_AP"] == pytest.approx(one["val_AP"])


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_training_with_workers_under_bf16_autocast(mini, props, tmp_path):
    """On CUDA: batches built by 2 workers, pinned and copied, the forward under bf16 autocast;
    the weights stay float32 and finite."""
    cfg = tiny_config(mini, **STEPS, **{"train.workers": 2})
    path = train_given(cfg, str(tmp_path / "run"), torch.device("cuda"), train_proposals=props[0],
                             progress=False)
    state = load_detector(path)["members"][0]
    assert all(v.dtype == torch.float32 and torch.isfinite(v).all() for v in state.values() if v.is_floating_point())
    with autocast(torch.device("cuda")):
        assert torch.get_autocast_dtype("cuda") == torch.bfloat16
