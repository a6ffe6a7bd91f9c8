"""The fast kind through the shared machinery: config sub-sections, checkpoints (format 2, v1
read as R-CNN), the engine, Detector, detect and eval-map --split."""

import json

import numpy as np
import pytest
import torch

from backbone.config import apply_overrides, from_dict
from backbone.errors import UserError
from detector.cli.detect import main as detect_main
from detector.config import DetectorConfig, load_detector_config
from detector.io.checkpoints import FORMAT_VERSION, load_detector, save_detector
from detector.io.datasets import load_dataset
from detector.io.images import load_image
from detector.kinds import kind_of
from detector.model import Detector
from tests.detector.helpers import jittered_proposals, tiny_config, train_given

FAST = ["model.rcnn=null", "model.kind=fast", "model.arch=googlenet_bn", "model.aux_logits=false",
        "model.bbox_reg=true", "model.fast.tap=[inception3b]", "model.fast.min_side=96", "model.fast.max_side=160",
        "model.fast.reduce_channels=16", "model.fast.fc_dim=32", "model.fast.fc_rank=8", "train.batch_size=16"]


@pytest.fixture(scope="module")
def mini(test_data):
    return test_data / "voc-mini"


def fast_config(root, *extra):
    return apply_overrides(tiny_config(root), FAST + list(extra))


def test_the_other_kinds_sub_section_is_one_line_naming_it(mini, capsys, tmp_path):
    with pytest.raises(UserError, match=r"^--set model.kind=fast: model.rcnn is set but model.kind is fast"):
        apply_overrides(tiny_config(mini), ["model.kind=fast"])
    cfg = tmp_path / "c.yaml"
    cfg.write_text("model:\n  kind: rcnn\n  fast:\n    min_side: 300\n")
    with pytest.raises(UserError, match=r"model.fast is set but model.kind is rcnn"):
        load_detector_config(cfg)
    from detector.cli.train_detector import main as train_main
    assert train_main(["--config", str(cfg), "--out", str(tmp_path / "run")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "model.fast is set but model.kind is rcnn" in err[0]
    assert not (tmp_path / "run").exists()


def test_old_flat_configs_read_as_rcnn():
    cfg = from_dict(DetectorConfig, {"model": {"input_size": 48, "context_pad": 8}})
    assert cfg.model.kind == "rcnn" and cfg.model.rcnn.input_size == 48 and cfg.model.rcnn.context_pad == 8.0
    with pytest.raises(UserError, match="R-CNN's setting"):
        from_dict(DetectorConfig, {"model": {"kind": "fast", "input_size": 48}})


def test_bundled_version_1_checkpoint_loads_as_rcnn():
    from detector.assets import RCNN_MODEL
    ck = load_detector(RCNN_MODEL)
    assert ck["format_version"] == 1 and ck["detector_kind"] == "rcnn"
    assert Detector.from_checkpoint(RCNN_MODEL).kind is kind_of(DetectorConfig())


def test_train_detect_and_reload_a_fast_model(mini, tmp_path):
    cfg = fast_config(mini, "model.members=2")
    props = jittered_proposals(load_dataset(cfg.data, "train"))
    path = train_given(cfg, str(tmp_path / "run"), torch.device("cpu"), train_proposals=props, progress=False)
    ck = load_detector(path)
    assert ck["format_version"] == FORMAT_VERSION == 2 and ck["detector_kind"] == "fast" and len(ck["members"]) == 2
    det = Detector.from_checkpoint(path)
    assert det.kind is kind_of(cfg)
    rec = load_dataset(cfg.data, "test").records[0]
    image = load_image(rec.path)
    d = det(image, proposals=props[0])
    assert set(d.seconds) >= {"trunk", "head", "postprocess"}
    assert d.boxes.shape[1] == 4 and (d.scores >= cfg.test.score_thr).all()
    # half precision round trip gives the same scores to float16 precision
    save_detector(str(tmp_path / "half.pt"), ck["config"], ck["classes"], ck["members"], compact=True)
    d2 = Detector.from_checkpoint(str(tmp_path / "half.pt"))(image, proposals=props[0])
    assert len(d2.scores) == len(d.scores) and np.allclose(d2.scores, d.scores, atol=2e-2)
    # detect on a file, through the CLI
    out = tmp_path / "dets.json"
    assert detect_main([rec.path, "--model", path, "--json", str(out), "--score-thr", "0"]) == 0
    assert json.loads(out.read_text())[0]["image"] == rec.path


def test_no_proposals_and_a_tiny_image(mini):
    cfg = fast_config(mini)
    det = Detector(cfg, ["Platelets", "RBC", "WBC"], [kind_of(cfg).build_member(cfg, 3, 0).eval()])
    empty = det(np.zeros((60, 80, 3), np.uint8), proposals=np.zeros((0, 4), np.float32))
    assert empty.boxes.shape == (0, 4)
    tiny = det(np.full((12, 20, 3), 128, np.uint8), proposals=np.array([[1, 1, 10, 8]], np.float32))
    assert tiny.boxes.shape[1] == 4 and np.isfinite(tiny.scores).all()
