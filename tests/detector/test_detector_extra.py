"""Detector requirements checked on tiny untrained (or barely trained) models: class-list
mismatches, a class absent from the data, bounded scoring memory, --init sources, ensemble
averaging, per-class NMS, and every config in configs/ loading."""

import json
from pathlib import Path

import numpy as np
import pytest
import torch

from backbone.errors import UserError
from detector.checkpoint import save_detector
from detector.config import to_dict
from detector.datasets import load_dataset
from detector.images import load_image
from detector.inference import Detector, postprocess
from detector.region_classifier import RegionClassifier
from detector import schema
from detector.train import build_member, train_detector
from detector.warp import to_tensor_image, warp_regions

from .helpers import jittered_proposals, tiny_config

ROOT = Path(__file__).resolve().parents[2]
CLASSES = ["Platelets", "RBC", "WBC"]


@pytest.fixture
def mini(test_data):
    return test_data / "voc-mini"


def _untrained_model(path, cfg, members=1, classes=CLASSES) -> str:
    states = []
    for i in range(members):
        torch.manual_seed(i)
        states.append(RegionClassifier(cfg.model.arch, len(classes), aux_logits=False, bbox_reg=cfg.model.bbox_reg).state_dict())
    save_detector(str(path), to_dict(cfg), classes, states)
    return str(path)


def _image_and_boxes(mini, n=30, seed=0):
    image = load_image(str(mini / "JPEGImages" / "BloodImage_00000.jpg"))
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, [560, 400], (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(10, 80, (n, 2))], 1).astype(np.float32)
    return image, torch.from_numpy(boxes)


# (a) -----------------------------------------------------------------------------------------
def test_eval_split_config_classes_differ_from_model(mini, tmp_path, capsys, monkeypatch):
    from detector.cli.eval_map import main as eval_main

    monkeypatch.chdir(tmp_path)
    model = _untrained_model(tmp_path / "m.pt", tiny_config(mini))
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(f"data:\n  root: {mini}\n  classes: [Platelets, RBC, WBC, Neutrophil]\n")
    rc = eval_main(["--split", "test", "--config", str(cfg_path), "--model", model, "--cache-dir", str(tmp_path / "cache")])
    assert rc == 2
    err = [l for l in capsys.readouterr().err.splitlines() if l.strip()]
    assert len(err) == 1 and err[0].startswith("eval-map: error:") and "Neutrophil" in err[0]
    assert not (tmp_path / "detections_test.json").exists()


# (b) -----------------------------------------------------------------------------------------
def test_class_absent_from_the_data_trains_and_has_no_ap(mini, tmp_path, capsys, monkeypatch):
    from detector.cli.eval_map import main as eval_main

    four = "[Platelets,RBC,WBC,Neutrophil]"
    cfg = tiny_config(mini, **{"data.classes": four, "train.val_every": 1, "proposals.working_width": 200,
                               "proposals.max_boxes": 60})
    val = jittered_proposals(load_dataset(cfg.data, "test"))
    path = train_detector(cfg, str(tmp_path / "run"), torch.device("cpu"), progress=False,
                          train_proposals=jittered_proposals(load_dataset(cfg.data, "train")), val_proposals=val)
    # voc-mini holds RBC and WBC only: Platelets and the extra Neutrophil are never seen
    row = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert [a is None for a in row["val_AP"]] == [True, False, False, True]
    assert row["val_mAP"] == pytest.approx(np.mean(row["val_AP"][1:3]))
    # eval-map --split with the same four classes: the absent class is n/a, outside the mean
    monkeypatch.chdir(tmp_path)
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(f"data:\n  root: {mini}\n  classes: {four}\ntest:\n  score_thr: 0.0\n")
    rc = eval_main(["--split", "test", "--config", str(cfg_path), "--model", path, "--cache-dir", str(tmp_path / "cache"),
                    "--json", "m.json"])
    assert rc == 0
    res = json.loads((tmp_path / "m.json").read_text())
    ap = res["per_class_AP"]
    assert ap["Neutrophil"] is None and ap["Platelets"] is None and ap["RBC"] is not None and ap["WBC"] is not None
    assert res["mAP"] == pytest.approx(np.mean([ap["RBC"], ap["WBC"]]))
    assert "Neutrophil" in capsys.readouterr().out


# (c) -----------------------------------------------------------------------------------------
def test_scoring_in_chunks_of_test_batch_size(mini, tmp_path, monkeypatch):
    import detector.inference as inference

    cfg = tiny_config(mini, **{"model.bbox_reg": "true"})
    det = Detector.from_checkpoint(_untrained_model(tmp_path / "m.pt", cfg))
    image, boxes = _image_and_boxes(mini, n=30)
    det.cfg.test.batch_size = 1000
    p_all, d_all = det.score_regions(image, boxes)

    warped, forwarded = [], []
    real_warp = inference.warp_regions
    monkeypatch.setattr(inference, "warp_regions", lambda img, b, *a, **k: warped.append(len(b)) or real_warp(img, b, *a, **k))
    det.ensemble.register_forward_pre_hook(lambda mod, args: forwarded.append(len(args[0])))
    det.cfg.test.batch_size = 7
    times = {}
    p7, d7 = det.score_regions(image, boxes, times)
    assert warped == forwarded == [7, 7, 7, 7, 2]
    assert p7.shape == (30, 4) and d7.shape == (30, 3, 4)
    assert torch.allclose(p7, p_all, atol=1e-5) and torch.allclose(d7, d_all, atol=1e-5)
    assert set(times) == {"warp", "network"} and all(v > 0 for v in times.values())


# (e) -----------------------------------------------------------------------------------------
def test_init_from_a_train_classifier_checkpoint(mini, tmp_path):
    from backbone import build_backbone
    from detector.classifier_io import save_classifier

    torch.manual_seed(5)
    clf = build_backbone("googlenet", 5, aux_logits=True)
    save_classifier(tmp_path / "clf.pt", clf, arch="googlenet", classes=list("abcde"), input_size=32)
    cfg = tiny_config(mini, **{"model.init": str(tmp_path / "clf.pt"), "model.bbox_reg": "true"})
    m = build_member(cfg, 3, seed=0)
    own, src = m.net.state_dict(), clf.state_dict()
    assert torch.equal(own["conv1.0.weight"], src["conv1.0.weight"])
    assert torch.equal(own["aux1.conv.0.weight"], src["aux1.conv.0.weight"])
    assert own["fc.weight"].shape == (4, src["fc.weight"].shape[1])  # C + 1 fresh outputs
    # the same seed without --init differs only in the loaded layers
    fresh = build_member(tiny_config(mini, **{"model.bbox_reg": "true"}), 3, seed=0)
    assert torch.equal(own["fc.weight"], fresh.net.state_dict()["fc.weight"])
    assert torch.equal(m.bbox_head.weight, fresh.bbox_head.weight)
    assert cfg.model.transform_input is False


@pytest.mark.parametrize("aux", [True, False])
def test_init_from_a_torchvision_state_dict(mini, tmp_path, aux):
    import torchvision

    torch.manual_seed(1)
    tv = torchvision.models.googlenet(weights=None, aux_logits=aux, init_weights=False)
    assert tv.fc.out_features == 1000
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    cfg = tiny_config(mini, **{"model.arch": "googlenet_bn", "model.init": str(tmp_path / "tv.pth")})
    m = build_member(cfg, 3, seed=0)
    own = m.net.state_dict()
    for k in ("conv1.conv.weight", "inception5b.branch4.1.bn.running_var"):
        assert torch.equal(own[k], tv.state_dict()[k])
    assert own["fc.weight"].shape == (4, 1024)
    if aux:
        assert torch.equal(own["aux2.conv.conv.weight"], tv.state_dict()["aux2.conv.conv.weight"])
    else:  # no aux heads in the file: ours start fresh (they only serve training)
        assert "aux2.conv.conv.weight" in own
    m.train()
    out = m(torch.zeros(2, 3, 64, 64))
    assert out.logits.shape == (2, 4) and len(out.aux_logits) == 2
    # torchvision's ImageNet weights expect its input re-normalisation: turned on, and saved
    assert cfg.model.transform_input is True and m.net.transform_input is True
    save_detector(str(tmp_path / "det.pt"), to_dict(cfg), CLASSES, [m.state_dict()])
    det = Detector.from_checkpoint(str(tmp_path / "det.pt"))
    assert det.ensemble.members[0].net.transform_input is True
    # an explicit setting wins
    cfg2 = tiny_config(mini, **{"model.arch": "googlenet_bn", "model.init": str(tmp_path / "tv.pth"),
                               "model.transform_input": "false"})
    assert build_member(cfg2, 3, seed=0).net.transform_input is False


def test_init_of_another_network_is_a_clear_error(mini, tmp_path, capsys):
    import torchvision

    from backbone import build_backbone
    from detector.classifier_io import save_classifier
    from detector.cli.train_detector import main as train_main

    tv = torchvision.models.googlenet(weights=None, aux_logits=False, init_weights=False)
    torch.save(tv.state_dict(), tmp_path / "tv.pth")
    cfg = tiny_config(mini, **{"model.init": str(tmp_path / "tv.pth")})  # model.arch googlenet
    with pytest.raises(UserError, match=r"tv\.pth: it holds 'googlenet_bn' weights: set model.arch=googlenet_bn"):
        build_member(cfg, 3, seed=0)
    save_classifier(tmp_path / "clf.pt", build_backbone("googlenet_bn", 5), arch="googlenet_bn", classes=list("abcde"),
                    input_size=32)
    with pytest.raises(UserError, match="a 'googlenet_bn' classifier, but model.arch is 'googlenet'"):
        build_member(tiny_config(mini, **{"model.init": str(tmp_path / "clf.pt")}), 3, seed=0)
    torch.save({"x.weight": torch.zeros(2)}, tmp_path / "junk.pth")
    with pytest.raises(UserError, match="junk.pth: not weights of this network"):
        build_member(tiny_config(mini, **{"model.init": str(tmp_path / "junk.pth")}), 3, seed=0)
    # through the CLI: one error line, exit 2, before any proposal is computed
    cfg_path = tmp_path / "c.yaml"
    cfg_path.write_text(f"data:\n  root: {mini}\n  classes: [Platelets, RBC, WBC]\nproposals:\n  method: ss\n"
                        "model:\n  arch: googlenet\n")
    rc = train_main(["--config", str(cfg_path), "--out", str(tmp_path / "run"), "--init", str(tmp_path / "tv.pth"),
                     "--cache-dir", str(tmp_path / "cache"), "--stage", "classifier"])
    assert rc == 2
    err = [l for l in capsys.readouterr().err.splitlines() if "error" in l]
    assert len(err) == 1 and "set model.arch=googlenet_bn" in err[0]
    assert not (tmp_path / "cache").exists() and not (tmp_path / "run" / "model.pt").exists()


# (f) -----------------------------------------------------------------------------------------
def test_ensemble_averages_member_probabilities(mini, tmp_path):
    cfg = tiny_config(mini, **{"model.members": 2})
    det = Detector.from_checkpoint(_untrained_model(tmp_path / "m.pt", cfg, members=2))
    assert len(det.ensemble.members) == 2
    image, boxes = _image_and_boxes(mini, n=12)
    probs, deltas = det.score_regions(image, boxes)
    crops = warp_regions(to_tensor_image(image), boxes, cfg.model.input_size, cfg.model.context_pad)
    with torch.no_grad():
        each = [m(crops).logits.softmax(1) for m in det.ensemble.members]
    assert not torch.allclose(each[0], each[1], atol=1e-3)  # the members do differ
    assert torch.allclose(probs, (each[0] + each[1]) / 2, atol=1e-6) and deltas is None


# (g) -----------------------------------------------------------------------------------------
def test_postprocess_nms_is_per_class():
    test = schema.TestConfig(nms_iou=0.3, score_thr=0.5, max_per_image=100)
    boxes = torch.tensor([[10.0, 10, 60, 60], [12, 12, 62, 62]])  # IoU ~0.86
    same = torch.tensor([[0.05, 0.9, 0.05], [0.1, 0.8, 0.1]])
    b, s, l = postprocess(same, boxes, None, (100, 100), test)
    assert l.tolist() == [1] and s.tolist() == pytest.approx([0.9]) and b[0].tolist() == [10, 10, 60, 60]
    other = torch.tensor([[0.05, 0.9, 0.05], [0.1, 0.1, 0.8]])
    b, s, l = postprocess(other, boxes, None, (100, 100), test)
    assert l.tolist() == [1, 2] and s.tolist() == pytest.approx([0.9, 0.8])
    far = torch.tensor([[10.0, 10, 30, 30], [60, 60, 90, 90]])  # same class, apart: both kept
    assert len(postprocess(same, far, None, (100, 100), test)[0]) == 2


# (i) -----------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", sorted((ROOT / "configs").glob("*.yaml")), ids=lambda p: p.name)
def test_every_config_loads(path):
    if "classifier" in path.name:
        from detector.classifier_io import load_classifier_config, validate_config
        validate_config(load_classifier_config(str(path)))
    else:
        from detector.schema import load_detector_config
        cfg = load_detector_config(str(path))
        assert cfg.data.root and cfg.model.members >= 1 and cfg.test.protocol in ("ilsvrc", "voc07", "voc", "coco")
        assert cfg.proposals.method in ("ss", "multibox", "ss+multibox")
