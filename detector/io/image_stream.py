"""Images decoded ahead of their use: :func:`read_images` yields the images of a list of files
in order, decoded in ``DataLoader`` worker processes while the main process works on the
previous ones (``workers=0``: decoded in the loop, as :func:`detector.io.images.load_image`).

What a file gets is what :func:`~detector.io.images.load_image` gives it in the main process:
the same array, the same warnings (a worker records them; the main process re-emits them, so
``--strict``, the main process's warning filter, decides), and an image that cannot be decoded
is an item with its one-line error instead of an image (the caller leaves it out, or scores it
without detections). With an :class:`~detector.io.images.ImageReads`, a truncated JPEG and an
undecodable image are told to it (one counted warning each at its ``report()``), as
``reads.load`` does. ``detect FOLDER`` and ``eval-map --split`` read through it.
"""

from __future__ import annotations

import time
import warnings
from typing import Iterator, NamedTuple, Sequence

import numpy as np
import torch

from backbone.errors import UserError

from .images import ImageReads, TruncatedImageWarning, load_image

#: decoding processes of ``detect FOLDER`` and ``eval-map --split`` (``--read-workers``): 0 on
#: the CPU, where decoding a BCCD image (a few ms) is under 1% of detecting it and a worker
#: takes a core from the networks (issue 23, bench/bench_detect.py); more for a GPU or big images
READ_WORKERS = 0


class Read(NamedTuple):
    """One file of :func:`read_images`: ``image`` (H, W, 3) uint8 RGB, or None and ``error``
    (the :class:`UserError` message naming the file); ``seconds``: the decode time."""

    index: int
    path: str
    image: np.ndarray | None
    error: str | None
    seconds: float


class _Files(torch.utils.data.Dataset):
    """Decodes file ``i`` in a worker: (i, uint8 tensor or None, error, [(category, message)], s)."""

    def __init__(self, paths: Sequence[str]):
        self.paths = list(paths)

    def __len__(self) -> int:
        return len(self.paths)

    def __getitem__(self, i: int):
        t0 = time.perf_counter()
        image = error = None
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            try:
                arr = load_image(self.paths[i])
                image = torch.from_numpy(arr if arr.flags.writeable else arr.copy())  # shared memory to the main
            except UserError as e:
                error = str(e)
        told = [(w.category, str(w.message)) for w in caught]
        return i, image, error, told, time.perf_counter() - t0


def _one(item):
    return item


def read_images(paths: Sequence[str], *, workers: int = 0, reads: ImageReads | None = None,
                prefetch: int = 2) -> Iterator[Read]:
    """The images of ``paths`` in order, each decoded once (see the module docstring).

    ``workers``: decoding processes (0: in the loop); each keeps ``prefetch`` images ready.
    ``reads``: told about truncated and undecodable files (the item of an undecodable one has
    ``image`` None either way)."""
    paths = list(paths)
    if workers <= 0 or len(paths) < 2:
        for i, path in enumerate(paths):
            t0 = time.perf_counter()
            if reads is not None:
                image, error = reads.load(path), None
                if image is None:
                    error = f"image {path}: cannot be decoded"
            else:
                try:
                    image, error = load_image(path), None
                except UserError as e:
                    image, error = None, str(e)
            yield Read(i, path, image, error, time.perf_counter() - t0)
        return
    loader = torch.utils.data.DataLoader(_Files(paths), batch_size=None, shuffle=False, num_workers=workers,
                                         prefetch_factor=max(1, prefetch), collate_fn=_one)
    it = iter(loader)
    try:
        for i, image, error, told, seconds in it:
            path = paths[i]
            for category, message in told:
                if reads is not None and issubclass(category, TruncatedImageWarning):
                    reads.note("truncated", path)
                else:
                    warnings.warn(message, category, stacklevel=2)
            if error is not None and reads is not None:
                reads.note("unreadable", error)
            yield Read(i, path, image.numpy() if image is not None else None, error, seconds)
    finally:
        del it  # stops the workers (also when the caller stops early)


__all__ = ["Read", "read_images"]
