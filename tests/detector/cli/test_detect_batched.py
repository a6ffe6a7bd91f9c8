"""detect FOLDER and eval-map --split through the batched / prefetch path: the same outputs in
the same order as image by image, the same partial result (exit 1, one line) for an image that
cannot be read, whatever --batch and --read-workers are."""

import json
import shutil

import numpy as np
import pytest
import torch

from backbone.config import apply_overrides, to_dict
from detector.cli.detect import main as detect_main
from detector.engine.detect_split import detect_split
from detector.io.checkpoints import save_detector
from detector.io.datasets import load_dataset
from detector.kinds import kind_of
from detector.model import Detector
from tests.conftest import TEST_DATA
from tests.detector.helpers import CLASSES, jittered_proposals, tiny_config

MINI = TEST_DATA / "voc-mini"
FAST = ["model.rcnn=null", "model.kind=fast", "model.arch=googlenet_bn", "model.aux_logits=false",
        "model.bbox_reg=true", "model.fast.tap=[inception3b]", "model.fast.min_side=96", "model.fast.max_side=160",
        "model.fast.reduce_channels=16", "model.fast.fc_dim=32", "model.fast.fc_rank=8", "model.members=2",
        "proposals.working_width=100", "proposals.superpixel_scale=1.0", "test.max_proposals=80"]


def fast_detector():
    cfg = apply_overrides(tiny_config(MINI), FAST)
    torch.manual_seed(0)
    kind = kind_of(cfg)
    return Detector(cfg, CLASSES, [kind.build_member(cfg, len(CLASSES), s, inference=True) for s in (0, 1)])


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    det = fast_detector()
    path = tmp_path_factory.mktemp("m") / "fast.pt"
    save_detector(str(path), to_dict(det.cfg), CLASSES, [m.state_dict() for m in det.ensemble.members])
    return str(path)


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    """Five images: two good, an unreadable one between them, a truncated JPEG, a good one again."""
    d = tmp_path_factory.mktemp("in")
    jpgs = sorted((MINI / "JPEGImages").glob("*.jpg"))
    shutil.copy(jpgs[0], d / "a.jpg")
    shutil.copy(jpgs[1], d / "b.jpg")
    (d / "c.png").write_bytes(b"not a png")
    data = jpgs[0].read_bytes()
    (d / "d.jpg").write_bytes(data[: len(data) * 2 // 3])
    shutil.copy(jpgs[1], d / "e.jpg")
    return d


def _run(capsys, ckpt, folder, tmp, *flags):
    js = tmp / "d.json"
    rc = detect_main([str(folder), "--model", ckpt, "--score-thr", "0.01", "--json", str(js), "--device", "cpu",
                      *flags])
    out = capsys.readouterr()
    assert "Traceback" not in out.err
    return rc, out.out, [ln for ln in out.err.splitlines() if "warning" in ln], json.loads(js.read_text())


def _close(a, b):
    assert [x["image"] for x in a] == [x["image"] for x in b]
    for x, y in zip(a, b):
        assert [d["label"] for d in x["detections"]] == [d["label"] for d in y["detections"]]
        for d, e in zip(x["detections"], y["detections"]):
            assert np.allclose(d["box"], e["box"], atol=0.011) and abs(d["score"] - e["score"]) <= 2e-6


def test_detect_folder_batched_equals_image_by_image(ckpt, folder, tmp_path, capsys):
    one = _run(capsys, ckpt, folder, tmp_path, "--batch", "1", "--read-workers", "0")
    many = _run(capsys, ckpt, folder, tmp_path, "--batch", "3", "--read-workers", "2")
    default = _run(capsys, ckpt, folder, tmp_path)
    for rc, out, warns, items in (one, many, default):
        assert rc == 1  # partial: c.png left out, named in one line at the end
        assert [ln.split(":")[0] for ln in out.splitlines() if not ln.startswith(" ")] == [
            str(folder / n) for n in ("a.jpg", "b.jpg", "d.jpg", "e.jpg")]
        assert len(warns) == 2 and "d.jpg: truncated JPEG" in warns[0]
        assert warns[1].startswith("detect: warning: 1 image(s) could not be read and were left out: ") and "c.png" in warns[1]
        assert sum(len(x["detections"]) for x in items) > 0
    _close(many[3], one[3])
    _close(default[3], one[3])


@pytest.mark.parametrize("flag, value", [("--batch", "0"), ("--read-workers", "-1"), ("--batch", "two")])
def test_bad_batch_flags_are_one_line(flag, value, folder, capsys):
    with pytest.raises(SystemExit) as e:
        detect_main([str(folder), flag, value])
    assert e.value.code == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err[-1].startswith("detect: error: argument") and flag in err[-1]


def test_detect_split_batched_equals_image_by_image(monkeypatch):
    det = fast_detector()
    ds = load_dataset(det.cfg.data, "train")
    props = jittered_proposals(ds, n=30)
    monkeypatch.setattr("detector.engine.detect_split.ensure_proposals",
                        lambda dataset, *a, with_seconds=False, **k: (props, [0.0] * len(props)))
    cfg = apply_overrides(det.cfg, ["test.score_thr=0.01"])
    timing: dict = {}
    _, one = detect_split(cfg, "train", detector=det, progress=False, batch=1, read_workers=0)
    _, many = detect_split(cfg, "train", detector=det, progress=False, batch=4, read_workers=1, timing=timing)
    _close(many, one)
    assert {"load", "proposals", "trunk", "head", "postprocess"} <= set(timing)
