"""The one place figures are written: the matplotlib Figures ``eval/`` returns (and the training
curves of ``detector.engine.run``) go to files through :func:`backbone.io.atomic_write` (a
temporary file renamed into place: a reader never sees half a PNG), or through a caller's own
writer (``detector.io.outputs.Outputs.write``) with :func:`figure_writer`.

- :func:`write_figure` -- one Figure to one file, format by extension (png unless told).
- :func:`write_pr_curves` -- :func:`eval.plots.plot_pr_curves` written.
- :func:`write_report` -- ``eval-map --analyze``'s files: ``analysis.json``, ``summary.txt`` and
  every figure of :func:`eval.analysis.report_figures`.
"""

from __future__ import annotations

import os
from collections.abc import Callable
from typing import Any, BinaryIO

from backbone.io import atomic_write, write_json, write_text
from eval.analysis import report_figures, summary_lines
from eval.plots import plot_pr_curves


def figure_format(path: str) -> str:
    """The image format of ``path`` by its extension (``png`` when it has none)."""
    return os.path.splitext(path)[1][1:].lower() or "png"


def figure_writer(fig: Any, fmt: str = "png", **savefig_kw) -> Callable[[BinaryIO], Any]:
    """A writer of ``fig`` into an open binary file, for :func:`backbone.io.atomic_write` or
    ``Outputs.write`` (``savefig_kw``: matplotlib's, e.g. ``dpi``)."""
    return lambda f: fig.savefig(f, format=fmt, **savefig_kw)


def write_figure(path: str, fig: Any, *, what: str = "figure", **savefig_kw) -> str:
    """``fig`` to ``path`` atomically (the folder is made), format by extension. Returns ``path``."""
    return atomic_write(path, figure_writer(fig, figure_format(path), **savefig_kw), what=what)


def write_pr_curves(curves, aps: list[float], names: list[str], path: str, title: str = "", worst: int = 5) -> str:
    """:func:`eval.plots.plot_pr_curves` (same arguments) written to ``path``. Returns ``path``."""
    return write_figure(path, plot_pr_curves(curves, aps, names, title=title, worst=worst), what="--plots")


def write_report(result: dict, out_dir: str, classes: list[str], all_classes: bool = False,
                 image_paths: list[str] | None = None, gts: list[dict] | None = None,
                 dets: list[dict] | None = None) -> list[str]:
    """Write ``analysis.json`` (every number of ``result``), ``summary.txt`` and the figures of
    :func:`eval.analysis.report_figures` (same arguments) to ``out_dir``. Returns the paths."""
    paths = [write_json(os.path.join(out_dir, "analysis.json"), result, what="analysis.json"),
             write_text(os.path.join(out_dir, "summary.txt"), "\n".join(summary_lines(result)) + "\n",
                        what="summary.txt")]
    for name, fig in report_figures(result, classes, all_classes=all_classes, image_paths=image_paths,
                                    gts=gts, dets=dets):
        paths.append(write_figure(os.path.join(out_dir, name), fig, what=name))
    return paths


__all__ = ["figure_format", "figure_writer", "write_figure", "write_pr_curves", "write_report"]
