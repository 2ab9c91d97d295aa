r"""Closed forms of chapter 3: what finite data adds to the error of an associative memory.

A memory built from ``T`` samples can only store the tokens it saw. When the weight of a token is a
function of its count, :math:`q_T(x) = \varphi(n_x)` with :math:`\varphi(0) = 0 < \varphi(n)` for
:math:`n \ge 1`, and the memory recalls a token exactly when it is stored, the expected excess error
over the infinite-data memory is the expected unseen mass of chapter 1,

.. math:: \mathbb{E}_T[\mathcal{E}(q_T)] - \mathcal{E}(q_\infty) = \sum_x p(x)\,(1 - p(x))^T
          \approx \sum_x p(x)\, e^{-T p(x)} \asymp T^{-(1 - 1/\alpha)} .

Thresholding adds the tail of what it chooses not to store, so its error follows
:math:`d^{-(\alpha-1)} + T^{-(1-1/\alpha)}`; storing every seen token instead overflows once the number
of distinct seen tokens is large against ``d``.
"""

from __future__ import annotations

import numpy as np

from .. import _validate as check
from .. import zipf

__all__ = [
    "excess_error",
    "excess_error_exponential",
    "excess_error_law",
    "sample_exponent",
    "threshold_exponent",
    "threshold_lost_mass",
    "threshold_error_law",
    "overflow_dimension",
]


def excess_error(N: int, alpha: float, T) -> np.ndarray:
    r"""Exact expected excess error of a count-based memory, :math:`\sum_x p(x)(1 - p(x))^T`.

    The identity :math:`\mathbb{E}_T[\mathcal{E}(q_T)] - \mathcal{E}(q_\infty) = \sum_x p(x)(1-p(x))^T`
    is exact (not only asymptotic) under three conditions:

    1. each weight depends on its own count only and vanishes exactly on unseen tokens,
       :math:`q_T(x) = \varphi_T(n_x)` with :math:`\varphi_T(0) = 0 < \varphi_T(n)` for :math:`n \ge 1`
       (store every seen token, :math:`\hat p^\rho`; *not* top-P, which also drops seen tokens), and
       :math:`q_\infty > 0` everywhere;
    2. the memory is orthogonal enough that a token's recall depends on its own weight only: every
       stored token is recalled, so :math:`\mathcal{E}(q_\infty) = 0` (orthonormal input embeddings,
       ``d >= N``, and output embeddings whose Gram matrix has its strict maximum on the diagonal of
       each row);
    3. a token with weight 0 is always an error: its scores are all 0 and a tie counts as a miss (as in
       :func:`assocmem.memory.population_error` with its default ``ties="error"``; the ``argmax`` rule,
       ``ties="first"``, is right on the unseen tokens of class 0, and each term gets the factor
       :math:`1[f^*(x) \ne 0]`).

    Then :math:`\mathcal{E}(q_T) = \sum_x p(x)\,1[n_x = 0]` for every sample, and
    :math:`\mathbb{P}(n_x = 0) = (1 - p(x))^T`. With random embeddings, condition 2 fails: interference
    makes :math:`\mathcal{E}(q_\infty) > 0` and a token of weight 0 sees symmetric noise, right about
    ``1/M`` of the time, so the identity becomes an approximation, which chapter 3 measures against
    simulation (and checks exactly by brute-force enumeration of samples).

    Parameters
    ----------
    N : int
        Number of tokens.
    alpha : float
        Zipf exponent, ``alpha >= 0``.
    T : int or sequence of int
        Sample sizes (``T >= 0``).

    Returns
    -------
    numpy.ndarray
        One value per ``T`` (float64); the same numbers as :func:`assocmem.zipf.expected_unseen_mass`.
    """
    return zipf.expected_unseen_mass(N, alpha, T)


def excess_error_exponential(N: int, alpha: float, T) -> np.ndarray:
    r"""Poisson form of the excess error, :math:`\sum_x p(x)\, e^{-T p(x)}`.

    It upper-bounds the exact sum, since :math:`(1 - p)^T \le e^{-Tp}`, and the two agree to relative
    order :math:`\max_x T p(x)^2 e^{-Tp(x)}` (small once every token with a non-negligible share of the
    unseen mass has :math:`p(x) \ll 1`). It is the form that turns sums into the integral behind
    :func:`excess_error_law`.

    Parameters
    ----------
    N : int
        Vocabulary size of the Zipf law :math:`p(x) \propto x^{-\alpha}`, :math:`x = 1, \dots, N`.
    alpha : float
        Zipf exponent.
    T : int or array of int
        Number(s) of samples, :math:`\ge 0`.

    Returns
    -------
    numpy.ndarray
        One value per ``T``.
    """
    p = zipf.zipf_probs(N, alpha)
    T = check.int_array("T", T, minimum=0).astype(np.float64)
    return np.exp(-np.outer(T, p)) @ p


def excess_error_law(alpha: float, T) -> np.ndarray:
    r"""Asymptotic excess error for ``N = inf`` and ``alpha > 1``:
    :math:`\frac{\Gamma(1-1/\alpha)}{\alpha\,\zeta(\alpha)^{1/\alpha}}\,T^{-(1-1/\alpha)}`
    (the unseen-mass law of chapter 1, :func:`assocmem.zipf.expected_unseen_mass_law`).

    Parameters
    ----------
    alpha : float
        Zipf exponent, :math:`> 1`.
    T : int or array
        Number(s) of samples.
    """
    return zipf.expected_unseen_mass_law(alpha, T)


def sample_exponent(alpha: float) -> float:
    r"""Exponent of the data term, :math:`-(1 - 1/\alpha)` (``alpha > 1``): ``-0.5`` at ``alpha = 2``.

    Parameters
    ----------
    alpha : float
        Zipf exponent, :math:`> 1`.
    """
    alpha = check.real("alpha", alpha, low=1.0, low_open=True)
    return -(1.0 - 1.0 / alpha)


def threshold_exponent(alpha: float) -> float:
    r"""Exponent of the memory term of thresholding, :math:`-(\alpha - 1)` (``alpha > 1``): the tail
    :math:`p(x > P) \asymp P^{1-\alpha}` with ``P`` proportional to ``d``.

    Parameters
    ----------
    alpha : float
        Zipf exponent, :math:`> 1`.
    """
    alpha = check.real("alpha", alpha, low=1.0, low_open=True)
    return -(alpha - 1.0)


def threshold_lost_mass(N: int, alpha: float, d, T, *, ratio: float = 12.0) -> np.ndarray:
    r"""Mass of the tokens a thresholded memory built from ``T`` samples cannot store.

    The memory keeps the :math:`P = \lfloor d / \text{ratio} \rfloor` most frequent seen tokens. For
    ``T`` large against ``P`` those are the ``P`` most probable tokens whenever they were seen, so the
    lost mass is the tail beyond ``P`` plus the unseen part of the head,

    .. math:: L(d, T) = p(x > P) + \sum_{x \le P} p(x)\,(1 - p(x))^T
              \asymp d^{-(\alpha - 1)} + T^{-(1 - 1/\alpha)} .

    It neglects the seen tokens beyond ``P`` that take the free slots when fewer than ``P`` head tokens
    were seen (so it slightly over-counts at small ``T``). With random embeddings a token that is not
    stored is still recalled by chance about ``1/M`` of the time (its scores are symmetric noise), so
    the predicted error is :math:`(1 - 1/M)\,L` plus the interference among stored tokens, which is
    small when ``ratio`` is large enough (chapter 2).

    Parameters
    ----------
    N : int
        Vocabulary size of the Zipf law.
    alpha : float
        Zipf exponent.
    d : int or array of int
        Embedding dimension(s).
    T : int or array of int
        Number(s) of samples, :math:`\ge 0`.
    ratio : float
        Dimensions per stored token, :math:`> 0`: the memory keeps
        :math:`P = \min(\lfloor d/\text{ratio} \rfloor, N)` tokens.

    Returns
    -------
    numpy.ndarray
        float64, shape ``(len(T), len(d))``.
    """
    ratio = check.real("ratio", ratio, low=0.0, low_open=True)
    d = check.int_array("d", d)
    T = check.int_array("T", T, minimum=0)
    p = zipf.zipf_probs(N, alpha)  # validates N and alpha
    check.budget("N, T", nbytes=24.0 * T.size * (N + 1), formula="three float64 arrays of len(T) x N")
    P = np.minimum(np.floor(d / ratio).astype(np.int64), N)
    unseen_head = np.concatenate([np.zeros((T.size, 1)),
                                  np.cumsum(p * np.exp(np.outer(T, np.log1p(-p))), axis=1)], axis=1)
    return zipf.tail_mass(N, alpha, P)[None, :] + unseen_head[:, P]


def threshold_error_law(alpha: float, d, T, *, ratio: float = 12.0) -> np.ndarray:
    r"""Asymptotic lost mass of thresholding, :math:`p(x > d/\text{ratio}) + \text{unseen}(T)`
    :math:`\asymp d^{-(\alpha-1)} + T^{-(1-1/\alpha)}`, on the grid ``(len(T), len(d))``.

    Both terms are the ``N = inf`` laws of chapter 1 (:func:`assocmem.zipf.tail_mass_law` at
    :math:`P = d/\text{ratio}`, not rounded, and :func:`excess_error_law`); the second over-counts the
    unseen tokens beyond ``P``, which is negligible once both terms are small. It is the law behind
    :func:`threshold_lost_mass`.

    Parameters
    ----------
    alpha : float
        Zipf exponent, :math:`> 1`.
    d : int or array of int
        Embedding dimension(s).
    T : int or array
        Number(s) of samples.
    ratio : float
        Dimensions per stored token, :math:`> 0` (:math:`P = d/\text{ratio}`).
    """
    alpha = check.real("alpha", alpha, low=1.0, low_open=True)
    ratio = check.real("ratio", ratio, low=0.0, low_open=True)
    d = check.int_array("d", d).astype(np.float64)
    # p(x > P) ~ P^(1 - alpha) / ((alpha - 1) zeta(alpha)): the law at P = 1, scaled to real P = d / ratio
    with np.errstate(over="ignore"):
        tail = zipf.tail_mass_law(alpha, [1]) * (d / ratio) ** (1.0 - alpha)
    if not np.all(np.isfinite(tail)):
        raise ValueError(f"alpha, d, ratio: the tail law P^(1 - alpha) at P = d / ratio = {np.min(d) / ratio:.3g} "
                         f"exceeds the float64 range (about 1.8e308) for alpha={alpha}; the law describes "
                         f"P = d / ratio >= 1")
    return excess_error_law(alpha, T)[:, None] + tail[None, :]


def overflow_dimension(N: int, alpha: float, T, *, capacity: float) -> np.ndarray:
    r"""Dimension below which storing every seen token overflows: :math:`d^*(T) = K(T) / c`.

    :math:`K(T) = \sum_x 1 - (1-p(x))^T` is the expected number of distinct seen tokens
    (:func:`assocmem.zipf.expected_distinct`) and ``capacity`` :math:`c` the number of equal-weight
    associations a memory of dimension ``d`` holds per dimension. Below :math:`d^*(T)` each new token
    adds interference to all the others. Whether the error then *rises* with ``T`` depends on the tail:
    for a steeper law (``alpha = 1`` in chapter 3, the lighter tail against ``alpha = 0.5``) the
    newcomers are rare and the damage wins, so more data makes the memory worse; at ``alpha = 0.5`` they
    carry as much mass as the stored tokens and the error only saturates. Chapter 3 measures :math:`c`
    (of order one) at ``N = 100``, ``alpha = 1``, ``M = 5``.

    Parameters
    ----------
    N : int
        Vocabulary size of the Zipf law.
    alpha : float
        Zipf exponent.
    T : int or array of int
        Number(s) of samples.
    capacity : float
        Associations stored per dimension, :math:`c > 0`.

    Returns
    -------
    numpy.ndarray
        :math:`d^*(T)`, one value per ``T``.
    """
    capacity = check.real("capacity", capacity, low=0.0, low_open=True)
    return zipf.expected_distinct(N, alpha, T) / capacity
