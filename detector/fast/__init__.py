"""The shared-feature detector kind ``fast``: Fast R-CNN (Girshick 2015) on the Inception
trunk. One trunk pass per image, every proposal pooled from its feature map by
``roi_align`` and scored by a light head; same proposals, ensemble and outputs as ``rcnn``.

- :mod:`.model`: :class:`FastRCNN` (trunk, reduction or FPN, roi pooling, box head, predictor)
- :mod:`.train`: :func:`build_member` (from a detector config), :class:`FastBatcher`,
  :func:`forward`, :func:`loss`
- :mod:`.infer`: :func:`score_image` (ensemble probabilities and deltas for one image, in the
  ensemble's two-phase form)
- :mod:`.proposer`: the trunk proposal head (``proposals.method: trunk``, the one pass)
- :mod:`.batched`: :func:`score_batch` (several images per trunk call, ``Detector.detect_batch``)
- :mod:`.kind`: the kind's pieces (:class:`detector.kinds.DetectorKind`) read from a detector
  config, for the engine and ``Detector``
"""

from .kind import (
           RegionBatcher,
           batches_trunk,
           build_member,
           forward,
           param_groups,
           propose,
           region_loss,
           score_batch,
           score_regions,
)
from .model import FastOutputs, FastRCNN

__all__ = ["FastRCNN", "FastOutputs", "RegionBatcher", "batches_trunk", "build_member", "forward", "param_groups",
           "propose", "region_loss", "score_batch", "score_regions"]
