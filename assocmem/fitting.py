r"""Power-law fits on log-log axes with an honest uncertainty, and verdicts against theory.

A fit of :math:`y \approx C x^{s}` is a least-squares line through :math:`(\log x, \log \bar y)`, where
:math:`\bar y` is the mean over trials. Its uncertainty is a bootstrap over trials (resample the trials
with replacement, refit the mean curve); for a single curve, the ordinary least-squares standard error
of the slope with a Student-t interval. Points where the mean curve is not positive carry no information
on a log scale: they are excluded and counted (``dropped``), never silently.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

from . import _validate
from .report import sig

__all__ = ["PowerLawFit", "Verdict", "fit_power_law", "verdict"]


@dataclass(frozen=True)
class PowerLawFit:
    r"""Fit of :math:`y \approx C x^{s}`.

    Attributes
    ----------
    slope : float
        Least-squares slope ``s`` of :math:`\log \bar y` against :math:`\log x`.
    stderr : float
        Standard error of the slope: standard deviation of the bootstrap slopes over trials, or the
        ordinary least-squares standard error for a single curve (``nan`` with two points).
    ci : tuple of float
        Confidence interval of the slope at ``level``: bootstrap percentiles over trials, or
        ``slope ± t·stderr`` with ``len(x) - dropped - 2`` degrees of freedom for a single curve.
    level : float
        Confidence level of ``ci``.
    prefactor : float
        ``C``, the exponential of the fitted intercept.
    trials : int
        Number of trials (rows of ``y``).
    dropped : int
        Number of points of ``x`` excluded because the mean curve is not positive there.
    method : str
        ``"bootstrap"`` (several trials) or ``"ols"`` (a single curve).
    """

    slope: float
    stderr: float
    ci: tuple[float, float]
    level: float
    prefactor: float
    trials: int
    dropped: int
    method: str

    def __call__(self, x) -> np.ndarray:
        """The fitted line :math:`C x^{s}` at ``x``."""
        return self.prefactor * np.asarray(x, dtype=np.float64) ** self.slope

    def __str__(self) -> str:
        lo, hi = self.ci
        return (f"{sig(self.slope)} ± {sig(self.stderr)} "
                f"({100 * self.level:.0f} % CI [{sig(lo)}, {sig(hi)}])")


@dataclass(frozen=True)
class Verdict:
    """Where a predicted exponent lies against a fit.

    Attributes
    ----------
    predicted : float
        The predicted slope.
    inside : bool
        Whether ``predicted`` lies inside the fit's confidence interval.
    z : float
        ``(slope - predicted) / stderr``: how many standard errors the fit is from the prediction.
    fit : PowerLawFit
        The fit the prediction was compared with.
    """

    predicted: float
    inside: bool
    z: float
    fit: PowerLawFit

    def __str__(self) -> str:
        lo, hi = self.fit.ci
        if self.inside:
            return (f"agrees: theory {sig(self.predicted)} inside the {100 * self.fit.level:.0f} % CI "
                    f"[{sig(lo)}, {sig(hi)}]")
        return (f"disagrees: theory {sig(self.predicted)} is {sig(abs(self.z))} standard errors from "
                f"the fit {sig(self.fit.slope)}")


def fit_power_law(x, y, *, level: float = 0.95, n_boot: int = 2000, seed: int = 0) -> PowerLawFit:
    r"""Fit :math:`y \approx C x^{s}` by least squares on log-log axes, with its uncertainty.

    Parameters
    ----------
    x : array_like, shape (n,)
        Positive abscissae.
    y : array_like, shape (n,) or (trials, n)
        Non-negative, finite values; with several trials the mean over trials is fitted.
    level : float
        Confidence level of the interval, in (0, 1).
    n_boot : int
        Bootstrap resamples of the trials (used when there are at least two trials), in [2, 10⁶].
    seed : int
        Seed of the bootstrap resampling: the same inputs give the same interval on every machine.

    Returns
    -------
    PowerLawFit
        Slope, standard error, interval, prefactor, and how many points the zero-mean rule dropped.

    Notes
    -----
    Per-trial fits are not used: a single trial with zero errors at large x would silently lose those
    points. Within a bootstrap resample, a point kept for the full fit whose resampled mean is zero is
    left out of that resample's fit only.
    """
    x = _floats("x", x)
    y = np.atleast_2d(_floats("y", y))
    if x.ndim != 1 or y.ndim != 2 or y.shape[-1] != x.size:
        raise ValueError(f"y must have shape (len(x),) or (trials, len(x)) with len(x)={x.size}, "
                         f"got shape {y.shape}")
    if not np.all(np.isfinite(x)) or np.any(x <= 0):
        raise ValueError("x must be positive and finite to fit a power law")
    if not np.all(np.isfinite(y)) or np.any(y < 0):
        raise ValueError("y must be finite and non-negative to fit a power law")
    level = _validate.real("level", level, low=0.0, high=1.0, low_open=True, high_open=True)
    n_boot = _validate.positive_int("n_boot", n_boot, minimum=2)
    if n_boot > 10**6:
        raise ValueError(f"n_boot must be an integer in [2, 10**6], got {n_boot}")
    seed = _validate.seed("seed", seed)

    mean = y.mean(axis=0)
    keep = mean > 0
    if keep.sum() < 2:
        raise ValueError(f"y's mean is positive at {int(keep.sum())} point(s) of x: a power-law fit needs 2")
    logx = np.log(x[keep])
    slope, intercept = _line(logx, np.log(mean[keep])[None, :], np.ones((1, keep.sum()), bool))
    trials = y.shape[0]
    if trials >= 2:
        rng = np.random.default_rng(seed)
        rows = rng.integers(0, trials, size=(n_boot, trials))
        resampled = y[:, keep][rows].mean(axis=1)                  # (n_boot, kept points)
        positive = resampled > 0
        boot, _ = _line(logx, np.log(np.where(positive, resampled, 1.0)), positive)
        boot = boot[np.isfinite(boot)]
        stderr = float(boot.std(ddof=1)) if boot.size > 1 else float("nan")
        lo, hi = np.quantile(boot, [(1 - level) / 2, (1 + level) / 2]) if boot.size else (np.nan, np.nan)
        method = "bootstrap"
    else:
        residual_dof = logx.size - 2
        if residual_dof > 0:
            residuals = np.log(mean[keep]) - (intercept[0] + slope[0] * logx)
            stderr = float(np.sqrt(residuals @ residuals / residual_dof / np.sum((logx - logx.mean()) ** 2)))
            half = stats.t.ppf((1 + level) / 2, residual_dof) * stderr
        else:
            stderr = half = float("nan")
        lo, hi = slope[0] - half, slope[0] + half
        method = "ols"
    return PowerLawFit(slope=float(slope[0]), stderr=stderr, ci=(float(lo), float(hi)), level=level,
                       prefactor=float(np.exp(intercept[0])), trials=trials,
                       dropped=int((~keep).sum()), method=method)


def verdict(fit: PowerLawFit, predicted: float) -> Verdict:
    """Compare a predicted exponent with a fit: inside its interval, or how many standard errors away.

    Parameters
    ----------
    fit : PowerLawFit
        A fit from :func:`fit_power_law`.
    predicted : float
        The exponent theory predicts.

    Returns
    -------
    Verdict
        ``inside`` the interval or not, and ``z = (slope - predicted) / stderr``.
    """
    if not isinstance(fit, PowerLawFit):
        raise TypeError(f"fit must be a PowerLawFit, got {type(fit).__name__}")
    predicted = _validate.real("predicted", predicted)
    lo, hi = fit.ci
    z = (fit.slope - predicted) / fit.stderr if fit.stderr > 0 else float("inf") * np.sign(fit.slope - predicted)
    return Verdict(predicted=predicted, inside=bool(lo <= predicted <= hi), z=float(z), fit=fit)


def _floats(name: str, values) -> np.ndarray:
    """``values`` as a float64 array, or a ``TypeError`` naming ``name`` (strings, None, objects)."""
    if isinstance(values, (str, bytes)) or values is None:
        raise TypeError(f"{name} must be an array of real numbers, got {values!r:.60}")
    values = values.detach().cpu() if hasattr(values, "detach") else values
    try:
        arr = np.asarray(values)
        if arr.dtype.kind in "USV":  # numpy would parse "1.5", and fail deep inside on "a"
            raise TypeError
        return arr.astype(np.float64)
    except (TypeError, ValueError):
        raise TypeError(f"{name} must be an array of real numbers, got {values!r:.60}") from None


def _line(logx: np.ndarray, logy: np.ndarray, mask: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Slopes and intercepts of weighted least-squares lines, one per row of ``logy``, over the points
    where ``mask`` holds (nan where fewer than two points remain)."""
    w = mask.astype(np.float64)
    count = w.sum(axis=1)
    with np.errstate(invalid="ignore", divide="ignore"):
        mx = (w * logx).sum(axis=1) / count
        my = (w * logy).sum(axis=1) / count
        dx = logx[None, :] - mx[:, None]
        sxx = (w * dx**2).sum(axis=1)
        slope = (w * dx * (logy - my[:, None])).sum(axis=1) / sxx
    slope = np.where(count >= 2, slope, np.nan)
    return slope, my - slope * mx
