"""Fitting power laws on log-log axes, with the spread across independent trials."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class PowerLawFit:
    r"""Fit of :math:`y \approx C x^{s}`: ``slope`` s (mean over trials), ``spread`` (std over trials),
    ``prefactor`` C of the fit to the trial-averaged curve."""

    slope: float
    spread: float
    prefactor: float

    def __call__(self, x) -> np.ndarray:
        return self.prefactor * np.asarray(x, dtype=np.float64) ** self.slope

    def __str__(self) -> str:
        return f"{self.slope:.3f} ± {self.spread:.3f}"


def fit_power_law(x, y) -> PowerLawFit:
    """Least-squares line through ``(log x, log y)``.

    ``y`` has shape ``(len(x),)`` or ``(trials, len(x))``; with trials, each trial is fitted on its own
    and ``spread`` is the standard deviation of the trial slopes (0 for a single curve). Points where
    ``y <= 0`` carry no information on a log scale and are dropped per trial.
    """
    x = np.asarray(x, dtype=np.float64)
    y = np.atleast_2d(np.asarray(y, dtype=np.float64))
    if x.ndim != 1 or y.shape[-1] != x.size:
        raise ValueError(f"y must have last dimension len(x)={x.size}, got shape {y.shape}")
    if np.any(x <= 0):
        raise ValueError("x must be positive to fit a power law")
    slopes = [_slope_intercept(x, row)[0] for row in y]
    slope, intercept = _slope_intercept(x, y.mean(axis=0))
    spread = float(np.nanstd(slopes)) if len(slopes) > 1 else 0.0
    return PowerLawFit(slope=slope, spread=spread, prefactor=float(np.exp(intercept)))


def _slope_intercept(x: np.ndarray, y: np.ndarray) -> tuple[float, float]:
    keep = y > 0
    if keep.sum() < 2:
        return float("nan"), float("nan")
    slope, intercept = np.polyfit(np.log(x[keep]), np.log(y[keep]), 1)
    return float(slope), float(intercept)
