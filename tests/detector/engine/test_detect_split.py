"""detector.engine.detect_split: a split's detections with cached proposals, the Detector it is
given left unchanged."""

import copy

import pytest

from backbone.config import apply_overrides
from detector.engine.detect_split import detect_split
from detector.engine.train_detector import build_member
from detector.io.datasets import load_dataset
from detector.io.images import load_image
from detector.model import Detector
from tests.detector.helpers import jittered_proposals, tiny_config


@pytest.fixture
def mini(test_data):
    return test_data / "voc-mini"


def test_detect_split_leaves_the_given_detector_unchanged(mini, tmp_path, monkeypatch):
    cfg = tiny_config(mini, **{"model.members": 2})
    members = [build_member(cfg, 3, seed).eval() for seed in (1, 2)]
    det = Detector(cfg, ["Platelets", "RBC", "WBC"], members)
    before_cfg = copy.deepcopy(det.cfg)
    before_members = list(det.ensemble.members)
    ds = load_dataset(cfg.data, "test")
    props = jittered_proposals(ds, n=5)
    monkeypatch.setattr("detector.engine.detect_split.ensure_proposals",
                        lambda dataset, *a, with_seconds=False, **k: (props, [0.0] * len(props)) if with_seconds else props)
    run_cfg = apply_overrides(cfg, ["test.members=1", "test.score_thr=0.3", "test.nms_iou=0.4", "test.max_per_image=3"])
    dataset, items = detect_split(run_cfg, "test", detector=det, progress=False)
    assert len(items) == len(dataset) == len(ds)
    assert all(len(it["detections"]) <= 3 for it in items)                     # the run's test settings ...
    assert all(d["score"] > 0.3 for it in items for d in it["detections"])
    assert det.cfg == before_cfg and det.cfg.test.score_thr == 0.0             # ... not written into det
    assert list(det.ensemble.members) == before_members and len(before_members) == 2
    # and the run used one member: its scores equal a one-member detector's
    one = Detector(cfg, det.classes, members[:1]).configured(test=run_cfg.test)
    ref = one(load_image(dataset.records[0].path), proposals=props[0])
    got = items[0]["detections"]
    assert [d["score"] for d in got] == pytest.approx([round(float(s), 6) for s in ref.scores], abs=1e-6)
