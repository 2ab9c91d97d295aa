r"""Hopfield capacities and energies in closed form (chapter 5, *Hopfield energy*).

Classical and dense associative memories [KH16], modern Hopfield networks [R20], and the layer
energies of [NBDH24]. Everything here is small exact theory in numpy/float64; the simulations that
these formulas are compared with live in :mod:`assocmem.hopfield`.
"""

from __future__ import annotations

import math

import numpy as np
from scipy.special import betainc, erf, gammaln, ive, lambertw, log_ndtr, ndtri

from .. import _validate as check

__all__ = [
    "CLASSICAL_CAPACITY_RATIO",
    "R20_CAPACITY_EXAMPLES",
    "classical_capacity",
    "replica_overlap",
    "error_free_capacity",
    "double_factorial",
    "dense_capacity_scale",
    "dense_error_free_capacity",
    "dense_bit_error",
    "dense_capacity_at_error",
    "modern_energy_offset",
    "modern_energy_bounds",
    "modern_capacity_scale",
    "modern_capacity_constant",
    "modern_capacity_lower_bound",
    "retrieval_error_bound",
    "cap_probability",
    "nearest_neighbour_bounds",
    "mchn_link_gap",
    "global_energy_bounds",
]

#: Critical load :math:`K/d` of the classical Hopfield network (Amit, Gutfreund & Sompolinsky):
#: below it the stored patterns are retrieved with a small fraction (about 1.5%) of wrong bits.
CLASSICAL_CAPACITY_RATIO = 0.138

#: The two worked examples that follow Theorem 3 of [R20]: ``(beta, K, d, p) -> c``.
R20_CAPACITY_EXAMPLES = {(1.0, 3.0, 20, 0.001): 3.1546, (1.0, 1.0, 75, 0.001): 1.3718}


def classical_capacity(d) -> np.ndarray:
    r"""Capacity :math:`K \approx 0.138\,d` of the classical Hopfield network (small errors allowed).

    Parameters
    ----------
    d : int or array of int
        Dimension(s), integers :math:`\ge 1`.
    """
    return CLASSICAL_CAPACITY_RATIO * _dimensions(d)


def replica_overlap(load, *, iterations: int = 5000) -> np.ndarray:
    r"""Overlap :math:`m` of the retrieval state of the classical network at load
    :math:`\alpha = K/d`, :math:`d \to \infty` (replica-symmetric theory of Amit, Gutfreund and
    Sompolinsky at zero temperature): the fixed point reached from :math:`m = 1, r = 1` of

    .. math:: m = \operatorname{erf}\Bigl(\frac{m}{\sqrt{2\alpha r}}\Bigr), \quad
              C = \sqrt{\frac{2}{\pi\alpha r}}\, e^{-m^2/(2\alpha r)}, \quad r = \frac{1}{(1-C)^2}.

    The fraction of wrong bits is :math:`(1-m)/2`: about 1.2% just below
    :math:`\alpha_c \approx 0.138`, where the retrieval state disappears (:math:`m = 0` above).

    Parameters
    ----------
    load : float or array
        Load(s) :math:`\alpha = K/d`, :math:`> 0`.
    iterations : int
        Fixed-point iterations, :math:`\ge 1`.
    """
    load = check.positive_array("load", load)
    iterations = check.positive_int("iterations", iterations)
    check.budget("iterations", work=iterations * (20.0 * load.size + 1e5),
                 formula="20 operations per iteration and load, plus the interpreter's per-iteration cost")
    m, r = np.ones_like(load), np.ones_like(load)
    for _ in range(iterations):
        C = np.sqrt(2.0 / (np.pi * load * r)) * np.exp(-(m**2) / (2.0 * load * r))
        r = np.where(C < 1, 1.0 / np.clip(1.0 - C, 1e-150, None) ** 2, np.inf)
        m = erf(m / np.sqrt(2.0 * load * r))
    return m


def error_free_capacity(d) -> np.ndarray:
    r"""Error-free capacity :math:`K \approx d / (2 \ln d)` of the classical Hopfield network, per
    pattern: the number of stored patterns up to which each one keeps all its ``d`` bits under an
    update (is an exact fixed point) with high probability, from :math:`d\,e^{-d/2K} \ll 1`.
    Requiring every bit of *every* pattern at once, a union bound over all :math:`Kd` bits, gives
    :math:`d/(4 \ln d)` instead (chapter 5).

    Parameters
    ----------
    d : int or array of int
        Dimension(s), integers :math:`\ge 2`.
    """
    d = _dimensions(d, minimum=2)
    return d / (2.0 * np.log(d))


def double_factorial(n: int) -> int:
    r""":math:`n!! = n (n-2) (n-4) \cdots`, with :math:`(-1)!! = 0!! = 1`.

    Parameters
    ----------
    n : int
        An integer :math:`\ge -1`.
    """
    n = check.positive_int("n", n, minimum=-1)
    check.budget("n", work=float(n) ** 2, formula="n**2 digit operations of the big-integer product")
    return math.prod(range(n, 0, -2)) if n > 0 else 1


def dense_capacity_scale(d, a: int) -> np.ndarray:
    r"""Capacity scale :math:`d^{a-1}` of the dense associative memory with :math:`F(x) = x^a` [KH16].

    Parameters
    ----------
    d : int or array of int
        Dimension(s), integers :math:`\ge 1`.
    a : int
        Power of :math:`F(x) = x^a`, an integer :math:`\ge 2`.
    """
    a = check.positive_int("a", a, minimum=2)
    return _in_range(np.exp((a - 1) * np.log(_dimensions(d))), "a, d")


def dense_error_free_capacity(d, a: int) -> np.ndarray:
    r"""Error-free capacity of the dense associative memory [KH16],

    .. math:: K \approx \frac{d^{a-1}}{2\,(2a-3)!!\,\ln d},

    which is :math:`d/(2 \ln d)` for :math:`a = 2`, the classical network.

    Parameters
    ----------
    d : int or array of int
        Dimension(s), integers :math:`\ge 2`.
    a : int
        Power of :math:`F(x) = x^a`, an integer :math:`\ge 2`.
    """
    a = check.positive_int("a", a, minimum=2)
    d = _dimensions(d, minimum=2)
    return _in_range(np.exp((a - 1) * np.log(d) - _log_odd_double_factorial(2 * a - 3)) / (2.0 * np.log(d)), "a, d")


def dense_bit_error(K, d, a: int) -> np.ndarray:
    r"""Probability that one bit of a stored pattern flips under one update (signal-to-noise estimate).

    With :math:`K` random :math:`\pm 1` patterns in dimension :math:`d` and :math:`F(x) = x^a`, the
    energy gap that keeps a bit is a signal :math:`\approx 2a\,d^{a-1}` plus a sum of :math:`K - 1`
    interference terms of variance :math:`\approx 4a^2 (2a-3)!!\,d^{a-1}` each; treating the sum as
    Gaussian,

    .. math:: P(\text{bit flips}) \approx \Phi\!\left(-\sqrt{\frac{d^{a-1}}{(2a-3)!!\,K}}\right).

    Parameters
    ----------
    K : float or array
        Number(s) of stored patterns, :math:`> 0`.
    d : int or array of int
        Dimension(s), integers :math:`\ge 1`.
    a : int
        Power of :math:`F(x) = x^a`, an integer :math:`\ge 2`.
    """
    a = check.positive_int("a", a, minimum=2)
    K = check.real_array("K", K)
    if np.any(K <= 0):
        raise ValueError("K must be positive")
    snr = np.exp(0.5 * ((a - 1) * np.log(_dimensions(d)) - _log_odd_double_factorial(2 * a - 3) - np.log(K)))
    return np.exp(log_ndtr(-snr))


def dense_capacity_at_error(d, a: int, error: float) -> np.ndarray:
    r"""Number of patterns at which :func:`dense_bit_error` reaches ``error``:

    .. math:: K_\varepsilon = \frac{d^{a-1}}{(2a-3)!!\, z_\varepsilon^2},
              \qquad z_\varepsilon = \Phi^{-1}(1-\varepsilon).

    For :math:`a = 2` and :math:`\varepsilon \approx 0.0036` this is :math:`0.138\,d`.

    Parameters
    ----------
    d : int or array of int
        Dimension(s), integers :math:`\ge 1`.
    a : int
        Power of :math:`F(x) = x^a`, an integer :math:`\ge 2`.
    error : float
        Target bit error :math:`\varepsilon`, in :math:`(0, 0.5)`.
    """
    a = check.positive_int("a", a, minimum=2)
    error = check.real("error", error, low=0.0, high=0.5, low_open=True, high_open=True)
    z = ndtri(1.0 - error)
    log_scale = (a - 1) * np.log(_dimensions(d)) - _log_odd_double_factorial(2 * a - 3)
    return _in_range(np.exp(log_scale) / z**2, "a, d")


def modern_energy_offset(N: int, M: float, beta: float) -> float:
    r"""The constant :math:`\beta^{-1}\log N + \tfrac12 M^2` of the modern Hopfield energy [R20]

    .. math:: E(\xi) = -\beta^{-1}\log\sum_{i=1}^N e^{\beta x_i^\top \xi} + \tfrac12 \xi^\top\xi
              + \beta^{-1}\log N + \tfrac12 M^2, \qquad M = \max_i \|x_i\|,

    chosen so that :math:`E \ge 0` everywhere.

    Parameters
    ----------
    N : int
        Number of stored patterns, :math:`\ge 1`.
    M : float
        Largest pattern norm :math:`M \ge 0`.
    beta : float
        Inverse temperature :math:`\beta > 0`.
    """
    N = check.positive_int("N", N)
    M = check.real("M", M, low=0.0)
    beta = check.real("beta", beta, low=0.0, low_open=True)
    return math.log(N) / beta + 0.5 * M**2


def modern_energy_bounds(M: float) -> tuple[float, float]:
    r"""Bounds :math:`0 \le E(\xi) \le 2M^2` of the modern Hopfield energy for :math:`\|\xi\| \le M`.

    The lower bound holds everywhere: :math:`E \ge \tfrac12(\|\xi\| - M)^2`; the upper bound uses
    :math:`\mathrm{lse} \ge \log N + \beta\,\overline{x^\top\xi}` and :math:`|x_i^\top\xi| \le M^2`.

    Parameters
    ----------
    M : float
        Largest pattern norm :math:`M \ge 0`.

    Returns
    -------
    tuple of float
        ``(0, 2 M**2)``.
    """
    M = check.real("M", M, low=0.0)
    return 0.0, 2.0 * M**2


def modern_capacity_scale(d, *, beta: float = 1.0, K: float = 1.0, tolerance: float = 0.1) -> np.ndarray:
    r"""Mean-field capacity scale of the modern Hopfield network with :math:`N` patterns uniform on
    the sphere of radius :math:`K\sqrt{d-1}`.

    One update from :math:`x_i` leaves it with weight :math:`p_i = e^{\kappa}/(e^{\kappa} + S)` on
    itself, :math:`\kappa = \beta K^2 (d-1)`, where :math:`S = \sum_{j \ne i} e^{\kappa \cos(x_i, x_j)}`
    has mean :math:`(N-1)\,\mathbb{E}\,e^{\kappa\cos}` with the von Mises-Fisher normaliser
    :math:`\mathbb{E}\,e^{\kappa\cos} = \Gamma(\tfrac d2)(2/\kappa)^{d/2-1} I_{d/2-1}(\kappa)`.
    The relative error :math:`\approx S e^{-\kappa}` reaches ``tolerance`` at

    .. math:: N \approx \text{tolerance} \cdot e^{\kappa} / \mathbb{E}\,e^{\kappa\cos},

    exponential in :math:`d`.

    Parameters
    ----------
    d : int or array of int
        Dimension(s), integers :math:`\ge 2`.
    beta : float
        Inverse temperature :math:`\beta > 0`.
    K : float
        Radius factor :math:`K > 0`.
    tolerance : float
        Relative retrieval error allowed, :math:`> 0`.
    """
    d = _dimensions(d, minimum=2)
    beta = check.real("beta", beta, low=0.0, low_open=True)
    K = check.real("K", K, low=0.0, low_open=True)
    tolerance = check.real("tolerance", tolerance, low=0.0, low_open=True)
    # log N = log tol + kappa - log E e^{kappa cos}; the kappa of I_nu = ive e^kappa cancels it exactly,
    # and log kappa is a sum of logs, so a huge beta, K or d neither overflows nor loses digits
    log_kappa = math.log(beta) + 2.0 * math.log(K) + np.log(d - 1)
    nu = d / 2.0 - 1.0
    log_n = math.log(tolerance) - gammaln(d / 2.0) - nu * (math.log(2.0) - log_kappa) - _log_ive(nu, log_kappa)
    with np.errstate(over="ignore"):
        return _in_range(np.exp(log_n), "d, beta, K, tolerance")


def modern_capacity_constant(beta: float, K: float, d: int, p: float) -> float:
    r"""The base :math:`c` of Theorem 3 of [R20] (storage capacity of the modern Hopfield network).

    With patterns drawn uniformly on the sphere of radius :math:`M = K\sqrt{d-1}` and failure
    probability :math:`p`,

    .. math:: a = \tfrac{2}{d-1}\bigl(1 + \ln(2\beta K^2 p (d-1))\bigr), \quad b = \tfrac{2K^2\beta}{5},
              \quad c = \frac{b}{W_0(\exp(a + \ln b))},

    with :math:`W_0` the upper branch of the Lambert W function. For :math:`\beta = 1, K = 3, d = 20,
    p = 0.001` it gives :math:`c = 3.1546`; for :math:`\beta = 1, K = 1, d = 75` it gives
    :math:`c = 1.3718`.

    Parameters
    ----------
    beta : float
        Inverse temperature :math:`\beta > 0`.
    K : float
        Radius factor :math:`K > 0` (patterns of norm :math:`K\sqrt{d-1}`).
    d : int
        Dimension, :math:`\ge 2`.
    p : float
        Failure probability, in :math:`(0, 1]`.
    """
    log_c = _log_capacity_constant(beta, K, d, p)
    if log_c > _LOG_MAX:
        raise ValueError(f"beta, K: c = exp({log_c:.4g}) exceeds the float64 range (about 1.8e308) "
                         f"for beta={beta}, K={K}, d={d}, p={p}")
    return math.exp(log_c)


def modern_capacity_lower_bound(beta: float, K: float, d: int, p: float) -> float:
    r"""Theorem 3 of [R20]: with probability :math:`1-p`, at least

    .. math:: N \ge \sqrt{p}\; c^{(d-1)/4}

    random patterns on the sphere of radius :math:`K\sqrt{d-1}` are stored and retrieved in one
    update (:math:`c` from :func:`modern_capacity_constant`); exponential in :math:`d`. The theorem
    asks for :math:`c \ge (2/\sqrt p)^{4/(d-1)}`; a ``ValueError`` says when that fails.

    Parameters
    ----------
    beta : float
        Inverse temperature :math:`\beta > 0`.
    K : float
        Radius factor :math:`K > 0` (patterns of norm :math:`K\sqrt{d-1}`).
    d : int
        Dimension, :math:`\ge 2`.
    p : float
        Failure probability, in :math:`(0, 1]`.
    """
    log_c = _log_capacity_constant(beta, K, d, p)
    if log_c < 4.0 / (d - 1) * (math.log(2.0) - 0.5 * math.log(p)):
        raise ValueError(f"Theorem 3 of [R20] needs c >= (2/sqrt(p))^(4/(d-1)); with beta={beta}, "
                         f"K={K}, d={d}, p={p} it gives c={math.exp(log_c):.4f}")
    log_bound = 0.5 * math.log(p) + (d - 1) / 4.0 * log_c
    if log_bound > _LOG_MAX:
        raise ValueError(f"beta, K, d: the bound exp({log_bound:.4g}) exceeds the float64 range (about 1.8e308) "
                         f"for beta={beta}, K={K}, d={d}, p={p}")
    return math.exp(log_bound)


def retrieval_error_bound(N: int, M: float, beta: float, separation, distance) -> np.ndarray:
    r"""One-step retrieval error bound of [R20] (Theorem 5): for the update :math:`f` and a stored
    pattern :math:`x_i` with separation :math:`\Delta_i`,

    .. math:: \|f(\xi) - x_i\| \le 2(N-1)\,M\,\exp\!\bigl(-\beta(\Delta_i - 2M\,r)\bigr),

    where the theorem takes :math:`r = \max\{\|\xi - x_i\|, \|x_i^* - x_i\|\}`. The proof only uses
    :math:`(x_i - x_j)^\top \xi \ge \Delta_i - 2M\|\xi - x_i\|`, so :math:`r = \|\xi - x_i\|` already
    gives a valid (tighter) bound; pass ``distance`` accordingly.

    Parameters
    ----------
    N : int
        Number of stored patterns, :math:`\ge 1`.
    M : float
        Largest pattern norm :math:`M \ge 0`.
    beta : float
        Inverse temperature :math:`\beta > 0`.
    separation : float or array
        Separation(s) :math:`\Delta_i` of the target pattern(s).
    distance : float or array
        Distance(s) :math:`r \ge 0` of the query from the pattern; broadcasts with ``separation``.
    """
    N = check.positive_int("N", N)
    M = check.real("M", M, low=0.0)
    beta = check.real("beta", beta, low=0.0, low_open=True)
    separation = check.real_array("separation", separation)
    distance = check.real_array("distance", distance)
    if np.any(distance < 0):
        raise ValueError("distance must be non-negative")
    if N == 1 or M == 0:  # one pattern (or all at the origin): the update returns it exactly
        return np.zeros(np.broadcast_shapes(separation.shape, distance.shape))
    with np.errstate(over="ignore"):
        bound = 2.0 * (N - 1) * M * np.exp(-beta * (separation - 2.0 * M * distance))
    if not np.all(np.isfinite(bound)):
        raise ValueError(f"N, M, beta, separation, distance: the bound exceeds the float64 range (about 1.8e308) "
                         f"for N={N}, M={M}, beta={beta} (it is vacuous there: an update is always within 2M of "
                         f"the pattern)")
    return bound


def cap_probability(eta, d) -> np.ndarray:
    r"""Probability that two independent uniform unit vectors of :math:`\mathbb{R}^d` have cosine
    above :math:`\eta \in [0, 1)`: the normalised area of a spherical cap,

    .. math:: P(e^\top e' > \eta) = \tfrac12\, I_{1-\eta^2}\!\left(\tfrac{d-1}{2}, \tfrac12\right)
              \approx e^{-d\,\eta^2/2},

    with :math:`I` the regularised incomplete beta function. In the thresholded memory of the talk an
    association interferes with a query only through such a cap, so :math:`1/P` sets a capacity scale
    exponential in :math:`d`.

    Parameters
    ----------
    eta : float or array
        Cosine threshold(s) :math:`\eta \in [0, 1)`.
    d : int or array of int
        Dimension(s), integers :math:`\ge 2`.
    """
    eta = check.real_array("eta", eta)
    if np.any((eta < 0) | (eta >= 1)):
        raise ValueError("eta must lie in [0, 1)")
    d = _dimensions(d, minimum=2)
    return 0.5 * betainc((d - 1) / 2.0, 0.5, 1.0 - eta**2)


def nearest_neighbour_bounds(g, N: int) -> tuple[np.ndarray, np.ndarray]:
    r"""Proposition 1 of [NBDH24]: with :math:`g(x) = \min_i \|x - \rho_i\|^2` over :math:`N` patterns,

    .. math:: g(x) - \log N \le E(x) = -\log\sum_i e^{-\|x-\rho_i\|^2} \le g(x).

    Returns ``(lower, upper)``.

    Parameters
    ----------
    g : float or array
        Squared distance(s) :math:`g(x)` to the nearest pattern.
    N : int
        Number of patterns, :math:`\ge 1`.
    """
    N = check.positive_int("N", N)
    g = check.real_array("g", g)
    return g - math.log(N), g


def mchn_link_gap(norms) -> float:
    r"""Proposition 2 of [NBDH24]: the layer energy and the modern Hopfield energy at :math:`\beta = 2`
    satisfy

    .. math:: 2E^{\mathrm{MCHN}}_{\beta=2}(x) - \log N - \bigl(\max_i\|\rho_i\|^2 - \min_i\|\rho_i\|^2\bigr)
              \le E(x) \le 2E^{\mathrm{MCHN}}_{\beta=2}(x) - \log N,

    with equality for patterns of equal norm. Returns the gap :math:`\max\|\rho\|^2 - \min\|\rho\|^2`.

    Parameters
    ----------
    norms : array
        The pattern norms :math:`\|\rho_i\|`, non-empty and non-negative.
    """
    norms = check.real_array("norms", norms)
    if norms.size == 0 or np.any(norms < 0):
        raise ValueError("norms must be a non-empty array of non-negative numbers")
    return float(norms.max() ** 2 - norms.min() ** 2)


def global_energy_bounds(min_energy, layers: int) -> tuple[np.ndarray, np.ndarray]:
    r"""Bounds of the global energy of :math:`l` layers [NBDH24],
    :math:`E_{\mathrm{global}} = -\log\sum_{t=1}^{l} e^{-E_t}`:

    .. math:: \min_t E_t - \log l \le E_{\mathrm{global}} \le \min_t E_t,

    strict on the right as soon as :math:`l \ge 2`. Returns ``(lower, upper)``.

    Parameters
    ----------
    min_energy : float or array
        :math:`\min_t E_t`, the smallest layer energy.
    layers : int
        Number of layers :math:`l \ge 1`.
    """
    layers = check.positive_int("layers", layers)
    min_energy = check.real_array("min_energy", min_energy)
    return min_energy - math.log(layers), min_energy


_LOG_MAX = math.log(np.finfo(np.float64).max)


def _log_capacity_constant(beta, K, d, p) -> float:
    r"""Validated :math:`\log c` of :func:`modern_capacity_constant`, from sums of logs and
    :math:`\log W_0(e^y)` (so a huge ``beta`` or ``K`` neither overflows nor divides by zero)."""
    beta = check.real("beta", beta, low=0.0, low_open=True)
    K = check.real("K", K, low=0.0, low_open=True)
    d = check.positive_int("d", d, minimum=2)
    p = check.real("p", p, low=0.0, high=1.0, low_open=True)
    log_k2_beta = 2.0 * math.log(K) + math.log(beta)
    a = 2.0 / (d - 1) * (1.0 + math.log(2.0) + log_k2_beta + math.log(p) + math.log(d - 1))
    log_b = math.log(2.0 / 5.0) + log_k2_beta
    return log_b - _log_lambertw_exp(a + log_b)


def _log_lambertw_exp(y: float) -> float:
    r""":math:`\log W_0(e^y)`: scipy's ``lambertw`` where :math:`e^y` is a normal float; for
    :math:`y < -700`, :math:`W_0(x) = x(1 + O(x))` gives :math:`y`; for :math:`y > 700`, Newton's method on
    :math:`w + \log w = y` from :math:`w = y - \log y` (quadratic convergence, a few steps to machine
    precision)."""
    if y < -700.0:
        return y
    if y <= 700.0:
        return math.log(lambertw(math.exp(y)).real)
    w = y - math.log(y)
    for _ in range(50):
        step = (w + math.log(w) - y) / (1.0 + 1.0 / w)
        w -= step
        if abs(step) <= 4e-16 * w:
            break
    return math.log(w)


def _log_ive(nu, log_kappa):
    r""":math:`\log(I_\nu(\kappa) e^{-\kappa})` given :math:`\log\kappa` (arrays broadcast).

    ``scipy.special.ive`` where it is a positive finite float; where it underflows (large order) or
    fails (huge argument), Debye's uniform expansion with :math:`t = \nu/\sqrt{\nu^2 + \kappa^2}`,

    .. math:: \log I_\nu(\kappa) - \kappa = -\tfrac12\log 2\pi - \tfrac14\log(\nu^2 + \kappa^2)
              + \frac{\nu^2}{\sqrt{\nu^2+\kappa^2} + \kappa} - \nu\,\mathrm{asinh}\frac{\nu}{\kappa}
              + \log\Bigl(1 + \sum_{k=1}^{3} \frac{u_k(t)}{\nu^k}\Bigr),

    written without cancellation; its relative error is :math:`O(t^4/\nu^4)`, which is below
    :math:`10^{-9}` wherever ``ive`` underflows (:math:`\nu \gtrsim 100`), and the leading term
    :math:`-\tfrac12\log(2\pi\kappa)` is exact to float64 once :math:`\kappa \gg \nu^2`."""
    nu, log_kappa = np.broadcast_arrays(np.asarray(nu, dtype=np.float64), np.asarray(log_kappa, dtype=np.float64))
    with np.errstate(over="ignore", under="ignore", invalid="ignore", divide="ignore"):
        kappa = np.exp(log_kappa)
        direct = ive(nu, kappa)
        ok = np.isfinite(direct) & (direct > 0)
        out = np.where(ok, np.log(np.where(ok, direct, 1.0)), 0.0)
    if not np.all(ok):
        out[~ok] = _log_ive_debye(nu[~ok], log_kappa[~ok])
    return out


def _log_ive_debye(n: np.ndarray, lk: np.ndarray) -> np.ndarray:
    """The expansion of :func:`_log_ive` for orders ``n`` and log-arguments ``lk`` (1-D arrays)."""
    ratio = np.exp(np.log(np.maximum(n, 1e-300)) - lk) * (n > 0)  # nu / kappa, 0 when kappa overflows
    root = np.sqrt(1.0 + ratio**2)                                   # sqrt(nu^2 + kappa^2) / kappa
    t = ratio / root
    u1 = t * (3.0 - 5.0 * t**2) / 24.0
    u2 = t**2 * (81.0 - 462.0 * t**2 + 385.0 * t**4) / 1152.0
    u3 = t**3 * (30375.0 - 369603.0 * t**2 + 765765.0 * t**4 - 425425.0 * t**6) / 414720.0
    with np.errstate(divide="ignore", invalid="ignore"):
        series = np.where(n > 0, u1 / n + u2 / n**2 + u3 / n**3, 0.0)
    return (-0.5 * math.log(2.0 * math.pi) - 0.5 * lk - 0.5 * np.log(root) + n * ratio / (root + 1.0)
            - n * np.arcsinh(ratio) + np.log1p(series))


def _log_odd_double_factorial(n: int) -> float:
    r""":math:`\log n!!` for odd :math:`n = 2k - 1 \ge -1`: :math:`\log (2k)! - k \log 2 - \log k!` (no overflow)."""
    k = (n + 1) // 2
    return float(gammaln(2 * k + 1) - k * np.log(2.0) - gammaln(k + 1))


def _in_range(values: np.ndarray, names: str) -> np.ndarray:
    """``values`` if finite, else a ``ValueError`` naming the parameters whose size overflowed float64."""
    if not np.all(np.isfinite(values)):
        raise ValueError(f"{names}: the result exceeds the float64 range (about 1.8e308) for these values")
    return values


def _dimensions(d, *, minimum: int = 1) -> np.ndarray:
    d = np.asarray(d, dtype=np.float64)
    if np.any(d < minimum) or not np.all(np.isfinite(d)):
        raise ValueError(f"d must be finite and >= {minimum}")
    return d
