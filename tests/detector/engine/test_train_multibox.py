import importlib
import json
from pathlib import Path

import numpy as np
import pytest

from backbone.errors import UserError
from detector.config import load_detector_config
from detector.engine.train_multibox import train_multibox
from proposals.config import MultiBoxConfig
from proposals.multibox import load_multibox, predict

ROOT = Path(__file__).resolve().parents[3]
tm = importlib.import_module("detector.engine.train_multibox")  # the module (not the function of that name)
MINI = ROOT / "tests" / "data" / "voc-mini"
SMALL = ["proposals.multibox.input_size=64", "proposals.multibox.num_priors=16", "proposals.multibox.epochs=1",
         "proposals.multibox.batch_size=2"]


@pytest.fixture
def config(tmp_path):
    p = tmp_path / "mini.yaml"
    p.write_text(f"data:\n  format: voc\n  root: {MINI}\n  classes: [Platelets, RBC, WBC]\n")
    return str(p)


def _snapshot(folder):
    return {p.name: (p.stat().st_mtime_ns, p.read_bytes()) for p in Path(folder).iterdir() if p.is_file()}


def _spy_flips(monkeypatch):
    """The ``horizontal`` argument of every box flip the training loop makes."""
    seen, real = [], tm._flip
    monkeypatch.setattr(tm, "_flip", lambda boxes, horizontal: seen.append(horizontal) or real(boxes, horizontal))
    return seen


def test_train_multibox_writes_a_loadable_checkpoint_and_resumes(config, tmp_path, monkeypatch):
    cfg = load_detector_config(config, SMALL)
    out = tmp_path / "mb"
    flips = _spy_flips(monkeypatch)
    path = train_multibox(cfg, str(out), split="train", progress=False)
    assert True in flips and False not in flips  # by default: horizontal flips, no vertical one
    assert path == str(out / "multibox.pt")
    assert {p.name for p in out.iterdir()} == {"run.json", "config.yaml", "metrics.jsonl", "curves.png",
                                                "train_state.pt", "multibox.pt"}  # no best.pt: no validation
    run = json.loads((out / "run.json").read_text())
    assert (run["command"], run["kind"]) == ("train-detector", "multibox")
    assert [json.loads(l)["epoch"] for l in (out / "metrics.jsonl").read_text().splitlines()] == [1]
    net = load_multibox(path)
    assert net.num_priors == 16 and net.cfg.input_size == 64
    boxes, scores = predict(net, [np.zeros((48, 64, 3), np.uint8)], top_k=4)[0]
    assert boxes.shape == (4, 4) and (boxes[:, 2] <= 64).all()
    # run again: everything is done, nothing is trained twice (nor written)
    before = _snapshot(out)
    assert train_multibox(cfg, str(out), split="train", progress=False) == path
    assert _snapshot(out) == before
    # other settings in the same folder: a clear error, not a silent mix; nothing written
    other = load_detector_config(config, SMALL[:-1] + ["proposals.multibox.batch_size=1"])
    with pytest.raises(UserError, match=r"another config \(multibox.batch_size 2 -> 1\)"):
        train_multibox(other, str(out), split="train")
    with pytest.raises(UserError, match="already holds a training run"):
        train_multibox(cfg, str(out), split="train", resume=False)
    assert _snapshot(out) == before


def test_train_multibox_bad_settings(config, tmp_path):
    with pytest.raises(UserError, match="matching"):
        train_multibox(load_detector_config(config, SMALL + ["proposals.multibox.matching=auction"]), str(tmp_path))
    with pytest.raises(UserError, match="optimizer"):
        train_multibox(load_detector_config(config, SMALL + ["proposals.multibox.optimizer=lbfgs"]), str(tmp_path))


class _AlwaysFlip:
    """A random generator whose every draw is 0: each enabled flip happens."""

    def random(self):
        return 0.0


def test_multibox_flips_only_when_set():
    im = np.arange(4 * 4 * 3, dtype=np.uint8).reshape(4, 4, 3)
    box = np.array([[0.0, 0.0, 0.5, 0.25]], np.float32)
    default = MultiBoxConfig()
    assert default.flip is True and default.vflip is False  # the vertical flip is off by default
    a, b = tm.augment(im, box, default, _AlwaysFlip())
    np.testing.assert_array_equal(a, im[:, ::-1])  # mirrored left-right only
    np.testing.assert_allclose(b, [[0.5, 0.0, 1.0, 0.25]])
    a, b = tm.augment(im, box, MultiBoxConfig(vflip=True), _AlwaysFlip())
    np.testing.assert_array_equal(a, im[::-1, ::-1])
    np.testing.assert_allclose(b, [[0.5, 0.75, 1.0, 1.0]])
    a, b = tm.augment(im, box, MultiBoxConfig(flip=False, vflip=True), _AlwaysFlip())
    np.testing.assert_array_equal(a, im[::-1])
    a, b = tm.augment(im, box, MultiBoxConfig(flip=False), _AlwaysFlip())
    np.testing.assert_array_equal(a, im)
    np.testing.assert_array_equal(b, box)
    # BCCD's config turns it on (cells have no up or down)
    assert load_detector_config(str(ROOT / "configs" / "bccd.yaml")).proposals.multibox.vflip is True


def test_multibox_kill_between_log_and_state_resumes_without_a_duplicate_row(config, tmp_path, monkeypatch):
    from detector.engine.run import RunFolder

    cfg = load_detector_config(config, SMALL[:2] + ["proposals.multibox.epochs=2", "proposals.multibox.batch_size=3",
                                                    "proposals.multibox.vflip=true", "proposals.multibox.flip=false"])
    flips = _spy_flips(monkeypatch)
    unbroken = train_multibox(cfg, str(tmp_path / "a"), split="train", progress=False)
    assert False in flips and True not in flips  # the loop flips as the config says: vertically only
    real, calls = RunFolder.save_state, []

    def killed_at_second(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:  # epoch 2's row is in metrics.jsonl, its state is not saved
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(RunFolder, "save_state", killed_at_second)
    with pytest.raises(KeyboardInterrupt):
        train_multibox(cfg, str(tmp_path / "b"), split="train", progress=False)
    rows = lambda d: [json.loads(l)["epoch"] for l in (tmp_path / d / "metrics.jsonl").read_text().splitlines()]
    assert rows("b") == [1, 2]
    monkeypatch.setattr(RunFolder, "save_state", real)
    resumed = train_multibox(cfg, str(tmp_path / "b"), split="train", progress=False)
    assert rows("b") == [1, 2]  # not [1, 2, 2]
    sa, sb = load_multibox(unbroken).state_dict(), load_multibox(resumed).state_dict()
    assert all(np.array_equal(sa[k].numpy(), sb[k].numpy()) for k in sa)  # and it ends where the unbroken run ends


def _autocasts(monkeypatch):
    """The devices of every autocast the step loop enters."""
    from detector.engine import loop

    seen, real = [], loop.autocast
    monkeypatch.setattr(loop, "autocast", lambda device: seen.append(device) or real(device))
    return seen


def test_multibox_resumes_inside_an_epoch_bitwise_and_honours_max_steps(config, tmp_path, monkeypatch, capsys):
    """2 images, 1 per step: 2 steps per epoch. Killed before its 4th step with a state after every
    step, the run resumes after epoch 2's step 1 and ends with the unbroken run's weights; with
    train.max_steps 3 it stops after 3 steps (writing multibox.pt), and trains on without it.
    Every step runs under the step loop's autocast."""
    import torch

    from detector.engine.loop import stop_after
    from tests.detector.helpers import same_weights

    def cfg(*extra):
        return load_detector_config(config, SMALL[:2] + ["proposals.multibox.epochs=2",
                                                         "proposals.multibox.batch_size=1", *extra])

    casts = _autocasts(monkeypatch)
    unbroken = load_multibox(train_multibox(cfg(), str(tmp_path / "a"), split="train", progress=False)).state_dict()
    assert len(casts) == 4
    b = tmp_path / "b"
    with pytest.raises(KeyboardInterrupt), stop_after(3):
        train_multibox(cfg("train.checkpoint_every=1"), str(b), split="train", progress=False)
    rec = torch.load(b / "train_state.pt", weights_only=True)["members"][0]
    assert (rec["epochs"], rec["step"], rec["steps"]) == (1, 1, 3)
    resumed = train_multibox(cfg("train.checkpoint_every=1"), str(b), split="train", progress=False)
    assert "resuming multibox epoch 2/2, after its step 1" in capsys.readouterr().err
    assert same_weights(load_multibox(resumed).state_dict(), unbroken)
    c = tmp_path / "c"
    stopped = train_multibox(cfg("train.max_steps=3"), str(c), split="train", progress=False)
    assert "stopped at train.max_steps 3" in capsys.readouterr().err
    assert torch.load(b / "train_state.pt", weights_only=True)["members"][0]["steps"] == 4
    assert torch.load(c / "train_state.pt", weights_only=True)["members"][0]["steps"] == 3
    assert not same_weights(load_multibox(stopped).state_dict(), unbroken)
    on = train_multibox(cfg(), str(c), split="train", progress=False)
    assert same_weights(load_multibox(on).state_dict(), unbroken)


def test_a_multibox_state_of_the_epoch_loop_resumes(config, tmp_path):
    """A version-1 train_state.pt of the former epoch loop (model, optimizer, scheduler) is read
    as the member's record: the run goes on from its epoch."""
    import torch

    from detector.engine.run import STATE_FILE

    cfg = load_detector_config(config, SMALL[:2] + ["proposals.multibox.epochs=2", "proposals.multibox.batch_size=1"])
    out = tmp_path / "mb"
    train_multibox(cfg, str(out), split="train", progress=False)
    st = torch.load(out / STATE_FILE, weights_only=True)
    rec = st.pop("members")[0]
    old = {**{k: v for k, v in st.items() if k != "format_version"}, "format": 1, "epochs_done": 1,
           "log_rows": 1, "model": rec["model"], "optimizer": rec["optimizer"], "scheduler": {"last_epoch": 1}}
    torch.save(old, out / STATE_FILE)
    (out / "multibox.pt").unlink()
    train_multibox(cfg, str(out), split="train", progress=False)
    rows = [json.loads(l) for l in (out / "metrics.jsonl").read_text().splitlines()]
    assert [r["epoch"] for r in rows] == [1, 2]
    assert torch.load(out / STATE_FILE, weights_only=True)["members"][0]["epochs"] == 2


def _mb_rank(rank, port, config, out, err):
    import os
    import sys

    import torch

    from detector.engine.train_detector import train_detector

    os.environ.update(RANK=str(rank), WORLD_SIZE="2", LOCAL_RANK=str(rank), MASTER_ADDR="127.0.0.1",
                      MASTER_PORT=str(port))
    torch.set_num_threads(1)
    sys.stderr = open(err, "w")  # noqa: SIM115 (closed when the process ends)
    cfg = load_detector_config(config, SMALL[:2] + ["proposals.multibox.batch_size=1", "proposals.multibox.epochs=2"])
    train_detector(cfg, out, torch.device("cpu"), stage="multibox", progress=False)
    sys.stderr.flush()
    torch.distributed.destroy_process_group()


def test_two_gloo_ranks_train_multibox_on_their_shares(config, tmp_path):
    """Under torchrun MultiBox trains on every rank (DDP), each on its half of the images: 2
    images, 1 per step, so 1 step per rank and epoch; rank 0 writes the run folder."""
    import multiprocessing
    import socket

    import torch

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    out = tmp_path / "run"
    ctx = multiprocessing.get_context("fork")
    procs = [ctx.Process(target=_mb_rank, args=(r, port, config, str(out), str(tmp_path / f"err{r}")))
             for r in range(2)]
    for p in procs:
        p.start()
    for p in procs:
        p.join(120)
    for p in procs:
        if p.is_alive():
            p.kill()
    assert [p.exitcode for p in procs] == [0, 0], (tmp_path / "err0").read_text()[-2000:]
    mb = out / "multibox"
    assert torch.load(mb / "train_state.pt", weights_only=True)["members"][0]["steps"] == 2
    assert [json.loads(l)["epoch"] for l in (mb / "metrics.jsonl").read_text().splitlines()] == [1, 2]
    assert load_multibox(str(mb / "multibox.pt")).num_priors == 16
    assert "multibox epoch 1/2" in (tmp_path / "err0").read_text()
    assert "multibox epoch 1/2" not in (tmp_path / "err1").read_text()  # rank 0 alone tells
