"""Shared figure helpers: the book's figure style, log-log axes, measured curves with their spread,
theory overlays, fitted slopes and legends placed off the data.

Importing this module applies :data:`STYLE` to matplotlib and, in a Jupyter kernel with the inline
backend, switches figures to retina PNGs (twice the pixels, displayed at the same size), so every
chapter gets sharp figures whose text is legible at the book's column width without a cell of its own.
"""

from __future__ import annotations

import matplotlib as mpl
import matplotlib.pyplot as plt
import numpy as np

from .fitting import PowerLawFit, fit_power_law
from .report import sig

#: Width of the book's text column, in inches of figure at 100 px per inch (the HTML column is about
#: 690 CSS px wide in a 1280 px window). :func:`figure` never makes a figure wider than this, so its
#: text is shown at its nominal size instead of being shrunk to fit.
COLUMN_WIDTH = 6.8

#: matplotlib settings for the book: text sizes chosen for figures shown 1:1 in the column.
STYLE = {
    "figure.dpi": 100,
    "savefig.dpi": 200,
    "font.size": 9.5,
    "axes.titlesize": 9.5,
    "axes.labelsize": 9.5,
    "xtick.labelsize": 8.5,
    "ytick.labelsize": 8.5,
    "legend.fontsize": 8.5,
    "legend.title_fontsize": 8.5,
    "legend.framealpha": 0.9,
    "legend.borderaxespad": 0.4,
    "lines.linewidth": 1.4,
    "axes.grid": False,
}


def use_book_style() -> None:
    """Apply :data:`STYLE` to matplotlib and, inside IPython with the inline backend, retina PNGs.

    Called when :mod:`assocmem.plotting` is imported; call it again after ``plt.style.use`` or
    ``matplotlib.rcdefaults()``.
    """
    mpl.rcParams.update(STYLE)
    try:
        from IPython import get_ipython
    except ImportError:   # pragma: no cover - IPython ships with the book's environment
        return
    shell = get_ipython()
    if shell is not None and "inline" in mpl.get_backend():
        from matplotlib_inline.backend_inline import set_matplotlib_formats

        set_matplotlib_formats("retina")


def figure(ncols: int = 1, *, width: float = 4.2, height: float = 3.2, **kwargs):
    """A row of ``ncols`` axes sized for the book's pages; returns ``(fig, axes)``.

    The figure is ``width * ncols`` inches wide, capped at :data:`COLUMN_WIDTH` (panels get narrower,
    text keeps its size), ``height`` inches tall, with constrained layout.

    Parameters
    ----------
    ncols : int
        Number of panels in the row.
    width : float
        Width of one panel in inches before the cap (default 4.2).
    height : float
        Height of the figure in inches (default 3.2).
    **kwargs
        Passed to ``matplotlib.pyplot.subplots`` (e.g. ``sharey=True``).

    Returns
    -------
    tuple
        ``(fig, ax)`` for one panel, ``(fig, axes)`` with an array of ``ncols`` axes otherwise.
    """
    total = min(width * ncols, COLUMN_WIDTH)
    fig, axes = plt.subplots(1, ncols, figsize=(total, height), squeeze=False,
                             layout="constrained", **kwargs)
    return fig, axes[0] if ncols > 1 else axes[0, 0]


def legend_outside(ax, where: str = "below", *, ncols: int | None = None, **kwargs):
    """A legend beside the axes instead of on the data (returns nothing, so a cell ending with it
    prints nothing; ``ax.get_legend()`` gives the legend).

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        The axes whose labelled artists the legend lists.
    where : {"below", "right", "above"}
        Where to put it: under the axes (default; entries in ``ncols`` columns), to the right of
        them (one column, centred vertically), or above them (under the title).
    ncols : int, optional
        Columns of entries; default 1, or 2 below or above a panel wider than 4 inches.
    **kwargs
        Passed to ``Axes.legend`` (e.g. ``title=``, ``fontsize=``).
    """
    places = {"below": ("upper center", (0.5, -0.16)), "right": ("center left", (1.02, 0.5)),
              "above": ("lower center", (0.5, 1.02))}
    if where not in places:
        raise ValueError(f"where must be one of {sorted(places)}, got {where!r}")
    handles, _ = ax.get_legend_handles_labels()
    if ncols is None:
        panel = ax.get_position().width * ax.figure.get_figwidth()
        ncols = 2 if where != "right" and panel > 4 and len(handles) > 1 else 1
    loc, anchor = places[where]
    if where == "below" and ax.get_xlabel():
        anchor = (0.5, -0.22)
    options = dict(loc=loc, bbox_to_anchor=anchor, ncols=ncols, frameon=False, borderaxespad=0.0)
    options.update(kwargs)
    ax.legend(**options)


def loglog(ax, xlabel: str, ylabel: str, title: str | None = None):
    """Log-log axes with labels (and an optional title); returns ``ax``.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        The axes to set up.
    xlabel, ylabel : str
        Axis labels (matplotlib mathtext allowed).
    title : str, optional
        Panel title.
    """
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return ax


def measured(ax, x, y, label: str, *, color=None, marker: str = "o", band: bool = True):
    """Plot the mean over trials of ``y`` with a shaded band of one standard deviation; returns the
    line's colour.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Where to draw.
    x : array_like
        The abscissae, shape ``(len(x),)``.
    y : array_like
        Measurements, shape ``(trials, len(x))`` or ``(len(x),)``.
    label : str
        Legend label.
    color : optional
        matplotlib colour (default: the next in the cycle).
    marker : str
        Marker of the mean curve.
    band : bool
        Draw the ±1 standard deviation band when there are several trials.
    """
    y = np.atleast_2d(np.asarray(y, dtype=np.float64))
    mean = y.mean(axis=0)
    (line,) = ax.plot(x, mean, marker=marker, ms=3.5, lw=1.2, color=color, label=label)
    if band and y.shape[0] > 1:
        std = y.std(axis=0)
        ax.fill_between(x, np.clip(mean - std, mean * 1e-3, None), mean + std,
                        color=line.get_color(), alpha=0.2, lw=0)
    return line.get_color()


def theory(ax, x, y, label: str, *, color=None, style: str = "--"):
    """A theory curve (dashed by default) over measured points.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Where to draw.
    x, y : array_like
        The curve.
    label : str
        Legend label.
    color : optional
        matplotlib colour.
    style : str
        matplotlib line style (default dashed).
    """
    ax.plot(x, y, style, lw=1.4, color=color, label=label)


def fitted_slope(ax, x, y, predicted: float, *, name: str = "fit", color=None) -> PowerLawFit:
    """Fit a power law to ``y`` over ``x`` (:func:`assocmem.fitting.fit_power_law`), draw it dotted,
    and label it with the fitted slope, its standard error and the ``predicted`` slope. Returns the fit.

    Parameters
    ----------
    ax : matplotlib.axes.Axes
        Where to draw.
    x : array_like
        The abscissae (positive).
    y : array_like
        Measurements, shape ``(trials, len(x))`` or ``(len(x),)`` (see ``fit_power_law``).
    predicted : float
        The theory's slope, quoted in the label.
    name : str
        Start of the label.
    color : optional
        matplotlib colour of the dotted line.
    """
    fit = fit_power_law(x, y)
    ax.plot(x, fit(x), ":", color=color, lw=1.2,
            label=f"{name}: slope {sig(fit.slope)} ± {sig(fit.stderr)} (theory {sig(predicted)})")
    return fit


use_book_style()
