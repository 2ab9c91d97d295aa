r"""Memories built from ``T`` observed samples: nested data, count-based schemes and the (d, T) scan.

Chapter 3 of the book. The data of one trial is the first ``T`` tokens of one long Zipf draw, so a grid
of ``T`` costs one draw per trial and the curves in ``T`` are smooth (the same sample grows). The
weights are functions of the counts :math:`n_x` of those ``T`` tokens (:data:`SCHEMES`):

- ``"seen"``: store every seen token, :math:`q(x) = 1[n_x > 0]` (:func:`assocmem.memory.seen_weights`);
- ``"top"``: thresholding, :math:`q(x) = 1` on the :math:`P = \lfloor d/\text{ratio} \rfloor` most
  frequent seen tokens (:func:`assocmem.memory.top_seen_weights`; ties in count broken in a seeded
  random order, ``count_ties="random"``, or by token index, ``"index"``);
- ``"empirical"``: :math:`q(x) = \hat p(x)^\rho` with :math:`\hat p(x) = n_x / T`
  (:func:`empirical_power_weights`).

Errors are the exact population errors of :func:`assocmem.memory.population_error` (``ties="error"``
counts a tie of scores as a miss, ``ties="first"`` decides it as ``argmax`` does in the papers' code;
the registered experiments, which reproduce the paper's grids, default to ``"first"``), for every trial,
``T`` and ``d`` of nested grids: one embedding draw at the largest ``d`` serves every ``d`` and every
``T``, in chunks of trials so memory stays bounded.

Example
-------
>>> from assocmem import finite_sample as fs
>>> errors = fs.joint_error(1000, 2.0, [10, 100, 1000], [10, 100, 1000, 10000], trials=5, seed=0)
>>> errors.shape  # (trials, len(T_grid), len(d_grid))
(5, 4, 3)
"""

from __future__ import annotations

import numpy as np
import torch

from . import _validate as check
from . import memory, zipf
from .sweep import experiment

__all__ = [
    "SCHEMES",
    "KINDS",
    "nested_counts",
    "empirical_power_weights",
    "count_weights",
    "error_grid",
    "joint_error",
    "threshold_error",
    "best_threshold",
    "more_data_hurts",
    "joint_experiment",
    "overflow_experiment",
    "best_threshold_experiment",
]

SCHEMES = ("seen", "top", "empirical")
KINDS = (*memory.KINDS, "orthonormal")


# --------------------------------------------------------------------------- data and weights

def nested_counts(N: int, alpha: float, T_grid, *, trials: int, seed: int) -> np.ndarray:
    r"""Token counts of the first ``T`` samples of one long draw per trial, for each ``T`` in ``T_grid``.

    ``counts[k, i, x]`` is :math:`n_x` in the first ``T_grid[i]`` samples of trial ``k``. The draw is
    :func:`assocmem.zipf.sample_tokens` with ``T = max(T_grid)``; each slice counts a prefix of it, so
    it is distributed as an independent draw of size ``T_grid[i]`` and ``counts[k, i]`` grows with ``i``
    (with ``trials=1`` it equals the counts of ``sample_tokens(N, alpha, T_grid[i], seed)``).

    Parameters
    ----------
    N : int
        Number of tokens.
    alpha : float
        Zipf exponent (``alpha >= 0``).
    T_grid : sequence of int
        Strictly increasing sample sizes, ``T >= 1``.
    trials : int
        Independent draws.
    seed : int
        Seed of the draw.

    Returns
    -------
    numpy.ndarray
        int64 array of shape ``(trials, len(T_grid), N)``.
    """
    T_grid = _increasing("T_grid", T_grid)
    tokens = zipf.sample_tokens(N, alpha, int(T_grid[-1]), seed, trials=check.positive_int("trials", trials))
    bounds = np.concatenate([[0], T_grid])
    segments = zip(bounds[:-1], bounds[1:], strict=True)
    increments = np.stack([zipf.token_counts(tokens[:, a:b], N) for a, b in segments], axis=1)
    return np.cumsum(increments, axis=1)


def empirical_power_weights(counts, rho: float) -> np.ndarray:
    r"""Weights from empirical frequencies: :math:`q(x) = \hat p(x)^\rho` on seen tokens, 0 on unseen.

    :math:`\hat p(x) = n_x / \sum_{x'} n_{x'}` along the last axis of ``counts``. ``rho = 0`` stores every
    seen token with weight 1 (:func:`assocmem.memory.seen_weights`), ``rho = 1`` is what one large-batch
    gradient step stores.

    Parameters
    ----------
    counts : array of int, shape ``(..., N)``
        Token counts :math:`n_x`; every row needs at least one sample.
    rho : float
        The power :math:`\rho \ge 0`.
    """
    counts = _counts(counts)
    rho = check.real("rho", rho, low=0.0)
    totals = counts.sum(axis=-1, keepdims=True)
    if np.any(totals == 0):
        raise ValueError("counts must contain at least one sample in every row to define p_hat")
    return np.where(counts > 0, (counts / np.maximum(totals, 1)) ** rho, 0.0)


def count_weights(counts, scheme: str, d_grid=None, *, ratio: float = 12.0, rho: float = 1.0,
                  count_ties: str = "random", seed: int = 0) -> np.ndarray:
    r"""The weights of a count-based scheme, in the layout :func:`assocmem.memory.population_error` takes.

    ``"seen"`` and ``"empirical"`` give the shape of ``counts``; ``"top"`` keeps the
    :math:`\lfloor d/\text{ratio} \rfloor` most frequent seen tokens for each ``d`` of ``d_grid`` and
    inserts that axis: ``counts.shape[:-1] + (len(d_grid), N)``; its ties in count follow
    ``count_ties`` and ``seed`` (:func:`assocmem.memory.top_seen_weights`).

    Parameters
    ----------
    counts : array of int, shape ``(..., N)``
        Token counts :math:`n_x` (e.g. from :func:`nested_counts`).
    scheme : {"seen", "top", "empirical"}
        ``"seen"``: weight 1 on every seen token; ``"top"``: the most frequent seen tokens;
        ``"empirical"``: :func:`empirical_power_weights`.
    d_grid : sequence of int, optional
        Dimensions; required for ``"top"``.
    ratio : float
        Dimensions per stored token of ``"top"``, :math:`> 0`.
    rho : float
        Power of ``"empirical"``, :math:`\ge 0`.
    count_ties : {"random", "index"}
        Order of tied counts for ``"top"``.
    seed : int
        Seed of the random order of tied counts.
    """
    scheme = check.choice("scheme", scheme, SCHEMES)
    if scheme == "seen":
        return memory.seen_weights(counts)
    if scheme == "empirical":
        return empirical_power_weights(counts, rho)
    ratio = check.real("ratio", ratio, low=0.0, low_open=True)
    if d_grid is None:
        raise ValueError("d_grid is required for the top scheme (P = d // ratio)")
    d_grid = check.int_array("d_grid", d_grid)
    N = np.shape(counts)[-1] if np.ndim(counts) else 1
    # P = floor(d / ratio), at most N (keeping more than N tokens is keeping all; a tiny ratio must not
    # overflow int64 into a negative P)
    P = np.minimum(np.floor(d_grid / ratio), N).astype(np.int64)
    return memory.top_seen_weights(counts, P, count_ties=count_ties, seed=seed)


# --------------------------------------------------------------------------- error grids

def error_grid(weights, p, labels, M: int, d_grid, seed: int, *, kind: str = "gaussian",
               dtype: torch.dtype = torch.float32, device="cpu", max_bytes: int = 2**28,
               ties: str = "error") -> np.ndarray:
    r"""Population errors of a stack of memories that share their embeddings, for every ``d`` of a grid.

    Parameters
    ----------
    weights : array, shape ``(trials, G, N)`` or ``(trials, G, len(d_grid), N)``
        ``G`` weightings per trial (one per ``T``, or per threshold ``P``), each possibly depending on
        ``d``. Trial ``k`` of every weighting is evaluated on the same embeddings.
    p : array, shape ``(N,)``
        Token probabilities :math:`p(x)`.
    labels : array of int, shape ``(N,)``
        Classes :math:`f^*(x)`, integers in :math:`[0, M-1]`.
    M : int
        Number of classes, :math:`\ge 1`.
    d_grid : sequence of int
        Strictly increasing dimensions (nested: leading coordinates of one draw at ``max(d_grid)``).
    seed : int
        Seed of the embeddings, :func:`assocmem.memory.memory_embeddings` (trial ``k`` is the same
        draw as in :func:`assocmem.memory.error_scan`).
    kind : {"gaussian", "sphere", "orthonormal"}
        Random embeddings, or the standard bases (inputs :math:`e_x`, outputs :math:`u_y`; needs
        ``min(d_grid) >= N``), the orthogonal memory of the exact identity of chapter 3.
    dtype : torch.dtype
        Floating dtype of the embeddings and scores.
    device : str or torch.device
        Where the embeddings are drawn and the scores computed.
    max_bytes : int
        Bound on the embeddings and score accumulators held at once: trials are drawn in chunks
        (same numbers). Each chunk is one :func:`assocmem.memory.population_errors` call with the
        ``G`` weightings, which share every pass over the chunk's embeddings.
    ties : {"error", "first"}
        A tie of scores: a miss, or decided as ``argmax`` does (:func:`assocmem.memory.population_error`).

    Returns
    -------
    numpy.ndarray
        float64, shape ``(trials, G, len(d_grid))``.
    """
    kind = check.choice("kind", kind, KINDS)
    M = check.positive_int("M", M)
    ties = check.choice("ties", ties, memory.TIES)
    max_bytes = check.positive_int("max_bytes", max_bytes)
    d_grid = check.int_array("d_grid", d_grid)
    weights = check.real_array("weights", weights)
    if weights.ndim not in (3, 4) or (weights.ndim == 4 and weights.shape[2] != d_grid.size):
        raise ValueError(f"weights must have shape (trials, G, N) or (trials, G, len(d_grid)={d_grid.size}, N), "
                         f"got {weights.shape}")
    trials, n_weights, N = weights.shape[0], weights.shape[1], weights.shape[-1]
    D = int(d_grid.max())
    if kind == "orthonormal" and d_grid.min() < N:
        raise ValueError(f"kind='orthonormal' needs every d >= N={N}, got min(d_grid)={d_grid.min()}")
    # One population_errors call per chunk of trials, its G weightings folded into the rows of the
    # products: each block of a trial's embeddings is read once for all weightings. A chunk holds the
    # embeddings and the score accumulators (M per weighting and d) of its trials.
    vectors = n_weights * (d_grid.size if weights.ndim == 4 else 1)
    bytes_per_trial = ((N + M) * D + vectors * M * N) * torch.empty((), dtype=dtype).element_size()
    trials_per_chunk = max(1, max_bytes // bytes_per_trial)
    errors = np.empty((trials, n_weights, d_grid.size))
    for first in range(0, trials, trials_per_chunk):
        size = min(trials_per_chunk, trials - first)
        E, U = _embeddings(kind, N, M, D, seed, size, first, dtype, device)
        per_weighting = memory.population_errors(
            list(weights[first:first + size].swapaxes(0, 1)), p, labels, E, U, d_grid,
            kind="gaussian" if kind == "orthonormal" else kind, ties=ties)
        errors[first:first + size] = torch.stack(per_weighting, dim=1).cpu().numpy()
    return errors


def joint_error(N: int, alpha: float, d_grid, T_grid, *, scheme: str = "top", M: int = 5,
                ratio: float = 12.0, rho: float = 1.0, trials: int = 100, seed: int = 0,
                kind: str = "gaussian", dtype: torch.dtype = torch.float32, device="cpu",
                ties: str = "error", count_ties: str = "random") -> np.ndarray:
    r"""The joint (d, T) scan of chapter 3: error of a memory built from ``T`` samples, in dimension ``d``.

    Data: :func:`nested_counts` (``seed``); weights: :func:`count_weights`; labels
    :math:`f^*(x) = x \bmod M`; embeddings: one draw per trial at ``max(d_grid)`` (``seed``, an
    independent stream), shared by every ``T``. ``ties`` is the rule for tied scores
    (:func:`error_grid`), ``count_ties`` the rule for tied counts of ``"top"`` (:func:`count_weights`,
    seeded by ``seed``). Returns float64 errors of shape ``(trials, len(T_grid), len(d_grid))``.

    Parameters
    ----------
    N : int
        Vocabulary size of the Zipf law :math:`p(x) \propto x^{-\alpha}`.
    alpha : float
        Zipf exponent.
    d_grid : sequence of int
        Strictly increasing embedding dimensions.
    T_grid : sequence of int
        Strictly increasing sample sizes (nested draws).
    scheme : {"seen", "top", "empirical"}
        The count-based scheme (:func:`count_weights`).
    M : int
        Number of classes, :math:`\ge 1`.
    ratio : float
        Dimensions per stored token of ``"top"``, :math:`> 0`.
    rho : float
        Power of ``"empirical"``, :math:`\ge 0`.
    trials : int
        Independent draws of samples and embeddings, :math:`\ge 1`.
    seed : int
        Seed of the samples and (an independent stream) of the embeddings, non-negative.
    kind : {"gaussian", "sphere", "orthonormal"}
        The embeddings (see :func:`error_grid`).
    dtype : torch.dtype
        Floating dtype of the embeddings and scores.
    device : str or torch.device
        Where the scores are computed.
    ties : {"error", "first"}
        Rule for tied scores (:func:`error_grid`).
    count_ties : {"random", "index"}
        Rule for tied counts when keeping the most frequent tokens (:func:`assocmem.memory.top_seen_weights`).
    """
    ties = check.choice("ties", ties, memory.TIES)
    count_ties = check.choice("count_ties", count_ties, memory.COUNT_TIES)
    counts = nested_counts(N, alpha, T_grid, trials=trials, seed=seed)
    weights = count_weights(counts, scheme, d_grid, ratio=ratio, rho=rho, count_ties=count_ties, seed=seed)
    return error_grid(weights, zipf.zipf_probs(N, alpha), zipf.mod_labels(N, M), M, d_grid, seed,
                      kind=kind, dtype=dtype, device=device, ties=ties)


def threshold_error(N: int, alpha: float, d_grid, P_grid, T: int, *, M: int = 5, trials: int = 100,
                    seed: int = 0, kind: str = "gaussian", dtype: torch.dtype = torch.float32,
                    device="cpu", ties: str = "error", count_ties: str = "random") -> np.ndarray:
    r"""Error of keeping the ``P`` most frequent of ``T`` samples, for each ``P`` and ``d``.

    The same ``T`` samples and embeddings serve every ``P``; returns float64 errors of shape
    ``(trials, len(P_grid), len(d_grid))``. :func:`best_threshold` reads the best ``P`` per ``d``.
    ``ties`` and ``count_ties`` as in :func:`joint_error`.

    Parameters
    ----------
    N : int
        Vocabulary size of the Zipf law :math:`p(x) \propto x^{-\alpha}`.
    alpha : float
        Zipf exponent.
    d_grid : sequence of int
        Strictly increasing embedding dimensions.
    P_grid : sequence of int
        Strictly increasing thresholds :math:`P \ge 0` (numbers of tokens kept).
    T : int
        Number of samples, :math:`\ge 1`.
    M : int
        Number of classes, :math:`\ge 1`.
    trials : int
        Independent draws of samples and embeddings, :math:`\ge 1`.
    seed : int
        Seed of the samples and (an independent stream) of the embeddings, non-negative.
    kind : {"gaussian", "sphere", "orthonormal"}
        The embeddings (see :func:`error_grid`).
    dtype : torch.dtype
        Floating dtype of the embeddings and scores.
    device : str or torch.device
        Where the scores are computed.
    ties : {"error", "first"}
        Rule for tied scores (:func:`error_grid`).
    count_ties : {"random", "index"}
        Rule for tied counts when keeping the most frequent tokens (:func:`assocmem.memory.top_seen_weights`).
    """
    ties = check.choice("ties", ties, memory.TIES)
    counts = nested_counts(N, alpha, [check.positive_int("T", T)], trials=trials, seed=seed)[:, 0]
    weights = memory.top_seen_weights(counts, _increasing("P_grid", P_grid, minimum=0), count_ties=count_ties,
                                      seed=seed)
    return error_grid(weights, zipf.zipf_probs(N, alpha), zipf.mod_labels(N, M), M, d_grid, seed,
                      kind=kind, dtype=dtype, device=device, ties=ties)


def best_threshold(errors, P_grid) -> np.ndarray:
    r"""The threshold with the smallest mean error, :math:`P^*(d) = \arg\min_P \bar{\mathcal{E}}(P, d)`.

    ``errors`` as returned by :func:`threshold_error`, shape ``(trials, len(P_grid), len(d_grid))``;
    ties go to the smallest ``P``. Returns one ``P`` per ``d``.

    Parameters
    ----------
    errors : array, shape ``(trials, len(P_grid), len(d_grid))``
        Errors from :func:`threshold_error`.
    P_grid : sequence of int
        The thresholds the errors were computed for, strictly increasing.
    """
    P_grid = _increasing("P_grid", P_grid, minimum=0)
    errors = check.real_array("errors", errors)
    if errors.ndim != 3 or errors.shape[1] != P_grid.size:
        raise ValueError(f"errors must have shape (trials, len(P_grid)={P_grid.size}, len(d_grid)), "
                         f"got {errors.shape}")
    return P_grid[errors.mean(axis=0).argmin(axis=0)]


def more_data_hurts(errors, *, z: float = 2.0) -> np.ndarray:
    r"""Where a memory is worse than the same memory built from fewer samples, beyond the noise.

    With errors of shape ``(trials, len(T_grid), len(d_grid))`` (nested in ``T``, as from
    :func:`joint_error`), the cell ``(i, j)`` is marked when the mean error exceeds the best mean error
    over the smaller sample sizes by more than ``z`` standard errors of its difference across trials:

    .. math:: \bar{\mathcal{E}}(T_i, d_j) - \bar{\mathcal{E}}(T_{i'}, d_j) > z\,\mathrm{se}_{i,i'}, \qquad
              i' = \arg\min_{i' \le i} \bar{\mathcal{E}}(T_{i'}, d_j).

    Returns a boolean array of shape ``(len(T_grid), len(d_grid))``.

    Parameters
    ----------
    errors : array, shape ``(trials, len(T_grid), len(d_grid))``
        Errors nested in ``T``, ``trials >= 2``.
    z : float
        Number of standard errors the excess must exceed, :math:`\ge 0`.
    """
    z = check.real("z", z, low=0.0)
    errors = check.real_array("errors", errors)
    if errors.ndim != 3 or errors.shape[0] < 2:
        raise ValueError(f"errors must have shape (trials >= 2, len(T_grid), len(d_grid)), got {errors.shape}")
    mean = errors.mean(axis=0)
    hurts = np.zeros(mean.shape, dtype=bool)
    for i in range(1, mean.shape[0]):
        best = mean[: i + 1].argmin(axis=0)                                   # per d
        gap = errors[:, i] - np.take_along_axis(errors, best[None, None], axis=1)[:, 0]
        standard_error = gap.std(axis=0, ddof=1) / np.sqrt(errors.shape[0])
        hurts[i] = gap.mean(axis=0) > z * standard_error
    return hurts


# --------------------------------------------------------------------------- sweep experiments

@experiment("finite_sample_joint")
def joint_experiment(N: int = 1000, M: int = 5, alpha: float = 2.0, ratio: float = 12.0,
                     d_values: tuple = (10, 20, 50, 100, 200, 1000), T_min: int = 10, T_max: int = 10_000,
                     n_T: int = 13, trials: int = 100, seed: int = 0, kind: str = "gaussian",
                     device: str = "cpu", ties: str = "first", count_ties: str = "random") -> list[dict]:
    """The paper's joint (d, T) grid for thresholding (q = 1 on the int(d/ratio) most frequent seen tokens).

    One row per trial, ``T`` (``n_T`` log-spaced integers in ``[T_min, T_max]``) and ``d``. Split the 100
    trials across workers with ``--grid seed=0,1,2,3 --grid trials=25``. Tied scores are decided as the
    paper's ``argmax`` does (``ties="first"``), tied counts in a seeded random order.

    Parameters
    ----------
    N, M : int
        Number of tokens and of classes (``f*(x) = x mod M``).
    alpha : float
        Zipf exponent.
    ratio : float
        The memory keeps the ``int(d / ratio)`` most frequent seen tokens (the paper's ``P = d/12``).
    d_values : tuple of int
        The dimensions.
    T_min, T_max, n_T : int
        The range and number of the log-spaced sample sizes.
    trials : int
        Independent trials (data and embeddings); split them across workers with ``seed``.
    seed : int
        Seed of the samples and of the embeddings (independent streams).
    kind : {"gaussian", "sphere", "orthonormal"}
        Distribution of the embeddings.
    device : str
        Torch device of the computation.
    ties : {"error", "first"}
        Rule for tied scores: ``"first"`` decides them as the paper's ``argmax`` does, ``"error"``
        counts a tie as a miss.
    count_ties : {"random", "index"}
        Order of tokens with tied counts: a seeded random order, or by index.

    Returns
    -------
    list of dict
        One row per trial, ``T`` and ``d``: ``trial``, ``T``, ``d``, ``error``.
    """
    T_grid = memory.log_grid(T_min, T_max, n_T, names=("T_min", "T_max", "n_T"))
    errors = joint_error(N, alpha, list(d_values), T_grid, scheme="top", M=M, ratio=ratio, trials=trials,
                         seed=seed, kind=kind, device=device, ties=ties, count_ties=count_ties)
    return _rows(errors, T=T_grid, d=np.asarray(d_values))


@experiment("finite_sample_overflow")
def overflow_experiment(N: int = 100, M: int = 5, alpha: float = 0.5, d_min: int = 10, d_max: int = 1000,
                        n_d: int = 30, T_min: int = 10, T_max: int = 10_000, n_T: int = 30, trials: int = 100,
                        seed: int = 0, kind: str = "gaussian", device: str = "cpu",
                        ties: str = "first") -> list[dict]:
    """The paper's grid for storing every seen token (q = 1[n_x > 0]); one row per trial, ``T`` and ``d``
    (tied scores decided as the paper's ``argmax`` does).

    Parameters
    ----------
    N, M : int
        Number of tokens and of classes (``f*(x) = x mod M``).
    alpha : float
        Zipf exponent (the paper's ``0.5``: a flat law whose seen tokens overflow the memory).
    d_min, d_max, n_d : int
        The range and number of the log-spaced dimensions.
    T_min, T_max, n_T : int
        The range and number of the log-spaced sample sizes.
    trials : int
        Independent trials (data and embeddings); split them across workers with ``seed``.
    seed : int
        Seed of the samples and of the embeddings (independent streams).
    kind : {"gaussian", "sphere", "orthonormal"}
        Distribution of the embeddings.
    device : str
        Torch device of the computation.
    ties : {"error", "first"}
        Rule for tied scores: ``"first"`` decides them as the paper's ``argmax`` does, ``"error"``
        counts a tie as a miss.

    Returns
    -------
    list of dict
        One row per trial, ``T`` and ``d``: ``trial``, ``T``, ``d``, ``error``.
    """
    T_grid = memory.log_grid(T_min, T_max, n_T, names=("T_min", "T_max", "n_T"))
    d_grid = memory.log_grid(d_min, d_max, n_d, names=("d_min", "d_max", "n_d"))
    errors = joint_error(N, alpha, d_grid, T_grid, scheme="seen", M=M, trials=trials, seed=seed, kind=kind,
                         device=device, ties=ties)
    return _rows(errors, T=T_grid, d=d_grid)


@experiment("finite_sample_best_threshold")
def best_threshold_experiment(N: int = 1000, M: int = 5, alpha: float = 2.0, T: int = 100_000,
                              d_min: int = 10, d_max: int = 1000, n_d: int = 12, P_min: int = 1,
                              P_max: int = 1000, n_P: int = 40, trials: int = 100, seed: int = 0,
                              kind: str = "gaussian", device: str = "cpu", ties: str = "first",
                              count_ties: str = "random") -> list[dict]:
    """Error of keeping the P most frequent of T samples, for P and d on log grids; one row per trial,
    ``P`` and ``d`` (tied scores decided as ``argmax`` does, tied counts in a seeded random order).

    Parameters
    ----------
    N, M : int
        Number of tokens and of classes (``f*(x) = x mod M``).
    alpha : float
        Zipf exponent.
    T : int
        Number of samples the counts come from.
    d_min, d_max, n_d : int
        The range and number of the log-spaced dimensions.
    P_min, P_max, n_P : int
        The range and number of the log-spaced thresholds ``P`` (tokens kept).
    trials : int
        Independent trials (data and embeddings); split them across workers with ``seed``.
    seed : int
        Seed of the samples and of the embeddings (independent streams).
    kind : {"gaussian", "sphere", "orthonormal"}
        Distribution of the embeddings.
    device : str
        Torch device of the computation.
    ties : {"error", "first"}
        Rule for tied scores: ``"first"`` decides them as the paper's ``argmax`` does, ``"error"``
        counts a tie as a miss.
    count_ties : {"random", "index"}
        Order of tokens with tied counts: a seeded random order, or by index.

    Returns
    -------
    list of dict
        One row per trial, ``P`` and ``d``: ``trial``, ``P``, ``d``, ``error``.
    """
    P_grid = memory.log_grid(P_min, P_max, n_P, names=("P_min", "P_max", "n_P"))
    d_grid = memory.log_grid(d_min, d_max, n_d, names=("d_min", "d_max", "n_d"))
    errors = threshold_error(N, alpha, d_grid, P_grid, T, M=M, trials=trials, seed=seed, kind=kind,
                             device=device, ties=ties, count_ties=count_ties)
    return _rows(errors, P=P_grid, d=d_grid)


# --------------------------------------------------------------------------- internals

def _rows(errors: np.ndarray, **axes: np.ndarray) -> list[dict]:
    (outer, outer_values), (inner, inner_values) = axes.items()
    return [{"trial": k, outer: int(a), inner: int(b), "error": float(errors[k, i, j])}
            for k in range(errors.shape[0]) for i, a in enumerate(outer_values)
            for j, b in enumerate(inner_values)]


def _embeddings(kind, N, M, D, seed, trials, first_trial, dtype, device):
    if kind != "orthonormal":
        return memory.memory_embeddings(N, M, D, seed, trials=trials, first_trial=first_trial, kind=kind,
                                        dtype=dtype, device=device)
    basis = torch.eye(D, dtype=dtype, device=device)
    return basis[None, :N].expand(trials, -1, -1), basis[None, :M].expand(trials, -1, -1)


def _counts(counts) -> np.ndarray:
    counts = np.asarray(counts)
    if counts.ndim == 0 or counts.shape[-1] == 0:
        raise ValueError(f"counts must have a non-empty token axis (last), got shape {counts.shape}")
    if not np.issubdtype(counts.dtype, np.integer):
        raise TypeError(f"counts must contain integers, got dtype {counts.dtype}")
    if counts.min() < 0:
        raise ValueError(f"counts must be >= 0, got min {counts.min()}")
    return counts


def _increasing(name: str, values, *, minimum: int = 1) -> np.ndarray:
    values = check.int_array(name, values, minimum=minimum)
    if np.any(np.diff(values) <= 0):
        raise ValueError(f"{name} must be strictly increasing, got {values.tolist()}")
    return values
