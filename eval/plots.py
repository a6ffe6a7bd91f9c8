"""Precision-recall curves, as a matplotlib Figure from :mod:`eval.figures` (``detector.io.figures``
writes it)."""

from __future__ import annotations

import math

import numpy as np

from .figures import colormap, subplots


def plot_pr_curves(curves: list[tuple[np.ndarray, np.ndarray]], aps: list[float], names: list[str],
                   title: str = "", worst: int = 5):
    """One image with every class's precision-recall curve; the ``worst`` lowest-AP classes
    (among those with ground truth) drawn in colour with their AP in the legend, the others grey.
    Few classes (<= ``worst``) are all drawn in colour. Returns the Figure."""
    valid = [i for i, a in enumerate(aps) if not math.isnan(a)]
    highlight = sorted(valid, key=lambda i: aps[i])[:worst]
    fig, ax = subplots(figsize=(7, 6))
    for i in valid:
        if i in highlight:
            continue
        rec, prec = _envelope(*curves[i])
        ax.plot(rec, prec, color="0.75", lw=0.8, drawstyle="steps-pre")
    cmap = colormap("tab10")
    for k, i in enumerate(highlight):
        rec, prec = _envelope(*curves[i])
        ax.plot(rec, prec, color=cmap(k % 10), lw=2, drawstyle="steps-pre", label=f"{names[i]} (AP {aps[i]:.3f})")
    if len(valid) > len(highlight):
        ax.plot([], [], color="0.75", lw=0.8, label=f"{len(valid) - len(highlight)} other classes")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1.02)
    ax.set_xlabel("recall")
    ax.set_ylabel("precision")
    mean = float(np.mean([aps[i] for i in valid])) if valid else float("nan")
    ax.set_title(f"{title + ': ' if title else ''}precision-recall, mAP {mean:.4f}"
                 + (f" (lowest {len(highlight)} in colour)" if len(valid) > len(highlight) else ""))
    ax.grid(alpha=0.3)
    ax.legend(loc="lower left", fontsize=8)
    fig.tight_layout()
    return fig


def _envelope(rec: np.ndarray, prec: np.ndarray):
    """The curve the all-point AP integrates: precision made monotone from the right."""
    rec = np.asarray(rec, np.float64)
    prec = np.asarray(prec, np.float64)
    if rec.size == 0:
        return np.array([0.0]), np.array([0.0])
    env = np.maximum.accumulate(prec[::-1])[::-1]
    return np.concatenate(([0.0], rec)), np.concatenate(([env[0]], env))
