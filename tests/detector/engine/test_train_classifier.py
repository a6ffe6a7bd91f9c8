"""train-classifier (detector.engine.train_classifier and its CLI): the run folder, the resume
rule, refusals before any write, best.pt, exact resumes after a kill. Tiny: 32 px, 1 step per
epoch. (Moved here from tests/detector/test_classifier.py, with the run-folder tests added.)"""

import dataclasses
import importlib
import json
import os

import numpy as np
import pytest
import torch
from PIL import Image

import backbone.io
from backbone.errors import UserError
from detector.classification.data import ClassificationSet, image_folder
from detector.classification.transforms import train_transform
from detector.cli import train_classifier as cli
from detector.config import ClassifierConfig, load_classifier_config
from detector.engine.run import RunFolder
from detector.engine.loop import seed, step_loader, stop_after
from detector.engine.train_classifier import train_classifier
from detector.io.checkpoints import read_classifier

from .test_run import ROOT_SKIP, snapshot
from tests.detector.helpers import same_weights

tc = importlib.import_module("detector.engine.train_classifier")  # the module (not the function of that name)
ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__)))))
VOC_MINI = os.path.join(ROOT, "tests", "data", "voc-mini")
COLOURS = {"red": (220, 30, 30), "green": (30, 200, 40), "blue": (30, 40, 220)}
TRAIN_SETS = ["data.format=imagefolder", "model.input_size=32", "model.arch=googlenet", "train.batch_size=4",
              "train.max_steps_per_epoch=1", "train.epochs=1", "test.crops=[1,10]", "data.train_split=train",
              "data.val_split=test", "model.aux_logits=false"]


def _make_folder(root, per_class=4, size=(20, 26), seed=0):
    """root/<split>/<colour>/*.png: tiny noisy images whose class is their colour."""
    rng = np.random.default_rng(seed)
    for split in ("train", "test"):
        for name, rgb in COLOURS.items():
            d = root / split / name
            d.mkdir(parents=True)
            for i in range(per_class):
                a = np.clip(np.array(rgb)[None, None] + rng.normal(0, 20, size + (3,)), 0, 255).astype(np.uint8)
                Image.fromarray(a).save(d / f"{i}.png")
    return root


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    return _make_folder(tmp_path_factory.mktemp("colours"))


def _sets(extra=(), base=TRAIN_SETS):
    out = []
    for s in list(base) + list(extra):
        out += ["--set", s]
    return out


def _cfg(folder, *extra):
    return load_classifier_config(None, TRAIN_SETS + [f"data.root={folder}", *extra])


def _one_error(capsys, prog, *needles):
    """The CLI wrote exactly one line on stderr, ``PROG: error: ...`` containing ``needles``, no traceback."""
    err = capsys.readouterr().err
    lines = [ln for ln in err.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith(f"{prog}: error: "), err
    assert "Traceback" not in err
    for n in needles:
        assert n in lines[0], (n, lines[0])
    return lines[0]


def _rows(out):
    return [json.loads(x) for x in open(os.path.join(out, "metrics.jsonl"))]


def _weights(path):
    return read_classifier(str(path))["state_dict"]


_same = same_weights  # bitwise, same names, never true of two empty dicts


def test_cli_run_folder_and_resume_rule(folder, tmp_path, capsys):
    out = tmp_path / "run"
    base = ["--data-root", str(folder), "--out", str(out), "--device", "cpu", *_sets()]
    assert cli.main(base) == 0
    assert capsys.readouterr().out.strip() == str(out / "model.pt")
    assert {p.name for p in out.iterdir()} == {"run.json", "config.yaml", "metrics.jsonl", "curves.png",
                                                "train_state.pt", "model.pt", "best.pt"}
    rec = json.loads((out / "run.json").read_text())
    assert (rec["command"], rec["kind"]) == ("train-classifier", "classifier")
    rows = _rows(out)
    assert [r["epoch"] for r in rows] == [1] and rows[0]["steps"] == 1 and {"loss", "top1", "val_top1"} <= set(rows[0])
    lean = torch.load(out / "model.pt", weights_only=True)
    assert "train_state" not in lean and lean["classes"] == ["blue", "green", "red"] and lean["input_size"] == 32
    before = snapshot(out)
    # the same run again (--resume accepted, a no-op): nothing to do, nothing written
    assert cli.main(base + ["--resume"]) == 0
    assert "is already trained" in capsys.readouterr().err and snapshot(out) == before
    # refused, one line, nothing written: --no-resume, another config
    assert cli.main(base + ["--no-resume"]) == 2
    _one_error(capsys, "train-classifier", "already holds a training run", "--no-resume")
    assert cli.main(base + ["--set", "train.lr=0.5"]) == 2
    _one_error(capsys, "train-classifier", "another config (train.lr 0.01 -> 0.5)")
    assert snapshot(out) == before
    # test.* and a larger train.epochs: accepted; without --config the run's own config is used
    assert cli.main(["--out", str(out), "--set", "train.epochs=2", "--set", "test.crops=[1]"]) == 0
    assert [r["epoch"] for r in _rows(out)] == [1, 2]
    ck = read_classifier(out / "model.pt")
    assert ck["epoch"] == 2 and ck["config"]["test"]["crops"] == [1] and ck["config"]["train"]["epochs"] == 2


def test_best_pt_is_the_best_validation(folder, tmp_path, monkeypatch):
    values = iter([0.9, 0.1])
    monkeypatch.setattr(tc, "evaluate", lambda *a, **k: {"loss": 1.0, "top1": next(values), "top5": 1.0, "samples": 12})
    out = tmp_path / "run"
    path = train_classifier(_cfg(folder, "train.epochs=2"), str(out), "cpu", progress=False)
    assert [r["val_top1"] for r in _rows(out)] == [0.9, 0.1]
    best = read_classifier(out / "best.pt")
    assert best["epoch"] == 1 and best["metrics"]["val_top1"] == 0.9 and read_classifier(path)["epoch"] == 2
    assert not _same(best["state_dict"], _weights(path))


def test_killed_runs_end_where_an_unbroken_one_ends(folder, tmp_path, monkeypatch):
    """Killed mid-epoch, and killed between epoch 2's log row and its state: the resumed runs
    end with the unbroken run's weights, and the log holds each epoch once. No validation here:
    no best.pt."""
    cfg = lambda: _cfg(folder, "train.epochs=2", "train.val_every=0")
    unbroken = train_classifier(cfg(), str(tmp_path / "a"), "cpu", progress=False)
    assert not (tmp_path / "a" / "best.pt").exists()
    with pytest.raises(KeyboardInterrupt):  # in epoch 2 (1 step per epoch)
        with stop_after(1):
            train_classifier(cfg(), str(tmp_path / "b"), "cpu", progress=False)
    assert [r["epoch"] for r in _rows(tmp_path / "b")] == [1]
    b = train_classifier(cfg(), str(tmp_path / "b"), "cpu", progress=False)
    assert _same(_weights(b), _weights(unbroken))

    real, calls = RunFolder.save_state, []

    def killed_at_second(self, *a, **k):
        calls.append(1)
        if len(calls) == 2:
            raise KeyboardInterrupt
        return real(self, *a, **k)

    monkeypatch.setattr(RunFolder, "save_state", killed_at_second)
    with pytest.raises(KeyboardInterrupt):
        train_classifier(cfg(), str(tmp_path / "c"), "cpu", progress=False)
    assert [r["epoch"] for r in _rows(tmp_path / "c")] == [1, 2]
    monkeypatch.setattr(RunFolder, "save_state", real)
    c = train_classifier(cfg(), str(tmp_path / "c"), "cpu", progress=False)
    assert [r["epoch"] for r in _rows(tmp_path / "c")] == [1, 2]  # not [1, 2, 2]
    assert _same(_weights(c), _weights(unbroken))


def test_other_folders_are_refused_before_any_write(folder, tmp_path, capsys):
    base = ["--data-root", str(folder), "--device", "cpu", *_sets()]
    det = tmp_path / "det"
    det.mkdir()
    (det / "run.json").write_text(json.dumps({"format": 1, "command": "train-detector", "kind": "rcnn", "config": {}}))
    assert cli.main(base + ["--out", str(det)]) == 2
    _one_error(capsys, "train-classifier", "holds a train-detector run")
    unknown = tmp_path / "unknown"
    unknown.mkdir()
    (unknown / "model.pt").write_bytes(b"whose?")
    assert cli.main(base + ["--out", str(unknown)]) == 2
    _one_error(capsys, "train-classifier", "holds model.pt but no run.json")
    f = tmp_path / "file"
    f.write_text("x")
    assert cli.main(base + ["--out", str(f)]) == 2
    _one_error(capsys, "train-classifier", "--out", "is a file")
    assert sorted(os.listdir(det)) == ["run.json"] and sorted(os.listdir(unknown)) == ["model.pt"]


def test_out_a_read_only_folder_as_root_too(folder, tmp_path, capsys, monkeypatch):
    ro = tmp_path / "ro"
    ro.mkdir()
    real = os.access
    monkeypatch.setattr(backbone.io.os, "access", lambda p, mode: False if str(p).startswith(str(ro)) else real(p, mode))
    assert cli.main(["--data-root", str(folder), "--device", "cpu", *_sets(), "--out", str(ro / "run")]) == 2
    _one_error(capsys, "train-classifier", "--out", "is not writable")
    assert list(ro.iterdir()) == []


@ROOT_SKIP
def test_out_a_read_only_folder(folder, tmp_path, capsys):
    base = ["--data-root", str(folder), "--device", "cpu", *_sets()]
    ro = tmp_path / "ro"
    ro.mkdir()
    ro.chmod(0o500)
    try:
        assert cli.main(base + ["--out", str(ro / "run")]) == 2
        _one_error(capsys, "train-classifier", "is not writable")
    finally:
        ro.chmod(0o700)


# ------------------------------------------------------------------ moved from test_classifier.py


def test_augmentation_is_the_steps_own_in_workers_and_differs_between_steps():
    """2 workers x 2 epochs over copies of one image: every batch is different (each step's
    augmentation restarts from the step's generator), and the batch a worker builds is the one
    the main process builds from the same key (so a resumed run draws the same batches)."""
    img = np.random.default_rng(1).integers(0, 255, (40, 50, 3), dtype=np.uint8)
    t = dataclasses.replace(ClassifierConfig().train, batch_size=2, workers=2, seed=3)

    def batcher():
        return tc._Batcher(ClassificationSet(["a"], [img] * 8, [0] * 8, [str(i) for i in range(8)],
                                             train_transform(32, t, seed=t.seed)))

    ld, sampler = step_loader(batcher(), 2, torch.device("cpu"), 0)

    def epoch(e):
        sampler.steps, sampler.key, sampler.start = [[0, 1], [2, 3], [4, 5], [6, 7]], (t.seed, e, 0, 2), 0
        return [b.images for _, b, _ in ld]

    e1, e2 = epoch(1), epoch(2)
    assert len(e1) == len(e2) == 4  # steps alternate between workers 0 and 1
    batches = e1 + e2
    for i in range(len(batches)):
        for j in range(i + 1, len(batches)):
            assert not torch.equal(batches[i], batches[j]), (i, j)
    here = batcher().batch([6, 7], torch.Generator().manual_seed(seed(t.seed, 2, 0, 2, 3)))
    assert torch.equal(here.images, e2[3])


def test_train_from_voc_object_crops(tmp_path):
    """Fast: the ground-truth boxes of a VOC-layout dataset become the classes; 1 step per epoch."""
    out = tmp_path / "voc"
    sets = [s for s in TRAIN_SETS if not s.startswith(("data.format", "model.aux_logits"))]
    rc = cli.main(["--data-root", VOC_MINI, "--out", str(out), "--device", "cpu",
                   *_sets(["data.format=voc"], base=sets)])
    assert rc == 0
    ck = read_classifier(out / "model.pt")
    assert ck["classes"] == ["RBC", "WBC"] and ck["config"]["data"]["format"] == "voc"  # voc-mini's classes
    rows = _rows(out)
    assert [(r["epoch"], r["steps"]) for r in rows] == [(1, 1)] and "val_top1" in rows[0]


def test_train_bad_input(tmp_path, capsys):
    rc = cli.main(["--out", str(tmp_path / "x")])
    assert rc == 2 and "give --config" in capsys.readouterr().err
    rc = cli.main(["--data-root", str(tmp_path / "missing"), "--out", str(tmp_path / "x"),
                   "--set", "data.format=imagefolder"])
    assert rc == 2 and "no such folder" in capsys.readouterr().err
    rc = cli.main(["--data-root", VOC_MINI, "--out", str(tmp_path / "x"), "--set", "model.input_size=8"])
    assert rc == 2 and "input_size 8" in capsys.readouterr().err
    assert not (tmp_path / "x").exists()


def test_split_folders_are_not_classes(folder, tmp_path, capsys):
    """root/train + root/test without the wanted split (default train split: trainval): one error
    naming the folder and its splits, not a model with classes 'test' and 'train'."""
    out = tmp_path / "run"
    rc = cli.main(["--data-root", str(folder), "--out", str(out), "--set", "data.format=imagefolder"])
    assert rc == 2
    line = _one_error(capsys, "train-classifier", str(folder), "'trainval'", "test, train")
    assert "data.train_split" in line
    assert not out.exists()
    with pytest.raises(UserError, match="no split folder 'val'"):
        image_folder(str(folder), "val")


def _three_steps(folder, *extra):
    return _cfg(folder, "train.epochs=2", "train.val_every=0", "train.max_steps_per_epoch=3", *extra)


@pytest.fixture(scope="module")
def unbroken(folder, tmp_path_factory):
    """12 images in steps of 4: 3 steps per epoch, 2 epochs, unbroken; its weights."""
    return _weights(train_classifier(_three_steps(folder), str(tmp_path_factory.mktemp("unbroken")), "cpu",
                                     progress=False))


def test_killed_inside_an_epoch_resumes_bitwise(folder, unbroken, tmp_path, monkeypatch, capsys):
    """Killed before its 5th step with a state after every step, the run resumes after epoch 2's
    step 1 and ends with the unbroken run's weights. Every step runs under the step loop's autocast."""
    from detector.engine import loop

    casts, real = [], loop.autocast
    monkeypatch.setattr(loop, "autocast", lambda device: casts.append(device) or real(device))
    b = tmp_path / "b"
    with pytest.raises(KeyboardInterrupt), stop_after(4):
        train_classifier(_three_steps(folder, "train.checkpoint_every=1"), str(b), "cpu", progress=False)
    assert len(casts) == 4
    rec = torch.load(b / "train_state.pt", weights_only=True)["members"][0]
    assert (rec["epochs"], rec["step"], rec["steps"]) == (1, 1, 4)
    resumed = train_classifier(_three_steps(folder, "train.checkpoint_every=1"), str(b), "cpu", progress=False)
    assert "resuming epoch 2/2, after its step 1" in capsys.readouterr().err
    assert len(casts) == 6
    assert _same(_weights(resumed), unbroken)
    assert [r["epoch"] for r in _rows(b)] == [1, 2]


def test_max_steps_stops_writes_the_model_and_trains_on(folder, unbroken, tmp_path, capsys):
    """train.max_steps 4 stops after 4 steps (model.pt written); a run without it trains on to
    the unbroken run's weights."""
    c = tmp_path / "c"
    stopped = train_classifier(_three_steps(folder, "train.max_steps=4"), str(c), "cpu", progress=False)
    assert "stopped at train.max_steps 4" in capsys.readouterr().err
    assert torch.load(c / "train_state.pt", weights_only=True)["members"][0]["steps"] == 4
    assert os.path.isfile(stopped) and not _same(_weights(stopped), unbroken)
    assert _same(_weights(train_classifier(_three_steps(folder), str(c), "cpu", progress=False)), unbroken)


def test_a_classifier_state_of_the_epoch_loop_resumes(folder, tmp_path):
    """A version-1 train_state.pt of the former epoch loop (``train``: epoch, model, optimizer,
    scheduler, averaged, RNG) is read as the member's record: the run goes on from its epoch."""
    from detector.engine.run import STATE_FILE

    cfg = _cfg(folder, "train.epochs=2", "train.val_every=0")
    out = tmp_path / "run"
    with stop_after(1), pytest.raises(KeyboardInterrupt):  # 1 step per epoch: a state after epoch 1
        train_classifier(cfg, str(out), "cpu", progress=False)
    st = torch.load(out / STATE_FILE, weights_only=True)
    rec = st.pop("members")[0]
    train = {"epoch": 1, "model": rec["model"], "optimizer": rec["optimizer"], "averaged": rec["averaged"],
             "scheduler": {"last_epoch": 1}, "torch_rng": torch.get_rng_state()}
    old = {**{k: v for k, v in st.items() if k != "format_version"}, "format": 1, "epochs_done": 1, "log_rows": 1,
           "train": train, "best": None}
    torch.save(old, out / STATE_FILE)
    train_classifier(cfg, str(out), "cpu", progress=False)
    assert [r["epoch"] for r in _rows(out)] == [1, 2]
    assert torch.load(out / STATE_FILE, weights_only=True)["members"][0]["epochs"] == 2
