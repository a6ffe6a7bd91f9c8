"""Classification samples: images with one class each, as a torch ``Dataset``.

Two sources make a :class:`ClassificationSet`:

- :func:`object_crops`: the ground-truth boxes of a detection dataset (any
  :class:`~detector.datasets.records.Dataset`), each cropped with a context margin, become
  the images and their classes the labels (R-CNN trains its classifier on such crops);
- :func:`detector.datasets.imagefolder.image_folder`: ``root/<class>/<image>`` folders.

:func:`build_classification_set` picks one from a classifier config. Labels here are 0-based
class indices (``classes[label]``), what cross-entropy wants; detection labels 1..C are shifted.

The training transform is the paper's data recipe through albumentations (:func:`train_transform`):
random crops of 8%-100% of the area with aspect 3/4-4/3 resized with a randomly chosen
interpolation, mirroring, photometric distortions (brightness / contrast / saturation / hue).
"""

from __future__ import annotations

import math
import random
import sys
from typing import Callable, Sequence

import cv2
import numpy as np
import torch
from tqdm import tqdm

from backbone.errors import UserError
from backbone.multicrop import IMAGENET_MEAN, IMAGENET_STD, make_crops, normalize

from ..images import load_image
from .records import Dataset


class ClassificationSet(torch.utils.data.Dataset):
    """``(transform(image), label)`` pairs. Images are kept in memory (``np.ndarray`` HWC uint8,
    for object crops) or read on access (file paths, for image folders)."""

    def __init__(self, classes: Sequence[str], items: list, labels: Sequence[int], names: Sequence[str],
                 transform: Callable | None = None, source: str = ""):
        if not (len(items) == len(labels) == len(names)):
            raise ValueError("items, labels and names must have the same length")
        self.classes = list(classes)
        self.items = items
        self.labels = np.asarray(labels, dtype=np.int64).reshape(-1)
        self.names = list(names)
        self.transform = transform
        self.source = source

    def __len__(self) -> int:
        return len(self.items)

    def image(self, i: int) -> np.ndarray:
        """Image ``i`` as ``(H, W, 3)`` uint8 RGB."""
        item = self.items[i]
        return load_image(item) if isinstance(item, str) else item

    def __getitem__(self, i: int):
        img = self.image(i)
        return (self.transform(img) if self.transform is not None else img), int(self.labels[i])

    def with_transform(self, transform: Callable | None) -> "ClassificationSet":
        """The same samples with another transform."""
        return ClassificationSet(self.classes, self.items, self.labels, self.names, transform, self.source)

    def class_counts(self) -> np.ndarray:
        return np.bincount(self.labels, minlength=len(self.classes))

    def remap(self, classes: Sequence[str]) -> "ClassificationSet":
        """Relabel to another class list (e.g. a checkpoint's); a class missing from it is an error."""
        classes = list(classes)
        index = {c: i for i, c in enumerate(classes)}
        present = sorted(set(self.labels.tolist()))
        unknown = [self.classes[k] for k in present if self.classes[k] not in index]
        if unknown:
            raise UserError(f"{self.source or 'data'}: classes {unknown} are not among the model's classes {classes}")
        lut = np.array([index.get(c, -1) for c in self.classes], dtype=np.int64)
        return ClassificationSet(classes, self.items, lut[self.labels], self.names, self.transform, self.source)


def crop_box(image: np.ndarray, box: Sequence[float], margin: float) -> np.ndarray:
    """The pixels of ``box`` (x1, y1, x2, y2; 0-based, x2 exclusive) plus ``margin`` x its width /
    height on each side, clipped to the image. Coordinates are rounded outwards."""
    h, w = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    mx, my = margin * (x2 - x1), margin * (y2 - y1)
    a = max(0, int(math.floor(x1 - mx)))
    b = max(0, int(math.floor(y1 - my)))
    c = min(w, int(math.ceil(x2 + mx)))
    d = min(h, int(math.ceil(y2 + my)))
    return np.ascontiguousarray(image[b:d, a:c])


def object_crops(dataset: Dataset, *, margin: float = 0.1, skip_difficult: bool = True, min_size: float = 2.0,
                 transform: Callable | None = None, progress: bool | None = None) -> ClassificationSet:
    """Every ground-truth box of ``dataset`` (labels 1..C) as an image of class ``label - 1``.

    Each image file is read once; the crops are kept in memory. Boxes smaller than
    ``min_size`` pixels on a side (and difficult ones, with ``skip_difficult``) are left out."""
    if progress is None:
        progress = sys.stderr.isatty()
    items, labels, names = [], [], []
    src = f"{dataset.root or 'dataset'} ({dataset.split})" if dataset.split else (dataset.root or "dataset")
    for rec in tqdm(dataset.records, desc="crops", unit="img", disable=not progress, leave=False):
        keep = [j for j in range(len(rec.labels))
                if not (skip_difficult and len(rec.difficult) > j and rec.difficult[j])
                and rec.boxes[j, 2] - rec.boxes[j, 0] >= min_size and rec.boxes[j, 3] - rec.boxes[j, 1] >= min_size]
        if not keep:
            continue
        img = load_image(rec.path)
        for j in keep:
            crop = crop_box(img, rec.boxes[j], margin)
            if crop.shape[0] < 1 or crop.shape[1] < 1:
                continue  # box entirely outside the image
            items.append(crop)
            labels.append(int(rec.labels[j]) - 1)
            names.append(f"{rec.image_id}#{j}")
    if not items:
        raise UserError(f"{src}: no ground-truth boxes to crop (empty split, or all boxes difficult/too small)")
    return ClassificationSet(dataset.classes, items, labels, names, transform, source=src)


def build_classification_set(cfg, split: str, *, classes: Sequence[str] | None = None,
                             transform: Callable | None = None, progress: bool | None = None) -> ClassificationSet:
    """The classification samples of split ``split`` for a :class:`ClassifierConfig` ``cfg``:
    ``data.format == "imagefolder"`` reads class folders, any other format reads the detection
    dataset (``detector.datasets.load_dataset``) and crops its ground-truth boxes.
    ``classes``: the class list to label with (e.g. the training split's / a checkpoint's)."""
    if cfg.data.format == "imagefolder":
        from .imagefolder import image_folder

        return image_folder(cfg.data.root, split, classes=classes, transform=transform)
    from . import load_dataset

    ds = load_dataset(cfg.data, split)
    ds.split = ds.split or split
    out = object_crops(ds, margin=cfg.crops.margin, skip_difficult=cfg.crops.skip_difficult,
                       min_size=cfg.crops.min_size, transform=transform, progress=progress)
    return out.remap(classes) if classes is not None and list(classes) != out.classes else out


# ---------------------------------------------------------------------------------------------
# transforms: HWC uint8 RGB numpy -> normalised (3, S, S) float tensor

INTERPOLATIONS = (cv2.INTER_NEAREST, cv2.INTER_LINEAR, cv2.INTER_AREA, cv2.INTER_CUBIC, cv2.INTER_LANCZOS4)


class TrainTransform:
    """The training augmentation (see :func:`train_transform`), callable on an ``(H, W, 3)``
    uint8 RGB image, returning a normalised ``(3, S, S)`` float tensor.

    Its random stream is a function of ``(seed, epoch, worker)`` only (:meth:`reseed`): forked
    DataLoader workers would otherwise all start from one copied state (identical crops in
    every worker, and the same crops again every epoch, since workers are re-forked each
    epoch), and a resumed run would restart the sequence. Call :meth:`set_epoch` in the main
    process before each epoch and pass :func:`seed_worker` as the loader's ``worker_init_fn``."""

    def __init__(self, compose, seed: int | None = None):
        self.compose = compose
        self.seed = seed
        self.epoch = 0
        self.reseed()

    def reseed(self, worker: int = 0) -> None:
        """Restart the random stream at ``(seed, epoch, worker)`` (fresh OS entropy when ``seed`` is None)."""
        if self.seed is None:
            ss = np.random.SeedSequence()
        else:
            ss = np.random.SeedSequence([int(self.seed) % (1 << 64), int(self.epoch), int(worker)])
        np_seed, py_seed = ss.generate_state(2)
        # one generator pair shared by every step (Compose(seed=) gives each step its own
        # generator with the same seed, so their draws would be correlated)
        self.compose.set_random_state(np.random.default_rng(np_seed), random.Random(int(py_seed)))

    def set_epoch(self, epoch: int) -> None:
        """Augmentations of epoch ``epoch`` (worker 0; workers reseed themselves in :func:`seed_worker`)."""
        self.epoch = int(epoch)
        self.reseed()

    def __call__(self, image: np.ndarray) -> torch.Tensor:
        return self.compose(image=image)["image"]


def seed_worker(worker_id: int) -> None:
    """DataLoader ``worker_init_fn``: reseed the worker's copy of a :class:`TrainTransform` at
    ``(seed, epoch, worker_id)`` so that workers draw different augmentations."""
    info = torch.utils.data.get_worker_info()
    transform = getattr(info.dataset, "transform", None) if info is not None else None
    if isinstance(transform, TrainTransform):
        transform.reseed(worker_id)


def train_transform(size: int, train_cfg, mean=IMAGENET_MEAN, std=IMAGENET_STD, seed: int | None = None
                    ) -> TrainTransform:
    """The paper's training augmentation (albumentations), ``train_cfg`` a
    :class:`~detector.classifier_io.ClassifierTrainConfig`: random-area / aspect crop with a random
    interpolation, mirrors, colour jitter, normalisation, to a CHW float tensor."""
    import albumentations as A
    from albumentations.pytorch import ToTensorV2

    t = train_cfg
    crop = A.OneOf(
        [A.RandomResizedCrop(size=(size, size), scale=(t.min_area, t.max_area), ratio=(t.min_aspect, t.max_aspect),
                             interpolation=i) for i in INTERPOLATIONS],
        p=1.0,
    )
    steps = [crop]
    if t.flip:
        steps.append(A.HorizontalFlip(p=0.5))
    if t.vflip:
        steps.append(A.VerticalFlip(p=0.5))
    if t.photometric_p > 0 and (t.brightness or t.contrast or t.saturation or t.hue):
        steps.append(A.ColorJitter(brightness=t.brightness, contrast=t.contrast, saturation=t.saturation,
                                   hue=t.hue, p=t.photometric_p))
    steps += [A.Normalize(mean=mean, std=std, max_pixel_value=255.0), ToTensorV2()]
    return TrainTransform(A.Compose(steps, seed=seed), seed)


def to_chw(image: np.ndarray) -> torch.Tensor:
    """``(H, W, 3)`` uint8 numpy -> ``(3, H, W)`` uint8 tensor (what multi-crop testing takes)."""
    a = np.ascontiguousarray(image)
    if not a.flags.writeable:
        a = a.copy()
    return torch.from_numpy(a).permute(2, 0, 1).contiguous()


def eval_transform(size: int, mean=IMAGENET_MEAN, std=IMAGENET_STD):
    """The 1-crop test view (shorter side 256 x S/224, centre S x S), normalised: ``(3, S, S)``."""

    def apply(image: np.ndarray) -> torch.Tensor:
        return normalize(make_crops(to_chw(image), 1, size), mean, std)[0]

    return apply


__all__ = [
    "ClassificationSet", "crop_box", "object_crops", "build_classification_set", "train_transform",
    "TrainTransform", "seed_worker", "eval_transform", "to_chw", "INTERPOLATIONS",
]
