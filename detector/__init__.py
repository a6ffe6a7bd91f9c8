"""Detection on Inception: two detector kinds on the same proposals and networks (``rcnn``, the
paper's; every file format (``detector.io``); training and inference loops
(``detector.engine``); the console scripts (``detector.cli``). See docs/DESIGN.md."""

from .assets import default_model_path
from .model import Detections, Detector

__all__ = ["Detector", "Detections", "default_model_path"]
