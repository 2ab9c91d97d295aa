"""Shared figure helpers: log-log axes, measured curves with their spread, theory overlays."""

from __future__ import annotations

import matplotlib.pyplot as plt
import numpy as np

from .fitting import PowerLawFit, fit_power_law
from .report import sig


def figure(ncols: int = 1, *, width: float = 4.2, height: float = 3.2, **kwargs):
    """A row of ``ncols`` axes sized for the book's pages; returns ``(fig, axes)``."""
    fig, axes = plt.subplots(1, ncols, figsize=(width * ncols, height), squeeze=False,
                             layout="constrained", **kwargs)
    return fig, axes[0] if ncols > 1 else axes[0, 0]


def loglog(ax, xlabel: str, ylabel: str, title: str | None = None):
    """Log-log axes with labels (and an optional title)."""
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    return ax


def measured(ax, x, y, label: str, *, color=None, marker: str = "o", band: bool = True):
    """Plot the mean over trials of ``y`` (shape ``(trials, len(x))`` or ``(len(x),)``) with a
    shaded band of one standard deviation; returns the line's colour."""
    y = np.atleast_2d(np.asarray(y, dtype=np.float64))
    mean = y.mean(axis=0)
    (line,) = ax.plot(x, mean, marker=marker, ms=3.5, lw=1.2, color=color, label=label)
    if band and y.shape[0] > 1:
        std = y.std(axis=0)
        ax.fill_between(x, np.clip(mean - std, mean * 1e-3, None), mean + std,
                        color=line.get_color(), alpha=0.2, lw=0)
    return line.get_color()


def theory(ax, x, y, label: str, *, color=None, style: str = "--"):
    """A theory curve (dashed by default) over measured points."""
    ax.plot(x, y, style, lw=1.4, color=color, label=label)


def fitted_slope(ax, x, y, predicted: float, *, name: str = "fit", color=None) -> PowerLawFit:
    """Fit a power law to ``y`` over ``x`` (:func:`assocmem.fitting.fit_power_law`), draw it dotted,
    and label it with the fitted slope, its standard error and the ``predicted`` slope. Returns the fit."""
    fit = fit_power_law(x, y)
    ax.plot(x, fit(x), ":", color=color, lw=1.2,
            label=f"{name}: slope {sig(fit.slope)} ± {sig(fit.stderr)} (theory {sig(predicted)})")
    return fit
