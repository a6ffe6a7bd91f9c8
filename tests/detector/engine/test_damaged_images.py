"""Damaged images in a dataset (issue 20, "read what the peers read"): a truncated JPEG is
decoded as OpenCV decodes it, an undecodable image is left out, each with ONE counted warning
for the run; ``--strict`` refuses either with one line; the user's files are never rewritten.
A LabelImg-style folder (``annotations/`` + ``images/``: tests/data/layouts/flat_xml)."""

import shutil
import warnings

import numpy as np
import pytest
import torch

from backbone.errors import InputWarning
from detector.cli.propose import main as propose_main
from detector.cli.train_detector import main as train_main
from detector.config import load_detector_config
from detector.engine.detect_split import detect_split
from detector.engine.train_detector import build_member
from detector.engine.train_multibox import train_multibox
from detector.io.datasets import load_dataset
from detector.io.images import TruncatedImageWarning, UnreadableImageWarning
from detector.model import Detector
from detector.proposal_cache import ensure_proposals

from ..helpers import jittered_proposals, tiny_config, train_given

CUT, BAD = "BloodImage_00003", "BloodImage_00004"   # both in the fixture's train split


@pytest.fixture
def labelimg(test_data, tmp_path):
    """flat_xml copied, BloodImage_00003.jpg truncated (a third of its bytes) and
    BloodImage_00004.jpg not decodable at all (its header only)."""
    root = tmp_path / "labelimg"
    shutil.copytree(test_data / "layouts" / "flat_xml", root)
    for stem, keep in ((CUT, 1 / 3), (BAD, 0.02)):
        p = root / "images" / f"{stem}.jpg"
        data = p.read_bytes()
        p.write_bytes(data[: int(len(data) * keep)])
    return root


def _restore(root, test_data, stem):
    shutil.copy(test_data / "layouts" / "flat_xml" / "images" / f"{stem}.jpg", root / "images" / f"{stem}.jpg")


def _ours(seen, category):
    return [str(w.message) for w in seen if issubclass(w.category, category)]


def _train(root, tmp_path, workers=0):
    cfg = tiny_config(root, **{"train.max_steps": 2, "model.rcnn.input_size": 32, "train.workers": workers})
    ds = load_dataset(cfg.data, "train")
    return train_given(cfg, str(tmp_path / "run"), torch.device("cpu"), train_proposals=jittered_proposals(ds),
                          progress=False)


def test_truncated_jpeg_trains_with_one_warning(labelimg, test_data, tmp_path):
    _restore(labelimg, test_data, BAD)
    before = (labelimg / "images" / f"{CUT}.jpg").read_bytes()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        path = _train(labelimg, tmp_path)
    assert (tmp_path / "run" / "model.pt").exists() and path
    msgs = _ours(seen, TruncatedImageWarning)
    assert len(msgs) == 1, msgs
    assert "1 truncated JPEG(s) decoded as OpenCV decodes them" in msgs[0] and f"{CUT}.jpg" in msgs[0]
    assert not _ours(seen, UnreadableImageWarning)
    assert (labelimg / "images" / f"{CUT}.jpg").read_bytes() == before  # never rewritten


@pytest.mark.parametrize("workers", [0, 1])
def test_undecodable_image_left_out_of_training_with_one_warning(labelimg, test_data, tmp_path, workers):
    """Also when a DataLoader worker process meets it: the main process counts and warns."""
    _restore(labelimg, test_data, CUT)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        _train(labelimg, tmp_path, workers)
    assert (tmp_path / "run" / "model.pt").exists()
    msgs = _ours(seen, UnreadableImageWarning)
    assert len(msgs) == 1, msgs
    assert "1 image(s) that cannot be decoded left out of training" in msgs[0] and f"{BAD}.jpg" in msgs[0]


def test_strict_refuses_a_damaged_image_with_one_line(labelimg, test_data, tmp_path, capsys):
    _restore(labelimg, test_data, BAD)
    cfg = tmp_path / "c.yaml"
    cfg.write_text(f"data:\n  root: {labelimg}\n  classes: [Platelets, RBC, WBC]\n"
                   "proposals:\n  method: ss\nmodel:\n  rcnn:\n    input_size: 32\ntrain:\n  max_steps: 1\n")
    common = ["--config", str(cfg), "--cache-dir", str(tmp_path / "cache"), "--stage", "classifier",
              "--out", str(tmp_path / "run")]
    assert train_main(common + ["--strict"]) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if ": error: " in line]
    assert len(err) == 1 and err[0].startswith("train-detector: error: ") and f"{CUT}.jpg" in err[0], err
    assert "--strict makes this an error" in err[0]
    assert not (tmp_path / "run" / "model.pt").exists()


def test_propose_images_leaves_out_the_undecodable_and_decodes_the_truncated(labelimg, capsys):
    imgs = labelimg / "images"
    assert propose_main([str(imgs / f"{CUT}.jpg"), str(imgs / f"{BAD}.jpg"), str(imgs / "BloodImage_00001.jpg"),
                         "--preset", "fast"]) == 0
    out, err = capsys.readouterr()
    assert f"{CUT}.jpg:" in out and "BloodImage_00001.jpg:" in out and f"{BAD}.jpg:" not in out
    lines = [line for line in err.splitlines() if line.strip()]
    assert len(lines) == 2, lines
    assert lines[0].startswith("propose: warning: images: 1 truncated JPEG(s)") and f"{CUT}.jpg" in lines[0]
    assert lines[1].startswith("propose: warning: images: 1 image(s) that cannot be decoded left out") \
        and f"{BAD}.jpg" in lines[1]
    assert propose_main([str(imgs / f"{BAD}.jpg"), "--strict"]) == 2
    assert capsys.readouterr().err.startswith("propose: error: ")


def test_detect_split_scores_an_undecodable_image_without_detections(labelimg, monkeypatch):
    """eval-map --split: as the devkit scores an image without detections (its objects missed), one warning."""
    cfg = tiny_config(labelimg)
    det = Detector(cfg, ["Platelets", "RBC", "WBC"], [build_member(cfg, 3, 1).eval()])
    ds = load_dataset(cfg.data, "train")
    props = jittered_proposals(ds, n=5)
    monkeypatch.setattr("detector.engine.detect_split.ensure_proposals",
                        lambda dataset, *a, with_seconds=False, **k: (props, [0.0] * len(props)) if with_seconds else props)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        dataset, items = detect_split(cfg, "train", detector=det, progress=False)
    assert len(items) == len(dataset) == 4
    bad = [it for it in items if it["image"].endswith(f"{BAD}.jpg")]
    assert len(bad) == 1 and bad[0]["detections"] == []
    msgs = _ours(seen, UnreadableImageWarning)
    assert len(msgs) == 1 and "scored without detections (their objects count as missed)" in msgs[0]
    assert len(_ours(seen, TruncatedImageWarning)) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", InputWarning)
        with pytest.raises(InputWarning, match=f"{CUT}.jpg|{BAD}.jpg"):
            detect_split(cfg, "train", detector=det, progress=False)


def test_selective_search_cache_gives_an_undecodable_image_no_proposals(labelimg, tmp_path):
    cfg = tiny_config(labelimg, **{"proposals.preset": "fast"})
    ds = load_dataset(cfg.data, "train")
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        boxes = ensure_proposals(ds, cfg.proposals, cache_dir=str(tmp_path / "cache"), workers=1)
    by_name = {r.path.rsplit("/", 1)[-1]: i for i, r in enumerate(ds.records)}
    assert len(boxes[by_name[f"{BAD}.jpg"]]) == 0 and len(boxes[by_name[f"{CUT}.jpg"]]) > 0
    un, tr = _ours(seen, UnreadableImageWarning), _ours(seen, TruncatedImageWarning)
    assert len(un) == 1 and "given no proposals" in un[0] and len(tr) == 1
    assert np.asarray(boxes[by_name["BloodImage_00001.jpg"]]).shape[1] == 4


def test_validation_scores_an_undecodable_image_without_detections(labelimg, test_data, tmp_path):
    """train.val_every: the validation images are read as eval-map --split reads them."""
    _restore(labelimg, test_data, CUT)
    cfg = tiny_config(labelimg, **{"train.val_every": 1, "data.val_split": "train"})
    ds = load_dataset(cfg.data, "train")
    props = jittered_proposals(ds)
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        train_given(cfg, str(tmp_path / "run"), torch.device("cpu"), train_proposals=props, val_proposals=props,
                       progress=False)
    msgs = _ours(seen, UnreadableImageWarning)
    assert any(m.startswith(f"validation images of dataset {labelimg} split train: 1 image(s) that cannot be decoded "
                            "scored without detections") and f"{BAD}.jpg" in m for m in msgs), msgs


def test_multibox_training_leaves_out_an_undecodable_image(labelimg, test_data, tmp_path):
    _restore(labelimg, test_data, CUT)
    p = tmp_path / "mb.yaml"
    p.write_text(f"data:\n  root: {labelimg}\n  classes: [Platelets, RBC, WBC]\n")
    cfg = load_detector_config(str(p), ["proposals.multibox.input_size=64", "proposals.multibox.num_priors=16",
                                        "proposals.multibox.epochs=1", "proposals.multibox.batch_size=2"])
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("always")
        path = train_multibox(cfg, str(tmp_path / "mb"), progress=False)
    assert path.endswith(".pt")
    msgs = _ours(seen, UnreadableImageWarning)
    assert len(msgs) == 1 and "MultiBox training images" in msgs[0] and f"{BAD}.jpg" in msgs[0], msgs
