"""The Python API of a trained detector: :class:`Detector` (proposals -> the kind's region
scores -> post-processing) and its output, :class:`Detections`.

>>> det = Detector.from_checkpoint("model.pt")
>>> d = det("image.jpg")          # or an (H, W, 3) uint8 RGB array
>>> d.boxes, d.scores, d.names
"""

from __future__ import annotations

import copy
import os
import time
from dataclasses import dataclass, field

import cv2
import numpy as np
import torch
from torch import nn

from backbone.config import from_dict
from backbone.devices import to_device_format
from backbone.errors import UserError
from proposals import propose
from proposals.multibox import multibox_from_checkpoint

from .assets import default_model_path
from .config import WORKING_MAX_SIDE, DetectorConfig, ProposalConfig, TestConfig  # noqa: F401 (WORKING_MAX_SIDE: re-exported)
from .ensemble import Ensemble
from .io.checkpoints import load_detector
from .io.images import load_image
from .kinds import kind_of
from .postprocess import postprocess

#: images per :meth:`Detector.detect_batch` call in ``detect FOLDER`` and ``eval-map --split``
#: (``--batch``): 1, the faster on the CPU (issue 23: a batch of 4 same-size BCCD images through
#: the bundled fast model's trunk was slower per image than 4 single calls, the feature maps of
#: a batch outgrowing the caches; bench/bench_detect.py measures it); a GPU may want more
DETECT_BATCH = 1


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
        """The project's detections JSON object for this image (see docs/DESIGN.md)."""
        return {"image": image, "detections": [
            {"box": [round(float(v), 2) for v in b], "score": round(float(s), 6), "label": self.classes[int(l) - 1]}
            for b, s, l in zip(self.boxes, self.scores, self.labels)]}


class Detector:
    """A trained detector of either kind: proposals, the member ensemble, post-processing."""

    def __init__(self, cfg: DetectorConfig, classes: list[str], members: list[nn.Module],
                 multibox=None, device: str | torch.device = "cpu"):
        self.cfg = cfg
        self.classes = list(classes)
        self.device = torch.device(device)
        self.kind = kind_of(cfg)
        self.ensemble = to_device_format(Ensemble(members).to(self.device).eval(), self.device)
        self.multibox = multibox

    @classmethod
    def from_checkpoint(cls, path: str | None = None, device: str | torch.device = "cpu", members: int = 0) -> "Detector":
        """Load a detector checkpoint (None: the bundled default model; ``members``: use only
        the first N ensemble members)."""
        if path is not None and not os.fspath(path).strip():  # "" ran the bundled model without a word
            raise UserError(f"model {os.fspath(path)!r}: an empty path (give none for the bundled model)")
        path = path or default_model_path()
        ck = load_detector(path)
        cfg = from_dict(DetectorConfig, ck["config"], source=f"model {path}")
        kind = kind_of(cfg)
        _check_members(members, len(ck["members"]), f"model {path}: ")
        members_ = []
        states = ck["members"][:members] if members else ck["members"]
        for i, state in enumerate(states):
            m = kind.build_member(cfg, len(ck["classes"]), inference=True)
            try:
                m.load_state_dict(state)
            except RuntimeError as e:
                raise UserError(f"model {path}: member {i} does not fit its config ({_first_key_problem(e)})") from None
            members_.append(m)
        multibox = None
        if ck.get("multibox") is not None:
            multibox = multibox_from_checkpoint(ck["multibox"], device=device)
        return cls(cfg, ck["classes"], members_, multibox=multibox, device=device)

    def configured(self, *, test: TestConfig | None = None, proposals: ProposalConfig | None = None,
                   multibox="keep", members: int = 0) -> "Detector":
        """A new :class:`Detector` sharing this one's networks, with other test settings,
        proposals (``multibox``: a network, None, or ``"keep"``) or only the first ``members``;
        this one is left unchanged."""
        new = copy.copy(self)
        new.cfg = copy.deepcopy(self.cfg)
        if test is not None:
            new.cfg.test = copy.deepcopy(test)
        if proposals is not None:
            new.cfg.proposals = copy.deepcopy(proposals)
        if multibox != "keep":
            new.multibox = multibox
        if members:
            _check_members(members, len(self.ensemble.members))
            new.ensemble = Ensemble(list(self.ensemble.members)[:members])
        return new

    # -- stages -------------------------------------------------------------------------------
    def propose(self, image: np.ndarray, times: dict | None = None) -> np.ndarray:
        """The kind's own proposals when its model makes them (``proposals.method: trunk``: the
        members' trunks run here, ``times`` gets ``trunk`` and ``proposals``), else the
        configured ones."""
        boxes = self.kind.propose(self.ensemble, self.cfg, image, self.device, times)
        return propose(image, self.cfg.proposals, multibox=self.multibox) if boxes is None else boxes

    def score_regions(self, image: np.ndarray, boxes: torch.Tensor, times: dict | None = None):
        """Ensemble probabilities (N, C + 1) and mean deltas (N, C, 4) or None for ``boxes``
        (in bounded chunks); ``times`` gets the kind's stage seconds."""
        probs, deltas = self.kind.score_regions(self.ensemble, self.cfg, image, boxes, self.device, times)
        if probs is None:
            return torch.zeros((0, len(self.classes) + 1)), None
        return probs, deltas

    def __call__(self, image, proposals: np.ndarray | None = None) -> Detections:
        """Detect objects in ``image`` (a path, or an (H, W, 3) uint8 RGB array).

        An image longer than :data:`WORKING_MAX_SIDE` is scaled down to it first (proposals,
        given or computed, and scoring see the smaller copy); the boxes returned are in the
        original image's pixels either way. ``proposals`` are in the original's pixels."""
        times = {}
        t0 = time.perf_counter()
        if isinstance(image, (str, os.PathLike)):
            image = load_image(image)
        height, width = image.shape[:2]
        work, sx, sy = working_copy(image)
        if proposals is not None and (sx != 1.0 or sy != 1.0):
            proposals = np.array(proposals, dtype=np.float32).reshape(-1, 4) * np.array([sx, sy, sx, sy], np.float32)
        times["load"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        if proposals is None:
            proposals = self.propose(work, times)
        if "proposals" not in times:  # the kind's own proposals timed themselves (their trunk apart)
            times["proposals"] = time.perf_counter() - t0
        boxes = torch.as_tensor(np.array(proposals, dtype=np.float32).reshape(-1, 4))[: self.cfg.proposal_limit]
        probs, deltas = self.score_regions(work, boxes, times)
        return self._finish(probs, boxes, deltas, work.shape[:2], (sx, sy), (height, width), times)

    def _finish(self, probs, boxes, deltas, work_hw, factors, original_hw, times: dict) -> Detections:
        """Post-processing of one image's scores, boxes back in the original's pixels."""
        (sx, sy), (height, width) = factors, original_hw
        t0 = time.perf_counter()
        if not self.cfg.test.bbox_reg:
            deltas = None
        b, s, l = postprocess(probs, boxes, deltas, work_hw, self.cfg.test)
        b = b.numpy().astype(np.float32)
        if sx != 1.0 or sy != 1.0:  # back to the original pixels
            b = b / np.array([sx, sy, sx, sy], np.float32)
            b = np.clip(b, 0.0, np.array([width, height, width, height], np.float32))
        times["postprocess"] = time.perf_counter() - t0
        return Detections(b, s.numpy().astype(np.float32), l.numpy().astype(np.int64), self.classes, times)

    def image_proposals(self, image: np.ndarray) -> np.ndarray:
        """The boxes :meth:`__call__` would score for ``image`` (before ``test.max_proposals``),
        in its own pixels: :meth:`propose` on the working copy, scaled back (``propose`` and
        ``eval-proposals --model``)."""
        work, sx, sy = working_copy(image)
        boxes = np.array(self.propose(work), dtype=np.float32).reshape(-1, 4)
        if sx != 1.0 or sy != 1.0:
            height, width = image.shape[:2]
            boxes = np.clip(boxes / np.array([sx, sy, sx, sy], np.float32), 0.0,
                            np.array([width, height, width, height], np.float32))
        return boxes

    @property
    def batches_trunk(self) -> bool:
        """Whether :meth:`detect_batch` runs several images per trunk call: a kind scoring in
        two phases (the fast kind: features, then the head) at one test scale, with this
        class's scoring (a subclass scoring elsewhere, e.g. onnxruntime, runs image by image)."""
        return (type(self).score_regions is Detector.score_regions and self.ensemble is not None
                and hasattr(self.kind, "score_batch") and self.kind.batches_trunk(self.ensemble, self.cfg))

    def detect_batch(self, images: list, proposals: list | None = None) -> list[Detections]:
        """:meth:`__call__` for several images (arrays or paths; ``proposals``: None, or one
        array or None per image, in its original pixels): the same detections (boxes within
        0.01 px, scores 1e-5: only the trunk's batch size differs), in order.

        Images whose trunk input has the same size share one ``features`` call per member (the
        fast kind's two phases: each image's head runs on its own maps, as :meth:`__call__`
        does); kinds without two-phase scoring (R-CNN) and test pyramids run image by image.
        ``seconds["trunk"]`` is the group's trunk time shared out evenly."""
        proposals = list(proposals) if proposals is not None else [None] * len(images)
        if len(proposals) != len(images):
            raise ValueError(f"{len(images)} images but {len(proposals)} proposal arrays")
        if not self.batches_trunk or len(images) < 2:
            return [self(im, proposals=p) for im, p in zip(images, proposals)]
        todo = []  # per image: what __call__ computes before scoring
        for image, props in zip(images, proposals):
            times = {}
            t0 = time.perf_counter()
            if isinstance(image, (str, os.PathLike)):
                image = load_image(image)
            height, width = image.shape[:2]
            work, sx, sy = working_copy(image)
            if props is not None and (sx != 1.0 or sy != 1.0):
                props = np.array(props, dtype=np.float32).reshape(-1, 4) * np.array([sx, sy, sx, sy], np.float32)
            times["load"] = time.perf_counter() - t0
            t0 = time.perf_counter()
            if props is None:
                props = self.propose(work)
            times["proposals"] = time.perf_counter() - t0
            boxes = torch.as_tensor(np.array(props, dtype=np.float32).reshape(-1, 4))[: self.cfg.proposal_limit]
            todo.append({"work": work, "boxes": boxes, "f": (sx, sy), "hw": (height, width), "times": times})
        scored = self.kind.score_batch(self.ensemble, self.cfg, [t["work"] for t in todo], [t["boxes"] for t in todo],
                             self.device, [t["times"] for t in todo])
        n_cls = len(self.classes)
        out = []
        for item, (probs, deltas) in zip(todo, scored):
            if probs is None:  # no boxes: as score_regions
                probs, deltas = torch.zeros((0, n_cls + 1)), None
            out.append(self._finish(probs, item["boxes"], deltas, item["work"].shape[:2], item["f"], item["hw"],
                                    item["times"]))
        return out


def working_copy(image: np.ndarray, max_side: int = WORKING_MAX_SIDE) -> tuple[np.ndarray, float, float]:
    """``image`` scaled down (area interpolation) so that its longer side is at most
    ``max_side`` (:data:`detector.config.WORKING_MAX_SIDE`, the detector's working side; selective
    search then resizes to its own 500 px working width), and the x and y scale factors (new
    size / old size; 1.0 when unchanged)."""
    height, width = image.shape[:2]
    if max(height, width) <= max_side:
        return image, 1.0, 1.0
    s = max_side / max(height, width)
    w, h = max(1, int(round(width * s))), max(1, int(round(height * s)))
    small = cv2.resize(np.ascontiguousarray(image), (w, h), interpolation=cv2.INTER_AREA)
    return small, w / width, h / height


def _check_members(wanted: int, have: int, where: str = "") -> None:
    """``test.members`` N (the first N members only) of a model with ``have``: N <= have."""
    if wanted > have:
        raise UserError(f"{where}test.members {wanted}: the model has {have} ensemble member"
                        f"{'s' if have != 1 else ''}")


def _first_key_problem(e: RuntimeError) -> str:
    """The first missing, unexpected or mis-shaped key of a failed ``load_state_dict``."""
    text = str(e)
    for marker in ("Missing key(s) in state_dict:", "Unexpected key(s) in state_dict:", "size mismatch for"):
        i = text.find(marker)
        if i >= 0:
            rest = text[i + len(marker):].strip()
            if marker.startswith("size"):
                return "size mismatch for " + rest.split("\n")[0].strip()[:200]
            first = rest.split(",")[0].strip().strip('"').strip(".")
            return f"{marker.split(' in ')[0].lower()} {first}"
    return text.strip().splitlines()[0][:200]
