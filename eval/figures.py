"""The one matplotlib set-up of the project: every figure is a bare ``matplotlib.figure.Figure``
(no pyplot, so no backend and no display are chosen or needed, and nothing is left open in a
global figure manager), at one :data:`DPI`. Plot modules return these Figures; writing them is
the I/O layer's (``detector.io.figures``)."""

from __future__ import annotations

#: dots per inch of every figure (and of its PNG, unless the writer is told otherwise)
DPI = 100


def new_figure(figsize: tuple[float, float], dpi: float | None = None):
    """An empty Figure of ``figsize`` inches (``dpi``: default :data:`DPI`)."""
    # matplotlib costs about 0.5 s to import: only when a figure is drawn
    from matplotlib.figure import Figure

    return Figure(figsize=figsize, dpi=dpi or DPI)


def subplots(nrows: int = 1, ncols: int = 1, *, figsize: tuple[float, float], dpi: float | None = None, **kw):
    """(Figure, axes) as ``pyplot.subplots`` gives them, on a bare Figure."""
    fig = new_figure(figsize, dpi)
    return fig, fig.subplots(nrows, ncols, **kw)


def colormap(name: str):
    """A registered colormap (``tab10``, ``Blues``, ...)."""
    # matplotlib on first use only (import time)
    import matplotlib

    return matplotlib.colormaps[name]


__all__ = ["DPI", "colormap", "new_figure", "subplots"]
