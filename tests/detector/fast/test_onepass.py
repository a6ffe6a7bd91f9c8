"""The one-pass detector (``proposals.method: trunk``): the prior cells, the k-means shapes, the
bipartite loss against MultiBox's, joint training lowering both losses, resume, the checkpoint
(version 3), and ``detect`` calling no selective search."""

import numpy as np
import pytest
import torch

from backbone.config import apply_overrides, from_dict, to_dict
from backbone.errors import UserError
from detector.config import DetectorConfig
from detector.engine import loop
from detector.fast.proposer import (
    TrunkProposer,
    cell_priors,
    merge_members,
    training_shapes,
)
from detector.io.checkpoints import load_detector, save_detector
from detector.io.datasets import load_dataset
from detector.io.images import load_image
from detector.kinds import kind_of
from detector.model import Detector
from proposals.multibox import kmeans_shapes, match, multibox_loss
from tests.detector.helpers import same_weights, tiny_config, train_given

ONEPASS = ["model.rcnn=null", "model.kind=fast", "model.arch=googlenet_bn", "model.aux_logits=false",
           "model.bbox_reg=true", "model.fast.tap=[inception3b]", "model.fast.min_side=96", "model.fast.max_side=160",
           "model.fast.reduce_channels=16", "model.fast.fc_dim=32", "model.fast.fc_rank=8", "train.batch_size=16",
           "proposals.method=trunk", "proposals.trunk.num_priors=3", "proposals.trunk.batch_size=64",
           "test.max_proposals=50", "train.max_proposals=100"]


@pytest.fixture(scope="module")
def mini(test_data):
    return test_data / "voc-mini"


def onepass_config(root, *extra):
    return apply_overrides(tiny_config(root), ONEPASS + list(extra))


def test_cell_priors_by_hand():
    shapes = torch.tensor([[4.0, 2.0], [8.0, 8.0]])
    p = cell_priors(2, 3, 8, shapes)
    assert p.shape == (2 * 3 * 2, 4)
    # cell (row 0, col 0): centre (4, 4); shapes 4x2 then 8x8
    assert p[0].tolist() == [2.0, 3.0, 6.0, 5.0] and p[1].tolist() == [0.0, 0.0, 8.0, 8.0]
    # cell (row 0, col 1): centre (12, 4); cell (row 1, col 2): centre (20, 12), the last
    assert p[2].tolist() == [10.0, 3.0, 14.0, 5.0]
    assert p[-1].tolist() == [16.0, 8.0, 24.0, 16.0] and p[-2].tolist() == [18.0, 11.0, 22.0, 13.0]


def test_cell_order_is_the_heads_order():
    """The prior of output a of cell (r, c) is the one the head's channel a at (r, c) predicts."""
    torch.manual_seed(0)
    prop = TrunkProposer(4, 8, [[8, 8], [16, 16]], pre_nms=1000, post_nms=1000, nms_iou=1.0)
    fmap = torch.zeros(1, 4, 3, 5)
    with torch.no_grad():
        for m in (prop.head.conv, prop.head.cls_logits, prop.head.bbox_pred):
            for p in m.parameters():
                p.zero_()
        prop.head.cls_logits.bias.copy_(torch.tensor([-5.0, -5.0]))
        fmap[0, :, 2, 3] = 1.0  # only cell (2, 3) is lit; its ReLU path makes prior 1 win below
        prop.head.conv[0][0].weight[:, :, 1, 1] = torch.eye(4)
        prop.head.cls_logits.weight[1, :, 0, 0] = 10.0
    prop.eval()
    boxes, scores, _ = prop(fmap, (32, 48))  # larger than the map covers: no clipping
    centre = (3 + 0.5) * 8, (2 + 0.5) * 8
    assert boxes[0].tolist() == [centre[0] - 8, centre[1] - 8, centre[0] + 8, centre[1] + 8]
    assert scores[0] > 0.99 > scores[1]


def test_kmeans_shapes_finds_the_size_clusters():
    rng = np.random.default_rng(0)
    wh = np.concatenate([rng.normal(30, 2, (100, 2)), rng.normal(100, 5, (300, 2)), rng.normal(200, 8, (20, 2))])
    shapes = kmeans_shapes(wh, 3)
    assert np.allclose(shapes, [[30, 30], [100, 100], [200, 200]], atol=6)
    assert kmeans_shapes(np.array([[10.0, 10.0]]), 3).tolist() == [[10, 10], [15, 15], [22.5, 22.5]]
    with pytest.raises(UserError, match="no boxes"):
        kmeans_shapes(np.zeros((0, 2)), 3)


def test_bipartite_loss_is_multibox_loss_on_the_same_matches():
    torch.manual_seed(0)
    prop = TrunkProposer(8, 8, [[10, 10], [20, 12], [30, 30]], matching="bipartite", alpha=0.3)
    fmap = torch.randn(1, 8, 4, 6)
    gt = torch.tensor([[5.0, 5.0, 20.0, 18.0], [20.0, 4.0, 44.0, 30.0]])
    size = (32, 48)
    _, _, losses = prop(fmap, size, gt)
    obj, deltas = prop.head([fmap])
    from torchvision.models.detection.rpn import concat_box_prediction_layers
    obj, deltas = concat_box_prediction_layers(obj, deltas)
    anchors = cell_priors(4, 6, 8, prop.priors)
    scale = torch.tensor([48.0, 32.0, 48.0, 32.0])
    want, parts = multibox_loss(deltas[None], obj.view(1, -1), anchors / scale, [(gt / scale).numpy()], 0.3)
    assert set(losses) == {"multibox"} and torch.allclose(losses["multibox"], want)
    assert parts["loc"] > 0  # the matches are MultiBox's: one distinct prior per object
    pi, gi = match((anchors / scale).numpy(), (gt / scale).numpy())
    assert len(set(pi.tolist())) == 2 and sorted(gi.tolist()) == [0, 1]


def test_iou_matching_uses_torchvisions_rpn_loss():
    torch.manual_seed(0)
    prop = TrunkProposer(8, 8, [[16, 16], [32, 32]], batch_size=32)
    fmap = torch.randn(1, 8, 4, 6)
    gt = torch.tensor([[8.0, 8.0, 24.0, 24.0]])
    torch.manual_seed(1)
    _, _, losses = prop(fmap, (32, 48), gt)
    assert set(losses) == {"objectness", "box"} and all(torch.isfinite(v) and v > 0 for v in losses.values())
    # no objects: all sampled priors negative, no box loss, still finite (an empty image trains)
    _, _, empty = prop(fmap, (32, 48), torch.zeros((0, 4)))
    assert empty["box"].item() == 0.0 and torch.isfinite(empty["objectness"])


def test_union_of_members_and_first():
    a = (torch.tensor([[0.0, 0, 10, 10], [50, 50, 60, 60]]), torch.tensor([0.9, 0.5]))
    b = (torch.tensor([[0.0, 0, 10, 11], [20, 20, 30, 30]]), torch.tensor([0.8, 0.7]))
    assert merge_members([a, b], 10, 0.7, "first").tolist() == a[0].tolist()
    union = merge_members([a, b], 10, 0.7, "union").tolist()
    assert union == [[0, 0, 10, 10], [20, 20, 30, 30], [50, 50, 60, 60]]  # the near-duplicate gone, best first
    assert len(merge_members([a, b], 2, 0.7, "union")) == 2


def test_config_rules(mini):
    with pytest.raises(UserError, match="only model.kind fast shares"):
        apply_overrides(tiny_config(mini), ["proposals.method=trunk"])
    with pytest.raises(UserError, match=r"proposals.trunk.bg_iou must be below"):
        onepass_config(mini, "proposals.trunk.bg_iou=0.8")
    from proposals import propose
    with pytest.raises(UserError, match="come from a detector's own trunk"):
        propose(np.zeros((20, 20, 3), np.uint8), onepass_config(mini).proposals)


@pytest.fixture(scope="module")
def trained(mini, tmp_path_factory):
    """A 2-member one-pass model trained 2 epochs on voc-mini (losses per step recorded)."""
    cfg = onepass_config(mini, "model.members=2", "train.epochs=2", "train.lr=0.01")
    out = tmp_path_factory.mktemp("onepass") / "run"
    losses = []

    class Record:
        def after_step(self, lp):
            losses.append(lp.last_loss)

    hook = Record()
    loop.HOOKS.append(hook)
    try:
        path = train_given(cfg, str(out), torch.device("cpu"), progress=False)
    finally:
        loop.HOOKS.remove(hook)
    return cfg, out, path, losses


def test_training_writes_the_priors_and_a_version_3_checkpoint(trained, mini):
    cfg, out, path, _ = trained
    ck = load_detector(path)
    assert ck["format_version"] == 3 and ck["proposal_head"] is True
    saved = ck["config"]["proposals"]["trunk"]["priors"]
    ds = load_dataset(cfg.data, "train")
    assert saved == training_shapes(ds, 3, 96, 160, seed=0) and len(saved) == 3
    for m in ck["members"]:
        assert torch.equal(m["proposer.priors"], torch.tensor(saved))
        assert any(k.startswith("proposer.head.") for k in m)
    # round trip: the same detections from the file, and from a float16 copy to its precision
    det = Detector.from_checkpoint(path)
    image = load_image(ds.records[0].path)
    d1, d2 = det(image), Detector.from_checkpoint(path)(image)
    assert np.array_equal(d1.boxes, d2.boxes) and np.array_equal(d1.scores, d2.scores)
    half = out.parent / "half.pt"
    save_detector(str(half), ck["config"], ck["classes"], ck["members"], compact=True)
    assert load_detector(str(half))["format_version"] == 3


def test_checkpoint_head_flag_must_agree_with_the_config(trained, tmp_path):
    _, _, path, _ = trained
    ck = torch.load(path, weights_only=True)
    ck["proposal_head"] = False
    torch.save(ck, tmp_path / "bad.pt")
    with pytest.raises(UserError, match="proposal_head is False but its config's proposals.method is 'trunk'"):
        load_detector(str(tmp_path / "bad.pt"))


def test_joint_training_lowers_both_losses(mini, tmp_path):
    cfg = onepass_config(mini, "model.members=1", "train.epochs=12", "train.lr=0.01", "train.warmup_steps=0")
    kind = kind_of(cfg)
    cfg.proposals.trunk.priors = training_shapes(load_dataset(cfg.data, "train"), 3, 96, 160)
    ds = load_dataset(cfg.data, "train")
    batcher = kind.RegionBatcher(cfg, ds, None, torch.device("cpu"))
    model = kind.build_member(cfg, 3, 0)
    opt = torch.optim.SGD(kind.param_groups(model, cfg), lr=0.01, momentum=0.9)
    model.train()
    first = last = None
    for step in range(12):
        torch.manual_seed(step)
        b = batcher.batch(list(range(len(ds))), torch.Generator().manual_seed(0))
        out = kind.forward(model, b)
        loss, parts = kind.region_loss(out, b, cfg)
        opt.zero_grad()
        loss.backward()
        opt.step()
        first = first or parts
        last = parts
    assert last["proposal"] < first["proposal"] and last["cls"] < first["cls"]


def test_resume_is_bitwise(trained, mini, tmp_path):
    cfg, _, path, _ = trained
    full = load_detector(path)["members"]
    cut = onepass_config(mini, "model.members=2", "train.epochs=2", "train.lr=0.01", "train.checkpoint_every=1")
    out = str(tmp_path / "cut")
    with pytest.raises(KeyboardInterrupt):
        train_given(cut, out, torch.device("cpu"), stop_after=3, progress=False)
    resumed = load_detector(train_given(cut, out, torch.device("cpu"), progress=False))["members"]
    assert all(same_weights(a, b) for a, b in zip(full, resumed)) and len(resumed) == 2


def test_detect_calls_no_selective_search(trained, monkeypatch):
    _, _, path, _ = trained
    det = Detector.from_checkpoint(path)
    assert det.cfg.proposals.method == "trunk"
    from proposals import pipeline

    def refuse(*a, **k):
        raise AssertionError("selective search ran")

    monkeypatch.setattr(pipeline, "selective_search", refuse)
    monkeypatch.setattr(pipeline, "propose", refuse)
    image = np.random.default_rng(0).integers(0, 255, (120, 150, 3), dtype=np.uint8)
    calls = []
    for m in det.ensemble.members:
        real = m.features
        m.features = lambda *a, real=real, **k: calls.append(1) or real(*a, **k)
    d = det(image)
    assert len(calls) == 2  # each member's trunk ran once, for its proposals and its scores
    assert {"trunk", "proposals", "head"} <= set(d.seconds)
    boxes = det.propose(image)
    assert 0 < len(boxes) <= det.cfg.test.max_proposals


def test_max_proposals_caps_the_union(trained):
    _, _, path, _ = trained
    det = Detector.from_checkpoint(path)
    image = np.random.default_rng(1).integers(0, 255, (120, 150, 3), dtype=np.uint8)
    test = from_dict(type(det.cfg.test), {**to_dict(det.cfg.test), "max_proposals": 7})
    assert len(det.configured(test=test).propose(image)) <= 7
    first = from_dict(DetectorConfig, {**to_dict(det.cfg)}).proposals
    first.trunk.ensemble = "first"
    assert len(det.configured(proposals=first).propose(image)) <= det.cfg.test.max_proposals


def test_300_proposals_unless_set(mini):
    assert onepass_config(mini, "test.max_proposals=null").proposal_limit == 300
    assert onepass_config(mini, "test.max_proposals=null", "proposals.method=ss").proposal_limit == 2000
    assert onepass_config(mini, "test.max_proposals=1000").proposal_limit == 1000
    assert DetectorConfig().proposal_limit == 2000 and DetectorConfig().test.max_proposals is None


def test_propose_and_eval_proposals_measure_the_heads_boxes(trained, mini, tmp_path, capsys, monkeypatch):
    """The proposal tools on a one-pass model: its head's boxes, no selective search, no cache."""
    import json

    from detector.cli.eval_proposals import main as eval_main
    from detector.cli.propose import main as propose_main
    from proposals import pipeline

    cfg, _, path, _ = trained
    monkeypatch.setattr(pipeline, "selective_search", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ss")))
    image = load_dataset(cfg.data, "train").records[0].path
    out = tmp_path / "p.json"
    assert propose_main([image, "--model", path, "--json", str(out)]) == 0
    want = Detector.from_checkpoint(path).propose(load_image(image))
    assert np.allclose(json.loads(out.read_text())[0]["boxes"], want, atol=0.01) and 0 < len(want) <= 50
    conf = tmp_path / "data.yaml"
    conf.write_text(f"data:\n  root: {mini}\n  classes: [Platelets, RBC, WBC]\n")
    assert eval_main(["--config", str(conf), "--split", "train", "--model", path, "--cache-dir",
                      str(tmp_path / "cache"), "--json", str(tmp_path / "r.json")]) == 0
    assert f"proposals of model {path}: its own" in capsys.readouterr().out
    assert json.loads((tmp_path / "r.json").read_text())["proposals"]["own"] is True
    assert not (tmp_path / "cache" / "proposals").exists()


def test_the_bundled_one_pass_model_runs_no_selective_search(monkeypatch):
    """detect with detector/assets/bccd_onepass.pt: its config says trunk, nothing outside the model runs."""
    from pathlib import Path

    from detector.assets import ONEPASS_MODEL
    from proposals import pipeline

    det = Detector.from_checkpoint(ONEPASS_MODEL)
    assert det.cfg.proposals.method == "trunk" and len(det.ensemble.members) == 2
    monkeypatch.setattr(pipeline, "selective_search", lambda *a, **k: (_ for _ in ()).throw(AssertionError("ss")))
    monkeypatch.setattr(pipeline, "propose", lambda *a, **k: (_ for _ in ()).throw(AssertionError("propose")))
    d = det(str(Path(__file__).resolve().parents[3] / "examples" / "BloodImage_00007.jpg"))
    assert "WBC" in d.names and (np.array(d.names) == "RBC").sum() >= 8
    assert det.cfg.proposal_limit == 300
