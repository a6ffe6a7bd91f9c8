"""The one record type per image that every dataset reader returns.

Boxes are float32 (N, 4) ``x1, y1, x2, y2``, continuous 0-based pixels, x2 exclusive (a VOC
box ``xmin..xmax`` 1-based inclusive becomes ``xmin - 1, ymin - 1, xmax, ymax``). Labels are
int64 (N,) in 1..C, the position in ``Dataset.classes`` plus one; 0 is background.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from backbone.errors import UserError


@dataclass
class ImageRecord:
    image_id: str                     # the id used in split files and detection files
    path: str                         # image file
    width: int
    height: int
    boxes: np.ndarray                 # (N, 4) float32 xyxy, 0-based continuous
    labels: np.ndarray                # (N,) int64 in 1..C
    difficult: np.ndarray             # (N,) bool
    blacklist: frozenset[int] = field(default_factory=frozenset)  # ILSVRC: labels not scored for this image
    devkit_index: int | None = None   # ILSVRC: the image's index in devkit files (split file column 2)
    areas: np.ndarray | None = None   # COCO: each box's ``area`` from the file (segment area), else None
    aliases: tuple[str, ...] = ()     # COCO: other ids the file gave this image (one file_name, two ids: merged)

    def __post_init__(self):
        self.boxes = np.asarray(self.boxes, dtype=np.float32).reshape(-1, 4)
        self.labels = np.asarray(self.labels, dtype=np.int64).reshape(-1)
        self.difficult = np.asarray(self.difficult, dtype=bool).reshape(-1)
        if self.areas is not None:
            self.areas = np.asarray(self.areas, dtype=np.float64).reshape(-1)


@dataclass
class Dataset:
    """A split of a detection dataset: the class list (label i is ``classes[i - 1]``) and records."""

    classes: list[str]
    records: list[ImageRecord]
    root: str = ""
    split: str = ""
    class_ids: list[int] | None = None      # ids of the classes in outside files (COCO category ids, ILSVRC DET ids)
    display_names: list[str] | None = None  # human names when ``classes`` are codes (ILSVRC WNIDs)

    def __len__(self) -> int:
        return len(self.records)

    def __getitem__(self, i: int) -> ImageRecord:
        return self.records[i]

    def require_images(self, what: str = "training") -> "Dataset":
        """``self``, or one :class:`UserError` when it has no images (an empty split file, a
        YOLO ``train:`` folder without images): training on it would train nothing and write an
        untrained model as if it had worked. Called before any work."""
        if not self.records:
            raise UserError(f"{what} split {self.split!r} of {self.root or 'the dataset'}: no images, nothing to "
                            "train on (an empty split file or folder? see data.root and data.train_split)")
        return self
