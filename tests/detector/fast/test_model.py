"""FastRCNN: shapes, batched pooling against a one-box-at-a-time reference, mixed sizes,
small images, no proposals, --init into the trunk, head size."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from backbone import build_backbone, extract_features
from backbone.errors import UserError
from detector.fast.model import FastRCNN, count_head_macs

from .helpers import random_boxes, trained_looking

C = 3


@pytest.fixture(scope="module")
def model():
    torch.manual_seed(0)
    return trained_looking(FastRCNN("googlenet_bn", C)).eval()


@pytest.fixture(scope="module")
def fpn_model():
    torch.manual_seed(1)
    # canonical scale 24: boxes over ~48 px go to the stride-16 level, smaller ones to stride 8
    return trained_looking(FastRCNN("googlenet_bn", C, tap=["inception3b", "inception4e"], canonical_scale=24)).eval()


def test_output_shapes(model):
    images = [torch.randn(3, 64, 80), torch.randn(3, 48, 48)]
    boxes = [random_boxes(3, 64, 80), random_boxes(2, 48, 48, seed=1)]
    with torch.no_grad():
        out = model(images, boxes)
    assert out.logits.shape == (5, C + 1)
    assert out.deltas.shape == (5, C, 4)
    assert out.aux_logits == []
    assert torch.isfinite(out.logits).all() and torch.isfinite(out.deltas).all()


def _reference_pool(fmap: torch.Tensor, box: torch.Tensor, stride: int, r: int, sr: int) -> torch.Tensor:
    """One box's R x R bins, each the mean of sr x sr bilinear samples (aligned: pixel centres
    at +0.5), sampled with grid_sample rather than roi_align."""
    h, w = fmap.shape[-2:]
    x1, y1, x2, y2 = (box / stride).tolist()
    offs = (torch.arange(r)[:, None] + (torch.arange(sr)[None, :] + 0.5) / sr).flatten()
    xs = x1 - 0.5 + offs * (x2 - x1) / r
    ys = y1 - 0.5 + offs * (y2 - y1) / r
    gx = (2 * xs + 1) / w - 1
    gy = (2 * ys + 1) / h - 1
    grid = torch.stack(torch.meshgrid(gy, gx, indexing="ij")[::-1], -1)[None]
    s = F.grid_sample(fmap, grid.to(fmap.dtype), mode="bilinear", padding_mode="border", align_corners=False)
    return s.view(fmap.shape[1], r, sr, r, sr).mean(dim=(2, 4))


def _reference_scores(m: FastRCNN, image: torch.Tensor, boxes: torch.Tensor):
    feats = extract_features(m.trunk, image[None], m.taps)
    maps = m.fpn(feats) if m.fpn is not None else {m.taps[0]: m.reduce(feats[m.taps[0]])}
    logits, deltas = [], []
    for b in boxes:
        if len(m.taps) == 1:
            name = m.taps[0]
        else:
            k = math.floor(m.canonical_level + math.log2(math.sqrt((b[2] - b[0]) * (b[3] - b[1])) / m.canonical_scale))
            k = min(max(k, 3), 4)  # strides 8 and 16
            name = m.taps[k - 3]
        pooled = _reference_pool(maps[name], b, m.strides[name], m.roi_size, m.sampling_ratio)
        lg, dl = m.predictor(m.box_head(pooled[None]))
        logits.append(lg)
        deltas.append(dl)
    return torch.cat(logits), torch.cat(deltas)


@pytest.mark.parametrize("which", ["single", "fpn"])
def test_batched_equals_one_box_at_a_time(model, fpn_model, which):
    m = model if which == "single" else fpn_model
    image = torch.randn(3, 96, 128, generator=torch.Generator().manual_seed(3))
    boxes = random_boxes(9, 96, 128, seed=4)
    with torch.no_grad():
        ref_logits, ref_deltas = _reference_scores(m, image, boxes)
        out = m([image], [boxes])
        chunked = m.head(m.features([image]), [boxes], chunk=4)
    if which == "fpn":  # both levels are exercised
        assert len(set(m._levels(boxes).tolist())) == 2
    for o in (out, chunked):
        assert torch.allclose(o.logits, ref_logits, atol=1e-5, rtol=1e-4)
        assert torch.allclose(o.deltas, ref_deltas, atol=1e-6, rtol=1e-4)


def test_head_scale_maps_boxes(model):
    """Boxes given in other pixels with ``scale`` score as the same boxes given directly."""
    image = torch.randn(3, 64, 64)
    boxes = random_boxes(4, 64, 64, seed=2)
    with torch.no_grad():
        feats = model.features([image])
        a = model.head(feats, [boxes])
        b = model.head(feats, [boxes * 4], scale=0.25)
    assert torch.allclose(a.logits, b.logits, atol=1e-6)


def test_mixed_sizes_do_not_change_an_images_scores(model):
    g = torch.Generator().manual_seed(5)
    a, b = torch.randn(3, 40, 56, generator=g), torch.randn(3, 64, 72, generator=g)
    ba, bb = random_boxes(4, 40, 56, seed=6), random_boxes(3, 64, 72, seed=7)
    padded = torch.zeros(2, 3, 64, 72)
    padded[0, :, :40, :56] = a
    padded[1] = b
    with torch.no_grad():
        alone_a = model([a], [ba])
        alone_b = model([b], [bb])
        pair = model([a, b], [ba, bb])
        pair_padded = model(padded, [ba, bb], image_sizes=[(40, 56), (64, 72)])
    for out in (pair, pair_padded):
        assert torch.allclose(out.logits[:4], alone_a.logits, atol=1e-6)
        assert torch.allclose(out.deltas[:4], alone_a.deltas, atol=1e-6)
        assert torch.allclose(out.logits[4:], alone_b.logits, atol=1e-6)


def test_training_mode_crops_padded_maps_to_each_image():
    torch.manual_seed(0)
    m = FastRCNN("googlenet_bn", C).train()
    images = [torch.randn(3, 40, 56), torch.randn(3, 64, 72)]
    feats = m.features(images)
    for im, maps in zip(images, feats.maps):
        alone = m._probe_sizes(*im.shape[-2:])
        assert tuple(maps["inception4e"].shape[-2:]) == alone["inception4e"]


@pytest.mark.parametrize("arch", ["googlenet_bn", "googlenet"])
def test_small_image_is_upsampled(arch):
    torch.manual_seed(0)
    m = FastRCNN(arch, C).eval()
    image = torch.randn(3, 20, 20)
    with torch.no_grad():
        feats = m.features([image])
        out = m([image], [torch.tensor([[2.0, 2.0, 15.0, 15.0], [0.0, 0.0, 20.0, 20.0]])])
    assert feats.scales[0] == (31 / 20, 31 / 20)
    assert out.logits.shape == (2, C + 1) and torch.isfinite(out.logits).all()


def test_no_proposals_gives_empty_outputs(model):
    image = torch.randn(3, 48, 64)
    boxes = random_boxes(3, 48, 48, seed=8)
    with torch.no_grad():
        empty = model([image], [torch.zeros((0, 4))])
        mixed = model([image, image[:, :, :48]], [torch.zeros((0, 4)), boxes])
        alone = model([image[:, :, :48]], [boxes])
    assert empty.logits.shape == (0, C + 1) and empty.deltas.shape == (0, C, 4)
    assert torch.allclose(mixed.logits, alone.logits, atol=1e-6)


def test_init_loads_into_the_trunk():
    torch.manual_seed(0)
    full = build_backbone("googlenet_bn", 10, aux_logits=True)
    state = full.state_dict()
    m = FastRCNN("googlenet_bn", C)
    assert not any(k.startswith(("inception5", "fc.", "aux")) for k in m.trunk_state_keys())
    assert all(k in state for k in m.trunk_state_keys())
    before = m.trunk.conv1.conv.weight.detach().clone()
    m.load_trunk(state)
    after = m.trunk.state_dict()
    assert not torch.equal(before, after["conv1.conv.weight"])
    for k in m.trunk_state_keys():
        assert torch.equal(after[k], state[k]), k
    # also through the constructor, and into a GroupNorm trunk (conv and affine weights)
    gn = FastRCNN("googlenet_bn", C, norm="gn", weights=state)
    assert torch.equal(gn.trunk.inception4e.branch1.conv.weight, state["inception4e.branch1.conv.weight"])
    assert torch.equal(gn.trunk.conv1.bn.weight, state["conv1.bn.weight"])


def test_init_of_another_network_is_one_clear_error():
    state = build_backbone("googlenet", 10).state_dict()
    m = FastRCNN("googlenet_bn", C)
    with pytest.raises(UserError, match="does not match network 'googlenet_bn'"):
        m.load_trunk(state, source="paper.pth")
    bad = dict(build_backbone("googlenet_bn", 10).state_dict())
    bad["conv1.conv.weight"] = bad["conv1.conv.weight"][:32]
    with pytest.raises(UserError, match="shape mismatch"):
        m.load_trunk(bad)


def test_norm_none_folds_batchnorm_statistics():
    """A trunk with norm="none" loaded from batch-norm weights computes what the eval-mode
    batch-norm trunk computes."""
    torch.manual_seed(0)
    bn = trained_looking(FastRCNN("googlenet_bn", C)).eval()
    full = build_backbone("googlenet_bn", 10).state_dict()
    full.update(bn.trunk.state_dict())
    plain = FastRCNN("googlenet_bn", C, norm="none", weights=full).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        a = extract_features(bn.trunk, x, ["inception4e"])["inception4e"]
        b = extract_features(plain.trunk, x, ["inception4e"])["inception4e"]
    assert torch.allclose(a, b, atol=1e-4, rtol=1e-4)


def test_head_is_light():
    m = FastRCNN("googlenet_bn", 4, reduce_channels=128, roi_size=7, fc_dim=1024)
    assert m.head_parameters() < 3_000_000
    assert count_head_macs(m) < 3_000_000  # multiply-adds per proposal


def test_unknown_tap_and_norm_are_clear_errors():
    with pytest.raises(UserError, match="not a stage"):
        FastRCNN("googlenet_bn", C, tap="inception9z")
    with pytest.raises(UserError, match="unknown norm"):
        FastRCNN("googlenet_bn", C, norm="ln")


def test_a_thin_image_is_not_stretched_along_its_length():
    """A 1 x 1000 image (1 x 5000 after the resize to max_side) was stretched to 31 x 31000 for
    the trunk, and two of them (one tall, one wide), padded together in training, asked for
    23 GB; its longer side is kept now (per-axis scales, as boxes need)."""
    m = FastRCNN("googlenet_bn", C)
    k = m.min_input
    for (h, w), want in (((1, 1000), (k, 1000)), ((1000, 1), (1000, k)), ((3, 1000), (k, 1000))):
        out, (sx, sy) = m._resize_small(torch.zeros(3, h, w))
        assert tuple(out.shape[-2:]) == want and (sx, sy) == (want[1] / w, want[0] / h)
    assert m._resize_small(torch.zeros(3, 10, 20))[0].shape[-2:] == (k, 2 * k)  # up to 4:1 the aspect is kept
