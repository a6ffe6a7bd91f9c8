import numpy as np
import pytest
import torch

from backbone.errors import UserError
from proposals.config import MultiBoxConfig, ProposalConfig
from proposals.multibox import (
    MultiBox, checkpoint_dict, kmeans_priors, load_multibox, match, multibox_from_checkpoint, multibox_loss, predict,
)
from proposals.pipeline import merge_boxes, propose
from proposals.selective_search import selective_search

def _iou(a, b):
    from eval.proposal_recall import box_iou
    return box_iou(a, b)


TINY = MultiBoxConfig(arch="googlenet_bn", input_size=64, num_priors=12)


@pytest.fixture(scope="module")
def tiny_model():
    torch.manual_seed(0)
    rng = np.random.default_rng(0)
    xy = rng.uniform(0, 0.7, (50, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(0.1, 0.3, (50, 2))], 1)
    return MultiBox(TINY, kmeans_priors(boxes, TINY.num_priors)).eval()


def test_kmeans_priors():
    rng = np.random.default_rng(1)
    a = np.array([0.1, 0.1, 0.2, 0.2]) + rng.normal(0, 0.005, (40, 4))
    b = np.array([0.6, 0.5, 0.9, 0.8]) + rng.normal(0, 0.005, (40, 4))
    p = kmeans_priors(np.concatenate([a, b]), 2)
    assert p.shape == (2, 4) and p.dtype == np.float32
    centers = p[np.argsort(p[:, 0])]
    assert np.allclose(centers, [[0.1, 0.1, 0.2, 0.2], [0.6, 0.5, 0.9, 0.8]], atol=0.01)
    few = kmeans_priors(np.array([[0.1, 0.1, 0.3, 0.3]]), 5)  # fewer boxes than priors
    assert few.shape == (5, 4) and len(np.unique(few, axis=0)) == 5
    assert (few >= 0).all() and (few <= 1).all() and (few[:, 2:] > few[:, :2]).all()
    with pytest.raises(UserError):
        kmeans_priors(np.zeros((0, 4)), 3)


def test_matching_bipartite_and_greedy():
    priors = np.array([[0, 0, .5, .5], [.5, .5, 1, 1], [0, .5, .5, 1]], np.float32)
    gt = np.array([[.05, .05, .5, .5], [0, 0, .45, .45]], np.float32)  # both nearest to prior 0
    pi, gi = match(priors, gt, "bipartite")
    assert len(set(pi)) == 2 and sorted(gi) == [0, 1]
    pg, gg = match(priors, gt, "greedy")
    assert len(set(pg)) == 2 and sorted(gg) == [0, 1]
    cost = lambda p, g: ((priors[p] - gt[g]) ** 2).sum()
    assert cost(pi, gi) <= cost(pg, gg) + 1e-9
    assert len(match(priors, np.zeros((0, 4), np.float32))[0]) == 0
    with pytest.raises(UserError):
        match(priors, gt, "auction")


@pytest.mark.slow
def test_loss_and_a_training_step_lower_it(tiny_model):
    torch.manual_seed(0)
    model = MultiBox(TINY, tiny_model.priors.numpy())
    x = torch.randn(2, 3, 64, 64)
    gts = [np.array([[.1, .1, .4, .4]], np.float32), np.array([[.5, .5, .9, .9], [.0, .5, .3, .9]], np.float32)]
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    losses = []
    model.train()
    for _ in range(4):
        off, logit = model(x)
        assert off.shape == (2, 12, 4) and logit.shape == (2, 12)
        loss, parts = multibox_loss(off, logit, model.priors, gts, alpha=0.3)
        assert torch.isfinite(loss) and parts["conf"] > 0
        opt.zero_grad()
        loss.backward()
        opt.step()
        losses.append(float(loss))
    assert losses[-1] < losses[0]


def test_predict_and_checkpoint_roundtrip(tiny_model, tmp_path, blood_small):
    out = predict(tiny_model, [blood_small, blood_small[:50]], top_k=5)
    (b, s), (b2, _) = out
    assert b.shape == (5, 4) and s.shape == (5,) and (np.diff(s) <= 0).all()
    assert (b[:, 0] >= 0).all() and (b[:, 2] <= 160).all() and (b[:, 3] <= 120).all() and (b2[:, 3] <= 50).all()
    assert (b[:, 2] >= b[:, 0]).all()
    path = tmp_path / "mb.pt"
    torch.save(checkpoint_dict(tiny_model, epoch=3), path)
    again = load_multibox(path)
    b3, s3 = predict(again, [blood_small], top_k=5)[0]
    assert np.allclose(b, b3, atol=1e-4) and np.allclose(s, s3, atol=1e-5)
    assert multibox_from_checkpoint(torch.load(path, weights_only=True)).num_priors == 12


def test_load_multibox_errors(tmp_path):
    with pytest.raises(UserError, match="no such file"):
        load_multibox(tmp_path / "missing.pt")
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(UserError, match="not a readable PyTorch file"):
        load_multibox(bad)
    other = tmp_path / "other.pt"
    torch.save({"format": "something"}, other)
    with pytest.raises(UserError, match="not a MultiBox checkpoint"):
        load_multibox(other)


def test_merge_removes_near_duplicates():
    a = np.array([[0, 0, 10, 10], [20, 20, 40, 40]], np.float32)
    b = np.array([[0, 0, 10, 10.1], [50, 50, 60, 60], [20, 20, 40, 40]], np.float32)
    m = merge_boxes(a, b, 0.95)
    assert m.tolist() == [[0, 0, 10, 10], [20, 20, 40, 40], [50, 50, 60, 60]]
    assert len(merge_boxes(a, b, 1.0)) == 5


def test_propose_methods(tiny_model, blood_small):
    cfg = ProposalConfig(method="ss", working_width=0)
    ss = propose(blood_small, cfg)
    assert np.array_equal(ss, selective_search(blood_small, working_width=0, superpixel_scale=cfg.superpixel_scale))
    cfg_mb = ProposalConfig(method="multibox", multibox_top_k=7)
    assert len(propose(blood_small, cfg_mb, multibox=tiny_model)) == 7
    both = propose(blood_small, ProposalConfig(method="ss+multibox", working_width=0, multibox_top_k=7), multibox=tiny_model)
    mb = propose(blood_small, ProposalConfig(method="multibox", multibox_top_k=7), multibox=tiny_model)
    assert np.array_equal(both[:7], mb) and len(both) <= len(ss) + 7
    ss_rows = {tuple(r) for r in ss.tolist()}
    assert all(tuple(r) in ss_rows for r in both[7:].tolist())  # the rest: selective search boxes, in rank order
    with pytest.raises(UserError, match="multibox_checkpoint"):
        propose(blood_small, ProposalConfig(method="ss+multibox"))
    with pytest.raises(UserError, match="method"):
        propose(blood_small, ProposalConfig(method="edgeboxes"))


@pytest.mark.parametrize("image", [
    np.zeros((40, 50), np.uint8),                        # grey (H, W)
    np.zeros((40, 50, 1), np.uint8),                     # grey (H, W, 1)
    np.full((40, 50, 4), 200, np.uint8),                 # RGBA
    np.zeros((1, 1, 3), np.uint8),                       # one pixel
    np.full((3, 2, 3), 90, np.uint8),                    # smaller than any box width
    np.full((2000, 30, 3), (10, 200, 40), np.uint8),     # tall, single colour
])
def test_predict_any_image_shape(tiny_model, image):
    boxes, scores = predict(tiny_model, [image], top_k=5)[0]
    H, W = image.shape[:2]
    assert boxes.shape == (5, 4) and boxes.dtype == np.float32 and scores.shape == (5,)
    assert np.isfinite(boxes).all() and (boxes[:, :2] >= 0).all()
    assert (boxes[:, 2] <= W + 1e-4).all() and (boxes[:, 3] <= H + 1e-4).all()
    assert (boxes[:, 2] >= boxes[:, 0]).all() and (boxes[:, 3] >= boxes[:, 1]).all()


def test_predict_grey_equals_its_rgb(tiny_model, blood_small):
    grey = blood_small[:, :, 1]
    a = predict(tiny_model, [grey], top_k=5)[0]
    b = predict(tiny_model, [np.repeat(grey[:, :, None], 3, axis=2)], top_k=5)[0]
    assert np.array_equal(a[0], b[0]) and np.array_equal(a[1], b[1])


@pytest.mark.parametrize("image, top_k, msg", [
    (np.zeros((10, 10, 3), np.float32), 5, "uint8"),
    (np.zeros((0, 10, 3), np.uint8), 5, "empty"),
    (np.zeros((10, 10, 2), np.uint8), 5, "shape"),
    (np.zeros((10, 10, 3), np.uint8), -1, "top_k"),
])
def test_predict_bad_input_one_clear_error(tiny_model, image, top_k, msg):
    with pytest.raises(UserError, match=msg):
        predict(tiny_model, [image], top_k=top_k)


@pytest.mark.parametrize("image", [np.full((4, 6, 3), 128, np.uint8), np.full((120, 160), 30, np.uint8),
                                   np.full((120, 160, 3), (0, 0, 255), np.uint8)])
def test_propose_multibox_tiny_and_single_colour(tiny_model, image):
    H, W = image.shape[:2]
    for method in ("multibox", "ss+multibox"):
        b = propose(image, ProposalConfig(method=method, multibox_top_k=4, working_width=0), multibox=tiny_model)
        assert b.dtype == np.float32 and b.shape[1] == 4 and len(b) >= 1
        assert (b[:, :2] >= 0).all() and (b[:, 2] <= W + 1e-4).all() and (b[:, 3] <= H + 1e-4).all()
    # single colour: selective search gives the whole image, MultiBox its top 4
    b = propose(image, ProposalConfig(method="ss+multibox", multibox_top_k=4, working_width=0, merge_iou=1.0),
                multibox=tiny_model)
    assert len(b) == 5 and b[-1].tolist() == [0, 0, W, H]


def test_propose_max_total(tiny_model, blood_small):
    for method in ("ss", "multibox", "ss+multibox"):
        cfg = ProposalConfig(method=method, working_width=0, multibox_top_k=7)
        full = propose(blood_small, cfg, multibox=tiny_model)
        cfg.max_total = 5
        assert np.array_equal(propose(blood_small, cfg, multibox=tiny_model), full[:5])
    with pytest.raises(UserError, match="max_total"):
        propose(blood_small, ProposalConfig(method="ss", max_total=0))


@pytest.mark.parametrize("damage,msg", [
    (lambda ck: (ck.pop("format_version"), ck.update(format=torch.tensor([1]))), "not a MultiBox checkpoint"),
    (lambda ck: ck.update(format_version=torch.tensor([1])), "field 'format_version' must be an integer >= 1, got a Tensor"),
    (lambda ck: ck.update(format_version=2), "format version 2 is newer than this program's \\(1\\)"),
    (lambda ck: ck.update(epoch=-1), "field 'epoch' must be >= 0, got -1"),
    (lambda ck: ck.update(config=[1, 2]), "field 'config' must be a dict"),
    (lambda ck: ck["config"].update(num_priors=-3), "num_priors"),
    (lambda ck: ck["config"].update(input_size="big"), "input_size"),
    (lambda ck: ck.update(state_dict=[1]), r"field 'state_dict' must be a state dict \(names -> tensors\), got \[1\]"),
    (lambda ck: ck["state_dict"].update(priors="x"), r"field 'state_dict' must be a state dict \(names -> tensors\)"),
])
def test_multibox_checkpoint_with_wrong_typed_fields_is_one_error(tiny_model, damage, msg):
    """Found by the hostile-input review: a tensor as the format or a broken config used to raise
    RuntimeError / TypeError from inside the loader."""
    ck = checkpoint_dict(tiny_model)
    ck["config"] = dict(ck["config"])
    ck["state_dict"] = dict(ck["state_dict"])
    damage(ck)
    with pytest.raises(UserError, match=msg):
        multibox_from_checkpoint(ck, source="mb.pt")


def test_multibox_checkpoint_versions(tiny_model, tmp_path):
    """One integer scheme: the old string marker "multibox-v1" reads as version 1; files are
    written with format_version 1 and the old marker (read by programs from before it)."""
    ck = checkpoint_dict(tiny_model, epoch=3, extra={"classes": ["a"]})
    assert ck["format_version"] == 1 and ck["format"] == "multibox-v1" and ck["kind"] == "multibox"
    old = {k: v for k, v in ck.items() if k != "format_version"}  # as written before format_version
    torch.save(old, tmp_path / "old.pt")
    model = load_multibox(tmp_path / "old.pt")
    x = torch.zeros(1, 3, 64, 64)
    assert torch.equal(model(x)[1], tiny_model.eval()(x)[1])
    new = {k: v for k, v in ck.items() if k != "format"}  # format_version alone (a later writer)
    assert multibox_from_checkpoint(new).num_priors == tiny_model.num_priors


def test_multibox_checkpoint_with_nan_weights_is_refused(tiny_model, tmp_path):
    ck = checkpoint_dict(tiny_model)
    key = next(k for k, v in ck["state_dict"].items() if v.is_floating_point() and k != "priors")
    ck["state_dict"][key].view(-1)[0] = float("nan")
    torch.save(ck, tmp_path / "mb.pt")
    with pytest.raises(UserError, match=rf"mb.pt: tensor state_dict\.{key} holds NaN or infinite values"):
        load_multibox(tmp_path / "mb.pt")
