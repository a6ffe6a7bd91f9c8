"""Box sanitizing: box defects are never fixed silently: each reader feeds its boxes through a
:class:`BoxCleaner`, which drops degenerate boxes (``xmax <= xmin`` or ``ymax <= ymin`` in the
file's own numbers, before any conversion), clips boxes that leave the image, and at the end
emits ONE :class:`DatasetWarning` per dataset with the counts and a few examples (Python's
``warnings`` module: shown once on stderr by the CLIs, catchable in tests and in code with
``warnings.catch_warnings``)."""

from __future__ import annotations

import warnings
from dataclasses import dataclass, field

import numpy as np

from .sizes import MAX_SIDE, SizeChecker, orient_boxes, shown_size
from .warning import DatasetWarning


@dataclass
class BoxCleaner:
    """Convert file boxes to our convention, drop degenerate ones, clip, count.

    ``one_based=True`` (VOC, ILSVRC): the file has 1-based inclusive pixels and x1 = xmin - 1,
    y1 = ymin - 1, x2 = xmax, y2 = ymax. ``one_based=False`` (COCO): the numbers are already
    continuous 0-based corners.
    """

    source: str
    one_based: bool = True
    dropped: int = 0
    clipped: int = 0
    examples: list[str] = field(default_factory=list)
    #: ``path -> (stored width, stored height, orientation)`` for :attr:`sizes` (None: the image header)
    header: object = None
    sizes: SizeChecker = field(init=False)

    def __post_init__(self):
        self.sizes = SizeChecker(self.source, self.header)

    def __call__(self, file_boxes: np.ndarray, width: float, height: float, where: str,
                 orientation: int = 1) -> tuple[np.ndarray, np.ndarray]:
        """``file_boxes`` (N, 4) xmin, ymin, xmax, ymax as in the file -> (boxes (K, 4), keep (N,) bool).
        ``width`` x ``height``: the image as shown; ``orientation`` (:class:`SizeChecker`): the
        file's boxes are of the stored pixels, rotated here as the pixels are."""
        b = np.asarray(file_boxes, dtype=np.float64).reshape(-1, 4)
        keep = (b[:, 2] > b[:, 0]) & (b[:, 3] > b[:, 1])
        for i in np.flatnonzero(~keep):
            self._note(f"{where}: degenerate box {_fmt(b[i])} dropped")
        self.dropped += int((~keep).sum())
        huge = keep & (np.abs(b) > MAX_SIDE).any(axis=1)   # beyond any image (and float32's range)
        for i in np.flatnonzero(huge):
            self._note(f"{where}: box {_fmt(b[i])} outside any image dropped")
        self.dropped += int(huge.sum())
        keep &= ~huge
        out = b.copy()
        if self.one_based:
            out[:, :2] -= 1.0
        if orientation != 1:
            out = orient_boxes(out, *shown_size(width, height, orientation), orientation)
        if width > 0 and height > 0:
            lim = np.array([width, height, width, height], dtype=np.float64)
            clipped = np.clip(out, 0.0, lim)
            moved = keep & np.any(clipped != out, axis=1)
            # a box wholly outside the image clips to nothing: dropped, not kept as a sliver
            empty = keep & ((clipped[:, 2] <= clipped[:, 0]) | (clipped[:, 3] <= clipped[:, 1]))
            for i in np.flatnonzero(empty):
                self._note(f"{where}: box {_fmt(b[i])} outside the {width:g}x{height:g} image dropped")
            for i in np.flatnonzero(moved & ~empty):
                self._note(f"{where}: box {_fmt(b[i])} clipped to the {width:g}x{height:g} image")
            self.dropped += int(empty.sum())
            self.clipped += int((moved & ~empty).sum())
            keep &= ~empty
            out = clipped
        return out[keep].astype(np.float32), keep

    def _note(self, text: str) -> None:
        if len(self.examples) < 3:
            self.examples.append(text)

    def report(self) -> None:
        """Emit the one warning for this dataset (nothing when every box was clean), and the
        size checker's; the size index given as ``header`` is written back."""
        self.sizes.report()
        if callable(getattr(self.header, "save", None)):
            self.header.save()
        if not (self.dropped or self.clipped):
            return
        msg = (f"{self.source}: {self.dropped} box(es) dropped (degenerate or outside the image), "
               f"{self.clipped} clipped to the image; e.g. " + "; ".join(self.examples))
        warnings.warn(msg, DatasetWarning, stacklevel=3)


def _fmt(b) -> str:
    return "[" + " ".join(f"{v:g}" for v in b) + "]"
