"""What a dataset holds, printed before training (``train-detector``) or alone (``gt-stats --data``).

:func:`summarize` reads the train / val / test splits of a resolved ``DataConfig`` and gives the
layout, images per split, boxes per class over all images and per split, box sides (shorter
and longer side: min / median / max, pixels) and warnings: splits without images (an empty
split file: training on it would train nothing), classes with fewer than :data:`FEW_BOXES`
boxes (too few to learn a class from) and boxes whose shorter side is under :data:`SMALL_BOX`
pixels (below the stride of the feature maps: hard to detect).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field, replace

import numpy as np

from .splits import MissingSplit
from .records import Dataset

FEW_BOXES = 20
SMALL_BOX = 16.0


@dataclass
class Summary:
    layout: str
    classes: list[str]
    splits: dict[str, Dataset] = field(default_factory=dict)
    missing: list[str] = field(default_factory=list)
    train_split: str = ""

    def _all(self) -> list:
        seen, out = set(), []
        for ds in self.splits.values():
            for r in ds.records:
                key = os.path.abspath(r.path) or r.image_id
                if key not in seen:
                    seen.add(key)
                    out.append(r)
        return out

    def counts(self, records) -> np.ndarray:
        c = np.zeros(len(self.classes), np.int64)
        for r in records:
            np.add.at(c, r.labels - 1, 1)
        return c

    def sides(self, records) -> np.ndarray:
        b = np.concatenate([r.boxes for r in records] or [np.zeros((0, 4), np.float32)])
        wh = np.stack([b[:, 2] - b[:, 0], b[:, 3] - b[:, 1]], axis=1) if len(b) else np.zeros((0, 2))
        return np.sort(wh, axis=1)   # (N, 2): shorter, longer side

    def warnings(self) -> list[str]:
        out = [f"split {s!r} has no images" + (" (training on it trains nothing)" if s == self.train_split else "")
               for s, ds in self.splits.items() if not len(ds)]
        recs = self._all()
        for name, n in zip(self.classes, self.counts(recs)):
            if n < FEW_BOXES:
                out.append(f"class {name!r} has {n} box(es) (under {FEW_BOXES}: too few to learn it well)")
        s = self.sides(recs)
        small = int((s[:, 0] < SMALL_BOX).sum()) if len(s) else 0
        if small:
            out.append(f"{small} of {len(s)} boxes are under {SMALL_BOX:g} px on their shorter side (hard to "
                       "detect; for small objects try --set 'model.fast.tap=[inception3b]')")
        return out

    def lines(self) -> list[str]:
        recs = self._all()
        out = [self.layout, f"classes ({len(self.classes)}): {', '.join(self.classes)}"]
        split_txt = ", ".join(f"{s} {len(ds)}" for s, ds in self.splits.items())
        out.append(f"images: {len(recs)} ({split_txt}" + (f"; no {', '.join(self.missing)} split" if self.missing else "")
                   + ")")
        w = max([len(c) for c in self.classes] + [5])
        cols = ["all", *self.splits]
        out.append(f"boxes per class: {'':{w}} " + " ".join(f"{c:>7}" for c in cols))
        per = [self.counts(recs)] + [self.counts(ds.records) for ds in self.splits.values()]
        for i, name in enumerate(self.classes):
            out.append(f"  {name:{w}}{'':16} " + " ".join(f"{int(p[i]):>7}" for p in per))
        out.append(f"  {'total':{w}}{'':16} " + " ".join(f"{int(p.sum()):>7}" for p in per))
        s = self.sides(recs)
        if len(s):
            out.append("box sides (px, min / median / max): shorter " + " / ".join(f"{v:.0f}" for v in
                       (s[:, 0].min(), np.median(s[:, 0]), s[:, 0].max())) + ", longer " + " / ".join(
                       f"{v:.0f}" for v in (s[:, 1].min(), np.median(s[:, 1]), s[:, 1].max())))
        out.extend("warning: " + w_ for w_ in self.warnings())
        return out


def summarize(data, load, layout_line: str | None = None) -> Summary:
    """Read the train / val / test splits of ``data`` (a resolved DataConfig) with ``load``
    (:func:`detector.io.datasets.load_dataset`); a split the dataset does not have is listed as
    missing. ``layout_line``: the layout named first (else the format and root)."""
    splits, missing, classes = {}, [], None
    for s in dict.fromkeys((data.train_split, data.val_split, data.test_split)):
        try:
            ds = load(data, s)
        except MissingSplit:
            missing.append(s)
            continue
        splits[s] = ds
        classes = classes or ds.classes
    if classes is None:
        load(replace(data), data.train_split)   # raises the reader's own error naming what is missing
    return Summary(layout_line or f"data: {data.format} layout at {data.root}", list(classes), splits, missing,
                   data.train_split)
