"""The classifier's transforms: HWC uint8 RGB numpy -> normalised (3, S, S) float tensor.

The training transform is the paper's data recipe through albumentations (:func:`train_transform`):
random crops of 8%-100% of the area with aspect 3/4-4/3 resized with a randomly chosen
interpolation, mirroring, photometric distortions (brightness / contrast / saturation / hue).
"""

from __future__ import annotations

import random

import albumentations as A
import cv2
import numpy as np
import torch
from albumentations.pytorch import ToTensorV2

from backbone.multicrop import IMAGENET_MEAN, IMAGENET_STD, make_crops, normalize

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

    def reseed_from(self, value: int) -> None:
        """Restart the random stream at ``value`` (a training step's: :class:`detector.engine.trainer.Trainer`
        draws it from the step's generator, so a step's augmentation does not depend on the process)."""
        np_seed, py_seed = np.random.SeedSequence(int(value)).generate_state(2)
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
    :class:`~detector.config.ClassifierTrainConfig`: random-area / aspect crop with a random
    interpolation, mirrors, colour jitter, normalisation, to a CHW float tensor."""
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


__all__ = ["train_transform", "TrainTransform", "seed_worker", "eval_transform", "to_chw", "INTERPOLATIONS"]
