"""Detection: proposals -> warp -> ensemble scores -> (box regression) -> per-class NMS.

:class:`Detector` is the Python API (``Detector.from_checkpoint(path)(image)``);
:func:`detect_split` runs it over a dataset split with cached proposals (``eval-map --split``).
"""

from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import Tensor
from torchvision.models.detection._utils import BoxCoder
from torchvision.ops import batched_nms, clip_boxes_to_image, remove_small_boxes

from backbone.errors import UserError

from .checkpoint import load_detector
from .config import from_dict
from .images import load_image
from .region_classifier import Ensemble, RegionClassifier
from .schema import DetectorConfig, TestConfig
from .warp import to_tensor_image, warp_regions

#: Fast R-CNN's box-offset scaling (the regression targets' inverse standard deviations)
BOX_CODER_WEIGHTS = (10.0, 10.0, 5.0, 5.0)


@dataclass
class Detections:
    """Detections of one image: boxes (K, 4) float32 xyxy in its pixels, scores (K,), labels (K,) 1..C."""

    boxes: np.ndarray
    scores: np.ndarray
    labels: np.ndarray
    classes: list[str]
    seconds: dict = field(default_factory=dict)   # seconds per stage: load, proposals, warp, network, postprocess

    @property
    def names(self) -> list[str]:
        return [self.classes[i - 1] for i in self.labels]

    def to_json(self, image: str) -> dict:
        """The project's detections JSON object for this image (see DESIGN.md)."""
        return {"image": image, "detections": [
            {"box": [round(float(v), 2) for v in b], "score": round(float(s), 6), "label": self.classes[int(l) - 1]}
            for b, s, l in zip(self.boxes, self.scores, self.labels)]}


def postprocess(probs: Tensor, boxes: Tensor, deltas: Tensor | None, image_size: tuple[int, int], test: TestConfig):
    """Per-class detections from region scores.

    probs (N, C + 1) class probabilities; boxes (N, 4) the regions; deltas (N, C, 4) or None.
    Every (region, class) pair above ``test.score_thr`` is a candidate (with its class's
    regressed box when there is regression); greedy NMS per class at ``test.nms_iou``; the
    ``test.max_per_image`` best are kept. Returns boxes (K, 4), scores (K,), labels (K,) 1..C.
    """
    n, c1 = probs.shape
    num_classes = c1 - 1
    if n == 0:
        return torch.zeros((0, 4)), torch.zeros(0), torch.zeros(0, dtype=torch.int64)
    if deltas is not None:
        coder = BoxCoder(BOX_CODER_WEIGHTS)
        cand = coder.decode_single(deltas.reshape(n * num_classes, 4), boxes.repeat_interleave(num_classes, 0))
        cand = clip_boxes_to_image(cand, image_size).view(n, num_classes, 4)
    else:
        cand = boxes[:, None, :].expand(n, num_classes, 4)
    scores = probs[:, 1:]
    labels = torch.arange(1, c1).expand(n, num_classes)
    keep = scores > test.score_thr
    cand, scores, labels = cand[keep], scores[keep], labels[keep]
    ok = remove_small_boxes(cand, 1e-2)
    cand, scores, labels = cand[ok], scores[ok], labels[ok]
    kept = batched_nms(cand, scores, labels, test.nms_iou)[: test.max_per_image]
    return cand[kept], scores[kept], labels[kept]


class Detector:
    """A trained R-CNN detector: proposals, region classifier ensemble, post-processing.

    >>> det = Detector.from_checkpoint("model.pt")
    >>> d = det("image.jpg")          # or an (H, W, 3) uint8 RGB array
    >>> d.boxes, d.scores, d.names
    """

    def __init__(self, cfg: DetectorConfig, classes: list[str], members: list[RegionClassifier],
                 multibox=None, device: str | torch.device = "cpu"):
        self.cfg = cfg
        self.classes = list(classes)
        self.device = torch.device(device)
        self.ensemble = Ensemble(members).to(self.device).eval()
        if self.device.type == "cpu":
            self.ensemble = self.ensemble.to(memory_format=torch.channels_last)
        self.multibox = multibox

    @classmethod
    def from_checkpoint(cls, path: str, device: str | torch.device = "cpu", members: int = 0) -> "Detector":
        """Load a detector checkpoint (``members``: use only the first N ensemble members)."""
        ck = load_detector(path)
        cfg = from_dict(DetectorConfig, ck["config"], source=f"model {path}")
        members_ = []
        states = ck["members"][:members] if members else ck["members"]
        for i, state in enumerate(states):
            m = RegionClassifier(cfg.model.arch, len(ck["classes"]), aux_logits=False, bbox_reg=cfg.model.bbox_reg,
                                 transform_input=bool(cfg.model.transform_input))
            try:
                m.load_state_dict(state)
            except RuntimeError as e:
                raise UserError(f"model {path}: member {i} does not fit its config ({str(e).splitlines()[0][:160]})") from None
            members_.append(m)
        multibox = None
        if ck.get("multibox") is not None:
            from proposals.multibox import multibox_from_checkpoint
            multibox = multibox_from_checkpoint(ck["multibox"], device=device)
        return cls(cfg, ck["classes"], members_, multibox=multibox, device=device)

    # -- stages -------------------------------------------------------------------------------
    def propose(self, image: np.ndarray) -> np.ndarray:
        from proposals import propose
        return propose(image, self.cfg.proposals, multibox=self.multibox)

    def _sync(self) -> None:
        """Wait for queued CUDA work, so that a stage's time is its own."""
        if self.device.type == "cuda":
            torch.cuda.synchronize(self.device)

    @torch.no_grad()
    def score_regions(self, image: np.ndarray, boxes: Tensor, times: dict | None = None):
        """Ensemble probabilities (N, C + 1) and mean deltas (N, C, 4) or None for ``boxes``.

        Regions are warped and scored ``test.batch_size`` at a time (bounded memory).
        ``times``: gets the seconds spent warping (``warp``) and in the networks (``network``)."""
        m = self.cfg.model
        t_warp = t_net = 0.0
        t0 = time.perf_counter()
        t = to_tensor_image(image, self.device)
        boxes = boxes.to(self.device)
        self._sync()
        t_warp += time.perf_counter() - t0
        probs, deltas = [], []
        step = max(1, self.cfg.test.batch_size)
        for start in range(0, len(boxes), step):
            t0 = time.perf_counter()
            crops = warp_regions(t, boxes[start:start + step], m.input_size, m.context_pad)
            self._sync()
            t1 = time.perf_counter()
            p, d = self.ensemble(crops)
            probs.append(p.cpu())  # .cpu() waits for the device
            if d is not None:
                deltas.append(d.cpu())
            t_warp += t1 - t0
            t_net += time.perf_counter() - t1
        if times is not None:
            times["warp"], times["network"] = t_warp, t_net
        if not probs:
            return torch.zeros((0, len(self.classes) + 1)), None
        return torch.cat(probs), (torch.cat(deltas) if deltas else None)

    def __call__(self, image, proposals: np.ndarray | None = None) -> Detections:
        """Detect objects in ``image`` (a path, or an (H, W, 3) uint8 RGB array)."""
        times = {}
        t0 = time.perf_counter()
        if isinstance(image, (str, os.PathLike)):
            image = load_image(image)
        times["load"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        if proposals is None:
            proposals = self.propose(image)
        times["proposals"] = time.perf_counter() - t0
        boxes = torch.as_tensor(np.array(proposals, dtype=np.float32).reshape(-1, 4))[: self.cfg.test.max_proposals]
        probs, deltas = self.score_regions(image, boxes, times)  # fills times["warp"], times["network"]
        t0 = time.perf_counter()
        if not self.cfg.test.bbox_reg:
            deltas = None
        b, s, l = postprocess(probs, boxes, deltas, image.shape[:2], self.cfg.test)
        times["postprocess"] = time.perf_counter() - t0
        return Detections(b.numpy().astype(np.float32), s.numpy().astype(np.float32), l.numpy().astype(np.int64),
                          self.classes, times)


def resolve_model_path(model_path: str | None) -> str:
    """``None`` -> the bundled default model."""
    if model_path:
        return model_path
    from .assets import default_model_path
    return default_model_path()


def detect_split(cfg: DetectorConfig, split: str, model_path: str | None = None, cache_dir: str | None = None,
                 device: str = "auto", detector: Detector | None = None, progress: bool = True,
                 proposals_from_config: bool = False, timing: dict | None = None):
    """Run detection over ``split`` of ``cfg.data`` with cached proposals.

    The model's own proposal / network settings come from its checkpoint; ``cfg`` gives the
    data and the test settings (NMS, threshold). Under ``torchrun`` each rank takes a shard
    of the images and every rank gets the gathered result. ``proposals_from_config``: use
    ``cfg.proposals`` (and its MultiBox checkpoint) instead of the checkpoint's. ``timing``: a
    dict filled with mean seconds per image and stage (load, proposals, warp, network,
    postprocess; ``proposals`` = the time the cached proposals took when they were computed;
    under torchrun, rank 0's shard). Returns (dataset, detections JSON list, one object per
    record, in order, ``image`` = record path).
    """
    from .cli.common import resolve_device
    from .datasets import load_dataset
    from .distributed import all_gather_list, barrier, dist_info, init_distributed
    from .proposal_runner import ensure_proposals

    if detector is None:
        dev = resolve_device(device)
        init_distributed(dev)
        detector = Detector.from_checkpoint(resolve_model_path(model_path), dev)
    detector.cfg.test = cfg.test
    if proposals_from_config:
        detector.cfg.proposals, detector.multibox = cfg.proposals, None
    if cfg.test.members:
        detector.ensemble.members = detector.ensemble.members[: cfg.test.members]
    dataset = load_dataset(cfg.data, split)
    if dataset.classes != detector.classes:
        missing = [c for c in dataset.classes if c not in detector.classes]
        if missing or len(dataset.classes) != len(detector.classes):
            raise UserError(f"model classes {detector.classes} do not match the data's classes {dataset.classes}")
    rank, world = dist_info()
    if rank == 0:  # rank 0 fills the cache, the others read it
        ensure_proposals(dataset, detector.cfg.proposals, cache_dir=cache_dir, device=str(detector.device),
                         multibox=detector.multibox)
    barrier()
    props, prop_secs = ensure_proposals(dataset, detector.cfg.proposals, cache_dir=cache_dir,
                                        device=str(detector.device), multibox=detector.multibox, with_seconds=True)
    mine = list(range(rank, len(dataset), world))
    from tqdm import tqdm
    out = {}
    for i in tqdm(mine, desc=f"detect {split}", disable=not progress or rank != 0 or not _isatty()):
        rec = dataset.records[i]
        t0 = time.perf_counter()
        image = load_image(rec.path)
        t_load = time.perf_counter() - t0
        d = detector(image, proposals=props[i])
        if timing is not None:
            d.seconds.update(load=t_load, proposals=float(prop_secs[i]))
            for k, v in d.seconds.items():
                timing[k] = timing.get(k, 0.0) + v / len(mine)
        # remap labels to the dataset's class order (same names, possibly other order)
        names = d.names
        obj = d.to_json(rec.path)
        for det, name in zip(obj["detections"], names):
            det["label"] = name
        out[i] = obj
    gathered = all_gather_list(list(out.items()))
    result = dict(gathered)
    return dataset, [result[i] for i in range(len(dataset))]


def _isatty() -> bool:
    import sys
    return sys.stderr.isatty()
