"""Heavy-tailed associations: the Zipf law on {1, ..., N}, sampling, counts and seen/unseen mass.

Tokens are stored 0-based: index ``i`` stands for the token ``x = i + 1`` of the book, so
``zipf_probs(N, alpha)[i]`` is ``p(x = i + 1)``. Chapter 1 of the book discusses every function here.
"""

from __future__ import annotations

import numpy as np
from scipy import special

from . import _validate as check

__all__ = ["zipf_probs", "sample_tokens", "token_counts", "rank_frequency", "first_occurrence", "seen_curves",
           "tail_mass", "tail_mass_law", "expected_distinct", "expected_distinct_law", "expected_unseen_mass",
           "expected_unseen_mass_law", "mod_labels", "random_labels"]


def zipf_probs(N: int, alpha: float) -> np.ndarray:
    r"""Zipf law :math:`p(x) = x^{-\alpha} / H_{N,\alpha}` on ``x = 1..N`` (float64, sums to 1).

    ``alpha = 0`` is the uniform law; any finite ``alpha >= 0`` is allowed.

    Parameters
    ----------
    N : int
        Vocabulary size (tokens ``x = 1..N``).
    alpha : float
        Zipf exponent (``alpha >= 0``).
    """
    N = check.positive_int("N", N)
    alpha = check.real("alpha", alpha, low=0.0)
    check.budget("N", nbytes=16.0 * N, formula="two float64 arrays of N")
    weights = np.arange(1, N + 1, dtype=np.float64) ** -alpha
    return weights / weights.sum()


def sample_tokens(N: int, alpha: float, T: int, seed: int, *, trials: int | None = None) -> np.ndarray:
    """Draw ``T`` i.i.d. tokens (0-based) from the Zipf law; shape ``(T,)`` or ``(trials, T)``.

    Inverse-CDF sampling with ``numpy.random.default_rng(seed)``; the first ``t`` columns of a draw
    are a draw of size ``t`` (nested data), which chapter 3 uses to scan ``T`` with one draw.

    Parameters
    ----------
    N : int
        Vocabulary size (tokens ``x = 1..N``).
    alpha : float
        Zipf exponent (``alpha >= 0``).
    T : int
        Number of samples.
    seed : int
        Seed of ``numpy.random.default_rng``.
    trials : int, optional
        Independent draws (rows); ``None`` gives one draw of shape ``(T,)``.
    """
    T = check.positive_int("T", T)
    seed = check.seed("seed", seed)
    shape = (T,) if trials is None else (check.positive_int("trials", trials), T)
    check.budget("T, trials", nbytes=16.0 * np.prod(shape, dtype=float), formula="two 8-byte arrays of trials x T")
    cdf = np.cumsum(zipf_probs(N, alpha))
    uniforms = np.random.default_rng(seed).random(shape)
    return np.minimum(np.searchsorted(cdf, uniforms * cdf[-1], side="right"), N - 1)


def token_counts(tokens: np.ndarray, N: int) -> np.ndarray:
    """Counts ``n_x`` of each of the ``N`` tokens along the last axis of ``tokens``.

    Parameters
    ----------
    tokens : numpy.ndarray
        Samples (0-based tokens), shape ``(T,)`` or ``(trials, T)``.
    N : int
        Vocabulary size (tokens ``x = 1..N``).
    """
    tokens = _checked_tokens(tokens, N)
    flat = tokens.reshape(-1, tokens.shape[-1]) if tokens.ndim > 1 else tokens[None]
    offsets = np.arange(flat.shape[0])[:, None] * N
    counts = np.bincount((flat + offsets).ravel(), minlength=flat.shape[0] * N)
    return counts.reshape(*tokens.shape[:-1], N)


def rank_frequency(tokens: np.ndarray, N: int) -> np.ndarray:
    """Empirical frequencies sorted in decreasing order (rank 1 first), along the last axis.

    Parameters
    ----------
    tokens : numpy.ndarray
        Samples (0-based tokens), shape ``(T,)`` or ``(trials, T)``.
    N : int
        Vocabulary size (tokens ``x = 1..N``).
    """
    tokens = np.asarray(tokens)
    return -np.sort(-token_counts(tokens, N), axis=-1) / tokens.shape[-1]


def first_occurrence(tokens: np.ndarray, N: int) -> np.ndarray:
    """Index of the first sample equal to each token (``T`` where it never occurs), per trial.

    With nested data this answers every prefix at once: token ``x`` is seen among the first ``t``
    samples exactly when ``first_occurrence[x] < t``.

    Parameters
    ----------
    tokens : numpy.ndarray
        Samples (0-based tokens), shape ``(T,)`` or ``(trials, T)``.
    N : int
        Vocabulary size (tokens ``x = 1..N``).
    """
    tokens = np.atleast_2d(_checked_tokens(tokens, N))
    trials, T = tokens.shape
    first = np.full(trials * N, T, dtype=np.int64)
    keys, index = np.unique((tokens + N * np.arange(trials)[:, None]).ravel(), return_index=True)
    first[keys] = index % T  # np.unique reports the first position of each (trial, token) key
    first = first.reshape(trials, N)
    return first if np.asarray(tokens).ndim > 1 else first[0]


def seen_curves(tokens: np.ndarray, p: np.ndarray, T_grid) -> tuple[np.ndarray, np.ndarray]:
    r"""Number of distinct tokens and unseen mass :math:`\sum_x p(x) 1[n_x = 0]` in each prefix of
    ``tokens`` of length ``t`` in ``T_grid``. Returns two arrays of shape ``(trials, len(T_grid))``.

    Parameters
    ----------
    tokens : numpy.ndarray
        Samples (0-based tokens), shape ``(T,)`` or ``(trials, T)``.
    p : numpy.ndarray
        The law the tokens were drawn from, shape ``(N,)``.
    T_grid : array_like of int
        Prefix lengths (at most the number of samples).
    """
    p = check.real_array("p", p)
    tokens = np.atleast_2d(_checked_tokens(tokens, p.size))  # named errors for None, strings, empty
    T_grid = check.int_array("T_grid", T_grid)
    if T_grid.max() > tokens.shape[-1]:
        raise ValueError(f"T_grid must not exceed the number of samples {tokens.shape[-1]}")
    check.budget("tokens, T_grid", nbytes=9.0 * tokens.shape[0] * T_grid.size * p.size,
                 formula="a boolean and a float64 product per trial, prefix and token")
    first = first_occurrence(tokens, p.size)
    seen = first[:, None, :] < T_grid[None, :, None]
    return seen.sum(axis=-1), ((~seen) * p).sum(axis=-1)


def tail_mass(N: int, alpha: float, k) -> np.ndarray:
    r"""Exact tail mass :math:`p(x > k) = \sum_{x=k+1}^N p(x)` for each ``k`` in ``0..N``.

    Parameters
    ----------
    N : int
        Vocabulary size (tokens ``x = 1..N``).
    alpha : float
        Zipf exponent (``alpha >= 0``).
    k : int or array_like of int
        Ranks ``0 <= k <= N``.
    """
    N = check.positive_int("N", N)
    k = check.int_array("k", k, minimum=0)
    if k.max() > N:
        raise ValueError(f"k must lie in [0, N={N}], got max {k.max()}")
    tail = np.concatenate([np.cumsum(zipf_probs(N, alpha)[::-1])[::-1], [0.0]])
    return tail[k]


def tail_mass_law(alpha: float, k) -> np.ndarray:
    r"""Asymptotic tail mass for ``N = inf``: :math:`p(x > k) \simeq k^{1-\alpha} / ((\alpha-1)\zeta(\alpha))`.

    Parameters
    ----------
    alpha : float
        Zipf exponent (``alpha > 1``: the law's ``N = inf`` limit exists).
    k : int or array_like
        Ranks (``k >= 1``).
    """
    alpha = _heavy_tail_alpha(alpha)
    k = check.int_array("k", k, minimum=1).astype(np.float64)
    return k ** (1 - alpha) / ((alpha - 1) * special.zeta(alpha))


def expected_distinct(N: int, alpha: float, T) -> np.ndarray:
    r"""Expected number of distinct tokens among ``T`` samples, :math:`\sum_x 1 - (1 - p(x))^T`.

    Parameters
    ----------
    N : int
        Vocabulary size (tokens ``x = 1..N``).
    alpha : float
        Zipf exponent (``alpha >= 0``).
    T : int or array_like
        Number(s) of samples.
    """
    return np.array([-np.expm1(t * np.log1p(-p)).sum() for p, t in _per_T(N, alpha, T)])


def expected_distinct_law(alpha: float, T) -> np.ndarray:
    r"""Asymptotic distinct count for ``N = inf``: :math:`\Gamma(1 - 1/\alpha)\,(T/\zeta(\alpha))^{1/\alpha}`.

    Parameters
    ----------
    alpha : float
        Zipf exponent (``alpha > 1``: the law's ``N = inf`` limit exists).
    T : int or array_like
        Number(s) of samples.
    """
    alpha = _heavy_tail_alpha(alpha)
    T = check.int_array("T", T).astype(np.float64)
    return special.gamma(1 - 1 / alpha) * (T / special.zeta(alpha)) ** (1 / alpha)


def expected_unseen_mass(N: int, alpha: float, T) -> np.ndarray:
    r"""Expected probability mass of tokens never seen in ``T`` samples, :math:`\sum_x p(x)(1 - p(x))^T`.

    This is the floor of chapter 3: a memory built from ``T`` samples cannot store what it never saw.

    Parameters
    ----------
    N : int
        Vocabulary size (tokens ``x = 1..N``).
    alpha : float
        Zipf exponent (``alpha >= 0``).
    T : int or array_like
        Number(s) of samples.
    """
    return np.array([(p * np.exp(t * np.log1p(-p))).sum() for p, t in _per_T(N, alpha, T)])


def expected_unseen_mass_law(alpha: float, T) -> np.ndarray:
    r"""Asymptotic unseen mass for ``N = inf``:
    :math:`\frac{\Gamma(1 - 1/\alpha)}{\alpha\,\zeta(\alpha)^{1/\alpha}}\, T^{-(1 - 1/\alpha)}`.

    Parameters
    ----------
    alpha : float
        Zipf exponent (``alpha > 1``: the law's ``N = inf`` limit exists).
    T : int or array_like
        Number(s) of samples.
    """
    alpha = _heavy_tail_alpha(alpha)
    T = check.int_array("T", T).astype(np.float64)
    const = special.gamma(1 - 1 / alpha) / (alpha * special.zeta(alpha) ** (1 / alpha))
    return const * T ** -(1 - 1 / alpha)


def mod_labels(N: int, M: int) -> np.ndarray:
    """The reference labels ``f*(x) = x mod M`` for ``x = 1..N`` (0-based array of classes).

    Parameters
    ----------
    N : int
        Vocabulary size (tokens ``x = 1..N``).
    M : int
        Number of classes.
    """
    N = check.positive_int("N", N)
    M = check.positive_int("M", M)
    check.budget("N", nbytes=8.0 * N, formula="an int64 array of N")
    return np.arange(1, N + 1) % M


def random_labels(N: int, M: int, seed: int) -> np.ndarray:
    """Labels ``f*(x)`` drawn uniformly from ``{0..M-1}`` for ``x = 1..N``.

    Parameters
    ----------
    N : int
        Vocabulary size (tokens ``x = 1..N``).
    M : int
        Number of classes.
    seed : int
        Seed of ``numpy.random.default_rng``.
    """
    N = check.positive_int("N", N)
    M = check.positive_int("M", M)
    check.budget("N", nbytes=8.0 * N, formula="an int64 array of N")
    return np.random.default_rng(check.seed("seed", seed)).integers(0, M, size=N)


def _checked_tokens(tokens, N: int) -> np.ndarray:
    N = check.positive_int("N", N)
    tokens = np.asarray(tokens)
    rows = tokens.size // tokens.shape[-1] if tokens.ndim and tokens.shape[-1] else 1
    check.budget("N", nbytes=8.0 * N * rows, formula="int64 counts of N tokens per trial")
    if tokens.ndim == 0 or tokens.shape[-1] == 0 or not np.issubdtype(tokens.dtype, np.integer):
        raise ValueError(f"tokens must be a non-empty integer array of samples, got {tokens!r:.60}")
    if tokens.min() < 0 or tokens.max() >= N:
        raise ValueError(f"tokens must be 0-based indices in [0, {N - 1}] for N={N}")
    return tokens


def _heavy_tail_alpha(alpha: float) -> float:
    return check.real("alpha", alpha, low=1.0, low_open=True)


def _per_T(N, alpha, T):
    p = zipf_probs(N, alpha)
    return ((p, t) for t in check.int_array("T", T, minimum=0))
