"""R-CNN, the paper's detector kind: every proposal warped to S x S (with context padding) and
classified by an ensemble of Inception networks (:class:`RegionClassifier`).

It meets :class:`detector.kinds.DetectorKind` (for the shared engine and
:class:`detector.Detector`): ``build_member``, ``RegionBatcher``, ``forward``, ``region_loss``,
``param_groups``, ``propose`` and ``score_regions``."""

from .infer import propose, score_regions
from .region_classifier import AUX_TAPS, RegionClassifier
from .train import (
           RegionBatch,
           RegionBatcher,
           build_member,
           forward,
           param_groups,
           region_loss,
)
from .warp import dilate_boxes, warp_regions

__all__ = ["AUX_TAPS", "RegionClassifier", "RegionBatch", "RegionBatcher", "build_member", "forward", "param_groups", "region_loss",
           "propose", "score_regions", "dilate_boxes", "warp_regions"]
