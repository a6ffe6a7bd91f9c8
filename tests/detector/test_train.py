import json

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

