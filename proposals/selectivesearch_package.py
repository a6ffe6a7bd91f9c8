"""The optional second selective search backend: the PyPI ``selectivesearch`` package."""

from __future__ import annotations

import warnings

import numpy as np


def _selectivesearch_package(work: np.ndarray, superpixel_scale: float) -> list[np.ndarray]:
    """The PyPI ``selectivesearch`` package at its README settings (scale 500, sigma 0.9,
    min size 10; scale and min size times ``superpixel_scale``). One strategy, so its regions
    keep their hierarchy order for the ranking."""
    import selectivesearch  # the optional second backend (and skimage with it): imported only when chosen

    with warnings.catch_warnings():  # the package feeds floats to skimage's LBP, which warns each call
        warnings.filterwarnings("ignore", message=".*local_binary_pattern.*")
        _, regions = selectivesearch.selective_search(
            work, scale=500 * superpixel_scale, sigma=0.9, min_size=int(round(10 * superpixel_scale)))
    boxes = np.array([[x, y, x + w + 1, y + h + 1] for r in regions for (x, y, w, h) in [r["rect"]]],
                     dtype=np.int32).reshape(-1, 4)
    return [boxes]
