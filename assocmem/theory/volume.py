r"""Ball volumes, the exact ball integral and the N = O(D^2) argument of [NBDH24] (chapter 6).

The argument: a layer's partition function over stored patterns :math:`\rho_i`,
:math:`Z = \sum_i \int_{B_i} e^{-\lVert x - \rho_i\rVert^2}\,dx`, with :math:`B_i` the ball of radius
:math:`r` around :math:`\rho_i` in :math:`\mathbb{R}^n`, sets the cross-entropy
:math:`L \approx \log Z + 1/Z \ge 1`. Bounding the integrand by 1 gives :math:`Z \le n_p V_n(r)`; at
:math:`r = \sqrt{n / 2\pi e}` the volume is :math:`V_n(r) \approx 1/\sqrt{\pi n}`, so :math:`Z = 1` at
about :math:`\sqrt{\pi n}` patterns. The exact integral is
:math:`\pi^{n/2} P(n/2, r^2)` (regularised lower incomplete gamma), smaller than the volume by a
factor close to :math:`e^{-r^2} = e^{-n / 2\pi e}`.

Everything is computed in log space (float64), so dimensions of millions neither overflow nor underflow.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from .. import _validate as check

__all__ = [
    "log_ball_volume",
    "log_lower_gamma_regularized",
    "log_ball_gaussian_integral",
    "theory_radius",
    "loss_from_partition",
    "loss_from_log_partition",
    "patterns_at_unit_partition",
    "log_partition_bracket",
    "radius_at_unit_partition",
    "volume_bound_balance",
]


def log_ball_volume(n, r) -> np.ndarray:
    r"""Log of the volume of the ball of radius ``r`` in dimension ``n``:
    :math:`\log V_n(r) = \tfrac{n}{2}\log\pi + n\log r - \log\Gamma(1 + n/2)`.

    ``n`` (integers >= 1) and ``r`` (> 0) broadcast against each other.

    Parameters
    ----------
    n : int or array of int
        Dimension(s), integers :math:`\ge 1`.
    r : float or array
        Radius (radii), :math:`> 0`; broadcasts against ``n``.
    """
    n = _dimensions(n)
    r = check.positive_array("r", r)
    return 0.5 * n * np.log(np.pi) + n * np.log(r) - special.gammaln(1.0 + 0.5 * n)


def log_lower_gamma_regularized(a, x) -> np.ndarray:
    r"""Log of the regularised lower incomplete gamma :math:`P(a, x) = \gamma(a, x)/\Gamma(a)`.

    Uses the series :math:`P(a, x) = \frac{x^a e^{-x}}{\Gamma(a+1)} \sum_{k \ge 0}
    \frac{x^k}{(a+1)\cdots(a+k)}`, summed in log space, where it converges fast (:math:`x < a + 1`),
    and ``log(scipy.special.gammainc)`` elsewhere (there :math:`P` is not small, so nothing underflows).

    Parameters
    ----------
    a : float or array
        Shape parameter(s), :math:`> 0`.
    x : float or array
        Upper limit(s) of the integral, :math:`> 0`; broadcasts against ``a``.
    """
    return _log_lower_gamma_regularized(check.positive_array("a", a), check.positive_array("x", x))


def _log_lower_gamma_regularized(a: np.ndarray, x: np.ndarray) -> np.ndarray:
    r""":func:`log_lower_gamma_regularized` of checked arrays; ``x = inf`` (an overflowed ``r**2``) gives
    :math:`\log P(a, \infty) = 0` through ``gammainc``."""
    a, x = np.broadcast_arrays(a, x)
    out = np.empty(a.shape, dtype=np.float64)
    series = x < a + 1.0
    out[~series] = np.log(special.gammainc(a[~series], x[~series]))
    if series.any():
        out[series] = _log_gamma_series(a[series], x[series])
    return out


def _log_gamma_series(a: np.ndarray, x: np.ndarray) -> np.ndarray:
    # terms fall at least like exp(-k^2 / 2a) for x < a + 1: 8 sqrt(a) of them leave < e^-32; and at least
    # like ratio^k, ratio = x / (a + 1) < 1: 32 / -log(ratio) of them do too. The fewer of the two is enough
    # (it keeps a dimension of 10^12 at a few hundred terms instead of millions)
    ratio = float(np.max(x / (a + 1.0)))
    geometric = 32.0 / -np.log(ratio) if ratio < 1.0 else np.inf
    k = np.arange(1, int(64 + min(8 * np.sqrt(a.max()), geometric)) + 1, dtype=np.float64)
    log_terms = np.cumsum(np.log(x[:, None]) - np.log(a[:, None] + k[None, :]), axis=1)
    log_sum = np.logaddexp(0.0, special.logsumexp(log_terms, axis=1))
    return a * np.log(x) - x - special.gammaln(a + 1.0) + log_sum


def log_ball_gaussian_integral(n, r) -> np.ndarray:
    r"""Log of :math:`\int_{\lVert x\rVert \le r} e^{-\lVert x\rVert^2}\,dx = \pi^{n/2} P(n/2, r^2)`.

    The radial integral :math:`S_{n-1}\int_0^r s^{n-1}e^{-s^2}ds` with :math:`u = s^2` is
    :math:`\pi^{n/2}\gamma(n/2, r^2)/\Gamma(n/2)`. Always below :math:`\log V_n(r)`.

    Parameters
    ----------
    n : int or array of int
        Dimension(s), integers :math:`\ge 1`.
    r : float or array
        Radius (radii), :math:`> 0`; broadcasts against ``n``.
    """
    n = _dimensions(n)
    r = check.positive_array("r", r)
    with np.errstate(over="ignore"):  # r**2 = inf for r > 1.3e154: the whole Gaussian mass, P = 1
        return 0.5 * n * np.log(np.pi) + _log_lower_gamma_regularized(0.5 * n, r**2)


def theory_radius(n) -> np.ndarray:
    r"""The radius the argument uses, :math:`r = \sqrt{n / 2\pi e}` (where
    :math:`V_n(r) \approx 1/\sqrt{\pi n}` by Stirling).

    Parameters
    ----------
    n : int or array of int
        Dimension(s), integers :math:`\ge 1`.
    """
    return np.sqrt(_dimensions(n) / (2.0 * np.pi * np.e))


def loss_from_partition(Z) -> np.ndarray:
    r"""The cross-entropy the argument predicts, :math:`L \approx \log Z + 1/Z`; minimal (= 1) at Z = 1.

    Parameters
    ----------
    Z : float or array
        Partition function(s), :math:`> 0`.
    """
    Z = check.positive_array("Z", Z)
    return np.log(Z) + 1.0 / Z


def loss_from_log_partition(log_Z) -> np.ndarray:
    r""":func:`loss_from_partition` from :math:`\log Z`, :math:`L = \log Z + e^{-\log Z}`, finite
    wherever the result is (a measured :math:`Z` can be :math:`e^{\pm 1000}`; the result is ``inf``
    only when :math:`\log Z < -709`).

    Parameters
    ----------
    log_Z : float or array
        Natural logs of partition functions.
    """
    log_Z = check.real_array("log_Z", log_Z)
    if not np.all(np.isfinite(log_Z)):
        raise ValueError(f"log_Z must be finite, got {log_Z}")
    with np.errstate(over="ignore"):
        return log_Z + np.exp(-log_Z)


def patterns_at_unit_partition(n, r=None, *, exact: bool = True) -> np.ndarray:
    r"""Log of the number of patterns :math:`n_p` at which :math:`Z = n_p\,I_n(r) = 1`.

    With ``exact=False``, :math:`I_n` is the volume bound :math:`V_n(r)` (the paper's argument,
    :math:`\log n_p \approx \tfrac12\log(\pi n)` at the default radius); with ``exact=True`` it is the
    exact ball integral :math:`\pi^{n/2}P(n/2, r^2)`. ``r`` defaults to :func:`theory_radius`. The
    result is a natural log because the exact count overflows float64 for large ``n``.

    Parameters
    ----------
    n : int or array of int
        Dimension(s), integers :math:`\ge 1`.
    r : float or array, optional
        Radius (radii), :math:`> 0` (default :func:`theory_radius` of ``n``).
    exact : bool
        Use the exact ball integral (``True``) or the volume bound :math:`V_n(r)` (``False``).
    """
    radius = theory_radius(n) if r is None else r
    integral = log_ball_gaussian_integral(n, radius) if exact else log_ball_volume(n, radius)
    return -integral


def log_partition_bracket(n, r=None) -> tuple[np.ndarray, np.ndarray]:
    r"""Proposition 5 of [NBDH24], per pattern: :math:`V_n(r)\,e^{-r^2} \le \int_{B(r)}
    e^{-\lVert x\rVert^2}dx \le V_n(r)`, so :math:`n_p V_n(r) e^{-r^2} \le Z \le n_p V_n(r)`.

    On the ball :math:`e^{-r^2} \le e^{-\lVert x\rVert^2} \le 1`; integrating over its volume gives the
    bracket. Returns the logs of the lower and upper ends, :math:`\log V_n(r) - r^2` and
    :math:`\log V_n(r)`.

    Parameters
    ----------
    n : int or array of int
        Dimensions (>= 1).
    r : float or array, optional
        Radii (> 0); default :func:`theory_radius`.
    """
    radius = theory_radius(n) if r is None else check.positive_array("r", r)
    upper = log_ball_volume(n, radius)
    return upper - np.asarray(radius, dtype=np.float64) ** 2, upper


def radius_at_unit_partition(n, n_patterns, *, exact: bool = True) -> np.ndarray:
    r"""The radius :math:`r` at which :math:`n_p` disjoint balls give :math:`Z = 1`:
    :math:`n_p\,I_n(r) = 1`, with :math:`I_n` the exact ball integral (or, with ``exact=False``, the
    volume bound :math:`V_n(r)`, whose root is :math:`r = (\Gamma(1 + n/2)/n_p)^{1/n}/\sqrt\pi`).

    Both integrals increase with :math:`r`; the exact one is bounded by :math:`\pi^{n/2}`, so a
    root exists when :math:`n_p\,\pi^{n/2} > 1` (else ``nan``). Solved in log space by bisection.

    Parameters
    ----------
    n : int or array of int
        Dimensions (>= 1).
    n_patterns : float or array
        Numbers of patterns :math:`n_p` (> 0); broadcasts with ``n``.
    exact : bool
        Exact ball integral (default) or the volume bound.
    """
    n = _dimensions(n)
    log_np = np.log(check.positive_array("n_patterns", n_patterns))
    n, log_np = np.broadcast_arrays(n, log_np)
    check.budget("n, n_patterns", nbytes=8.0 * n.size, work=n.size * 300 * 1e5,
                 formula="per point up to about 300 bisection steps, each an interpreted call")
    out = np.full(n.shape, np.nan)
    for index in np.ndindex(n.shape):
        dim, target = float(n[index]), -float(log_np[index])
        if not exact:
            out[index] = np.exp((special.gammaln(1.0 + 0.5 * dim) + target) / dim) / np.sqrt(np.pi)
            continue
        if 0.5 * dim * np.log(np.pi) <= target:
            continue
        low, high = 1e-3, 1.0
        while log_ball_gaussian_integral(dim, low)[()] > target:
            low /= 2.0
        while log_ball_gaussian_integral(dim, high)[()] < target:
            high *= 2.0
        for _ in range(200):
            mid = 0.5 * (low + high)
            if log_ball_gaussian_integral(dim, mid)[()] < target:
                low = mid
            else:
                high = mid
            if high - low <= 1e-13 * high:
                break
        out[index] = 0.5 * (low + high)
    return out[()] if out.ndim == 0 else out


def volume_bound_balance(d_emb, context: int, n_layers: int = 1, A: float = 12.0) -> tuple[np.ndarray, np.ndarray]:
    r"""The chain from :math:`Z = 1` to a model-data balance, with the book's definitions and the
    volume bound: a model of width :math:`d_{emb}` sees points of dimension :math:`n = T_{max} d_{emb}`,
    is optimal with :math:`n_p = 1/V_n(\sqrt{n/2\pi e}) \approx \sqrt{\pi n}` patterns (one per
    training sequence), i.e. :math:`D = T_{max}\,n_p` tokens, and has
    :math:`N = A\,l\,d_{emb}^2` parameters. Eliminating :math:`d_{emb}`,
    :math:`N \approx A\,l\,D^4 / (\pi^2 T_{max}^6)` at fixed :math:`T_{max}` and :math:`l`.

    Parameters
    ----------
    d_emb : int or array of int
        Embedding widths.
    context : int
        :math:`T_{max}`.
    n_layers : int
        :math:`l`.
    A : float
        Parameters per layer in units of :math:`d_{emb}^2` (12 for a GPT block with an MLP of width 4d).

    Returns
    -------
    (N, D) : float64 arrays
        Parameters and balanced data size for each width.
    """
    d = _dimensions(d_emb, "d_emb")
    context = check.positive_int("context", context)
    n_layers = check.positive_int("n_layers", n_layers)
    A = check.real("A", A, low=0.0, low_open=True)
    n_p = np.exp(patterns_at_unit_partition(context * d, exact=False))
    return A * n_layers * d**2, context * n_p


def _dimensions(n, name: str = "n") -> np.ndarray:
    arr = np.asarray(n)
    if not (np.issubdtype(arr.dtype, np.integer) or np.issubdtype(arr.dtype, np.floating)):
        raise TypeError(f"{name} must be a dimension (integer >= 1), got {n!r}")
    if arr.size == 0 or not np.all(np.isfinite(arr)) or np.any(arr < 1) or np.any(arr != np.round(arr)):
        raise ValueError(f"{name} must contain integers >= 1, got {n!r}")
    return arr.astype(np.float64)
