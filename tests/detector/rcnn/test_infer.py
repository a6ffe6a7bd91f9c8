"""detector.rcnn.infer: regions scored in chunks of test.batch_size (bounded memory), the
members' probabilities averaged (a Detector of untrained region classifiers)."""

import numpy as np
import pytest
import torch

from detector.io.images import load_image, to_tensor_image
from detector.model import Detector
from detector.rcnn.warp import warp_regions
from tests.detector.helpers import tiny_config, untrained_detector


def _image_and_boxes(mini, n=30, seed=0):
    image = load_image(str(mini / "JPEGImages" / "BloodImage_00000.jpg"))
    rng = np.random.default_rng(seed)
    xy = rng.uniform(0, [560, 400], (n, 2))
    boxes = np.concatenate([xy, xy + rng.uniform(10, 80, (n, 2))], 1).astype(np.float32)
    return image, torch.from_numpy(boxes)


def test_scoring_in_chunks_of_test_batch_size(mini, tmp_path, monkeypatch):
    import detector.rcnn.infer as inference

    cfg = tiny_config(mini, **{"model.bbox_reg": "true"})
    det = Detector.from_checkpoint(untrained_detector(tmp_path / "m.pt", cfg))
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


def test_ensemble_averages_member_probabilities(mini, tmp_path):
    cfg = tiny_config(mini, **{"model.members": 2})
    det = Detector.from_checkpoint(untrained_detector(tmp_path / "m.pt", cfg, members=2))
    assert len(det.ensemble.members) == 2
    image, boxes = _image_and_boxes(mini, n=12)
    probs, deltas = det.score_regions(image, boxes)
    crops = warp_regions(to_tensor_image(image), boxes, cfg.model.rcnn.input_size, cfg.model.rcnn.context_pad)
    with torch.no_grad():
        each = [m(crops).logits.softmax(1) for m in det.ensemble.members]
    assert not torch.allclose(each[0], each[1], atol=1e-3)  # the members do differ
    assert torch.allclose(probs, (each[0] + each[1]) / 2, atol=1e-6) and deltas is None


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_scores_under_bf16_autocast_close_to_the_cpu(mini, tmp_path):
    """On CUDA the networks run under bfloat16 autocast; the scores come back float32 and close
    to the CPU's float32 ones."""
    cfg = tiny_config(mini, **{"model.bbox_reg": "true"})
    path = untrained_detector(tmp_path / "m.pt", cfg)
    image, boxes = _image_and_boxes(mini, n=20)
    p_cpu, d_cpu = Detector.from_checkpoint(path, device="cpu").score_regions(image, boxes)
    p_gpu, d_gpu = Detector.from_checkpoint(path, device="cuda").score_regions(image, boxes)
    assert p_gpu.dtype == torch.float32 and p_gpu.device.type == "cpu"
    assert torch.allclose(p_gpu, p_cpu, atol=0.05) and torch.allclose(d_gpu, d_cpu, atol=0.05)
