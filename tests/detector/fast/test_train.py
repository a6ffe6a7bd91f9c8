"""FastBatcher, forward and loss: resizing and sampling, padding, no-foreground batches,
the member builder, and a loss that goes down."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torchvision.models.detection._utils import BoxCoder

from backbone import build_backbone
from backbone.config import apply_overrides
from detector.config import DetectorConfig
from detector.fast.model import FastRCNN
from detector.boxes import BOX_CODER_WEIGHTS
from detector.fast.train import FastBatcher, build_member, forward, loss
from detector.sampling import label_regions, sample_regions

from .helpers import blob_image, flip_boxes, to_tensor_image

C = 3


@dataclass
class Rec:
    path: str
    boxes: np.ndarray
    labels: np.ndarray
    width: int
    height: int


def batcher(records, proposals, images, **kw):
    kw.setdefault("min_side", 64)
    kw.setdefault("max_side", 200)
    return FastBatcher(records, proposals, label_regions=label_regions, sample_regions=sample_regions,
                       flip_boxes=flip_boxes, to_tensor_image=to_tensor_image, load_image=images.__getitem__, **kw)


def two_records():
    a = Rec("a", np.array([[16, 20, 40, 44]], np.float32), np.array([2]), 64, 48)
    b = Rec("b", np.array([[10, 10, 30, 40], [40, 5, 70, 25]], np.float32), np.array([1, 3]), 80, 64)
    images = {"a": blob_image(48, 64, (16, 20, 40, 44)), "b": blob_image(64, 80, (10, 10, 30, 40), seed=1)}
    props = [np.array([[15, 19, 41, 45], [0, 0, 20, 20], [30, 30, 60, 47]], np.float32),
             np.array([[11, 11, 31, 39], [41, 6, 69, 26], [50, 40, 79, 63], [0, 30, 20, 60]], np.float32)]
    return [a, b], props, images


def test_batch_resizes_samples_and_encodes():
    records, props, images = two_records()
    b = batcher(records, props, images, min_side=96, max_side=128, rois_per_image=8, fg_fraction=0.5, flip=False)
    batch = b.batch([0, 1], torch.Generator().manual_seed(0))
    # a 64 x 48: x2; b 80 x 64: x1.5; both within the longer-side cap of 128
    assert batch.image_sizes == [(96, 128), (96, 120)]
    capped = batcher(records, props, images, min_side=96, max_side=120, flip=False).batch([0], torch.Generator())
    assert capped.image_sizes == [(90, 120)]  # x2 would make a 128 px wide: x1.875
    assert batch.images.shape == (2, 3, 96, 128)
    assert torch.all(batch.images[1, :, :, 120:] == 0)  # padding is zero (the mean)
    assert [len(x) for x in batch.boxes] == [8, 8] and batch.labels.shape == (16,) and batch.targets.shape == (16, 4)
    coder = BoxCoder(BOX_CODER_WEIGHTS)
    gts = [torch.as_tensor(records[0].boxes) * 2, torch.as_tensor(records[1].boxes) * 1.5]
    labels = batch.labels.split([8, 8])
    targets = batch.targets.split([8, 8])
    for rois, y, t, gt in zip(batch.boxes, labels, targets, gts):
        fg = y > 0
        assert fg.any() and (~fg).any()
        assert torch.all(t[~fg] == 0)
        decoded = coder.decode_single(t[fg], rois[fg])
        best = torch.cdist(decoded, gt).min(dim=1).values  # every foreground target points at a gt box
        assert torch.all(best < 1e-3)
    # ground-truth boxes are among the candidates: image a has one proposal at IoU >= 0.5
    # and the gt itself, and its 4 foreground draws can only repeat those
    assert (labels[0] == 2).sum() >= 1


def test_flip_mirrors_boxes_and_image():
    records, props, images = two_records()
    b = batcher(records[:1], props[:1], images, min_side=48, rois_per_image=4, fg_fraction=1.0, flip=True)
    flipped = None
    for seed in range(10):
        batch = b.batch([0], torch.Generator().manual_seed(seed))
        fg = batch.boxes[0][batch.labels > 0]
        coder = BoxCoder(BOX_CODER_WEIGHTS)
        gt = coder.decode_single(batch.targets[batch.labels > 0], fg)
        if torch.allclose(gt, torch.tensor([[64 - 40, 20, 64 - 16, 44.0]]).expand_as(gt), atol=1e-3):
            flipped = batch
            break
    assert flipped is not None
    # the object (red) is now at x 24..48
    assert flipped.images[0, 0, 30, 30] > 1.5 and flipped.images[0, 0, 30, 20] < 1.0


def test_crop_keeps_the_rois_inside_the_window():
    records, props, images = two_records()
    b = batcher(records, props, images, min_side=96, max_side=200, rois_per_image=6, flip=False, crop=64,
                crop_tolerance=0.0)
    coder = BoxCoder(BOX_CODER_WEIGHTS)
    full = batcher(records, props, images, min_side=96, max_side=200, flip=False).batch([1], torch.Generator())
    checked = 0
    for seed in range(12):
        batch = b.batch([1], torch.Generator().manual_seed(seed))
        if batch is None:
            continue
        assert batch.images.shape == (1, 3, 64, 64) and batch.image_sizes == [(64, 64)]
        rois = batch.boxes[0]
        assert torch.all(rois >= -1e-4) and torch.all(rois <= 64 + 1e-4)
        # the crop is a window of the full resized image: its pixels, shifted
        x0 = y0 = None
        for dy in range(full.images.shape[2] - 63):
            for dx in range(full.images.shape[3] - 63):
                if torch.equal(full.images[0, :, dy:dy + 64, dx:dx + 64], batch.images[0]):
                    x0, y0 = dx, dy
        assert x0 is not None
        fg = batch.labels > 0
        gt = torch.as_tensor(records[1].boxes) * 1.5 - torch.tensor([x0, y0, x0, y0])
        if fg.any():
            decoded = coder.decode_single(batch.targets[fg], rois[fg])
            assert torch.all(torch.cdist(decoded, gt).min(dim=1).values < 1e-3)
            checked += 1
    assert checked >= 2


def test_batch_without_regions_is_none():
    rec = Rec("a", np.zeros((0, 4), np.float32), np.zeros(0, np.int64), 64, 48)
    b = batcher([rec], [np.zeros((0, 4), np.float32)], {"a": blob_image(48, 64)})
    assert b.batch([0], torch.Generator().manual_seed(0)) is None


def test_no_foreground_batch_gives_finite_loss_and_every_gradient():
    rec = Rec("a", np.zeros((0, 4), np.float32), np.zeros(0, np.int64), 64, 48)
    props = [np.array([[0, 0, 20, 20], [30, 10, 60, 40]], np.float32)]
    b = batcher([rec], props, {"a": blob_image(48, 64)}, rois_per_image=4)
    batch = b.batch([0], torch.Generator().manual_seed(0))
    assert torch.all(batch.labels == 0)
    torch.manual_seed(0)
    net = FastRCNN("googlenet_bn", C).train()
    total, parts = loss(forward(net, batch), batch)
    assert torch.isfinite(total) and parts["box"] == 0.0
    total.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert not missing, missing


def test_pyramid_level_without_boxes_still_gets_gradients():
    records, props, images = two_records()
    b = batcher(records, props, images, rois_per_image=4, flip=False)
    batch = b.batch([0, 1], torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    net = FastRCNN("googlenet_bn", C, tap=["inception3b", "inception4e"]).train()
    assert set(net._levels(torch.cat(batch.boxes)).tolist()) == {0}  # all boxes < 224 px: stride 8
    total, _ = loss(forward(net, batch), batch)
    total.backward()
    missing = [n for n, p in net.named_parameters() if p.grad is None]
    assert not missing, missing


def test_loss_matches_torchvision_fastrcnn_loss():
    from torchvision.models.detection.roi_heads import fastrcnn_loss

    records, props, images = two_records()
    b = batcher(records, props, images, rois_per_image=8, flip=False)
    batch = b.batch([0, 1], torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    logits = torch.randn(16, C + 1, generator=g)
    deltas = torch.randn(16, C, 4, generator=g)
    from detector.fast.model import FastOutputs
    ours, _ = loss(FastOutputs(logits, deltas, []), batch)
    # torchvision's layout has a background box first: (N, 4 (C + 1))
    tv_deltas = torch.cat([torch.zeros(16, 1, 4), deltas], 1).reshape(16, -1)
    cls, box = fastrcnn_loss(logits, tv_deltas, [batch.labels], [batch.targets])
    assert torch.allclose(ours, cls + box)


def _fast_config(*sets):
    return apply_overrides(DetectorConfig(), ["model.rcnn=null", "model.kind=fast", "model.arch=googlenet_bn",
                                              "model.aux_logits=false", *sets])


def test_build_member_reads_the_config_and_loads_init():
    state = build_backbone("googlenet_bn", 10).state_dict()
    seen = []

    def reader(path, arch):
        seen.append((path, arch))
        return state

    cfg = _fast_config("model.fast.tap=[inception3b]", "model.fast.norm=gn", "model.init=x.pt")
    m = build_member(cfg, C, 0, init_weights_file=reader)
    assert seen == [("x.pt", "googlenet_bn")] and m.taps == ["inception3b"] and m.norm == "gn"
    assert torch.equal(m.trunk.conv3.conv.weight, state["conv3.conv.weight"])
    build_member(cfg, C, 0, inference=True, init_weights_file=reader)  # weights from a checkpoint: no init
    assert len(seen) == 1

    m2 = build_member(_fast_config("model.fast.tap=[inception4e,inception3b]", "model.fast.fc_dim=256"), C, 0)
    assert m2.taps == ["inception3b", "inception4e"] and m2.fpn is not None and m2.norm == "bn"
    a, b = build_member(_fast_config(), C, 7), build_member(_fast_config(), C, 7)  # same seed, same weights
    assert torch.equal(a.predictor.cls_score.weight, b.predictor.cls_score.weight)


def test_build_member_defaults_are_the_schemas():
    """No defaults table beside the config schema: a default config gives the schema's values."""
    f = _fast_config().model.fast
    m = build_member(_fast_config(), C, 0)
    assert m.taps == list(f.tap) and m.norm == f.norm and m.roi_size == f.roi_size


def test_loss_decreases_on_a_tiny_image():
    box = (16, 20, 40, 44)
    rec = Rec("a", np.array([box], np.float32), np.array([2]), 64, 64)
    rng = np.random.default_rng(0)
    jitter = np.array(box, np.float32) + rng.normal(0, 3, (12, 4)).astype(np.float32)
    rand_xy = rng.uniform(0, 40, (12, 2))
    rand = np.concatenate([rand_xy, rand_xy + rng.uniform(10, 24, (12, 2))], 1).astype(np.float32)
    b = batcher([rec], [np.concatenate([jitter, rand])], {"a": blob_image(64, 64, box)}, min_side=64, rois_per_image=16)
    torch.manual_seed(0)
    net = FastRCNN("googlenet_bn", C, tap="inception3b", fc_dim=128).train()
    opt = torch.optim.SGD(net.parameters(), lr=0.01, momentum=0.9)
    gen = torch.Generator().manual_seed(0)
    losses = []
    for _ in range(12):
        batch = b.batch([0, 0], gen)
        total, _ = loss(forward(net, batch), batch)
        opt.zero_grad()
        total.backward()
        opt.step()
        losses.append(total.item())
    assert np.mean(losses[-3:]) < 0.5 * losses[0], losses
